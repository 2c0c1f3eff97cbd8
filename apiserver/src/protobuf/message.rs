//! A protobuf message as the JSON object Go's `encoding/json` would write for the same
//! struct, driven by the [`Schema`]: fields by their JSON names, zero values of
//! `omitempty` fields left out, inline structs flattened, special types
//! ([`super::special`]) in their own JSON forms.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use serde_json::{Map, Number, Value};

use super::schema::{Field, FieldType, MessageId, Scalar, Schema};
use super::special;
use super::wire::{self, PackedElement, Records, WireError, WireValue};

/// How deeply messages may nest (as `serde_json`'s recursion limit for JSON bodies).
pub const MAX_DEPTH: usize = 128;

/// A message that does not decode, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// JSON path segments from the field that failed outwards (reversed on display).
    path: Vec<String>,
    /// What failed.
    pub problem: Problem,
}

/// What a [`DecodeError`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The bytes are not protobuf.
    Wire(WireError),
    /// A record's wire type does not fit the field's type.
    WrongWireType {
        /// The field number.
        field: u32,
        /// The wire type the field's type needs.
        expected: &'static str,
        /// The wire type found.
        found: &'static str,
    },
    /// Messages nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A `double` or `float` that JSON cannot hold (NaN, infinity).
    NotFinite(f64),
    /// An embedded raw object or JSON value that is not JSON.
    InvalidJson(String),
    /// An embedded protobuf object (in a `RawExtension`) that does not decode.
    EmbeddedObject(String),
    /// A time outside what RFC 3339 can write.
    TimeOutOfRange(i64),
}

impl DecodeError {
    /// A failure at the current position.
    pub fn new(problem: Problem) -> Self {
        DecodeError {
            path: Vec::new(),
            problem,
        }
    }

    /// The same failure, one level further out.
    pub fn within(mut self, segment: impl Into<String>) -> Self {
        self.path.push(segment.into());
        self
    }

    /// The JSON path of the failing field, as `spec.template.spec.containers[0].image`.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.path.iter().rev() {
            if !out.is_empty() && !seg.starts_with('[') {
                out.push('.');
            }
            out.push_str(seg);
        }
        out
    }
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeError::new(Problem::Wire(e))
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        if !path.is_empty() {
            write!(f, "at {path}: ")?;
        }
        match &self.problem {
            Problem::Wire(e) => write!(f, "{e}"),
            Problem::WrongWireType {
                field,
                expected,
                found,
            } => write!(f, "field {field} needs wire type {expected}, found {found}"),
            Problem::TooDeep => write!(f, "messages nested deeper than {MAX_DEPTH} levels"),
            Problem::NotFinite(x) => write!(f, "{x} is not a JSON number"),
            Problem::InvalidJson(e) => write!(f, "the embedded value is not JSON: {e}"),
            Problem::EmbeddedObject(e) => write!(f, "the embedded object does not decode: {e}"),
            Problem::TimeOutOfRange(s) => write!(f, "{s} seconds is not a representable time"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// What a field collects from its records before it becomes JSON.
enum Slot<'a> {
    Empty,
    /// A singular scalar: the last record wins, as in protobuf.
    Scalar(Value),
    /// A singular message: every record's bytes, merged (concatenated) as protobuf does.
    Chunks(Vec<&'a [u8]>),
    List(Vec<Value>),
    Map(Map<String, Value>),
}

/// Decodes the message `id` from `bytes` into a JSON object. `depth` counts the enclosing
/// messages.
pub fn to_object(
    schema: &Schema,
    id: MessageId,
    bytes: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::new(Problem::TooDeep));
    }
    let message = &schema.messages[id];
    let mut slots: Vec<Slot<'_>> = message.fields.iter().map(|_| Slot::Empty).collect();
    for record in Records::new(bytes) {
        let (number, value) = record?;
        // Unknown fields are skipped, as upstream's generated code does.
        let Some(index) = message.field_index(number) else {
            continue;
        };
        let field = &message.fields[index];
        collect(schema, field, value, &mut slots[index], depth)
            .map_err(|e| e.within(segment(field)))?;
    }
    let mut out = Map::new();
    for (field, slot) in message.fields.iter().zip(slots) {
        finish(schema, field, slot, depth, &mut out).map_err(|e| e.within(segment(field)))?;
    }
    Ok(out)
}

fn segment(field: &Field) -> String {
    field
        .json
        .clone()
        .unwrap_or_else(|| format!("#{}", field.number))
}

