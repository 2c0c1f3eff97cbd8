//! Label selectors with upstream Kubernetes semantics (`k8s.io/apimachinery/pkg/labels`).
//!
//! A [`LabelSelector`] comes from the `labelSelector=` query string ([`LabelSelector::parse`]),
//! from a `metav1.LabelSelector` object in a spec ([`LabelSelector::from_json`]), from node
//! affinity requirements ([`LabelSelector::from_node_selector_requirements`]) or from a plain
//! label map ([`LabelSelector::from_labels`]). It keeps its requirements sorted by key, as
//! upstream does, so its [`Display`](fmt::Display) form is canonical.
//!
//! ```
//! use std::collections::BTreeMap;
//! use kybernetes_core::selector::LabelSelector;
//!
//! let sel = LabelSelector::parse("tier notin (cache), app in (web, api),!canary")?;
//! assert_eq!(sel.to_string(), "app in (api,web),!canary,tier notin (cache)");
//! let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
//! assert!(sel.matches(&labels));
//! # Ok::<(), kybernetes_core::selector::SelectorError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::validation::{go_quote, invalid_value_body, is_qualified_name, is_valid_label_value};

/// A label or field selector that cannot be parsed or built. The message is upstream's,
/// word for word, so it can go straight into a 400 `BadRequest` Status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A selector string does not parse, e.g.
    /// `unable to parse requirement: found '', expected: identifier`.
    #[error("{0}")]
    Syntax(String),
    /// A requirement is invalid: a bad key, value or operator, e.g. in a
    /// `metav1.LabelSelector` object.
    #[error("{0}")]
    Invalid(String),
    /// A field selector names a field the resource does not support.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

impl SelectorError {
    /// The human-readable message (the same as the `Display` form).
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// How a [`Requirement`] compares a label's value (upstream's `selection.Operator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`.
    Equals,
    /// `key==value` (same meaning as `=`).
    DoubleEquals,
    /// `key!=value`: also matches objects without the label.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`: also matches objects without the label.
    NotIn,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>n` (node affinity `Gt`): the label's value is an integer greater than `n`.
    GreaterThan,
    /// `key<n` (node affinity `Lt`): the label's value is an integer less than `n`.
    LessThan,
}

impl Operator {
    /// Upstream's `selection.Operator` string: `=`, `==`, `!=`, `in`, `notin`, `exists`, `!`,
    /// `gt` or `lt`.
    ///
    /// ```
    /// assert_eq!(kybernetes_core::selector::Operator::GreaterThan.as_str(), "gt");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operators a selector string may use between a key and its values, in upstream's order
/// (used in the "expected: ..." parse error).
const BINARY_OPERATORS: [Operator; 7] = [
    Operator::In,
    Operator::NotIn,
    Operator::Equals,
    Operator::DoubleEquals,
    Operator::NotEquals,
    Operator::GreaterThan,
    Operator::LessThan,
];

/// One term of a label selector: a key, an operator and the values it compares against.
///
/// The fields are public for inspection; build new requirements with [`Requirement::new`],
/// which validates them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// The label key (a qualified name).
    pub key: String,
    /// The comparison.
    pub op: Operator,
    /// The values: one for `=`, `==`, `!=`, `>` and `<`; at least one for `in` and `notin`;
    /// none for exists and does-not-exist.
    pub values: Vec<String>,
}

/// An upstream `field.Error` (`<path>: Invalid value: <value>: <detail>`), kept as text.
struct FieldError(String);

/// Upstream's `utilerrors.Aggregate` message for a list of field errors: one message as is,
/// several (after dropping duplicates) as `[a, b]`.
fn aggregate(errors: Vec<FieldError>) -> Option<String> {
    let mut seen = BTreeSet::new();
    let mut msgs = Vec::new();
    for FieldError(msg) in errors {
        if seen.insert(msg.clone()) {
            msgs.push(msg);
        }
    }
    match msgs.len() {
        0 => None,
        1 => msgs.pop(),
        _ => Some(format!("[{}]", msgs.join(", "))),
    }
}

/// Go's `%#v` of a `[]string`: `[]string{"a", "b"}`, or `[]string(nil)`.
fn go_string_slice(values: &[String], nil: bool) -> String {
    if nil {
        return "[]string(nil)".to_string();
    }
    let items: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", items.join(", "))
}

/// Upstream's `validateLabelKey`: the key must be a qualified name. `path` is the field path
/// upstream prints (`<nil>` when the parser has none).
fn validate_label_key(key: &str, path: &str) -> Option<FieldError> {
    let errs = is_qualified_name(key);
    if errs.is_empty() {
        None
    } else {
        Some(FieldError(format!(
            "{path}: {}",
            invalid_value_body(key, &errs.join("; "))
        )))
    }
}

