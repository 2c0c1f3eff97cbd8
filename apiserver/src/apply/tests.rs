//! The apply semantics on plain objects, as structured-merge-diff's tests describe them.

use super::*;
use serde_json::json;

fn applier<'a>(manager: &'a str, force: bool) -> Applier<'a> {
    Applier {
        manager,
        api_version: "apps/v1",
        subresource: "",
        force,
        now: "2026-01-01T00:00:00Z",
    }
}

fn deployment() -> Schema<'static> {
    Schema::for_kind("apps", "Deployment")
}

fn config(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "nginx", "image": image}]}}}
    })
}

#[test]
fn first_apply_owns_every_applied_field() {
    let out = applier("a", false)
        .apply_to(&Value::Null, &config(1, "nginx:1"), deployment())
        .unwrap();
    let entries = managed::decode(&out);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].operation, "Apply");
    assert_eq!(
        fieldpath::to_fields_v1(&entries[0].fields),
        json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
    );
}

#[test]
fn conflicting_apply_names_each_field_and_manager() {
    let live = applier("a", false)
        .apply_to(&Value::Null, &config(1, "nginx:1"), deployment())
        .unwrap();
    let err = applier("b", false)
        .apply_to(&live, &config(2, "nginx:2"), deployment())
        .unwrap_err();
    assert_eq!(err.code, 409);
    let fields: Vec<&str> = err.causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            ".spec.replicas",
            ".spec.template.spec.containers[name=\"nginx\"].image"
        ]
    );
    assert!(
        err.causes
            .iter()
            .all(|c| c.message == "conflict with \"a\"" && c.reason == "FieldManagerConflict")
    );
    assert!(
        err.message
            .starts_with("Apply failed with 2 conflicts: conflicts with \"a\":"),
        "{}",
        err.message
    );
}

#[test]
fn applying_the_same_value_shares_ownership_without_conflict() {
    let live = applier("a", false)
        .apply_to(&Value::Null, &config(1, "nginx:1"), deployment())
        .unwrap();
    let out = applier("b", false)
        .apply_to(&live, &config(1, "nginx:1"), deployment())
        .unwrap();
    assert_eq!(managed::decode(&out).len(), 2);
}

#[test]
fn force_takes_ownership_of_conflicting_fields() {
    let live = applier("a", false)
        .apply_to(&Value::Null, &config(1, "nginx:1"), deployment())
        .unwrap();
    let out = applier("b", true)
        .apply_to(&live, &config(3, "nginx:1"), deployment())
        .unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    let entries = managed::decode(&out);
    let a = entries.iter().find(|e| e.manager == "a").unwrap();
    assert!(!a.fields.contains(&vec![
        PathElement::Field("spec".into()),
        PathElement::Field("replicas".into())
    ]));
}

#[test]
fn a_field_no_longer_applied_is_removed_when_owned_alone() {
    let live = applier("a", false)
        .apply_to(&Value::Null, &config(1, "nginx:1"), deployment())
        .unwrap();
    let mut without = config(1, "nginx:1");
    without["spec"].as_object_mut().unwrap().remove("replicas");
    let out = applier("a", false)
        .apply_to(&live, &without, deployment())
        .unwrap();
    assert!(out["spec"].get("replicas").is_none(), "{out}");
}

#[test]
fn a_field_no_longer_applied_is_kept_when_co_owned() {
    let live = applier("a", false)
        .apply_to(&Value::Null, &config(1, "nginx:1"), deployment())
        .unwrap();
    let live = applier("b", false)
        .apply_to(&live, &config(1, "nginx:1"), deployment())
        .unwrap();
    let mut without = config(1, "nginx:1");
    without["spec"].as_object_mut().unwrap().remove("replicas");
    let out = applier("a", false)
        .apply_to(&live, &without, deployment())
        .unwrap();
    assert_eq!(out["spec"]["replicas"], 1);
}

#[test]
fn a_container_no_longer_applied_is_removed_and_the_others_stay() {
    let mut two = config(1, "nginx:1");
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "envoy"}));
    let live = applier("a", false)
        .apply_to(&Value::Null, &two, deployment())
        .unwrap();
    let out = applier("a", false)
        .apply_to(&live, &config(1, "nginx:1"), deployment())
        .unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nginx", "image": "nginx:1"}])
    );
}

#[test]
fn an_update_owner_is_named_with_its_api_version_in_conflicts() {
    let mut live = config(1, "nginx:1");
    managed::record_update(
        &Value::Null,
        &mut live,
        deployment(),
        managed::Writer {
            manager: "kubectl",
            api_version: "apps/v1",
            subresource: "",
            now: "t",
        },
    );
    let err = applier("ctl", false)
        .apply_to(&live, &config(5, "nginx:1"), deployment())
        .unwrap_err();
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        err.causes[0].message,
        "conflict with \"kubectl\" using apps/v1"
    );
}

#[test]
fn custom_resource_lists_are_atomic_unless_the_schema_says_map() {
    let schema_doc = json!({"type": "object", "properties": {"status": {"type": "object", "properties": {
        "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object"}},
        "hosts": {"type": "array", "items": {"type": "string"}}
    }}}});
    let schema = Schema::Json(&schema_doc);
    let applied =
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "hosts": ["a"]}});
    let set: FieldSet = fieldpath::leaves(&applied, schema).into_keys().collect();
    assert_eq!(
        fieldpath::to_fields_v1(&set),
        json!({"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}}, "f:hosts": {}}})
    );
}

#[test]
fn yaml_and_json_bodies_both_decode() {
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n";
    assert_eq!(decode_body(yaml).unwrap()["data"]["a"], "1");
    let json_body =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":null}"#;
    assert!(decode_body(json_body).unwrap().get("data").is_none());
}

#[test]
fn an_applied_container_without_a_name_is_named_in_the_error() {
    let applied = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    assert_eq!(
        fieldpath::missing_key(&applied, deployment()).as_deref(),
        Some(
            ".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\""
        )
    );
}

#[test]
fn the_first_apply_to_an_unowned_object_conflicts_with_before_first_apply() {
    let live = config(1, "nginx:1");
    let err = applier("a", false)
        .apply_to(&live, &config(2, "nginx:1"), deployment())
        .unwrap_err();
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let out = applier("a", false)
        .apply_to(&live, &config(1, "nginx:1"), deployment())
        .unwrap();
    let managers: Vec<String> = managed::decode(&out)
        .into_iter()
        .map(|e| e.manager)
        .collect();
    assert_eq!(managers, ["a", "before-first-apply"]);
}