/// Adds one record to its field's slot.
fn collect<'a>(
    schema: &Schema,
    field: &Field,
    value: WireValue<'a>,
    slot: &mut Slot<'a>,
    depth: usize,
) -> Result<(), DecodeError> {
    match (&field.ty, field.repeated) {
        (FieldType::Map(k, v), _) => {
            let bytes = expect_bytes(field.number, value)?;
            let (key, val) = map_entry(schema, k, v, bytes, depth)?;
            if !matches!(slot, Slot::Map(_)) {
                *slot = Slot::Map(Map::new());
            }
            if let Slot::Map(m) = slot {
                m.insert(key, val);
            }
        }
        (ty, true) => {
            if !matches!(slot, Slot::List(_)) {
                *slot = Slot::List(Vec::new());
            }
            let Slot::List(items) = slot else {
                return Ok(());
            };
            match (ty, value, packing(ty)) {
                (FieldType::Scalar(s), WireValue::Bytes(b), Some(element)) => {
                    for v in wire::packed(b, element)? {
                        items.push(scalar(field.number, *s, v)?);
                    }
                }
                _ => {
                    let i = items.len();
                    let v = element(schema, field.number, ty, value, depth)
                        .map_err(|e| e.within(format!("[{i}]")))?;
                    items.push(v.unwrap_or(Value::Null));
                }
            }
        }
        (FieldType::Message(_), false) => {
            let bytes = expect_bytes(field.number, value)?;
            match slot {
                Slot::Chunks(chunks) => chunks.push(bytes),
                _ => *slot = Slot::Chunks(vec![bytes]),
            }
        }
        (FieldType::Scalar(s), false) => *slot = Slot::Scalar(scalar(field.number, *s, value)?),
    }
    Ok(())
}

/// Writes a field's collected value into the object, as Go's JSON would.
fn finish(
    schema: &Schema,
    field: &Field,
    slot: Slot<'_>,
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), DecodeError> {
    let value = match slot {
        Slot::Empty => return Ok(()),
        // Empty lists and maps are never on the wire; an absent one is left out (Go would
        // write `null` for a nil slice without omitempty, which means the same).
        Slot::List(items) => Value::Array(items),
        Slot::Map(m) => Value::Object(m),
        Slot::Scalar(v) => {
            if !field.keep_zero && is_zero(&v) {
                return Ok(());
            }
            v
        }
        Slot::Chunks(chunks) => {
            let FieldType::Message(id) = field.ty else {
                return Ok(());
            };
            let bytes: Cow<'_, [u8]> = match chunks.as_slice() {
                [one] => Cow::Borrowed(one),
                many => Cow::Owned(many.concat()),
            };
            let Some(v) = message_value(schema, id, &bytes, field.keep_zero, depth + 1)? else {
                return Ok(());
            };
            if field.inline
                && let Value::Object(inner) = v
            {
                out.extend(inner);
                return Ok(());
            }
            v
        }
    };
    if let Some(name) = &field.json {
        out.insert(name.clone(), value);
    }
    Ok(())
}

/// A message's JSON: its special form, or the object of its fields. `None` is a special
/// message's zero value, which a singular `omitempty` field leaves out.
pub fn message_value(
    schema: &Schema,
    id: MessageId,
    bytes: &[u8],
    keep_zero: bool,
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    match schema.messages[id].special {
        Some(kind) => special::to_json(schema, kind, id, bytes, keep_zero, depth),
        None => to_object(schema, id, bytes, depth).map(|o| Some(Value::Object(o))),
    }
}

/// One element of a repeated field or a map value: every value is kept, zero or not.
pub fn element(
    schema: &Schema,
    number: u32,
    ty: &FieldType,
    value: WireValue<'_>,
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    match ty {
        FieldType::Scalar(s) => scalar(number, *s, value).map(Some),
        FieldType::Message(id) => {
            let bytes = expect_bytes(number, value)?;
            message_value(schema, *id, bytes, true, depth + 1)
        }
        FieldType::Map(..) => Ok(None),
    }
}

