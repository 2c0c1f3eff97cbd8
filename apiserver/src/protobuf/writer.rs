//! Writes protobuf messages field by field: the inverse of [`super::wire`], for clients and
//! tests that build protobuf bodies by hand, and for the OpenAPI v2 document in protobuf
//! ([`crate::openapi::v2_protobuf`]).
//!
//! ```
//! use kybernetes_apiserver::protobuf::{self, writer::MessageWriter};
//! // A ConfigMap {metadata {name "x"}, data {"a": "b"}}.
//! let configmap = MessageWriter::new()
//!     .message(1, MessageWriter::new().string(1, "x"))
//!     .map_entry(2, MessageWriter::new().string(1, "a").string(2, "b"));
//! let body = protobuf::writer::envelope("v1", "ConfigMap", &configmap);
//! let object = protobuf::to_json(&body)?;
//! assert_eq!(object["metadata"]["name"], "x");
//! assert_eq!(object["data"]["a"], "b");
//! # Ok::<(), protobuf::Error>(())
//! ```

use super::envelope::MAGIC;

/// A message under construction.
#[derive(Clone, Debug, Default)]
pub struct MessageWriter {
    buf: Vec<u8>,
}

impl MessageWriter {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// The message's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn key(&mut self, number: u32, wire_type: u8) {
        put_varint(
            &mut self.buf,
            (u64::from(number) << 3) | u64::from(wire_type),
        );
    }

    /// A varint field (`int32`, `int64`, `bool`, ...); negative numbers take ten bytes.
    pub fn varint(mut self, number: u32, value: i64) -> Self {
        self.key(number, 0);
        put_varint(&mut self.buf, value as u64);
        self
    }

    /// A `double` field.
    pub fn double(mut self, number: u32, value: f64) -> Self {
        self.key(number, 1);
        self.buf.extend(value.to_bits().to_le_bytes());
        self
    }

    /// A length-delimited field of raw bytes (`bytes`, a packed list).
    pub fn raw(mut self, number: u32, value: &[u8]) -> Self {
        self.key(number, 2);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(value);
        self
    }

    /// A `string` field.
    pub fn string(self, number: u32, value: &str) -> Self {
        self.raw(number, value.as_bytes())
    }

    /// An embedded message field (also one element of a repeated message field).
    pub fn message(self, number: u32, value: MessageWriter) -> Self {
        self.raw(number, &value.buf)
    }

    /// One entry of a map field: a message `{key = 1, value = 2}`.
    pub fn map_entry(self, number: u32, entry: MessageWriter) -> Self {
        self.message(number, entry)
    }
}

/// Appends a base-128 varint.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A whole request body: the magic bytes and a `runtime.Unknown` around the object's
/// message.
pub fn envelope(api_version: &str, kind: &str, object: &MessageWriter) -> Vec<u8> {
    let type_meta = MessageWriter::new().string(1, api_version).string(2, kind);
    let unknown = MessageWriter::new()
        .message(1, type_meta)
        .raw(2, &object.buf);
    let mut body = MAGIC.to_vec();
    body.extend_from_slice(&unknown.buf);
    body
}
