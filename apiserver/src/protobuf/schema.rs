//! The Kubernetes protobuf messages as data: for each message, its fields by number with
//! their JSON names and types. Read from `schema.txt`, which
//! `scripts/gen-protobuf-schema.py` generates from upstream's `generated.proto` files and Go
//! struct tags (the file's format is described in the script).

use std::collections::HashMap;
use std::sync::LazyLock;

use super::special::Special;

/// The generated schema, embedded.
const SCHEMA_TEXT: &str = include_str!("schema.txt");

static SCHEMA: LazyLock<Result<Schema, String>> = LazyLock::new(|| Schema::parse(SCHEMA_TEXT));

/// The embedded schema; an error only if the generated file is broken (a bug, reported as a
/// 500 by the caller).
pub fn schema() -> Result<&'static Schema, &'static str> {
    SCHEMA.as_ref().map_err(String::as_str)
}

/// Index of a message in [`Schema::messages`].
pub type MessageId = usize;

/// A protobuf scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    /// `string`.
    String,
    /// `bytes`: base64 in JSON, as Go writes `[]byte`.
    Bytes,
    /// `bool`.
    Bool,
    /// `int32`.
    Int32,
    /// `int64`.
    Int64,
    /// `uint32`.
    Uint32,
    /// `uint64`.
    Uint64,
    /// `sint32` (zigzag).
    Sint32,
    /// `sint64` (zigzag).
    Sint64,
    /// `fixed32`.
    Fixed32,
    /// `fixed64`.
    Fixed64,
    /// `sfixed32`.
    Sfixed32,
    /// `sfixed64`.
    Sfixed64,
    /// `double`.
    Double,
    /// `float`.
    Float,
}

impl Scalar {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Scalar::String,
            "bytes" => Scalar::Bytes,
            "bool" => Scalar::Bool,
            "int32" => Scalar::Int32,
            "int64" => Scalar::Int64,
            "uint32" => Scalar::Uint32,
            "uint64" => Scalar::Uint64,
            "sint32" => Scalar::Sint32,
            "sint64" => Scalar::Sint64,
            "fixed32" => Scalar::Fixed32,
            "fixed64" => Scalar::Fixed64,
            "sfixed32" => Scalar::Sfixed32,
            "sfixed64" => Scalar::Sfixed64,
            "double" => Scalar::Double,
            "float" => Scalar::Float,
            _ => return None,
        })
    }
}

/// The type of a field (or of a map's key or value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A scalar.
    Scalar(Scalar),
    /// An embedded message.
    Message(MessageId),
    /// `map<K, V>`: on the wire, repeated entries `{key = 1, value = 2}`.
    Map(Box<FieldType>, Box<FieldType>),
}

/// One field of a message.
#[derive(Clone, Debug)]
pub struct Field {
    /// The field number.
    pub number: u32,
    /// The JSON name; `None` for a field Go never writes as JSON (`json:"-"`).
    pub json: Option<String>,
    /// The type.
    pub ty: FieldType,
    /// `repeated`.
    pub repeated: bool,
    /// Whether a zero value (`""`, `0`, `false`) is written: the Go field is a pointer, so
    /// zero differs from unset (`replicas: 0`), or has no `omitempty`.
    pub keep_zero: bool,
    /// An embedded Go struct whose fields appear in the parent's JSON object (`,inline`).
    pub inline: bool,
}

/// One message.
#[derive(Clone, Debug)]
pub struct Message {
    /// `alias.Name`, as `core.ConfigMap`.
    pub name: String,
    /// A wrapper of a Go slice type (`+protobuf.nullable=true`): its JSON is its items.
    pub list: bool,
    /// A message whose JSON form is not an object of its fields (`Time`, `Quantity`, ...).
    pub special: Option<Special>,
    /// The fields, in the Go struct's order (the order of the JSON object).
    pub fields: Vec<Field>,
    by_number: HashMap<u32, usize>,
}

impl Message {
    /// The field with this number, if the message has one.
    pub fn field(&self, number: u32) -> Option<&Field> {
        self.field_index(number).map(|i| &self.fields[i])
    }

    /// The index in [`Message::fields`] of the field with this number.
    pub fn field_index(&self, number: u32) -> Option<usize> {
        self.by_number.get(&number).copied()
    }

    /// The name without the package alias: the Go type's (and the kind's) name.
    pub fn short_name(&self) -> &str {
        self.name.rsplit('.').next().unwrap_or(&self.name)
    }
}

/// One proto package.
#[derive(Clone, Debug)]
struct Package {
    alias: String,
    /// The `apiVersion` of its kinds; `None` for type-only packages (`resource`, `intstr`).
    api_version: Option<String>,
}

/// Every message of the served packages.
#[derive(Debug)]
pub struct Schema {
    /// The messages, indexed by [`MessageId`].
    pub messages: Vec<Message>,
    packages: Vec<Package>,
    by_name: HashMap<String, MessageId>,
}

/// Kinds every group version registers besides its own (upstream's `AddToGroupVersion`),
/// whose messages live in `meta.k8s.io/v1`.
const META_KINDS_IN_EVERY_VERSION: &[&str] = &[
    "DeleteOptions",
    "CreateOptions",
    "UpdateOptions",
    "PatchOptions",
    "GetOptions",
    "ListOptions",
    "WatchEvent",
];

impl Schema {
    /// The message of a kind in an `apiVersion`, if that version registers it.
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<MessageId> {
        let package = self
            .packages
            .iter()
            .find(|p| p.api_version.as_deref() == Some(api_version))?;
        self.message_id(&format!("{}.{kind}", package.alias))
            .or_else(|| {
                META_KINDS_IN_EVERY_VERSION
                    .contains(&kind)
                    .then(|| self.message_id(&format!("meta.{kind}")))
                    .flatten()
            })
    }

