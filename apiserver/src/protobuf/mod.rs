//! Request bodies in Kubernetes protobuf (`application/vnd.kubernetes.protobuf`), as JSON.
//!
//! kubectl sends the objects it builds (`kubectl create configmap`, `create deployment`,
//! ...) as protobuf. The rest of the API server works on JSON, so a protobuf body is
//! transcoded once, at the decode step, into the JSON object Go's `encoding/json` would
//! write for the same Go struct. Responses stay JSON: clients that send protobuf also accept
//! JSON.
//!
//! The parts, in the order a body meets them:
//! - [`envelope`]: the `k8s\0` magic and the `runtime.Unknown` that names the kind;
//! - [`wire`]: protobuf's records;
//! - [`schema`]: the messages of the served groups, generated from upstream's
//!   `generated.proto` files (`scripts/gen-protobuf-schema.py`);
//! - [`message`]: a message as a JSON object, by the schema;
//! - [`special`]: the types with their own JSON forms (`Time`, `Quantity`, `IntOrString`,
//!   `RawExtension`, ...).
//!
//! ```
//! use kybernetes_apiserver::protobuf;
//! // typeMeta {apiVersion "v1", kind "ConfigMap"}, raw: ConfigMap {data {"a": "b"}}.
//! let mut body = b"k8s\0".to_vec();
//! body.extend(b"\x0a\x0f\x0a\x02v1\x12\x09ConfigMap");
//! body.extend(b"\x12\x08\x12\x06\x0a\x01a\x12\x01b");
//! let object = protobuf::to_json(&body)?;
//! assert_eq!(object, serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}));
//! # Ok::<(), protobuf::Error>(())
//! ```

pub mod envelope;
pub mod message;
pub mod schema;
pub mod special;
pub mod wire;

use serde_json::Value;

/// The media type of Kubernetes protobuf.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// True if a `Content-Type` (parameters allowed) is Kubernetes protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// A protobuf body that cannot be read as an object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `k8s\0` prefix.
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    NotProtobuf,
    /// The `runtime.Unknown` after the prefix is malformed.
    #[error("the runtime.Unknown envelope is malformed: {0}")]
    Envelope(#[source] message::DecodeError),
    /// The envelope's `typeMeta` has no kind.
    #[error("Object 'Kind' is missing in the protobuf envelope (runtime.Unknown typeMeta.kind)")]
    MissingKind,
    /// A kind the served groups do not have.
    #[error(
        "no kind {kind:?} is registered for version {api_version:?} in scheme \"pkg/api/legacyscheme/scheme.go:30\""
    )]
    NotRegistered {
        /// `typeMeta.kind`.
        kind: String,
        /// `typeMeta.apiVersion`.
        api_version: String,
    },
    /// `contentEncoding` set (compression), which no client uses and we do not undo.
    #[error("contentEncoding {0:?} is not supported: send the object unencoded")]
    ContentEncoding(String),
    /// `contentType` names a format other than protobuf or JSON.
    #[error(
        "the embedded object's contentType {0:?} is not supported: use {MEDIA_TYPE} or application/json"
    )]
    EmbeddedContentType(String),
    /// `contentType` is JSON but `raw` is not a JSON object.
    #[error("the embedded object's contentType is application/json but it is not a JSON object")]
    EmbeddedNotJson,
    /// The object's message does not decode.
    #[error("the {kind} message is malformed: {source}")]
    Malformed {
        /// `typeMeta.kind`.
        kind: String,
        /// `typeMeta.apiVersion`.
        api_version: String,
        /// Where and why.
        #[source]
        source: message::DecodeError,
    },
    /// The embedded schema does not parse: a bug in the generated file.
    #[error("the embedded protobuf schema is broken: {0}")]
    Schema(&'static str),
}

/// The object in a protobuf body, as JSON with its `apiVersion` and `kind`.
pub fn to_json(body: &[u8]) -> Result<Value, Error> {
    let schema = schema::schema().map_err(Error::Schema)?;
    envelope::object_at_depth(schema, body, 0).map(Value::Object)
}
pub mod writer;

#[cfg(test)]
mod tests;
