//! Transcoding hand-built protobuf objects, field numbers taken from upstream's
//! `generated.proto` (see `schema.txt`).

use serde_json::{Value, json};

use super::writer::{MessageWriter as W, envelope};
use super::{Error, to_json};

fn meta(name: &str) -> W {
    // gogo writes every non-pointer field, zero or not, and a zero Time as empty bytes.
    W::new()
        .string(1, name)
        .string(2, "")
        .string(3, "")
        .varint(7, 0)
        .raw(8, &[])
}

#[test]
fn configmap_with_zero_metadata_fields_left_out() {
    let cm = W::new()
        .message(
            1,
            meta("settings").map_entry(11, W::new().string(1, "app").string(2, "web")),
        )
        .map_entry(2, W::new().string(1, "a").string(2, "b"))
        .map_entry(2, W::new().string(1, "empty"))
        .map_entry(3, W::new().string(1, "bin").raw(2, &[0, 1, 2]));
    let got = to_json(&envelope("v1", "ConfigMap", &cm)).expect("decodes");
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "labels": {"app": "web"}},
            "data": {"a": "b", "empty": ""},
            "binaryData": {"bin": "AAEC"},
        })
    );
}

#[test]
fn secret_bytes_are_base64_and_pointer_false_is_kept() {
    let secret = W::new()
        .message(1, meta("creds"))
        .map_entry(2, W::new().string(1, "pw").raw(2, b"hunter2"))
        .string(3, "Opaque")
        .varint(5, 0);
    let got = to_json(&envelope("v1", "Secret", &secret)).expect("decodes");
    assert_eq!(got["data"], json!({"pw": "aHVudGVyMg=="}));
    assert_eq!(got["type"], "Opaque");
    // `immutable` is a *bool: false is not the same as unset.
    assert_eq!(got["immutable"], false);
}

#[test]
fn priority_class_value_zero_is_kept_and_global_default_false_left_out() {
    // `kubectl create priorityclass` sends value, globalDefault and preemptionPolicy.
    let pc = W::new()
        .message(1, meta("batch"))
        .varint(2, 0)
        .varint(3, 0)
        .string(4, "")
        .string(5, "Never");
    let got = to_json(&envelope("scheduling.k8s.io/v1", "PriorityClass", &pc)).expect("decodes");
    assert_eq!(
        got,
        json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "batch"},
            "value": 0,
            "preemptionPolicy": "Never",
        })
    );
}

fn deployment() -> W {
    let container = W::new()
        .string(1, "web")
        .string(2, "nginx:1.27")
        .message(
            6,
            W::new()
                .string(1, "")
                .varint(2, 0)
                .varint(3, 80)
                .string(4, "TCP"),
        )
        .message(
            8,
            W::new()
                .map_entry(
                    1,
                    W::new()
                        .string(1, "cpu")
                        .message(2, W::new().string(1, "500m")),
                )
                .map_entry(
                    2,
                    W::new()
                        .string(1, "memory")
                        .message(2, W::new().string(1, "64Mi")),
                ),
        )
        .message(
            10,
            W::new()
                // ProbeHandler (inline) {httpGet = 2 {path, port = IntOrString "http"}}
                .message(
                    1,
                    W::new().message(
                        2,
                        W::new()
                            .string(1, "/healthz")
                            .message(2, W::new().varint(1, 1).string(3, "http")),
                    ),
                )
                .varint(2, 3),
        )
        .string(14, "")
        .varint(16, 0);
    let pod_spec = W::new()
        .message(
            1,
            // Volume {name, VolumeSource (inline) {configMap = 19 {LocalObjectReference (inline) {name}}}}
            W::new().string(1, "config").message(
                2,
                W::new().message(19, W::new().message(1, W::new().string(1, "settings"))),
            ),
        )
        .message(2, container)
        .string(3, "");
    let labels = || W::new().string(1, "app").string(2, "web");
    W::new()
        .message(1, meta("web"))
        .message(
            2,
            W::new()
                .varint(1, 0)
                .message(2, W::new().map_entry(1, labels()))
                .message(
                    3,
                    W::new()
                        .message(1, meta("").map_entry(11, labels()))
                        .message(2, pod_spec),
                )
                .message(
                    4,
                    W::new().string(1, "RollingUpdate").message(
                        2,
                        W::new()
                            .message(1, W::new().varint(1, 0).varint(2, 0))
                            .message(2, W::new().varint(1, 1).string(3, "25%")),
                    ),
                )
                .varint(5, 0),
        )
        .message(3, W::new())
}

#[test]
fn deployment_nested_messages_quantities_int_or_strings_and_inline_structs() {
    let got = to_json(&envelope("apps/v1", "Deployment", &deployment())).expect("decodes");
    assert_eq!(
        got,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                // *int32: an explicit 0 is kept.
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "volumes": [{"name": "config", "configMap": {"name": "settings"}}],
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "resources": {
                                "limits": {"cpu": "500m"},
                                "requests": {"memory": "64Mi"},
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "initialDelaySeconds": 3,
                            },
                        }],
                    },
                },
                "strategy": {
                    "type": "RollingUpdate",
                    // *IntOrString: 0 is kept.
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
                },
            },
            "status": {},
        })
    );
}

