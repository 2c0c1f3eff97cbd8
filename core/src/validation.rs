//! Name, label and annotation validation with upstream Kubernetes' rules and messages
//! (`k8s.io/apimachinery/pkg/util/validation` and the object-meta validation built on it).
//!
//! The `is_*` functions return the upstream list of problems for one value: an empty list
//! means the value is valid. The `validate_*` functions check a whole map and answer with
//! field errors formatted as upstream prints them (`metadata.labels: Invalid value: "a_": ...`);
//! the `*_at` variants return [`StatusCause`]s for a 422 `Invalid` response instead.
//!
//! ```
//! use kybernetes_core::validation::{is_dns1123_label, is_qualified_name};
//! assert!(is_dns1123_label("web-0").is_empty());
//! assert_eq!(is_dns1123_label("web.0"), vec!["must not contain dots"]);
//! assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
//! ```

use std::collections::BTreeMap;

use crate::status::StatusCause;

/// Longest RFC 1123 label (`IsDNS1123Label`), in bytes.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest RFC 1123 subdomain (`IsDNS1123Subdomain`), in bytes.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest name part of a qualified name (a label key without its prefix), in bytes.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Longest label value, in bytes.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Largest total size of all annotation keys and values of one object (256 KiB).
pub const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;

/// The regular expression upstream uses for RFC 1123 labels, as printed in error messages.
pub const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
/// The regular expression upstream uses for RFC 1123 subdomains, as printed in error messages.
pub const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
/// The regular expression upstream uses for the name part of qualified names.
pub const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
/// The regular expression upstream uses for label values.
pub const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Upstream's `EmptyError()`: `must be non-empty`.
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