impl Requirement {
    /// Builds a validated requirement, as upstream's `labels.NewRequirement`: the key must be a
    /// qualified name, every value a label value, and the number of values must suit the
    /// operator (`>`/`<` also need an integer).
    ///
    /// ```
    /// use kybernetes_core::selector::{Operator, Requirement};
    /// let r = Requirement::new("tier", Operator::In, vec!["web".into(), "api".into()])?;
    /// assert_eq!(r.to_string(), "tier in (api,web)");
    /// assert!(Requirement::new("tier", Operator::In, vec![]).is_err());
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn new(
        key: impl Into<String>,
        op: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, SelectorError> {
        Self::build(key.into(), op, values, false).map_err(SelectorError::Invalid)
    }

    /// `NewRequirement`; `nil_values` tells how Go would print an empty value list.
    fn build(
        key: String,
        op: Operator,
        values: Vec<String>,
        nil_values: bool,
    ) -> Result<Requirement, String> {
        let mut errs = Vec::new();
        errs.extend(validate_label_key(&key, "key"));
        let shown = || go_string_slice(&values, nil_values && values.is_empty());
        match op {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errs.push(FieldError(format!(
                        "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                        shown()
                    )));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errs.push(FieldError(format!(
                        "values: Invalid value: {}: exact-match compatibility requires one single value",
                        shown()
                    )));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(FieldError(format!(
                        "values: Invalid value: {}: values set must be empty for exists and does not exist",
                        shown()
                    )));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(FieldError(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        shown()
                    )));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(FieldError(format!(
                            "values[{i}]: {}",
                            invalid_value_body(
                                v,
                                "for 'Gt', 'Lt' operators, the value must be an integer"
                            )
                        )));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = is_valid_label_value(v);
            if !value_errs.is_empty() {
                errs.push(FieldError(format!(
                    "values[{i}][{key}]: {}",
                    invalid_value_body(v, &value_errs.join("; "))
                )));
            }
        }
        match aggregate(errs) {
            Some(msg) => Err(msg),
            None => Ok(Requirement { key, op, values }),
        }
    }

    /// Whether `labels` satisfy this requirement. As upstream, `!=` and `notin` match when the
    /// label is absent, and `>`/`<` never match a value that is not an integer.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use kybernetes_core::selector::{Operator, Requirement};
    /// let r = Requirement::new("env", Operator::NotEquals, vec!["prod".into()])?;
    /// assert!(r.matches(&BTreeMap::new()));
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.has_value(v))
            }
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [wanted]) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.as_slice(),
                ) else {
                    return false;
                };
                let Ok(wanted) = wanted.parse::<i64>() else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }
}

