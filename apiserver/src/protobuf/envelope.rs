//! The envelope of a Kubernetes protobuf object: the magic bytes `k8s\0`, then a
//! `runtime.Unknown` message whose `typeMeta` names the kind and whose `raw` is the object's
//! own message (which carries no `apiVersion` or `kind`).

use serde_json::{Map, Value};

use super::Error;
use super::message::{self, DecodeError};
use super::schema::Schema;
use super::wire::{Records, WireValue};

/// The prefix of every Kubernetes protobuf object.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// A `runtime.Unknown`: `typeMeta = 1 {apiVersion = 1, kind = 2}`, `raw = 2`,
/// `contentEncoding = 3`, `contentType = 4`.
#[derive(Debug, Default, PartialEq)]
pub struct Unknown<'a> {
    /// `typeMeta.apiVersion`.
    pub api_version: String,
    /// `typeMeta.kind`.
    pub kind: String,
    /// The object's message.
    pub raw: &'a [u8],
    /// How `raw` is encoded (compression); empty for none.
    pub content_encoding: String,
    /// The media type of `raw`; empty for protobuf.
    pub content_type: String,
}

/// Strips the magic bytes and reads the `runtime.Unknown` after them.
pub fn unwrap(body: &[u8]) -> Result<Unknown<'_>, Error> {
    let unknown = body.strip_prefix(&MAGIC).ok_or(Error::NotProtobuf)?;
    let mut out = Unknown::default();
    for record in Records::new(unknown) {
        let (number, value) = record.map_err(|e| Error::Envelope(e.into()))?;
        let bytes = match value {
            WireValue::Bytes(b) => b,
            // No field of runtime.Unknown is a number; skip what is not ours, as protobuf does.
            _ => continue,
        };
        match number {
            1 => {
                for record in Records::new(bytes) {
                    let (n, v) = record
                        .map_err(|e| Error::Envelope(DecodeError::from(e).within("typeMeta")))?;
                    if let WireValue::Bytes(b) = v {
                        match n {
                            1 => out.api_version = text(b),
                            2 => out.kind = text(b),
                            _ => {}
                        }
                    }
                }
            }
            2 => out.raw = bytes,
            3 => out.content_encoding = text(bytes),
            4 => out.content_type = text(bytes),
            _ => {}
        }
    }
    Ok(out)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The object in `body` (magic bytes and envelope included) as a JSON object with its
/// `apiVersion` and `kind`. `depth` counts enclosing messages (an object inside a
/// `RawExtension`).
pub fn object_at_depth(
    schema: &Schema,
    body: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, Error> {
    let unknown = unwrap(body)?;
    if unknown.kind.is_empty() {
        return Err(Error::MissingKind);
    }
    if !unknown.content_encoding.is_empty() {
        return Err(Error::ContentEncoding(unknown.content_encoding));
    }
    let mut object = match unknown.content_type.as_str() {
        "" | super::MEDIA_TYPE => {
            let id = schema
                .kind(&unknown.api_version, &unknown.kind)
                .ok_or_else(|| Error::NotRegistered {
                    kind: unknown.kind.clone(),
                    api_version: unknown.api_version.clone(),
                })?;
            message::to_object(schema, id, unknown.raw, depth).map_err(|source| {
                Error::Malformed {
                    kind: unknown.kind.clone(),
                    api_version: unknown.api_version.clone(),
                    source,
                }
            })?
        }
        "application/json" => match serde_json::from_slice(unknown.raw) {
            Ok(Value::Object(o)) => o,
            _ => return Err(Error::EmbeddedNotJson),
        },
        other => return Err(Error::EmbeddedContentType(other.to_string())),
    };
    object.insert("apiVersion".into(), Value::String(unknown.api_version));
    object.insert("kind".into(), Value::String(unknown.kind));
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_names_the_kind_and_carries_the_raw_object() {
        // typeMeta {apiVersion "v1", kind "Pod"}, raw [0x0a, 0x00], contentType "".
        let mut body = MAGIC.to_vec();
        body.extend([0x0a, 9, 0x0a, 2, b'v', b'1', 0x12, 3, b'P', b'o', b'd']);
        body.extend([0x12, 2, 0x0a, 0x00]);
        let u = unwrap(&body).expect("envelope");
        assert_eq!(u.api_version, "v1");
        assert_eq!(u.kind, "Pod");
        assert_eq!(u.raw, &[0x0a, 0x00]);
    }

    #[test]
    fn json_is_not_mistaken_for_protobuf() {
        assert!(matches!(
            unwrap(b"{\"kind\":\"Pod\"}"),
            Err(Error::NotProtobuf)
        ));
    }
}
