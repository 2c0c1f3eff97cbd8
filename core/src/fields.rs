//! Field selectors with upstream Kubernetes semantics (`k8s.io/apimachinery/pkg/fields`).
//!
//! A field selector (`?fieldSelector=metadata.name=web,status.phase!=Running`) is a list of
//! `field=value`, `field==value` or `field!=value` terms. Values escape `\`, `,` and `=` with
//! a backslash. A field the object lacks reads as the empty string, so `spec.nodeName=`
//! selects unscheduled pods.
//!
//! ```
//! use kybernetes_core::fields::FieldSelector;
//! use serde_json::json;
//!
//! let sel = FieldSelector::parse("spec.nodeName=,metadata.namespace==default")?;
//! assert_eq!(sel.to_string(), "metadata.namespace=default,spec.nodeName=");
//! let pending = json!({"kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": {}});
//! assert!(sel.matches(&pending));
//! # Ok::<(), kybernetes_core::selector::SelectorError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

pub use crate::selector::SelectorError;

/// How a [`FieldRequirement`] compares the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldOp {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One `field=value` or `field!=value` term. The value is stored unescaped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The field path, e.g. `metadata.name` or `spec.nodeName`.
    pub field: String,
    /// The comparison.
    pub op: FieldOp,
    /// The value to compare against, unescaped.
    pub value: String,
}

impl FieldRequirement {
    /// Whether a field whose value is `actual` satisfies this term.
    pub fn matches_value(&self, actual: &str) -> bool {
        match self.op {
            FieldOp::Equals => self.value == actual,
            FieldOp::NotEquals => self.value != actual,
        }
    }
}

impl fmt::Display for FieldRequirement {
    /// `field=value` or `field!=value`, with the value escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FieldOp::Equals => "=",
            FieldOp::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A field selector: every requirement must hold. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    /// The terms, sorted by their text as upstream sorts them.
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// Parses a field selector as upstream's `fields.ParseSelector`: terms split on unescaped
    /// commas (empty terms ignored) and sorted, each split at its first `!=`, `==` or `=`.
    /// Field names are kept verbatim (no trimming); values are unescaped.
    ///
    /// ```
    /// use kybernetes_core::fields::{FieldOp, FieldSelector};
    /// let sel = FieldSelector::parse(r"metadata.name!=a\,b")?;
    /// assert_eq!(sel.requirements[0].op, FieldOp::NotEquals);
    /// assert_eq!(sel.requirements[0].value, "a,b");
    /// assert_eq!(sel.to_string(), r"metadata.name!=a\,b");
    /// assert_eq!(
    ///     FieldSelector::parse("status.phase").unwrap_err().to_string(),
    ///     "invalid selector: 'status.phase'; can't understand 'status.phase'"
    /// );
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn parse(selector: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut requirements = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, op, rhs)) = split_term(part) else {
                return Err(SelectorError::Syntax(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                )));
            };
            let value = unescape_value(rhs)?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the selector has no requirements (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `obj` (an API object as JSON) satisfies every requirement, reading each field
    /// with [`field_value`]; a missing field reads as `""`.
    ///
    /// ```
    /// use kybernetes_core::fields::FieldSelector;
    /// use serde_json::json;
    /// let pod = json!({"kind": "Pod", "metadata": {"name": "web"}, "status": {"phase": "Running"}});
    /// assert!(FieldSelector::parse("status.phase=Running")?.matches(&pod));
    /// assert!(FieldSelector::parse("spec.nodeName=")?.matches(&pod));
    /// assert!(!FieldSelector::parse("metadata.name!=web")?.matches(&pod));
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_with(|field| field_value(obj, field))
    }

    /// Whether the fields returned by `lookup` satisfy every requirement (`None` reads as
    /// `""`). For resources whose selectable fields are not plain JSON paths.
    ///
    /// ```
    /// use kybernetes_core::fields::FieldSelector;
    /// let sel = FieldSelector::parse("source=kubelet")?;
    /// assert!(sel.matches_with(|f| (f == "source").then(|| "kubelet".to_string())));
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn matches_with(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches_value(lookup(&r.field).as_deref().unwrap_or("")))
    }

    /// Checks that every field is one the resource supports, as upstream's per-resource field
    /// label conversion does, failing with `field label not supported: <field>` for the first
    /// one (in sorted order) that is not.
    ///
    /// ```
    /// use kybernetes_core::fields::FieldSelector;
    /// let sel = FieldSelector::parse("metadata.name=a,spec.foo=b")?;
    /// assert!(sel.validate_fields(&["metadata.name", "spec.foo"]).is_ok());
    /// assert_eq!(
    ///     sel.validate_fields(&["metadata.name"]).unwrap_err().to_string(),
    ///     "field label not supported: spec.foo"
    /// );
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn validate_fields(&self, allowed: &[&str]) -> Result<(), SelectorError> {
        match self
            .requirements
            .iter()
            .find(|r| !allowed.contains(&r.field.as_str()))
        {
            Some(r) => Err(SelectorError::UnsupportedField(r.field.clone())),
            None => Ok(()),
        }
    }

    /// The value `field` must equal, if some `field=value` term pins it (upstream's
    /// `RequiresExactMatch`), e.g. to turn `metadata.name=x` into a single get.
    ///
    /// ```
    /// use kybernetes_core::fields::FieldSelector;
    /// let sel = FieldSelector::parse("metadata.name=web,status.phase!=Failed")?;
    /// assert_eq!(sel.single_value("metadata.name"), Some("web"));
    /// assert_eq!(sel.single_value("status.phase"), None);
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn single_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.op == FieldOp::Equals && r.field == field)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical form: the terms joined by `,`, values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;

    /// Same as [`FieldSelector::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Splits on commas not preceded by a backslash escape.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at the first position where `!=`, `==` or `=` starts (in that order of