impl fmt::Display for Requirement {
    /// The canonical string form: `!key`, `key`, `key=v`, `key==v`, `key!=v`, `key>v`, `key<v`,
    /// `key in (a,b)` or `key notin (a,b)`, with several values sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.op {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.op, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        if let [single] = self.values.as_slice() {
            f.write_str(single)?;
        } else {
            let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
            sorted.sort_unstable();
            f.write_str(&sorted.join(","))?;
        }
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: a conjunction of [`Requirement`]s, sorted by key.
///
/// An empty selector matches every object; [`LabelSelector::nothing`] (upstream's
/// `labels.Nothing()`, what a null `metav1.LabelSelector` means) matches none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    matches_nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object (upstream's `labels.Everything()`).
    ///
    /// ```
    /// use kybernetes_core::selector::LabelSelector;
    /// assert!(LabelSelector::everything().matches(&Default::default()));
    /// ```
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// The selector that matches no object (upstream's `labels.Nothing()`). Its string form is
    /// empty, as upstream's is.
    ///
    /// ```
    /// use kybernetes_core::selector::LabelSelector;
    /// assert!(!LabelSelector::nothing().matches(&Default::default()));
    /// ```
    pub fn nothing() -> LabelSelector {
        LabelSelector {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    /// A selector of already-built requirements, sorted by key.
    ///
    /// ```
    /// use kybernetes_core::selector::{LabelSelector, Operator, Requirement};
    /// let sel = LabelSelector::new(vec![
    ///     Requirement::new("b", Operator::Exists, vec![])?,
    ///     Requirement::new("a", Operator::Equals, vec!["1".into()])?,
    /// ]);
    /// assert_eq!(sel.to_string(), "a=1,b");
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn new(requirements: Vec<Requirement>) -> LabelSelector {
        let mut sel = LabelSelector {
            requirements,
            matches_nothing: false,
        };
        sel.sort();
        sel
    }

    fn sort(&mut self) {
        // Stable, like upstream's sort of a short list, so equal keys keep their order.
        self.requirements.sort_by(|a, b| a.key.cmp(&b.key));
    }

    /// Adds a requirement, keeping the list sorted by key (upstream's `Selector.Add`).
    /// Adding to [`LabelSelector::nothing`] leaves it matching nothing.
    pub fn add(&mut self, requirement: Requirement) {
        self.requirements.push(requirement);
        self.sort();
    }

    /// Parses the string form used by `?labelSelector=` and `kubectl -l`, exactly as upstream's
    /// `labels.Parse`: comma-separated requirements `key`, `!key`, `key=v`, `key==v`,
    /// `key!=v`, `key in (a,b)`, `key notin (a,b)`, `key>n` and `key<n`, with free whitespace
    /// between tokens. The empty string matches everything.
    ///
    /// ```
    /// use kybernetes_core::selector::LabelSelector;
    /// assert_eq!(LabelSelector::parse("a in (x,y)")?.to_string(), "a in (x,y)");
    /// assert_eq!(LabelSelector::parse(" b = c , a ")?.to_string(), "a,b=c");
    /// assert!(LabelSelector::parse("")?.is_empty());
    /// let err = LabelSelector::parse("a in (x").unwrap_err();
    /// assert_eq!(err.to_string(), "unable to parse requirement: found '', expected: ',' or ')'");
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let requirements = Parser::new(s).parse().map_err(SelectorError::Syntax)?;
        Ok(LabelSelector::new(requirements))
    }

    /// Converts a `metav1.LabelSelector` JSON object (`matchLabels` and `matchExpressions`
    /// with `In`, `NotIn`, `Exists`, `DoesNotExist`), as upstream's
    /// `metav1.LabelSelectorAsSelector`: `{}` matches everything, `null` matches nothing.
    ///
    /// ```
    /// use kybernetes_core::selector::LabelSelector;
    /// use serde_json::json;
    /// let sel = LabelSelector::from_json(&json!({
    ///     "matchLabels": {"app": "web"},
    ///     "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["cache"]}],
    /// }))?;
    /// assert_eq!(sel.to_string(), "app=web,tier notin (cache)");
    /// assert!(LabelSelector::from_json(&json!({}))?.is_empty());
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn from_json(v: &Value) -> Result<LabelSelector, SelectorError> {
        let obj = match v {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(obj) => obj,
            _ => return Err(shape_error("label selector", "expected an object")),
        };
        let match_labels = match obj.get("matchLabels") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(shape_error(
                        &format!("matchLabels[{k}]"),
                        "expected a string",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(shape_error("matchLabels", "expected an object")),
        };
        let expressions = expressions_from_json(obj.get("matchExpressions"), "matchExpressions")?;
        if match_labels.is_empty() && expressions.is_empty() {
            return Ok(LabelSelector::everything());
        }
        let mut requirements = Vec::with_capacity(match_labels.len() + expressions.len());
        for (key, value) in match_labels {
            requirements.push(
                Requirement::build(key, Operator::Equals, vec![value], false)
                    .map_err(SelectorError::Invalid)?,
            );
        }
        for expr in expressions {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::Invalid(format!(
                        "{} is not a valid label selector operator",
                        go_quote(other)
                    )));
                }
            };
            // Upstream copies the values with `append([]string(nil), ...)`: empty means nil.
            requirements.push(
                Requirement::build(expr.key, op, expr.values, true)
                    .map_err(SelectorError::Invalid)?,
            );
        }
        Ok(LabelSelector::new(requirements))
    }

    /// Converts a JSON array of node-affinity `NodeSelectorRequirement`s (`key`, `operator`
    /// `In`/`NotIn`/`Exists`/`DoesNotExist`/`Gt`/`Lt`, `values`) into one selector, as
    /// upstream's `nodeSelectorRequirementsAsSelector`: an empty or null list matches nothing.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use kybernetes_core::selector::LabelSelector;
    /// use serde_json::json;
    /// let sel = LabelSelector::from_node_selector_requirements(&json!([
    ///     {"key": "cores", "operator": "Gt", "values": ["4"]},
    /// ]))?;
    /// assert_eq!(sel.to_string(), "cores>4");
    /// assert!(sel.matches(&BTreeMap::from([("cores".to_string(), "8".to_string())])));
    /// assert!(!LabelSelector::from_node_selector_requirements(&json!([]))?.matches(&BTreeMap::new()));
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn from_node_selector_requirements(v: &Value) -> Result<LabelSelector, SelectorError> {
        let expressions = expressions_from_json(Some(v), "nodeSelectorRequirements")?;
        if expressions.is_empty() {
            return Ok(LabelSelector::nothing());
        }
        let mut requirements = Vec::with_capacity(expressions.len());
        for expr in expressions {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                "Gt" => Operator::GreaterThan,
                "Lt" => Operator::LessThan,
                other => {
                    return Err(SelectorError::Invalid(format!(
                        "{} is not a valid node selector operator",
                        go_quote(other)
                    )));
                }
            };
            requirements.push(
                Requirement::build(expr.key, op, expr.values, expr.values_nil)
                    .map_err(SelectorError::Invalid)?,
            );
        }
        Ok(LabelSelector::new(requirements))
    }

    /// A selector requiring every label of `labels` (upstream's `ValidatedSelectorFromSet`,
    /// as used for a Service's or ReplicationController's `spec.selector` map). An empty map
    /// matches everything.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use kybernetes_core::selector::LabelSelector;
    /// let set = BTreeMap::from([("app".to_string(), "web".to_string())]);
    /// assert_eq!(LabelSelector::from_labels(&set)?.to_string(), "app=web");
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<LabelSelector, SelectorError> {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement::build(k.clone(), Operator::Equals, vec![v.clone()], false))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SelectorError::Invalid)?;
        Ok(LabelSelector::new(requirements))
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether this selector has no requirements and so matches everything (upstream's
    /// `Selector.Empty()`; false for [`LabelSelector::nothing`]).
    pub fn is_empty(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    /// Whether this is [`LabelSelector::nothing`].
    pub fn is_nothing(&self) -> bool {
        self.matches_nothing
    }

    /// Whether `labels` satisfy every requirement.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use kybernetes_core::selector::LabelSelector;
    /// let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
    /// assert!(LabelSelector::parse("app=web,env!=prod,!canary")?.matches(&labels));
    /// assert!(!LabelSelector::parse("app in (api)")?.matches(&labels));
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// If the selector pins `key` to one value (the first requirement on `key` is `=`, `==` or
    /// an `in` with one value), that value (upstream's `RequiresExactMatch`).
    ///
    /// ```
    /// use kybernetes_core::selector::LabelSelector;
    /// assert_eq!(LabelSelector::parse("app in (web),x")?.requires_exact_match("app"), Some("web"));
    /// assert_eq!(LabelSelector::parse("app!=web")?.requires_exact_match("app"), None);
    /// # Ok::<(), kybernetes_core::selector::SelectorError>(())
    /// ```
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.op, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string form: the requirements joined by `,` (empty for everything and
    /// for nothing, as upstream).
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

impl FromStr for LabelSelector {
    type Err = SelectorError;

    /// Same as [`LabelSelector::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

fn shape_error(what: &str, problem: &str) -> SelectorError {
    SelectorError::Invalid(format!("invalid label selector: {what}: {problem}"))
}

/// One `matchExpressions` / `NodeSelectorRequirement` entry as decoded from JSON.
struct Expression {
    key: String,
    operator: String,
    values: Vec<String>,
    /// The `values` field was absent or null (a nil slice in Go).
    values_nil: bool,
}

fn expressions_from_json(v: Option<&Value>, what: &str) -> Result<Vec<Expression>, SelectorError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(shape_error(what, "expected an array")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let here = |field: &str| format!("{what}[{i}]{field}");
            let Value::Object(obj) = item else {
                return Err(shape_error(&here(""), "expected an object"));
            };
            let string = |field: &str| match obj.get(field) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(shape_error(
                    &here(&format!(".{field}")),
                    "expected a string",
                )),
            };
            let (values, values_nil) = match obj.get("values") {
                None | Some(Value::Null) => (Vec::new(), true),
                Some(Value::Array(vs)) => {
                    let values = vs
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => Ok(s.clone()),
                            _ => Err(shape_error(
                                &here(".values"),
                                "expected an array of strings",
                            )),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    (values, false)
                }
                Some(_) => {
                    return Err(shape_error(
                        &here(".values"),
                        "expected an array of strings",
                    ));
                }
            };
            Ok(Expression {
                key: string("key")?,
                operator: string("operator")?,
                values,
                values_nil,
            })
        })
        .collect()
}

/// Lexer tokens (upstream's `labels.Token`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// The keywords and symbols with a token of their own.
fn keyword(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Upstream's byte-oriented lexer. As upstream, a NUL byte reads as the end of the input.
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn lex(&mut self) -> (Token, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special_symbol(ch) {
            self.scan_special_symbol()
        } else {
            self.scan_identifier_or_keyword()
        }
    }

    fn scan_identifier_or_keyword(&mut self) -> (Token, String) {
        let start = self.pos;
        let mut end = start;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special_symbol(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            end = self.pos;
        }
        let bytes = &self.s[start..end];
        let literal = String::from_utf8_lossy(bytes).into_owned();
        (keyword(bytes).unwrap_or(Token::Identifier), literal)
    }

    fn scan_special_symbol(&mut self) -> (Token, String) {
        let mut buffer = Vec::new();
        let mut last: Option<(Token, String)> = None;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special_symbol(ch) {
                self.unread();
                break;
            }
            buffer.push(ch);
            if let Some(token) = keyword(&buffer) {
                last = Some((token, String::from_utf8_lossy(&buffer).into_owned()));
            } else if last.is_some() {
                self.unread();
                break;
            }
        }
        last.unwrap_or_else(|| {
            (
                Token::Error,
                format!(
                    "error expected: keyword found '{}'",
                    String::from_utf8_lossy(&buffer)
                ),
            )
        })
    }
}

