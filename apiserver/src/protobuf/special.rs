//! Messages whose JSON is not an object of their fields: Go gives these types their own
//! `MarshalJSON`, and this module writes the same forms.
//!
//! | message | JSON |
//! |---|---|
//! | `meta.v1.Time` `{seconds, nanos}` | RFC 3339 in seconds, UTC (the nanos are dropped, as upstream's `Time.Unmarshal` does) |
//! | `meta.v1.MicroTime` | RFC 3339 with microseconds |
//! | `meta.v1.Duration` `{duration}` | Go's duration string (`1h0m0s`) |
//! | `resource.Quantity` `{string}` | the string |
//! | `intstr.IntOrString` `{type, intVal, strVal}` | a number or a string |
//! | `runtime.RawExtension` `{raw}` | the embedded object (JSON, or a protobuf object transcoded) |
//! | `meta.v1.FieldsV1`, `apiextensions.v1.JSON` `{raw}` | the embedded JSON |
//! | `JSONSchemaPropsOrArray`, `OrBool`, `OrStringArray` | the schema, or the array or bool |
//! | list wrappers (`meta.v1.Verbs`) `{items}` | the array |

use std::collections::HashMap;

use chrono::DateTime;
use serde_json::Value;

use super::message::{self, DecodeError, Problem};
use super::schema::{FieldType, MessageId, Schema};
use super::wire::{Records, WireValue};

/// A message with its own JSON form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// `meta.v1.Time`.
    Time,
    /// `meta.v1.MicroTime`.
    MicroTime,
    /// `meta.v1.Duration`.
    Duration,
    /// `resource.Quantity` and `resource.QuantityValue`.
    Quantity,
    /// `intstr.IntOrString`.
    IntOrString,
    /// `runtime.RawExtension`.
    RawExtension,
    /// `meta.v1.FieldsV1` and `apiextensions.v1.JSON`: raw JSON bytes.
    RawJson,
    /// `apiextensions.v1.JSONSchemaPropsOrArray`.
    SchemaOrArray,
    /// `apiextensions.v1.JSONSchemaPropsOrBool`.
    SchemaOrBool,
    /// `apiextensions.v1.JSONSchemaPropsOrStringArray`.
    SchemaOrStringArray,
    /// A wrapper of a Go slice type: `items = 1`.
    List,
}

impl Special {
    /// The special form of the message `alias.Name`, if it has one.
    pub fn of(name: &str) -> Option<Special> {
        Some(match name {
            "meta.Time" => Special::Time,
            "meta.MicroTime" => Special::MicroTime,
            "meta.Duration" => Special::Duration,
            "resource.Quantity" | "resource.QuantityValue" => Special::Quantity,
            "intstr.IntOrString" => Special::IntOrString,
            "runtime.RawExtension" => Special::RawExtension,
            "meta.FieldsV1" | "apiextensions.JSON" => Special::RawJson,
            "apiextensions.JSONSchemaPropsOrArray" => Special::SchemaOrArray,
            "apiextensions.JSONSchemaPropsOrBool" => Special::SchemaOrBool,
            "apiextensions.JSONSchemaPropsOrStringArray" => Special::SchemaOrStringArray,
            _ => return None,
        })
    }
}

/// Go's zero `time.Time` in Unix seconds (January 1, year 1).
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// The JSON of a special message. `None` is its zero value (a zero time, an empty raw
/// extension, an int-or-string `0` whose field is `omitempty`), which a singular field leaves
/// out and a list or map holds as `null`.
pub fn to_json(
    schema: &Schema,
    kind: Special,
    id: MessageId,
    bytes: &[u8],
    keep_zero: bool,
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    let fields = Fields::read(bytes)?;
    match kind {
        Special::Time | Special::MicroTime => {
            if bytes.is_empty() {
                return Ok(None);
            }
            let seconds = fields.varint(1)? as i64;
            let nanos = fields.varint(2)? as i32;
            if seconds == GO_ZERO_TIME && nanos == 0 {
                return Ok(None);
            }
            time(seconds, nanos, kind == Special::MicroTime).map(Some)
        }
        Special::Duration => Ok(Some(Value::String(go_duration(fields.varint(1)? as i64)))),
        Special::Quantity => {
            let s = fields.string(1)?;
            Ok(Some(Value::String(if s.is_empty() {
                "0".into()
            } else {
                s
            })))
        }
        Special::IntOrString => {
            let is_string = fields.varint(1)? == 1;
            let int = fields.varint(2)? as i32;
            if is_string {
                Ok(Some(Value::String(fields.string(3)?)))
            } else if int == 0 && !keep_zero {
                Ok(None)
            } else {
                Ok(Some(Value::from(int)))
            }
        }
        Special::RawExtension => match fields.bytes(1)? {
            [] => Ok(None),
            raw if raw.starts_with(&super::envelope::MAGIC) => {
                super::envelope::object_at_depth(schema, raw, depth + 1)
                    .map(|o| Some(Value::Object(o)))
                    .map_err(|e| DecodeError::new(Problem::EmbeddedObject(e.to_string())))
            }
            raw => json(raw).map(Some),
        },
        Special::RawJson => match fields.bytes(1)? {
            [] => Ok(None),
            raw => json(raw).map(Some),
        },
        Special::SchemaOrArray => {
            let schemas = fields.messages(schema, id, 2, depth)?;
            if !schemas.is_empty() {
                return Ok(Some(Value::Array(schemas)));
            }
            fields.message(schema, id, 1, depth)
        }
        Special::SchemaOrBool => match fields.message(schema, id, 2, depth)? {
            Some(s) => Ok(Some(s)),
            None => Ok(Some(Value::Bool(fields.varint(1)? != 0))),
        },
        Special::SchemaOrStringArray => {
            let property = fields.messages(schema, id, 2, depth)?;
            if !property.is_empty() {
                return Ok(Some(Value::Array(property)));
            }
            fields.message(schema, id, 1, depth)
        }
        Special::List => Ok(Some(Value::Array(fields.messages(schema, id, 1, depth)?))),
    }
}