/// One `{key = 1, value = 2}` entry of a map field.
fn map_entry(
    schema: &Schema,
    key_ty: &FieldType,
    value_ty: &FieldType,
    bytes: &[u8],
    depth: usize,
) -> Result<(String, Value), DecodeError> {
    let mut key = None;
    let mut value = None;
    for record in Records::new(bytes) {
        match record? {
            (1, v) => key = element(schema, 1, key_ty, v, depth)?,
            (2, v) => value = Some(v),
            _ => {}
        }
    }
    // JSON object keys are strings; Go writes integer keys in decimal.
    let key = match key {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let value = match value {
        Some(v) => {
            element(schema, 2, value_ty, v, depth).map_err(|e| e.within(format!("[{key}]")))?
        }
        // An absent value is the type's zero value.
        None => zero_of(schema, value_ty, depth).map_err(|e| e.within(format!("[{key}]")))?,
    };
    Ok((key, value.unwrap_or(Value::Null)))
}

fn zero_of(schema: &Schema, ty: &FieldType, depth: usize) -> Result<Option<Value>, DecodeError> {
    Ok(match ty {
        FieldType::Scalar(Scalar::String | Scalar::Bytes) => Some(Value::String(String::new())),
        FieldType::Scalar(Scalar::Bool) => Some(Value::Bool(false)),
        FieldType::Scalar(_) => Some(Value::from(0)),
        FieldType::Message(id) => message_value(schema, *id, &[], true, depth + 1)?,
        FieldType::Map(..) => None,
    })
}

/// The wire type of one element of a packed list of this type, if it can be packed.
fn packing(ty: &FieldType) -> Option<PackedElement> {
    match ty {
        FieldType::Scalar(Scalar::String | Scalar::Bytes)
        | FieldType::Message(_)
        | FieldType::Map(..) => None,
        FieldType::Scalar(Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float) => {
            Some(PackedElement::Fixed32)
        }
        FieldType::Scalar(Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double) => {
            Some(PackedElement::Fixed64)
        }
        FieldType::Scalar(_) => Some(PackedElement::Varint),
    }
}

fn expect_bytes(number: u32, value: WireValue<'_>) -> Result<&[u8], DecodeError> {
    match value {
        WireValue::Bytes(b) => Ok(b),
        other => Err(wrong_type(number, "length-delimited", other)),
    }
}

fn wrong_type(field: u32, expected: &'static str, found: WireValue<'_>) -> DecodeError {
    DecodeError::new(Problem::WrongWireType {
        field,
        expected,
        found: found.type_name(),
    })
}

/// A scalar record as JSON: strings as text (invalid UTF-8 replaced, as Go's JSON encoder
/// does), `bytes` as base64, every integer (`int64` too) as a JSON number.
pub fn scalar(number: u32, s: Scalar, value: WireValue<'_>) -> Result<Value, DecodeError> {
    let wrong = |expected| wrong_type(number, expected, value);
    Ok(match (s, value) {
        (Scalar::String, WireValue::Bytes(b)) => {
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        (Scalar::Bytes, WireValue::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Scalar::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        // int32 is sign-extended to 64 bits on the wire; truncating recovers it.
        (Scalar::Int32, WireValue::Varint(v)) => Value::from(v as i32),
        (Scalar::Int64, WireValue::Varint(v)) => Value::from(v as i64),
        (Scalar::Uint32, WireValue::Varint(v)) => Value::from(v as u32),
        (Scalar::Uint64, WireValue::Varint(v)) => Value::from(v),
        (Scalar::Sint32, WireValue::Varint(v)) => Value::from(zigzag(v) as i32),
        (Scalar::Sint64, WireValue::Varint(v)) => Value::from(zigzag(v)),
        (Scalar::Fixed32, WireValue::Fixed32(v)) => Value::from(v),
        (Scalar::Sfixed32, WireValue::Fixed32(v)) => Value::from(v as i32),
        (Scalar::Fixed64, WireValue::Fixed64(v)) => Value::from(v),
        (Scalar::Sfixed64, WireValue::Fixed64(v)) => Value::from(v as i64),
        (Scalar::Double, WireValue::Fixed64(v)) => float(f64::from_bits(v))?,
        (Scalar::Float, WireValue::Fixed32(v)) => float(f64::from(f32::from_bits(v)))?,
        (Scalar::String | Scalar::Bytes, _) => return Err(wrong("length-delimited")),
        (Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float, _) => return Err(wrong("32-bit")),
        (Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double, _) => return Err(wrong("64-bit")),
        (_, _) => return Err(wrong("varint")),
    })
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A float as Go's JSON writes it: integral values without a fraction (`5`, not `5.0`).
fn float(x: f64) -> Result<Value, DecodeError> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.fract() == 0.0 && x.abs() < EXACT {
        return Ok(Value::from(x as i64));
    }
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| DecodeError::new(Problem::NotFinite(x)))
}

/// Go's zero values, which an `omitempty` field leaves out.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        Value::Array(_) | Value::Object(_) => false,
    }
}