/// Upstream's `MaxLenError(n)`: `must be no more than n characters`.
///
/// ```
/// assert_eq!(kybernetes_core::validation::max_len_error(63), "must be no more than 63 characters");
/// ```
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Upstream's `RegexError(msg, fmt, examples...)`, including its exact punctuation
/// (`(e.g. 'a',  or 'b', regex used for validation is '...')`).
///
/// ```
/// use kybernetes_core::validation::regex_error;
/// assert_eq!(regex_error("bad", "x+", &["x", "xx"]), "bad (e.g. 'x',  or 'xx', regex used for validation is 'x+')");
/// assert_eq!(regex_error("bad", "x+", &[]), "bad (regex used for validation is 'x+')");
/// ```
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            alnum(first) && alnum(last) && b.iter().all(|&c| alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// `^label(\.label)*$`
fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`
fn matches_qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Checks an RFC 1123 label (most object kinds that are used as DNS names: services,
/// namespaces, ...): at most 63 lower case alphanumerics or `-`, starting and ending with an
/// alphanumeric.
///
/// ```
/// use kybernetes_core::validation::is_dns1123_label;
/// assert!(is_dns1123_label("my-name").is_empty());
/// assert_eq!(is_dns1123_label("My-Name").len(), 1);
/// ```
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // A valid subdomain but not a valid label: the only difference left is dots.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Checks an RFC 1123 subdomain (the default rule for object names): at most 253 characters
/// of dot-separated RFC 1123 labels.
///
/// ```
/// use kybernetes_core::validation::is_dns1123_subdomain;
/// assert!(is_dns1123_subdomain("example.com").is_empty());
/// assert!(is_dns1123_subdomain("Example.com")[0].starts_with("a lowercase RFC 1123 subdomain must consist of"));
/// ```
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Checks a qualified name, the syntax of label keys and annotation keys: an optional
/// DNS-subdomain prefix and `/`, then a name of at most 63 alphanumerics, `-`, `_` or `.`,
/// starting and ending with an alphanumeric.
///
/// ```
/// use kybernetes_core::validation::is_qualified_name;
/// assert!(is_qualified_name("example.com/MyName").is_empty());
/// assert_eq!(is_qualified_name("/a"), vec!["prefix part must be non-empty"]);
/// ```
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Checks a label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`, starting and
/// ending with an alphanumeric.
///
/// ```
/// use kybernetes_core::validation::is_valid_label_value;
/// assert!(is_valid_label_value("").is_empty());
/// assert!(is_valid_label_value("v1.2_3").is_empty());
/// assert_eq!(is_valid_label_value("-x").len(), 1);
/// ```
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Quotes a string as Go's `strconv.Quote` (and so `%q`) does, as upstream error messages show
/// bad values.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The body of an upstream `field.Invalid` error for a string value:
/// `Invalid value: "<value>": <detail>`.
pub(crate) fn invalid_value_body(value: &str, detail: &str) -> String {
    format!("Invalid value: {}: {detail}", go_quote(value))
}

fn invalid_cause(field: &str, value: &str, detail: &str) -> StatusCause {
    StatusCause {
        reason: "FieldValueInvalid".into(),
        message: invalid_value_body(value, detail),
        field: field.into(),
    }
}

/// Renders causes as upstream's `field.Error.Error()` does: `<field>: <message>`.
fn cause_strings(causes: Vec<StatusCause>) -> Vec<String> {
    causes
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

/// Validates `metadata.labels`: every key a qualified name, every value a label value.
/// Errors read as upstream prints them, e.g.
/// `metadata.labels: Invalid value: "a_": name part must consist of ...`.
///
/// ```
/// use std::collections::BTreeMap;
/// use kybernetes_core::validation::validate_labels;
/// let ok = BTreeMap::from([("app".to_string(), "web".to_string())]);
/// assert!(validate_labels(&ok).is_empty());
/// let bad = BTreeMap::from([("app".to_string(), "no spaces".to_string())]);
/// assert!(validate_labels(&bad)[0].starts_with("metadata.labels: Invalid value: \"no spaces\": a valid label must"));
/// ```
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Vec<String> {
    cause_strings(validate_labels_at(labels, "metadata.labels"))
}

/// Validates a label map found at `field` (e.g. `spec.template.metadata.labels`) and returns
/// one `FieldValueInvalid` cause per problem, ready for [`crate::ApiError::invalid`].
pub fn validate_labels_at(labels: &BTreeMap<String, String>, field: &str) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    for (key, value) in labels {
        causes.extend(
            is_qualified_name(key)
                .iter()
                .map(|m| invalid_cause(field, key, m)),
        );
        causes.extend(
            is_valid_label_value(value)
                .iter()
                .map(|m| invalid_cause(field, value, m)),
        );
    }
    causes
}

/// Validates `metadata.annotations`: every key a qualified name (ignoring case), and the keys
/// and values together no larger than 256 KiB.
///
/// ```
/// use std::collections::BTreeMap;
/// use kybernetes_core::validation::validate_annotations;
/// let ok = BTreeMap::from([("Example.com/Note".to_string(), "any text at all".to_string())]);
/// assert!(validate_annotations(&ok).is_empty());
/// let big = BTreeMap::from([("a".to_string(), "x".repeat(256 * 1024))]);
/// assert_eq!(validate_annotations(&big), vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]);
/// ```
pub fn validate_annotations(annotations: &BTreeMap<String, String>) -> Vec<String> {
    cause_strings(validate_annotations_at(annotations, "metadata.annotations"))
}

/// Validates an annotation map found at `field` and returns one cause per problem
/// (`FieldValueInvalid` for keys, `FieldValueTooLong` for the total size).
pub fn validate_annotations_at(
    annotations: &BTreeMap<String, String>,
    field: &str,
) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    let mut total = 0usize;
    for (key, value) in annotations {
        // Upstream: the rule is QualifiedName except that case does not matter.
        causes.extend(
            is_qualified_name(&key.to_lowercase())
                .iter()
                .map(|m| invalid_cause(field, key, m)),
        );
        total = total.saturating_add(key.len()).saturating_add(value.len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
        causes.push(StatusCause {
            reason: "FieldValueTooLong".into(),
            message: format!(
                "Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT_BYTES} bytes"
            ),
            field: field.into(),
        });
    }
    causes
}

/// Which rule a resource's object names follow (upstream's `ValidateNameFunc`s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameRule {
    /// `NameIsDNSSubdomain`: the default for most kinds (pods, configmaps, deployments, ...).
    Dns1123Subdomain,
    /// `NameIsDNSLabel`: namespaces, services and others whose names become DNS labels.
    Dns1123Label,
    /// `ValidatePathSegmentName`: anything that fits in a URL path segment (e.g. RBAC roles).
    PathSegment,
}

/// Upstream's `maskTrailingDash`: a generateName prefix may end in `-`, so replace the last
/// two bytes with `a` before checking it (upstream drops two bytes, not one).
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        // Upstream works on bytes: cutting inside a multi-byte character leaves an invalid
        // byte, which then fails validation. U+FFFD fails it the same way.
        let cut = name.len() - 2;
        match name.get(..cut) {
            Some(head) => format!("{head}a"),
            None => {
                let boundary = (0..cut)
                    .rev()
                    .find(|&i| name.is_char_boundary(i))
                    .unwrap_or(0);
                format!("{}\u{fffd}a", &name[..boundary])
            }
        }
    } else {
        name.to_string()
    }
}