/// A special message's records by field number (a repeated field keeps them all).
struct Fields<'a> {
    by_number: HashMap<u32, Vec<WireValue<'a>>>,
}

impl<'a> Fields<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut by_number: HashMap<u32, Vec<WireValue<'a>>> = HashMap::new();
        for record in Records::new(bytes) {
            let (number, value) = record?;
            by_number.entry(number).or_default().push(value);
        }
        Ok(Fields { by_number })
    }

    fn last(&self, number: u32) -> Option<WireValue<'a>> {
        self.by_number.get(&number).and_then(|v| v.last()).copied()
    }

    fn varint(&self, number: u32) -> Result<u64, DecodeError> {
        match self.last(number) {
            None => Ok(0),
            Some(WireValue::Varint(v)) => Ok(v),
            Some(other) => Err(wrong(number, "varint", other)),
        }
    }

    fn bytes(&self, number: u32) -> Result<&'a [u8], DecodeError> {
        match self.last(number) {
            None => Ok(&[]),
            Some(WireValue::Bytes(b)) => Ok(b),
            Some(other) => Err(wrong(number, "length-delimited", other)),
        }
    }

    fn string(&self, number: u32) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.bytes(number)?).into_owned())
    }

    /// Every element of field `number` of message `id`, decoded by the schema's type.
    fn messages(
        &self,
        schema: &Schema,
        id: MessageId,
        number: u32,
        depth: usize,
    ) -> Result<Vec<Value>, DecodeError> {
        let Some(field) = schema.messages[id].field(number) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, v) in self
            .by_number
            .get(&number)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let value = message::element(schema, number, &field.ty, *v, depth)
                .map_err(|e| e.within(format!("[{i}]")))?;
            out.push(value.unwrap_or(Value::Null));
        }
        Ok(out)
    }

    /// The singular message field `number` of message `id`, if present.
    fn message(
        &self,
        schema: &Schema,
        id: MessageId,
        number: u32,
        depth: usize,
    ) -> Result<Option<Value>, DecodeError> {
        let (Some(field), Some(v)) = (schema.messages[id].field(number), self.last(number)) else {
            return Ok(None);
        };
        match field.ty {
            FieldType::Message(_) => message::element(schema, number, &field.ty, v, depth),
            _ => Ok(None),
        }
    }
}

fn wrong(field: u32, expected: &'static str, found: WireValue<'_>) -> DecodeError {
    DecodeError::new(Problem::WrongWireType {
        field,
        expected,
        found: found.type_name(),
    })
}

fn json(raw: &[u8]) -> Result<Value, DecodeError> {
    serde_json::from_slice(raw).map_err(|e| DecodeError::new(Problem::InvalidJson(e.to_string())))
}

/// `metav1.Time` (seconds, UTC) or `metav1.MicroTime` (microseconds) as RFC 3339.
fn time(seconds: i64, nanos: i32, micro: bool) -> Result<Value, DecodeError> {
    let nanos = if micro {
        u32::try_from(nanos).unwrap_or(0)
    } else {
        0
    };
    let t = DateTime::from_timestamp(seconds, nanos)
        .ok_or_else(|| DecodeError::new(Problem::TimeOutOfRange(seconds)))?;
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(Value::String(t.format(format).to_string()))
}

/// Go's `time.Duration.String()`: `0s`, `1.5µs`, `100ms`, `1h2m3.5s`.
pub fn go_duration(d: i64) -> String {
    let u = d.unsigned_abs();
    let text = match u {
        0 => return "0s".into(),
        1..1_000 => format!("{u}ns"),
        1_000..1_000_000 => {
            let (whole, frac) = split(u, 3);
            format!("{whole}{frac}µs")
        }
        1_000_000..1_000_000_000 => {
            let (whole, frac) = split(u, 6);
            format!("{whole}{frac}ms")
        }
        _ => {
            let (secs, frac) = split(u, 9);
            let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
            if h > 0 {
                format!("{h}h{m}m{s}{frac}s")
            } else if m > 0 {
                format!("{m}m{s}{frac}s")
            } else {
                format!("{s}{frac}s")
            }
        }
    };
    if d < 0 { format!("-{text}") } else { text }
}

/// `v / 10^digits` as its integer part and its fraction (`".5"`, trailing zeros trimmed,
/// empty when there is none).
fn split(v: u64, digits: u32) -> (u64, String) {
    let scale = 10u64.pow(digits);
    let frac = format!("{:0width$}", v % scale, width = digits as usize);
    let frac = frac.trim_end_matches('0');
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    (v / scale, frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_go_writes_them() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (100_000_000, "100ms"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(go_duration(nanos), text, "{nanos}");
        }
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(
            time(0, 5, false).ok(),
            Some(Value::from("1970-01-01T00:00:00Z"))
        );
        assert_eq!(
            time(1_700_000_000, 123_456_789, true).ok(),
            Some(Value::from("2023-11-14T22:13:20.123456Z"))
        );
        assert!(time(i64::MAX, 0, false).is_err());
    }
}