/// Whether a keyword may stand for a plain identifier where the parser looks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

/// Upstream's recursive-descent selector parser, over the whole token list.
struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(s: &str) -> Parser {
        let mut lexer = Lexer {
            s: s.as_bytes(),
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            let done = item.0 == Token::EndOfString;
            items.push(item);
            if done {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn item(&self, index: usize, context: Context) -> (Token, String) {
        // The list always ends with EndOfString; never look past it.
        let (token, literal) = self
            .items
            .get(index)
            .or_else(|| self.items.last())
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        match (context, token) {
            (Context::Values, Token::In | Token::NotIn) => (Token::Identifier, literal),
            _ => (token, literal),
        }
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        self.item(self.position, context)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.item(self.position, context);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, next_literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{next_literal}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => {
                            return Err(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            ));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (Operator::Exists | Operator::DoesNotExist)) = op {
            return Requirement::build(key, op, Vec::new(), false);
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        // Upstream collects values in a string set: sorted and without duplicates.
        Requirement::build(key, op, values.into_iter().collect(), false)
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut op = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        if let Some(FieldError(e)) = validate_label_key(&literal, "<nil>") {
            return Err(e);
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((literal, op))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                let expected: Vec<&str> = BINARY_OPERATORS.iter().map(Operator::as_str).collect();
                return Err(format!(
                    "found '{literal}', expected: {}",
                    expected.join(", ")
                ));
            }
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let set = self.parse_identifiers_list()?;
                let (token, _) = self.consume(Context::Values);
                if token != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(set)
            }
            Token::ClosedPar => {
                // `()` is one empty value.
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            )),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut set = BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    set.insert(literal);
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set),
                        _ => return Err(format!("found '{next_literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // Empty values around commas: `(,`, `,,` and `,)`.
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        set.insert(String::new());
                        return Ok(set);
                    }
                    if next == Token::Comma {
                        self.consume(Context::Values);
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::EndOfString | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(BTreeSet::from([literal]))
        } else {
            Err(format!("found '{literal}', expected: identifier"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(s: &str) -> LabelSelector {
        match LabelSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn parse_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(sel) => panic!("{s:?} should not parse, got {sel}"),
            Err(e) => e.to_string(),
        }
    }

    const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn lexer_produces_upstream_tokens() {
        let cases: &[(&str, Token)] = &[
            ("", Token::EndOfString),
            (",", Token::Comma),
            ("notin", Token::NotIn),
            ("in", Token::In),
            ("=", Token::Equals),
            ("==", Token::DoubleEquals),
            (">", Token::GreaterThan),
            ("<", Token::LessThan),
            ("!", Token::DoesNotExist),
            ("!=", Token::NotEquals),
            ("(", Token::OpenPar),
            (")", Token::ClosedPar),
            ("~", Token::Identifier),
            ("||", Token::Identifier),
        ];
        for (input, want) in cases {
            let (token, literal) = Lexer {
                s: input.as_bytes(),
                pos: 0,
            }
            .lex();
            assert_eq!(token, *want, "{input:?}");
            if token != Token::EndOfString {
                assert_eq!(literal, *input);
            }
        }
    }

    #[test]
    fn lexer_splits_tokens_like_upstream() {
        let cases: &[(&str, &[Token])] = &[
            (
                "key in ( value )",
                &[
                    Token::Identifier,
                    Token::In,
                    Token::OpenPar,
                    Token::Identifier,
                    Token::ClosedPar,
                ],
            ),
            (
                "key notin ( value )",
                &[
                    Token::Identifier,
                    Token::NotIn,
                    Token::OpenPar,
                    Token::Identifier,
                    Token::ClosedPar,
                ],
            ),
            (
                "key in ( value1, value2 )",
                &[
                    Token::Identifier,
                    Token::In,
                    Token::OpenPar,
                    Token::Identifier,
                    Token::Comma,
                    Token::Identifier,
                    Token::ClosedPar,
                ],
            ),
            ("key", &[Token::Identifier]),
            ("!key", &[Token::DoesNotExist, Token::Identifier]),
            ("()", &[Token::OpenPar, Token::ClosedPar]),
            (
                "x in (),y",
                &[
                    Token::Identifier,
                    Token::In,
                    Token::OpenPar,
                    Token::ClosedPar,
                    Token::Comma,
                    Token::Identifier,
                ],
            ),
            (
                "== != (), = notin",
                &[
                    Token::DoubleEquals,
                    Token::NotEquals,
                    Token::OpenPar,
                    Token::ClosedPar,
                    Token::Comma,
                    Token::Equals,
                    Token::NotIn,
                ],
            ),
            (
                "key>2",
                &[Token::Identifier, Token::GreaterThan, Token::Identifier],
            ),
            (
                "key<1",
                &[Token::Identifier, Token::LessThan, Token::Identifier],
            ),
            (
                "a=!b",
                &[
                    Token::Identifier,
                    Token::Equals,
                    Token::DoesNotExist,
                    Token::Identifier,
                ],
            ),
        ];
        for (input, want) in cases {
            let mut lexer = Lexer {
                s: input.as_bytes(),
                pos: 0,
            };
            let mut got = Vec::new();
            loop {
                let (token, _) = lexer.lex();
                if token == Token::EndOfString {
                    break;
                }
                got.push(token);
            }
            assert_eq!(&got, want, "{input:?}");
        }
    }

    #[test]
    fn valid_selectors_parse_and_print_canonically() {
        let cases = [
            ("", ""),
            ("x=a", "x=a"),
            ("y==a", "y==a"),
            ("z!=a", "z!=a"),
            ("x>1", "x>1"),
            ("x<1", "x<1"),
            ("x=a,y!=b", "x=a,y!=b"),
            ("y!=b,x=a", "x=a,y!=b"),
            ("x=a,y!=b,z in (h,i,j)", "x=a,y!=b,z in (h,i,j)"),
            ("x in (i,j,k)", "x in (i,j,k)"),
            ("x notin (k,j,i)", "x notin (i,j,k)"),
            ("x in ()", "x in ()"),
            ("x notin ( )", "x notin ()"),
            ("x in (,a)", "x in (,a)"),
            ("x in (a,,b)", "x in (,a,b)"),
            ("x in (a,)", "x in (,a)"),
            ("x in (b,a,b)", "x in (a,b)"),
            ("x=", "x="),
            ("x= ", "x="),
            ("x=,z= ", "x=,z="),
            ("x= ,z= ", "x=,z="),
            ("!x", "!x"),
            ("! x", "!x"),
            ("x", "x"),
            ("  x  ", "x"),
            ("a,b=c", "a,b=c"),
            (" b = c , a ", "a,b=c"),
            ("a in (x, y)", "a in (x,y)"),
            ("a notin (x)", "a notin (x)"),
            ("\ta\r\n in\n(\tx\n)", "a in (x)"),
            ("in=notin", "in=notin"),
            ("notin in (in, notin)", "notin in (in,notin)"),
            ("example.com/app=web", "example.com/app=web"),
        ];
        for (input, want) in cases {
            let sel = parse(input);
            assert_eq!(sel.to_string(), want, "{input:?}");
            // The canonical form parses back to the same selector.
            assert_eq!(parse(&sel.to_string()), sel, "{input:?}");
        }
    }

    #[test]
    fn set_based_requirements_parse_into_sorted_unique_values() {
        let sel = parse("env in (prod, qa, prod), tier notin (frontend)");
        let reqs = sel.requirements();
        assert_eq!(reqs.len(), 2);
        assert_eq!(
            reqs[0],
            Requirement {
                key: "env".into(),
                op: Operator::In,
                values: vec!["prod".into(), "qa".into()]
            }
        );
        assert_eq!(
            reqs[1],
            Requirement {
                key: "tier".into(),
                op: Operator::NotIn,
                values: vec!["frontend".into()]
            }
        );
        let sel = parse("!a,b");
        assert_eq!(sel.requirements()[0].op, Operator::DoesNotExist);
        assert_eq!(sel.requirements()[1].op, Operator::Exists);
        assert!(sel.requirements().iter().all(|r| r.values.is_empty()));
    }

    #[test]
    fn requirements_on_the_same_key_keep_their_order() {
        assert_eq!(parse("b,a!=1,a=2").to_string(), "a!=1,a=2,b");
        assert_eq!(parse("a=2,a!=1").to_string(), "a=2,a!=1");
    }

    #[test]
    fn syntax_errors_carry_upstream_messages() {
        let cases = [
            ("x=a,", "found '', expected: identifier after ','"),
            ("x,,y", "found ',', expected: identifier after ','"),
            (
                ",x",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            (
                "=a",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                "(x)",
                "found '(', expected: !, identifier, or 'end of string'",
            ),
            (
                "x in (",
                "unable to parse requirement: found '', expected: ',', ')' or identifier",
            ),
            (
                "x in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "x in (a b)",
                "unable to parse requirement: found 'b', expected: ',' or ')'",
            ),
            (
                "x in (a,=)",
                "unable to parse requirement: found '=', expected: ',', or identifier",
            ),
            (
                "x in a",
                "unable to parse requirement: found 'a' expected: '('",
            ),
            (
                "x in",
                "unable to parse requirement: found '' expected: '('",
            ),
            (
                "x notin",
                "unable to parse requirement: found '' expected: '('",
            ),
            (
                "x y",
                "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "x!y",
                "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "x (",
                "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "x=(a)",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "x==!",
                "unable to parse requirement: found '!', expected: identifier",
            ),
            (
                "!",
                "unable to parse requirement: found '', expected: identifier",
            ),
            (
                "!=a",
                "found '!=', expected: !, identifier, or 'end of string'",
            ),
            (
                "!!x",
                "unable to parse requirement: found '!', expected: identifier",
            ),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            ("!x in (a)", "found 'in', expected: ',' or 'end of string'"),
            ("x=a b", "found 'b', expected: ',' or 'end of string'"),
            ("x=a)", "found ')', expected: ',' or 'end of string'"),
            ("x=a=b", "found '=', expected: ',' or 'end of string'"),
            ("x==a==b", "found '==', expected: ',' or 'end of string'"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_err(input), want, "{input:?}");
        }
    }

    #[test]
    fn invalid_keys_and_values_are_rejected_with_field_errors() {
        assert_eq!(
            parse_err("a_=b"),
            format!("unable to parse requirement: <nil>: Invalid value: \"a_\": {NAME_PART_MSG}")
        );
        assert_eq!(
            parse_err("x=a_"),
            format!(
                "unable to parse requirement: values[0][x]: Invalid value: \"a_\": {VALUE_MSG}"
            )
        );
        assert_eq!(
            parse_err("x in (b_, a_)"),
            format!(
                "unable to parse requirement: [values[0][x]: Invalid value: \"a_\": {VALUE_MSG}, values[1][x]: Invalid value: \"b_\": {VALUE_MSG}]"
            )
        );
        assert_eq!(
            parse_err(&format!("x={}", "a".repeat(64))),
            format!(
                "unable to parse requirement: values[0][x]: Invalid value: \"{}\": must be no more than 63 characters",
                "a".repeat(64)
            )
        );
        assert_eq!(
            parse_err("/x"),
            "unable to parse requirement: <nil>: Invalid value: \"/x\": prefix part must be non-empty"
        );
        assert_eq!(
            parse_err("x>a"),
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(
            parse_err("x<"),
            "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert!(parse_err("x>1.5").contains("the value must be an integer"));
        // "a||y" is one identifier, and the bad value fails before the stray '=' is seen.
        assert_eq!(
            parse_err("x=a||y=b"),
            format!(
                "unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {VALUE_MSG}"
            )
        );
        // Label values cannot start with '-', so negative bounds do not parse (as upstream).
        assert_eq!(
            parse_err("x>-1"),
            format!(
                "unable to parse requirement: values[0][x]: Invalid value: \"-1\": {VALUE_MSG}"
            )
        );
        assert!(parse_err("x>a_").starts_with(
            "unable to parse requirement: [values[0]: Invalid value: \"a_\": for 'Gt'"
        ));
        assert!(parse_err("Ä=b").starts_with(
            "unable to parse requirement: <nil>: Invalid value: \"Ä\": name part must consist"
        ));
    }

    #[test]
    fn nul_byte_reads_as_end_of_input_like_upstream() {
        assert_eq!(parse("a \0 garbage(").to_string(), "a");
        assert_eq!(
            parse_err("a\0b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
    }

    #[test]
    fn equality_requirements_match_like_upstream() {
        let l = labels(&[("x", "a"), ("y", "b")]);
        for (sel, want) in [
            ("", true),
            ("x=a", true),
            ("x==a", true),
            ("x=a,y=b", true),
            ("x=b", false),
            ("x=a,y=c", false),
            ("x!=b", true),
            ("x!=a", false),
            ("z!=a", true),
            ("z=", false),
            ("x=", false),
        ] {
            assert_eq!(parse(sel).matches(&l), want, "{sel:?}");
        }
        assert!(parse("x=").matches(&labels(&[("x", "")])));
    }

    #[test]
    fn set_based_requirements_match_like_upstream() {
        let l = labels(&[("x", "a"), ("y", "b")]);
        for (sel, want) in [
            ("x in (a,b)", true),
            ("x in (b,c)", false),
            ("x notin (b,c)", true),
            ("x notin (a)", false),
            ("z in (a)", false),
            ("z notin (a)", true),
            ("x", true),
            ("z", false),
            ("!z", true),
            ("!x", false),
            ("x,!z,y in (b)", true),
            ("x in ()", false),
        ] {
            assert_eq!(parse(sel).matches(&l), want, "{sel:?}");
        }
        assert!(parse("x in ()").matches(&labels(&[("x", "")])));
        assert!(parse("x in (,a)").matches(&labels(&[("x", "")])));
    }

    #[test]
    fn numeric_requirements_match_only_integers() {
        let l = labels(&[
            ("cores", "8"),
            ("name", "eight"),
            ("neg", "-3"),
            ("plus", "+4"),
        ]);
        for (sel, want) in [
            ("cores>4", true),
            ("cores>8", false),
            ("cores<9", true),
            ("cores<8", false),
            ("name>1", false),
            ("name<1", false),
            ("missing>1", false),
            ("missing<1", false),
            ("plus>3", true),
        ] {
            assert_eq!(parse(sel).matches(&l), want, "{sel:?}");
        }
        let neg = Requirement {
            key: "neg".into(),
            op: Operator::LessThan,
            values: vec!["-2".into()],
        };
        assert!(neg.matches(&l));
        // A hand-built requirement with a bad value never matches (upstream logs and refuses).
        let bad = Requirement {
            key: "cores".into(),
            op: Operator::GreaterThan,
            values: vec!["x".into()],
        };
        assert!(!bad.matches(&l));
        let two = Requirement {
            key: "cores".into(),
            op: Operator::LessThan,
            values: vec!["9".into(), "10".into()],
        };
        assert!(!two.matches(&l));
    }

    #[test]
    fn everything_and_nothing() {
        let empty = BTreeMap::new();
        assert!(LabelSelector::everything().matches(&empty));
        assert!(LabelSelector::everything().is_empty());
        assert!(!LabelSelector::nothing().matches(&empty));
        assert!(!LabelSelector::nothing().is_empty());
        assert!(LabelSelector::nothing().is_nothing());
        assert_eq!(LabelSelector::nothing().to_string(), "");
        let mut nothing = LabelSelector::nothing();
        nothing.add(Requirement {
            key: "a".into(),
            op: Operator::Exists,
            values: vec![],
        });
        assert!(!nothing.matches(&labels(&[("a", "")])));
        assert_eq!("".parse::<LabelSelector>(), Ok(LabelSelector::everything()));
    }

    #[test]
    fn from_json_converts_metav1_label_selectors() {
        let sel = LabelSelector::from_json(&json!({
            "matchLabels": {"tier": "web", "app": "shop"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["qa", "prod"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "app", "operator": "Exists", "values": []},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
            ],
        }));
        let sel = match sel {
            Ok(sel) => sel,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            sel.to_string(),
            "app=shop,app,!canary,env in (prod,qa),tier=web,zone notin (b)"
        );
        assert!(sel.matches(&labels(&[("app", "shop"), ("tier", "web"), ("env", "qa")])));
        assert!(!sel.matches(&labels(&[
            ("app", "shop"),
            ("tier", "web"),
            ("env", "qa"),
            ("canary", "1")
        ])));
        assert!(!sel.matches(&labels(&[("app", "shop"), ("tier", "web"), ("env", "dev")])));
        assert!(!sel.matches(&labels(&[
            ("app", "shop"),
            ("tier", "web"),
            ("env", "qa"),
            ("zone", "b")
        ])));
    }

    #[test]
    fn from_json_empty_matches_everything_and_null_nothing() {
        let everything = [
            json!({}),
            json!({"matchLabels": {}}),
            json!({"matchLabels": null, "matchExpressions": []}),
        ];
        for v in everything {
            assert_eq!(
                LabelSelector::from_json(&v),
                Ok(LabelSelector::everything()),
                "{v}"
            );
        }
        assert_eq!(
            LabelSelector::from_json(&Value::Null),
            Ok(LabelSelector::nothing())
        );
    }

    #[test]
    fn from_json_rejects_bad_requirements_like_upstream() {
        let err = |v: Value| match LabelSelector::from_json(&v) {
            Ok(sel) => panic!("{v} should be rejected, got {sel}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})),
            "\"Gt\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a"}]})),
            "\"\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In"}]})),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]})),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x", "y"]}]})
            ),
            "values: Invalid value: []string{\"x\", \"y\"}: values set must be empty for exists and does not exist"
        );
        assert_eq!(
            err(json!({"matchLabels": {"a_": "b"}})),
            format!("key: Invalid value: \"a_\": {NAME_PART_MSG}")
        );
        assert_eq!(
            err(json!({"matchLabels": {"a_": "b_"}})),
            format!(
                "[key: Invalid value: \"a_\": {NAME_PART_MSG}, values[0][a_]: Invalid value: \"b_\": {VALUE_MSG}]"
            )
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"operator": "Exists"}]})),
            format!("key: Invalid value: \"\": name part must be non-empty; {NAME_PART_MSG}")
        );
        assert_eq!(
            err(json!("app=web")),
            "invalid label selector: label selector: expected an object"
        );
        assert_eq!(
            err(json!({"matchLabels": []})),
            "invalid label selector: matchLabels: expected an object"
        );
        assert_eq!(
            err(json!({"matchLabels": {"a": 1}})),
            "invalid label selector: matchLabels[a]: expected a string"
        );
        assert_eq!(
            err(json!({"matchExpressions": {}})),
            "invalid label selector: matchExpressions: expected an array"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]})),
            "invalid label selector: matchExpressions[0].values: expected an array of strings"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": 1, "operator": "In"}]})),
            "invalid label selector: matchExpressions[0].key: expected a string"
        );
    }

    #[test]
    fn node_selector_requirements_support_gt_and_lt() {
        let sel = LabelSelector::from_node_selector_requirements(&json!([
            {"key": "cores", "operator": "Gt", "values": ["2"]},
            {"key": "gen", "operator": "Lt", "values": ["5"]},
            {"key": "zone", "operator": "In", "values": ["a", "b"]},
        ]));
        let sel = match sel {
            Ok(sel) => sel,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(sel.to_string(), "cores>2,gen<5,zone in (a,b)");
        assert!(sel.matches(&labels(&[("cores", "4"), ("gen", "3"), ("zone", "a")])));
        assert!(!sel.matches(&labels(&[("cores", "2"), ("gen", "3"), ("zone", "a")])));
        assert_eq!(
            LabelSelector::from_node_selector_requirements(&Value::Null),
            Ok(LabelSelector::nothing())
        );
        let err = |v: Value| {
            LabelSelector::from_node_selector_requirements(&v).map_err(|e| e.to_string())
        };
        assert_eq!(
            err(json!([{"key": "a", "operator": "Gte", "values": ["1"]}])),
            Err("\"Gte\" is not a valid node selector operator".to_string())
        );
        assert_eq!(
            err(json!([{"key": "a", "operator": "Gt", "values": []}])),
            Err("values: Invalid value: []string{}: for 'Gt', 'Lt' operators, exactly one value is required"
                .to_string())
        );
        assert_eq!(
            err(json!([{"key": "a", "operator": "Lt", "values": ["x"]}])),
            Err("values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer".to_string())
        );
        assert_eq!(
            err(json!([{"key": "a", "operator": "In"}])),
            Err("values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
                .to_string())
        );
    }

    #[test]
    fn from_labels_validates_and_sorts() {
        let sel = LabelSelector::from_labels(&labels(&[("b", "2"), ("a", "1")]));
        assert_eq!(sel.map(|s| s.to_string()), Ok("a=1,b=2".to_string()));
        assert_eq!(
            LabelSelector::from_labels(&BTreeMap::new()),
            Ok(LabelSelector::everything())
        );
        assert!(matches!(
            LabelSelector::from_labels(&labels(&[("a", "b c")])),
            Err(SelectorError::Invalid(_))
        ));
    }

    #[test]
    fn requirement_new_validates_value_counts() {
        let msg = |op, values: &[&str]| {
            Requirement::new("k", op, values.iter().map(|v| v.to_string()).collect())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            msg(Operator::Equals, &["a", "b"]),
            Err("values: Invalid value: []string{\"a\", \"b\"}: exact-match compatibility requires one single value"
                .into())
        );
        assert_eq!(
            msg(Operator::NotEquals, &[]),
            Err("values: Invalid value: []string{}: exact-match compatibility requires one single value".into())
        );
        assert_eq!(
            msg(Operator::In, &[]),
            Err("values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty".into())
        );
        assert_eq!(
            msg(Operator::GreaterThan, &["1", "2"]),
            Err("values: Invalid value: []string{\"1\", \"2\"}: for 'Gt', 'Lt' operators, exactly one value is required"
                .into())
        );
        assert!(msg(Operator::DoesNotExist, &[]).is_ok());
        assert!(msg(Operator::In, &["a", "a"]).is_ok());
    }

    #[test]
    fn display_sorts_values_without_mutating() {
        let r = Requirement {
            key: "k".into(),
            op: Operator::In,
            values: vec!["b".into(), "a".into(), "b".into()],
        };
        assert_eq!(r.to_string(), "k in (a,b,b)");
        assert_eq!(r.values, vec!["b", "a", "b"]);
        assert_eq!(
            Requirement {
                key: "k".into(),
                op: Operator::NotEquals,
                values: vec!["v".into()]
            }
            .to_string(),
            "k!=v"
        );
    }

    #[test]
    fn requires_exact_match_follows_upstream() {
        assert_eq!(parse("a=1").requires_exact_match("a"), Some("1"));
        assert_eq!(parse("a==1").requires_exact_match("a"), Some("1"));
        assert_eq!(parse("a in (1,2)").requires_exact_match("a"), None);
        assert_eq!(parse("a notin (1)").requires_exact_match("a"), None);
        assert_eq!(parse("a").requires_exact_match("a"), None);
        assert_eq!(parse("b=1").requires_exact_match("a"), None);
    }

    #[test]
    fn operator_strings_match_selection_package() {
        let all = [
            (Operator::Equals, "="),
            (Operator::DoubleEquals, "=="),
            (Operator::NotEquals, "!="),
            (Operator::In, "in"),
            (Operator::NotIn, "notin"),
            (Operator::Exists, "exists"),
            (Operator::DoesNotExist, "!"),
            (Operator::GreaterThan, "gt"),
            (Operator::LessThan, "lt"),
        ];
        for (op, s) in all {
            assert_eq!(op.to_string(), s);
        }
    }
}