/// Validates an object name under `rule`. An empty name is not special-cased here (upstream
/// reports "name or generateName is required" separately).
///
/// ```
/// use kybernetes_core::validation::{validate_name, NameRule};
/// assert!(validate_name(NameRule::Dns1123Subdomain, "web.example").is_empty());
/// assert_eq!(validate_name(NameRule::Dns1123Label, "web.example"), vec!["must not contain dots"]);
/// assert_eq!(validate_name(NameRule::PathSegment, ".."), vec!["may not be '..'"]);
/// assert_eq!(validate_name(NameRule::PathSegment, "a/b%"), vec!["may not contain '/'", "may not contain '%'"]);
/// ```
pub fn validate_name(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
        NameRule::Dns1123Label => is_dns1123_label(name),
        NameRule::PathSegment => is_valid_path_segment_name(name),
    }
}

/// Validates a `metadata.generateName` prefix under `rule`: like [`validate_name`], but a
/// trailing `-` is allowed, and a path-segment prefix may be `.` or `..`.
///
/// ```
/// use kybernetes_core::validation::{validate_name_prefix, NameRule};
/// assert!(validate_name_prefix(NameRule::Dns1123Label, "web-").is_empty());
/// assert!(!validate_name_prefix(NameRule::Dns1123Label, "Web-").is_empty());
/// ```
pub fn validate_name_prefix(rule: NameRule, prefix: &str) -> Vec<String> {
    match rule {
        NameRule::Dns1123Subdomain => is_dns1123_subdomain(&mask_trailing_dash(prefix)),
        NameRule::Dns1123Label => is_dns1123_label(&mask_trailing_dash(prefix)),
        NameRule::PathSegment => path_segment_forbidden_content(prefix),
    }
}

/// Validates a `generateName` prefix under the default (DNS subdomain) rule.
///
/// ```
/// use kybernetes_core::validation::is_valid_generate_name_prefix;
/// assert!(is_valid_generate_name_prefix("web-").is_empty());
/// assert!(is_valid_generate_name_prefix("web.example-").is_empty());
/// assert!(!is_valid_generate_name_prefix("-web").is_empty());
/// ```
pub fn is_valid_generate_name_prefix(prefix: &str) -> Vec<String> {
    validate_name_prefix(NameRule::Dns1123Subdomain, prefix)
}

/// Validates an object name under the default DNS-subdomain rule, or under the path-segment
/// rule when `path_segment_name_only` is set (resources such as RBAC roles).
///
/// ```
/// use kybernetes_core::validation::validate_object_name;
/// assert!(validate_object_name("system:controller", true).is_empty());
/// assert!(!validate_object_name("system:controller", false).is_empty());
/// ```
pub fn validate_object_name(name: &str, path_segment_name_only: bool) -> Vec<String> {
    let rule = if path_segment_name_only {
        NameRule::PathSegment
    } else {
        NameRule::Dns1123Subdomain
    };
    validate_name(rule, name)
}

/// Upstream's `IsValidPathSegmentName`: not `.` or `..`, and no `/` or `%`.
///
/// ```
/// use kybernetes_core::validation::is_valid_path_segment_name;
/// assert_eq!(is_valid_path_segment_name("."), vec!["may not be '.'"]);
/// assert!(is_valid_path_segment_name("a:b").is_empty());
/// ```
pub fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    for illegal in [".", ".."] {
        if name == illegal {
            return vec![format!("may not be '{illegal}'")];
        }
    }
    path_segment_forbidden_content(name)
}