/// preference at each position).
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (token, op) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if let Some(rhs) = rest.strip_prefix(token) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

/// Escapes a field selector value: `\` → `\\`, `,` → `\,`, `=` → `\=` (upstream's
/// `fields.EscapeValue`).
///
/// ```
/// assert_eq!(kybernetes_core::fields::escape_value(r"a=b,c\d"), r"a\=b\,c\\d");
/// ```
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`], rejecting unknown escapes and bare `,` or `=` with upstream's
/// messages (`fields.UnescapeValue`).
///
/// ```
/// use kybernetes_core::fields::unescape_value;
/// assert_eq!(unescape_value(r"a\=b\,c\\d")?, r"a=b,c\d");
/// assert_eq!(
///     unescape_value(r"a\b").unwrap_err().to_string(),
///     r"invalid field selector: invalid escape sequence: \b"
/// );
/// # Ok::<(), kybernetes_core::selector::SelectorError>(())
/// ```
pub fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::Syntax(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Upstream prints the rune with %v, i.e. as its number.
            ',' | '=' => {
                return Err(SelectorError::Syntax(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::Syntax(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}

/// Reads the selectable field `field` of an API object given as JSON, the way upstream's
/// per-resource field sets do:
///
/// * a dotted path (`metadata.name`, `spec.nodeName`, `involvedObject.name`, `type`) walks
///   the JSON; strings read as themselves, booleans as `true`/`false`, numbers in decimal;
///   null, objects, arrays and missing fields give `None` (which selectors read as `""`);
/// * upstream fields that are not plain paths or that default when omitted: a Pod's
///   `spec.hostNetwork` and a Node's `spec.unschedulable` (default `false`), an Event's
///   `source` (`source.component`, else `reportingComponent`), a Job's `status.successful`
///   (`status.succeeded`, default `0`) and the `status.replicas` of ReplicaSets and
///   ReplicationControllers (default `0`).
///
/// ```
/// use kybernetes_core::fields::field_value;
/// use serde_json::json;
/// let ev = json!({"kind": "Event", "involvedObject": {"name": "web"}, "source": {"component": "kubelet"}});
/// assert_eq!(field_value(&ev, "involvedObject.name").as_deref(), Some("web"));
/// assert_eq!(field_value(&ev, "source").as_deref(), Some("kubelet"));
/// assert_eq!(field_value(&ev, "reason"), None);
/// ```
pub fn field_value(obj: &Value, field: &str) -> Option<String> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    match (kind, field) {
        ("Pod", "spec.hostNetwork") | ("Node", "spec.unschedulable") => {
            Some(path_value(obj, field).unwrap_or_else(|| "false".to_string()))
        }
        ("Event", "source") => path_value(obj, "source.component")
            .filter(|s| !s.is_empty())
            .or_else(|| path_value(obj, "reportingComponent")),
        ("Job", "status.successful") => {
            Some(path_value(obj, "status.succeeded").unwrap_or_else(|| "0".to_string()))
        }
        ("ReplicaSet" | "ReplicationController", "status.replicas") => {
            Some(path_value(obj, field).unwrap_or_else(|| "0".to_string()))
        }
        _ => path_value(obj, field),
    }
}

/// Walks a dotted path (numeric segments index arrays) and renders the scalar found there.
fn path_value(obj: &Value, path: &str) -> Option<String> {
    let mut current = obj;
    for segment in path.split('.') {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match current {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null | Value::Object(_) | Value::Array(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> FieldSelector {
        match FieldSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn parse_err(s: &str) -> String {
        match FieldSelector::parse(s) {
            Ok(sel) => panic!("{s:?} should not parse, got {sel}"),
            Err(e) => e.to_string(),
        }
    }

    fn req(field: &str, op: FieldOp, value: &str) -> FieldRequirement {
        FieldRequirement {
            field: field.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn parses_equality_operators_and_sorts_terms() {
        assert_eq!(parse("").requirements, vec![]);
        assert_eq!(
            parse("x=a").requirements,
            vec![req("x", FieldOp::Equals, "a")]
        );
        assert_eq!(
            parse("x==a").requirements,
            vec![req("x", FieldOp::Equals, "a")]
        );
        assert_eq!(
            parse("x!=a").requirements,
            vec![req("x", FieldOp::NotEquals, "a")]
        );
        assert_eq!(
            parse("z!=c,y==b,x=a").requirements,
            vec![
                req("x", FieldOp::Equals, "a"),
                req("y", FieldOp::Equals, "b"),
                req("z", FieldOp::NotEquals, "c")
            ]
        );
        assert_eq!(
            parse("x=").requirements,
            vec![req("x", FieldOp::Equals, "")]
        );
        assert_eq!(
            parse("=x").requirements,
            vec![req("", FieldOp::Equals, "x")]
        );
        assert_eq!(
            parse("a!b=c").requirements,
            vec![req("a!b", FieldOp::Equals, "c")]
        );
    }

    #[test]
    fn empty_terms_are_ignored() {
        assert!(parse(",").is_empty());
        assert_eq!(parse("x=a,,y=b,").to_string(), "x=a,y=b");
    }

    #[test]
    fn whitespace_is_kept_verbatim_like_upstream() {
        assert_eq!(
            parse(" x = a ").requirements,
            vec![req(" x ", FieldOp::Equals, " a ")]
        );
    }

    #[test]
    fn canonical_form_round_trips() {
        for (input, want) in [
            ("x=a,y=b", "x=a,y=b"),
            ("y==b,x!=a", "x!=a,y=b"),
            (r"x=a\,b", r"x=a\,b"),
            (r"x=a\=b", r"x=a\=b"),
            (r"x=a\\b", r"x=a\\b"),
            (r"x=\\\,\=", r"x=\\\,\="),
            ("x=ü", "x=ü"),
        ] {
            let sel = parse(input);
            assert_eq!(sel.to_string(), want, "{input:?}");
            assert_eq!(parse(&sel.to_string()), sel, "{input:?}");
        }
    }

    #[test]
    fn escaped_values_unescape() {
        assert_eq!(parse(r"x=a\,b").requirements[0].value, "a,b");
        assert_eq!(parse(r"x=a\=b").requirements[0].value, "a=b");
        assert_eq!(parse(r"x=a\\b").requirements[0].value, r"a\b");
        assert_eq!(
            parse(r"x=a\\,y=b").requirements,
            vec![
                req("x", FieldOp::Equals, r"a\"),
                req("y", FieldOp::Equals, "b")
            ]
        );
        assert_eq!(
            parse(r"x!=\,").requirements,
            vec![req("x", FieldOp::NotEquals, ",")]
        );
    }

    #[test]
    fn parse_errors_carry_upstream_messages() {
        assert_eq!(
            parse_err("x"),
            "invalid selector: 'x'; can't understand 'x'"
        );
        assert_eq!(
            parse_err("y=b,x"),
            "invalid selector: 'y=b,x'; can't understand 'x'"
        );
        assert_eq!(
            parse_err("x=a=b"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            parse_err("x===b"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            parse_err(r"x=a\b"),
            r"invalid field selector: invalid escape sequence: \b"
        );
        assert_eq!(
            parse_err(r"x=a\"),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            parse_err(r"x=a\é"),
            r"invalid field selector: invalid escape sequence: \é"
        );
        // An escaped '=' in the field name does not hide it from the term split.
        assert_eq!(
            parse_err(r"a\=b=c"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert!(matches!(
            FieldSelector::parse("x"),
            Err(SelectorError::Syntax(_))
        ));
    }

    #[test]
    fn escape_and_unescape_are_inverse() {
        for s in ["", "plain", r"a\b", "a,b", "a=b", r"\,=\\", "ünï,cödé"] {
            assert_eq!(unescape_value(&escape_value(s)), Ok(s.to_string()), "{s:?}");
        }
    }

    #[test]
    fn matches_pods_by_common_fields() {
        let pod = json!({
            "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "prod"},
            "spec": {"nodeName": "node-1", "schedulerName": "default-scheduler", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIP": "10.0.0.5"},
        });
        for (sel, want) in [
            ("", true),
            ("metadata.name=web-0", true),
            ("metadata.name=web-1", false),
            ("metadata.namespace=prod,metadata.name=web-0", true),
            ("metadata.namespace!=prod", false),
            ("spec.nodeName=node-1", true),
            ("spec.nodeName=", false),
            ("spec.nodeName!=", true),
            ("spec.schedulerName=default-scheduler", true),
            ("status.phase!=Succeeded,status.phase!=Failed", true),
            ("status.podIP=10.0.0.5", true),
            ("spec.serviceAccountName=", true),
            ("spec.hostNetwork=false", true),
            ("spec.hostNetwork=", false),
        ] {
            assert_eq!(parse(sel).matches(&pod), want, "{sel:?}");
        }
    }

    #[test]
    fn missing_fields_read_as_empty() {
        let unscheduled =
            json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}});
        assert!(parse("spec.nodeName=").matches(&unscheduled));
        assert!(!parse("spec.nodeName!=").matches(&unscheduled));
        assert!(parse("spec.nodeName!=node-1").matches(&unscheduled));
        assert!(
            parse("metadata.namespace=")
                .matches(&json!({"kind": "Node", "metadata": {"name": "n"}}))
        );
        // Objects and arrays are not selectable values.
        assert!(parse("spec.containers=").matches(&unscheduled));
        assert!(parse("spec.nodeName=").matches(&json!({"spec": {"nodeName": null}})));
        assert!(parse("a.b.c=").matches(&json!({"a": "scalar"})));
    }

    #[test]
    fn scalars_render_like_go() {
        let obj =
            json!({"spec": {"replicas": 3, "paused": true, "ratio": 0.5, "items": ["a", "b"]}});
        assert_eq!(field_value(&obj, "spec.replicas").as_deref(), Some("3"));
        assert_eq!(field_value(&obj, "spec.paused").as_deref(), Some("true"));
        assert_eq!(field_value(&obj, "spec.ratio").as_deref(), Some("0.5"));
        assert_eq!(field_value(&obj, "spec.items.1").as_deref(), Some("b"));
        assert_eq!(field_value(&obj, "spec.items.x"), None);
        assert_eq!(field_value(&obj, "spec"), None);
    }

    #[test]
    fn events_select_by_involved_object_and_source() {
        let ev = json!({
            "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"},
            "reason": "Scheduled",
            "type": "Normal",
            "reportingComponent": "default-scheduler",
            "source": {"component": ""},
        });
        assert!(
            parse("involvedObject.kind=Pod,involvedObject.name=web,involvedObject.uid=u1")
                .matches(&ev)
        );
        assert!(parse("reason=Scheduled,type!=Warning").matches(&ev));
        assert!(parse("source=default-scheduler").matches(&ev));
        assert!(parse("reportingComponent=default-scheduler").matches(&ev));
        let kubelet =
            json!({"kind": "Event", "source": {"component": "kubelet"}, "reportingComponent": "x"});
        assert!(parse("source=kubelet").matches(&kubelet));
    }

    #[test]
    fn kind_specific_defaults_follow_upstream_field_sets() {
        assert!(parse("spec.unschedulable=false").matches(&json!({"kind": "Node", "spec": {}})));
        assert!(
            parse("spec.unschedulable=true")
                .matches(&json!({"kind": "Node", "spec": {"unschedulable": true}}))
        );
        assert!(parse("status.successful=0").matches(&json!({"kind": "Job", "status": {}})));
        assert!(
            parse("status.successful=2")
                .matches(&json!({"kind": "Job", "status": {"succeeded": 2}}))
        );
        assert!(parse("status.replicas=0").matches(&json!({"kind": "ReplicaSet", "status": {}})));
        assert!(
            parse("status.replicas=3")
                .matches(&json!({"kind": "ReplicationController", "status": {"replicas": 3}}))
        );
        assert!(
            parse("spec.hostNetwork=true")
                .matches(&json!({"kind": "Pod", "spec": {"hostNetwork": true}}))
        );
        // Without the kind, no default applies.
        assert!(parse("spec.unschedulable=").matches(&json!({"spec": {}})));
    }

    #[test]
    fn validate_fields_names_the_first_unsupported_field() {
        let allowed = [
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "status.phase",
        ];
        assert!(parse("").validate_fields(&allowed).is_ok());
        assert!(
            parse("spec.nodeName=n,metadata.name=x")
                .validate_fields(&allowed)
                .is_ok()
        );
        assert_eq!(
            parse("spec.nodeName=n,spec.bogus=1,spec.another=2").validate_fields(&allowed),
            Err(SelectorError::UnsupportedField("spec.another".into()))
        );
        assert_eq!(
            parse("spec.bogus=1")
                .validate_fields(&allowed)
                .map_err(|e| e.to_string()),
            Err("field label not supported: spec.bogus".into())
        );
    }

    #[test]
    fn single_value_finds_exact_matches_only() {
        let sel = parse("metadata.name=b,metadata.name=a,metadata.namespace!=x");
        assert_eq!(sel.single_value("metadata.name"), Some("a"));
        assert_eq!(sel.single_value("metadata.namespace"), None);
        assert_eq!(sel.single_value("spec.nodeName"), None);
        assert_eq!(
            parse("metadata.name==web").single_value("metadata.name"),
            Some("web")
        );
        assert_eq!(
            parse(r"metadata.name=a\,b").single_value("metadata.name"),
            Some("a,b")
        );
    }

    #[test]
    fn from_str_and_everything() {
        assert_eq!(
            "x=a".parse::<FieldSelector>().map(|s| s.to_string()),
            Ok("x=a".to_string())
        );
        assert!(FieldSelector::everything().matches(&json!({})));
        assert_eq!(FieldSelector::everything().to_string(), "");
    }
}
