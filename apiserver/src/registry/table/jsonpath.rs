//! The JSONPath subset that `additionalPrinterColumns` use (upstream evaluates them with
//! client-go's `jsonpath`, missing keys allowed): `.a.b`, `['a.b']`, `[0]`, `[-1]`, `[*]`,
//! `.*` and filters such as `[?(@.type=="Ready")]` comparing with `==`, `!=`, `<`, `<=`, `>`,
//! `>=` or testing that a field exists.

use std::cmp::Ordering;

use serde_json::Value;

/// A parsed path.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter(Filter),
}

#[derive(Clone, Debug, PartialEq)]
struct Filter {
    path: Vec<Step>,
    /// `None` tests that the path exists.
    compare: Option<(Op, Value)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl JsonPath {
    /// Parses a path such as `.spec.replicas` or `.status.conditions[?(@.type=="Ready")].status`.
    ///
    /// ```
    /// use kybernetes_apiserver::registry::table::jsonpath::JsonPath;
    /// use serde_json::json;
    /// let p = JsonPath::parse(".status.conditions[?(@.type==\"Ready\")].status")?;
    /// let obj = json!({"status": {"conditions": [{"type": "Synced", "status": "True"}, {"type": "Ready", "status": "False"}]}});
    /// assert_eq!(p.first(&obj), Some(&json!("False")));
    /// assert_eq!(JsonPath::parse(".spec.ports[-1].port")?.first(&json!({"spec": {"ports": [{"port": 1}, {"port": 2}]}})), Some(&json!(2)));
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(path: &str) -> Result<Self, String> {
        let mut p = Parser {
            chars: path.trim().chars().collect(),
            pos: 0,
        };
        let steps = p.steps(false)?;
        if p.pos != p.chars.len() {
            return Err(format!(
                "unrecognized character in path {path:?} at {}",
                p.pos
            ));
        }
        Ok(JsonPath { steps })
    }

    /// The first value the path selects in `obj` (upstream's printer takes `results[0][0]`);
    /// `None` when nothing matches or an index is out of range.
    pub fn first<'a>(&self, obj: &'a Value) -> Option<&'a Value> {
        eval(&self.steps, obj).ok()?.into_iter().next()
    }
}

fn eval<'a>(steps: &[Step], obj: &'a Value) -> Result<Vec<&'a Value>, ()> {
    let mut current = vec![obj];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => next.extend(v.get(name.as_str())),
                Step::Index(i) => {
                    let Some(a) = v.as_array() else { continue };
                    let len = i64::try_from(a.len()).map_err(|_| ())?;
                    let at = if *i < 0 { len + i } else { *i };
                    // As client-go: an index past the end is an error, not a miss.
                    let at = usize::try_from(at).map_err(|_| ())?;
                    next.push(a.get(at).ok_or(())?);
                }
                Step::Wildcard => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(f) => {
                    let Some(a) = v.as_array() else { continue };
                    next.extend(a.iter().filter(|item| f.matches(item)));
                }
            }
        }
        current = next;
    }
    Ok(current)
}

