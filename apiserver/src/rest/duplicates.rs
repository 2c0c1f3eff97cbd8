//! JSON parsing that also reports duplicated object keys, which `serde_json` silently resolves
//! to the last value: upstream's strict decoding reports them (`duplicate field
//! "spec.replicas"`, paths written as in [`crate::openapi::fields`]). One pass, with no
//! allocation for paths until a duplicate is found.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Where a value sits, as a chain of borrowed steps from the root.
#[derive(Clone, Copy)]
enum Step<'a> {
    Root,
    Key(&'a Step<'a>, &'a str),
    Index(&'a Step<'a>, usize),
}

impl Step<'_> {
    fn render(&self, out: &mut String) {
        match self {
            Step::Root => {}
            Step::Key(parent, key) => {
                parent.render(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(parent, i) => {
                parent.render(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }
}

struct Seed<'a> {
    at: Step<'a>,
    duplicates: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let seed = Seed {
                at: Step::Index(&self.at, out.len()),
                duplicates: self.duplicates,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = Step::Key(&self.at, &key);
            let value = map.next_value_seed(Seed {
                at,
                duplicates: self.duplicates,
            })?;
            if out.contains_key(&key) {
                let mut path = String::new();
                at.render(&mut path);
                self.duplicates.borrow_mut().push(path);
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Parses JSON, returning the value (the last of duplicated keys wins, as with `serde_json`)
/// and the paths of the duplicated keys in document order.
///
/// ```ignore
/// let (v, dups) = parse(br#"{"spec":{"replicas":1,"replicas":2}}"#).unwrap();
/// assert_eq!(v["spec"]["replicas"], 2);
/// assert_eq!(dups, ["spec.replicas"]);
/// ```
pub fn parse(body: &[u8]) -> Result<(Value, Vec<String>), serde_json::Error> {
    let duplicates = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Seed {
        at: Step::Root,
        duplicates: &duplicates,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok((value, duplicates.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicated_keys_are_reported_with_their_paths() {
        let (v, dups) = parse(
            br#"{"spec":{"replicas":1,"replicas":2,"template":{"spec":{"containers":[{"name":"a","name":"b"}]}}},"spec2":[1,2.5,null,true,"s"]}"#,
        )
        .expect("valid JSON");
        assert_eq!(v["spec"]["replicas"], 2);
        assert_eq!(v["spec"]["template"]["spec"]["containers"][0]["name"], "b");
        assert_eq!(v["spec2"], serde_json::json!([1, 2.5, null, true, "s"]));
        assert_eq!(
            dups,
            ["spec.replicas", "spec.template.spec.containers[0].name"]
        );
    }

    #[test]
    fn parses_like_serde_json() {
        let body = br#"{"a":{"b":[{"c":-1,"d":18446744073709551615,"e":"\u00e9"}]},"f":{}}"#;
        let (v, dups) = parse(body).expect("valid JSON");
        assert!(dups.is_empty());
        assert_eq!(v, serde_json::from_slice::<Value>(body).expect("valid"));
        assert!(parse(b"{} x").is_err());
        assert!(parse(b"{\"a\":").is_err());
    }
}