fn path_segment_forbidden_content(name: &str) -> Vec<String> {
    ["/", "%"]
        .iter()
        .filter(|illegal| name.contains(*illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dns1123_label_accepts_upstream_good_values() {
        for v in [
            "a",
            "ab",
            "abc",
            "a1",
            "a-1",
            "a--1--2--b",
            "0",
            "01",
            "012",
            "1a",
            "1-a",
            "1--a--b--2",
        ] {
            assert!(is_dns1123_label(v).is_empty(), "{v}");
        }
        assert!(is_dns1123_label(&"a".repeat(63)).is_empty());
    }

    #[test]
    fn dns1123_label_rejects_upstream_bad_values() {
        for v in [
            "",
            "A",
            "ABC",
            "aBc",
            "A1",
            "A-1",
            "1-A",
            "-",
            "a-",
            "-a",
            "1-",
            "-1",
            "_",
            "a_",
            "_a",
            "a_b",
            "1_",
            "_1",
            "1_2",
            "?",
            "a?",
            "?a",
            "a?b",
            "http://foo",
            "a b",
            "a\n",
            "é",
        ] {
            assert_eq!(is_dns1123_label(v), vec![LABEL_MSG.to_string()], "{v:?}");
        }
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(is_dns1123_label(&"a".repeat(64)), vec![max_len_error(63)]);
        assert_eq!(
            is_dns1123_label(&"a.".repeat(40)),
            vec![max_len_error(63), LABEL_MSG.to_string()]
        );
        assert_eq!(
            is_dns1123_label(&"a.".repeat(40)[..79]),
            vec![max_len_error(63), "must not contain dots".into()]
        );
    }

    #[test]
    fn dns1123_subdomain_matches_upstream() {
        for v in [
            "a",
            "a.a",
            "1.a",
            "a-1.a--1--2--b",
            "0.0",
            "a.b.c.d.e",
            "aaa.bbb.ccc",
        ] {
            assert!(is_dns1123_subdomain(v).is_empty(), "{v}");
        }
        assert!(is_dns1123_subdomain(&"a".repeat(253)).is_empty());
        for v in [
            "", "A", "a.", ".a", "a..b", "a.-b", "a-.b", "a_b", "a.B", "a/b", "a b", "a@b",
        ] {
            assert_eq!(
                is_dns1123_subdomain(v),
                vec![SUBDOMAIN_MSG.to_string()],
                "{v:?}"
            );
        }
        assert_eq!(
            is_dns1123_subdomain(&"a".repeat(254)),
            vec!["must be no more than 253 characters"]
        );
    }

    #[test]
    fn qualified_name_matches_upstream() {
        for v in [
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "1234",
            "simple/simple",
            "now-with-dashes/simple",
            "now-with-dashes/now-with-dashes",
            "now.with.dots/now-with-dashes",
            "now-with.dashes-and.dots/now_with_underscores",
            "Upper.Case.Name",
            "k8s.io/MyName",
        ] {
            assert!(is_qualified_name(v).is_empty(), "{v}");
        }
        assert!(is_qualified_name(&format!("{}/{}", "a".repeat(253), "b".repeat(63))).is_empty());
    }

    #[test]
    fn qualified_name_error_messages() {
        assert_eq!(
            is_qualified_name(""),
            vec![
                "name part must be non-empty".to_string(),
                NAME_PART_MSG.to_string()
            ]
        );
        assert_eq!(is_qualified_name("a_"), vec![NAME_PART_MSG]);
        assert_eq!(
            is_qualified_name("a/"),
            vec![
                "name part must be non-empty".to_string(),
                NAME_PART_MSG.to_string()
            ]
        );
        assert_eq!(
            is_qualified_name("/b"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(
            is_qualified_name("Example.com/b"),
            vec![format!("prefix part {SUBDOMAIN_MSG}")]
        );
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
        let many = is_qualified_name("a/b/c");
        assert_eq!(many.len(), 1);
        assert_eq!(
            many[0],
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert_eq!(
            is_qualified_name(&format!("{}/b", "a".repeat(254))),
            vec!["prefix part must be no more than 253 characters"]
        );
    }

    #[test]
    fn label_values_match_upstream() {
        for v in [
            "",
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "end-with-num-1",
            "1234",
            "Upper_Case",
            "a.b",
        ] {
            assert!(is_valid_label_value(v).is_empty(), "{v}");
        }
        assert!(is_valid_label_value(&"a".repeat(63)).is_empty());
        for v in [
            "nospecialchars%^=@",
            "Tama-nui-te-rā.is.Māori.sun",
            "\\backslashes\\are\\bad",
            "-starts-with-dash",
            "ends-with-dash-",
            ".starts.with.dot",
            "ends.with.dot.",
            "a b",
        ] {
            assert_eq!(is_valid_label_value(v), vec![VALUE_MSG.to_string()], "{v}");
        }
        assert_eq!(
            is_valid_label_value(&"a".repeat(64)),
            vec![max_len_error(63)]
        );
        assert_eq!(
            is_valid_label_value(&format!("{}-", "a".repeat(63))),
            vec![max_len_error(63), VALUE_MSG.into()]
        );
    }

    #[test]
    fn labels_validate_keys_and_values_with_field_paths() {
        assert!(
            validate_labels(&labels(&[
                ("app", "web"),
                ("example.com/tier", ""),
                ("k8s.io/x", "1.0")
            ]))
            .is_empty()
        );
        let errs = validate_labels(&labels(&[("a_", "ok"), ("b", "bad value")]));
        assert_eq!(
            errs,
            vec![
                format!("metadata.labels: Invalid value: \"a_\": {NAME_PART_MSG}"),
                format!("metadata.labels: Invalid value: \"bad value\": {VALUE_MSG}"),
            ]
        );
        let causes = validate_labels_at(
            &labels(&[("Example.com/a", "x")]),
            "spec.selector.matchLabels",
        );
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].reason, "FieldValueInvalid");
        assert_eq!(causes[0].field, "spec.selector.matchLabels");
        assert_eq!(
            causes[0].message,
            format!("Invalid value: \"Example.com/a\": prefix part {SUBDOMAIN_MSG}")
        );
    }

    #[test]
    fn annotation_keys_ignore_case_and_total_size_is_limited() {
        assert!(
            validate_annotations(&labels(&[(
                "Example.COM/Some_Key",
                "value with spaces and 🙂"
            )]))
            .is_empty()
        );
        assert_eq!(
            validate_annotations(&labels(&[("bad key", "v")])),
            vec![format!(
                "metadata.annotations: Invalid value: \"bad key\": {NAME_PART_MSG}"
            )]
        );
        let exact = labels(&[("ab", &"x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES - 2))]);
        assert!(validate_annotations(&exact).is_empty());
        let over = labels(&[("ab", &"x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES - 1))]);
        let causes = validate_annotations_at(&over, "metadata.annotations");
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].reason, "FieldValueTooLong");
        assert_eq!(
            causes[0].message,
            "Too long: may not be more than 262144 bytes"
        );
    }

    #[test]
    fn names_follow_their_rule() {
        assert!(validate_name(NameRule::Dns1123Subdomain, "kube-system.svc").is_empty());
        assert_eq!(
            validate_name(NameRule::Dns1123Subdomain, ""),
            vec![SUBDOMAIN_MSG]
        );
        assert_eq!(
            validate_name(NameRule::Dns1123Label, "Web"),
            vec![LABEL_MSG]
        );
        assert!(validate_name(NameRule::PathSegment, "system:kube-scheduler").is_empty());
        assert!(validate_name(NameRule::PathSegment, "...").is_empty());
        assert_eq!(
            validate_name(NameRule::PathSegment, "."),
            vec!["may not be '.'"]
        );
        assert_eq!(
            validate_name(NameRule::PathSegment, "a%2f"),
            vec!["may not contain '%'"]
        );
        assert_eq!(
            validate_object_name("a/b", true),
            vec!["may not contain '/'"]
        );
        assert_eq!(validate_object_name("a/b", false), vec![SUBDOMAIN_MSG]);
    }

    #[test]
    fn generate_name_prefixes_may_end_with_a_dash() {
        assert!(is_valid_generate_name_prefix("web-").is_empty());
        assert!(is_valid_generate_name_prefix("a-").is_empty());
        assert!(is_valid_generate_name_prefix("web").is_empty());
        assert_eq!(is_valid_generate_name_prefix("-"), vec![SUBDOMAIN_MSG]);
        assert_eq!(is_valid_generate_name_prefix("Web-"), vec![SUBDOMAIN_MSG]);
        // Upstream's maskTrailingDash drops the last two bytes, so "a.-" is accepted.
        assert!(is_valid_generate_name_prefix("a.-").is_empty());
        assert!(validate_name_prefix(NameRule::Dns1123Label, "pod-").is_empty());
        assert!(validate_name_prefix(NameRule::PathSegment, "..").is_empty());
        assert_eq!(
            validate_name_prefix(NameRule::PathSegment, "a/"),
            vec!["may not contain '/'"]
        );
        assert_eq!(is_valid_generate_name_prefix("é-"), vec![SUBDOMAIN_MSG]);
        // The dash is masked before the length check, so 253 characters plus '-' still pass.
        assert!(is_valid_generate_name_prefix(&format!("{}-", "a".repeat(253))).is_empty());
        assert_eq!(
            is_valid_generate_name_prefix(&format!("{}-", "a".repeat(254))),
            vec![max_len_error(253)]
        );
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\n\t\u{1}\u{7f}é"), "\"\\n\\t\\x01\\x7fé\"");
        assert_eq!(go_quote("\u{85}"), "\"\\u0085\"");
    }
}