    /// The message named `alias.Name`.
    pub fn message_id(&self, name: &str) -> Option<MessageId> {
        self.by_name.get(name).copied()
    }

    /// Parses the generated text. Two passes: names first, so fields may refer to messages
    /// declared later.
    pub fn parse(text: &str) -> Result<Schema, String> {
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        let mut packages = Vec::new();
        let mut messages = Vec::new();
        let mut by_name = HashMap::new();
        for &(n, line) in &lines {
            if line.starts_with(' ') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["package", alias, _proto, api_version] => packages.push(Package {
                    alias: alias.to_string(),
                    api_version: (*api_version != "-").then(|| api_version.to_string()),
                }),
                ["message", name, rest @ ..] => {
                    by_name.insert(name.to_string(), messages.len());
                    messages.push(Message {
                        name: name.to_string(),
                        list: rest == ["list"],
                        special: if rest == ["list"] {
                            Some(Special::List)
                        } else {
                            Special::of(name)
                        },
                        fields: Vec::new(),
                        by_number: HashMap::new(),
                    });
                }
                _ => return Err(format!("schema.txt line {n}: unexpected {line:?}")),
            }
        }
        let mut current: Option<MessageId> = None;
        for &(n, line) in &lines {
            if let Some(name) = line.strip_prefix("message ") {
                current = name
                    .split_whitespace()
                    .next()
                    .and_then(|n| by_name.get(n))
                    .copied();
                continue;
            }
            if !line.starts_with(' ') {
                continue;
            }
            let id =
                current.ok_or_else(|| format!("schema.txt line {n}: a field outside a message"))?;
            let field =
                parse_field(line, &by_name).map_err(|e| format!("schema.txt line {n}: {e}"))?;
            let message = &mut messages[id];
            message.by_number.insert(field.number, message.fields.len());
            message.fields.push(field);
        }
        Ok(Schema {
            messages,
            packages,
            by_name,
        })
    }
}

fn parse_field(line: &str, by_name: &HashMap<String, MessageId>) -> Result<Field, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (number, json, ty, flags) = match words.as_slice() {
        [number, json, ty] => (number, json, ty, ""),
        [number, json, ty, flags] => (number, json, ty, *flags),
        _ => return Err(format!("bad field {line:?}")),
    };
    let number = number
        .parse()
        .map_err(|e| format!("bad field number {number:?}: {e}"))?;
    Ok(Field {
        number,
        json: (*json != "-").then(|| json.to_string()),
        ty: parse_type(ty, by_name)?,
        repeated: flags.contains('r'),
        keep_zero: flags.contains('z'),
        inline: flags.contains('i'),
    })
}

fn parse_type(ty: &str, by_name: &HashMap<String, MessageId>) -> Result<FieldType, String> {
    if let Some(inner) = ty.strip_prefix("map<").and_then(|t| t.strip_suffix('>')) {
        let (k, v) = inner
            .split_once(',')
            .ok_or_else(|| format!("bad map type {ty:?}"))?;
        return Ok(FieldType::Map(
            Box::new(parse_type(k, by_name)?),
            Box::new(parse_type(v, by_name)?),
        ));
    }
    if let Some(s) = Scalar::parse(ty) {
        return Ok(FieldType::Scalar(s));
    }
    by_name
        .get(ty)
        .map(|&id| FieldType::Message(id))
        .ok_or_else(|| format!("unknown message {ty:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_schema_parses_and_knows_the_served_kinds() {
        let s = schema().expect("schema.txt parses");
        for (v, kind) in [
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "Namespace"),
            ("apps/v1", "Deployment"),
            ("batch/v1", "CronJob"),
            ("policy/v1", "PodDisruptionBudget"),
            ("scheduling.k8s.io/v1", "PriorityClass"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("v1", "DeleteOptions"),
            ("authentication.k8s.io/v1", "TokenRequest"),
        ] {
            assert!(s.kind(v, kind).is_some(), "{v} {kind}");
        }
        assert!(s.kind("v1", "Deployment").is_none());
        assert!(s.kind("rbac.authorization.k8s.io/v1", "Role").is_none());
    }

    #[test]
    fn fields_carry_json_names_types_and_zero_rules() {
        let s = schema().expect("schema.txt parses");
        let cm = &s.messages[s.kind("v1", "ConfigMap").expect("ConfigMap")];
        let data = cm.field(2).expect("data");
        assert_eq!(data.json.as_deref(), Some("data"));
        assert_eq!(
            data.ty,
            FieldType::Map(
                Box::new(FieldType::Scalar(Scalar::String)),
                Box::new(FieldType::Scalar(Scalar::String))
            )
        );
        let immutable = cm.field(4).expect("immutable");
        assert!(immutable.keep_zero, "*bool: false is not unset");
        let spec = &s.messages[s.message_id("apps.DeploymentSpec").expect("spec")];
        assert!(spec.field(1).expect("replicas").keep_zero);
        assert!(!spec.field(5).expect("minReadySeconds").keep_zero);
        let volume = &s.messages[s.message_id("core.Volume").expect("Volume")];
        assert!(volume.field(2).expect("volumeSource").inline);
        let props = &s.messages[s
            .message_id("apiextensions.JSONSchemaProps")
            .expect("props")];
        assert_eq!(props.field(3).and_then(|f| f.json.as_deref()), Some("$ref"));
        assert!(s.messages[s.message_id("meta.Verbs").expect("Verbs")].list);
    }

    #[test]
    fn a_field_of_an_unknown_message_is_an_error() {
        let err = Schema::parse("package a x.y v1\nmessage a.M\n 1 f a.Missing\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
    }
}