impl Filter {
    fn matches(&self, item: &Value) -> bool {
        let found = match eval(&self.path, item) {
            Ok(found) => found,
            Err(()) => return false,
        };
        let Some((op, literal)) = &self.compare else {
            return !found.is_empty();
        };
        found.iter().any(|v| {
            let ord = match (v, literal) {
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                (Value::Number(a), Value::Number(b)) => a
                    .as_f64()
                    .zip(b.as_f64())
                    .and_then(|(a, b)| a.partial_cmp(&b)),
                (a, b) => (*a == b).then_some(Ordering::Equal),
            };
            match (op, ord) {
                (Op::Eq, Some(o)) => o == Ordering::Equal,
                (Op::Ne, o) => o != Some(Ordering::Equal),
                (Op::Lt, Some(o)) => o == Ordering::Less,
                (Op::Le, Some(o)) => o != Ordering::Greater,
                (Op::Gt, Some(o)) => o == Ordering::Greater,
                (Op::Ge, Some(o)) => o != Ordering::Less,
                (_, None) => false,
            }
        })
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars[self.pos..].iter().take(n).copied().eq(s.chars()) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    /// Steps until the end, or (inside a filter) until an operator or `)`.
    fn steps(&mut self, in_filter: bool) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        // A leading `$` (or `@` in a filter) names the root.
        if !self.eat("$") && in_filter && !self.eat("@") {
            return Err("a filter must start with @".into());
        }
        loop {
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    if self.peek() == Some('.') {
                        return Err("recursive descent (..) is not supported".into());
                    }
                    if self.eat("*") {
                        steps.push(Step::Wildcard);
                        continue;
                    }
                    let start = self.pos;
                    while let Some(c) = self.peek() {
                        if c == '.' || c == '[' || (in_filter && "=!<>) ".contains(c)) {
                            break;
                        }
                        self.pos += 1;
                    }
                    if self.pos == start {
                        // `.` alone is the whole object.
                        continue;
                    }
                    steps.push(Step::Field(self.chars[start..self.pos].iter().collect()));
                }
                Some('[') => {
                    self.pos += 1;
                    steps.push(self.bracket()?);
                }
                _ => return Ok(steps),
            }
        }
    }

    fn bracket(&mut self) -> Result<Step, String> {
        let step = if self.eat("*") {
            Step::Wildcard
        } else if self.eat("?(") {
            let path = self.steps(true)?;
            self.skip_spaces();
            let op = [
                ("==", Op::Eq),
                ("!=", Op::Ne),
                ("<=", Op::Le),
                (">=", Op::Ge),
                ("<", Op::Lt),
                (">", Op::Gt),
            ]
            .into_iter()
            .find(|(s, _)| self.eat(s))
            .map(|(_, op)| op);
            let compare = match op {
                Some(op) => {
                    self.skip_spaces();
                    Some((op, self.literal()?))
                }
                None => None,
            };
            self.skip_spaces();
            if !self.eat(")") {
                return Err("a filter must end with )".into());
            }
            Step::Filter(Filter { path, compare })
        } else if matches!(self.peek(), Some('\'' | '"')) {
            match self.literal()? {
                Value::String(s) => Step::Field(s),
                _ => return Err("expected a quoted field name".into()),
            }
        } else {
            let start = self.pos;
            while matches!(self.peek(), Some(c) if c == '-' || c.is_ascii_digit()) {
                self.pos += 1;
            }
            let digits: String = self.chars[start..self.pos].iter().collect();
            Step::Index(
                digits
                    .parse()
                    .map_err(|_| format!("unsupported array subscript {digits:?}"))?,
            )
        };
        if !self.eat("]") {
            return Err("expected ]".into());
        }
        Ok(step)
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(' ') {
            self.pos += 1;
        }
    }

    /// A quoted string or a number.
    fn literal(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some(q @ ('\'' | '"')) => {
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| c != q) {
                    self.pos += 1;
                }
                let s: String = self.chars[start..self.pos].iter().collect();
                if !self.eat(&q.to_string()) {
                    return Err("unterminated string".into());
                }
                Ok(Value::String(s))
            }
            _ => {
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c == '-' || c == '.' || c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                serde_json::from_str::<serde_json::Number>(&text)
                    .map(Value::Number)
                    .map_err(|_| format!("expected a string or a number, found {text:?}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn first(path: &str, obj: &Value) -> Option<Value> {
        JsonPath::parse(path).expect("parses").first(obj).cloned()
    }

    #[test]
    fn fields_indexes_and_wildcards() {
        let obj = json!({"spec": {"replicas": 3, "ports": [{"port": 80}, {"port": 443}],
            "labels": {"app.kubernetes.io/name": "web"}}});
        assert_eq!(first(".spec.replicas", &obj), Some(json!(3)));
        assert_eq!(first(".spec.ports[1].port", &obj), Some(json!(443)));
        assert_eq!(first(".spec.ports[*].port", &obj), Some(json!(80)));
        assert_eq!(
            first(".spec.labels['app.kubernetes.io/name']", &obj),
            Some(json!("web"))
        );
        assert_eq!(first(".spec.missing.deeper", &obj), None);
        assert_eq!(first(".spec.ports[5].port", &obj), None);
        assert_eq!(first(".", &obj), Some(obj.clone()));
    }

    #[test]
    fn filters_compare_fields() {
        let obj = json!({"items": [{"n": 1, "k": "a"}, {"n": 5, "k": "b"}, {"k": "c"}]});
        assert_eq!(first(".items[?(@.n > 2)].k", &obj), Some(json!("b")));
        assert_eq!(first(".items[?(@.k != 'a')].k", &obj), Some(json!("b")));
        assert_eq!(first(".items[?(@.n)].k", &obj), Some(json!("a")));
        assert_eq!(first(".items[?(@.k==\"c\")].n", &obj), None);
    }

    #[test]
    fn unsupported_paths_are_errors() {
        assert!(JsonPath::parse("..spec").is_err());
        assert!(JsonPath::parse(".spec[abc]").is_err());
        assert!(JsonPath::parse(".items[?(@.k==)]").is_err());
    }
}