#[test]
fn times_durations_and_int64_are_json_forms() {
    let event_time = W::new().varint(1, 1_700_000_000).varint(2, 123_456_000);
    let lease = W::new()
        .message(
            1,
            meta("lock").message(8, W::new().varint(1, 1_700_000_000).varint(2, 999)),
        )
        .message(
            2,
            W::new()
                .string(1, "me")
                .varint(2, 15)
                .message(3, event_time),
        );
    let got = to_json(&envelope("coordination.k8s.io/v1", "Lease", &lease)).expect("decodes");
    assert_eq!(got["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(got["spec"]["holderIdentity"], "me");
    assert_eq!(got["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(got["spec"]["acquireTime"], "2023-11-14T22:13:20.123456Z");
}

#[test]
fn crd_schemas_use_their_own_json_forms() {
    // JSONSchemaProps {type = 5 "object", properties = 29 {"n": {type "integer", maximum = 9 5}},
    // additionalProperties = 30 {allows false}, default = 8 {raw "{}"}}.
    let props = W::new()
        .string(5, "object")
        .map_entry(
            29,
            W::new()
                .string(1, "n")
                .message(2, W::new().string(5, "integer").double(9, 5.0)),
        )
        .message(30, W::new().varint(1, 0))
        .message(8, W::new().raw(1, b"{}"))
        .message(20, W::new().raw(1, b"\"a\""))
        .message(20, W::new());
    let got = super::message::to_object(
        super::schema::schema().expect("schema"),
        super::schema::schema()
            .expect("schema")
            .message_id("apiextensions.JSONSchemaProps")
            .expect("props"),
        props.bytes(),
        0,
    )
    .expect("decodes");
    assert_eq!(
        Value::Object(got),
        json!({
            "type": "object",
            "properties": {"n": {"type": "integer", "maximum": 5}},
            "additionalProperties": false,
            "default": {},
            "enum": ["a", null],
        })
    );
}

#[test]
fn a_raw_extension_embeds_its_json() {
    let rev = W::new()
        .message(1, meta("web-1"))
        .message(2, W::new().raw(1, br#"{"spec":{"template":{}}}"#))
        .varint(3, 1);
    let got = to_json(&envelope("apps/v1", "ControllerRevision", &rev)).expect("decodes");
    assert_eq!(got["data"], json!({"spec": {"template": {}}}));
    assert_eq!(got["revision"], 1);
}

#[test]
fn unknown_fields_are_skipped_and_packed_lists_read() {
    // PodSecurityContext.supplementalGroups = 4 (repeated int64), packed.
    let pod = W::new().message(1, meta("p")).message(
        2,
        W::new()
            .message(14, W::new().raw(4, &[1, 2, 0x96, 0x01]))
            .string(999, "from the future"),
    );
    let got = to_json(&envelope("v1", "Pod", &pod)).expect("decodes");
    assert_eq!(
        got["spec"]["securityContext"]["supplementalGroups"],
        json!([1, 2, 150])
    );
}

#[test]
fn an_unregistered_kind_is_named() {
    let err = to_json(&envelope("v1", "Frobnicator", &W::new())).unwrap_err();
    assert!(matches!(err, Error::NotRegistered { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "no kind \"Frobnicator\" is registered for version \"v1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
    );
    let err = to_json(&envelope("rbac.authorization.k8s.io/v1", "Role", &W::new())).unwrap_err();
    assert!(matches!(err, Error::NotRegistered { .. }), "{err}");
}

#[test]
fn malformed_bodies_say_where() {
    assert!(matches!(
        to_json(b"{\"kind\":\"ConfigMap\"}"),
        Err(Error::NotProtobuf)
    ));
    // metadata.name (a string) sent as a varint.
    let bad = W::new().message(1, W::new().varint(1, 7));
    let err = to_json(&envelope("v1", "ConfigMap", &bad)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the ConfigMap message is malformed: at metadata.name: field 1 needs wire type length-delimited, found varint"
    );
    // A map entry cut short inside data["a"].
    let mut body = envelope(
        "v1",
        "ConfigMap",
        &W::new().raw(2, &[0x0a, 0x01, b'a', 0x12, 0x05, b'x']),
    );
    let err = to_json(&body).unwrap_err();
    assert!(
        err.to_string().contains("at data: unexpected end of data"),
        "{err}"
    );
    body.truncate(body.len() - 3);
    assert!(to_json(&body).is_err());
    let err = to_json(b"k8s\0").unwrap_err();
    assert!(matches!(err, Error::MissingKind), "{err}");
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let mut props = W::new().string(5, "object");
    for _ in 0..200 {
        props = W::new().map_entry(29, W::new().string(1, "x").message(2, props));
    }
    let crd = W::new().message(
        2,
        W::new().message(
            7,
            W::new()
                .string(1, "v1")
                .message(4, W::new().message(1, props)),
        ),
    );
    let err = to_json(&envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &crd,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("nested deeper than"), "{err}");
}
