//! [`changed_leaves`] finds what comparing every leaf of both objects finds, on built-in and
//! custom schemas, hand-written changes and many generated ones.

use super::*;
use serde_json::json;

/// What `record_update` computed before [`changed_leaves`]: every leaf of both objects,
/// compared one by one.
fn comparing_every_leaf(old: &Value, new: &Value, schema: Schema<'_>) -> ChangedLeaves {
    let before = leaves(old, schema);
    let after = leaves(new, schema);
    ChangedLeaves {
        changed: after
            .iter()
            .filter(|(p, v)| before.get(*p) != Some(*v))
            .map(|(p, _)| p.clone())
            .collect(),
        removed: before
            .keys()
            .filter(|p| !after.contains_key(*p))
            .cloned()
            .collect(),
    }
}

/// Removes the field `key` of `v`.
fn remove(v: &mut Value, key: &str) {
    if let Some(m) = v.as_object_mut() {
        m.remove(key);
    }
}

/// Edits the list `v` (a pod's list: never another value).
fn edit_list(v: &mut Value, edit: impl FnOnce(&mut Vec<Value>)) {
    if let Some(items) = v.as_array_mut() {
        edit(items);
    }
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-0", "namespace": "default", "resourceVersion": "7", "uid": "u1",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"a": "1"},
            "finalizers": ["x/y", "z/w"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u0"}],
            "managedFields": [{"manager": "m", "operation": "Update", "fieldsV1": {}}]
        },
        "spec": {
            "nodeName": "n1",
            "nodeSelector": {"disk": "ssd", "zone": "a"},
            "containers": [
                {"name": "nginx", "image": "nginx:1",
                    "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                    "env": [{"name": "A", "value": "1"}],
                    "resources": {"requests": {"cpu": "100m"}}},
                {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]}
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
        },
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "t0"}
            ],
            "containerStatuses": [{"name": "nginx", "ready": false, "restartCount": 0}],
            "podIPs": [{"ip": "10.0.0.1"}]
        }
    })
}

/// Hand-written changes of [`pod`], each a function of a copy of it.
/// One named change of an object.
type Change = (&'static str, Box<dyn Fn(&mut Value)>);

fn pod_changes() -> Vec<Change> {
    vec![
        ("nothing", Box::new(|_| {})),
        (
            "server metadata only",
            Box::new(|p| {
                p["metadata"]["resourceVersion"] = json!("8");
                p["metadata"]["managedFields"] = json!([]);
            }),
        ),
        (
            "a label changes",
            Box::new(|p| p["metadata"]["labels"]["app"] = json!("api")),
        ),
        (
            "a label is added",
            Box::new(|p| p["metadata"]["labels"]["new"] = json!("x")),
        ),
        (
            "a label is removed",
            Box::new(|p| remove(&mut p["metadata"]["labels"], "tier")),
        ),
        (
            "labels emptied",
            Box::new(|p| p["metadata"]["labels"] = json!({})),
        ),
        (
            "labels removed",
            Box::new(|p| remove(&mut p["metadata"], "labels")),
        ),
        (
            "labels null",
            Box::new(|p| p["metadata"]["labels"] = Value::Null),
        ),
        (
            "a finalizer is added",
            Box::new(|p| p["metadata"]["finalizers"] = json!(["x/y", "z/w", "q"])),
        ),
        (
            "finalizers reordered",
            Box::new(|p| p["metadata"]["finalizers"] = json!(["z/w", "x/y"])),
        ),
        (
            "a repeated finalizer",
            Box::new(|p| p["metadata"]["finalizers"] = json!(["x/y", "x/y"])),
        ),
        (
            "an atomic map entry changes",
            Box::new(|p| p["spec"]["nodeSelector"]["zone"] = json!("b")),
        ),
        (
            "an atomic struct deep inside changes",
            Box::new(|p| {
                p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                    ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] = json!(["b"]);
            }),
        ),
        (
            "an image changes",
            Box::new(|p| p["spec"]["containers"][1]["image"] = json!("busybox:2")),
        ),
        (
            "containers reordered",
            Box::new(|p| edit_list(&mut p["spec"]["containers"], |c| c.reverse())),
        ),
        (
            "a container is added",
            Box::new(|p| {
                edit_list(&mut p["spec"]["containers"], |c| {
                    c.push(json!({"name": "third", "image": "x"}))
                })
            }),
        ),
        (
            "a container is removed",
            Box::new(|p| {
                edit_list(&mut p["spec"]["containers"], |c| {
                    c.remove(0);
                })
            }),
        ),
        (
            "a container loses its name",
            Box::new(|p| remove(&mut p["spec"]["containers"][1], "name")),
        ),
        (
            "two containers share a name",
            Box::new(|p| p["spec"]["containers"][1]["name"] = json!("nginx")),
        ),
        (
            "a port gets its defaulted protocol",
            Box::new(|p| {
                p["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
            }),
        ),
        (
            "a port repeated with and without its default",
            Box::new(|p| {
                if let Some(ports) = p["spec"]["containers"][0]["ports"].as_array_mut() {
                    ports.push(json!({"containerPort": 80, "protocol": "TCP", "name": "http"}));
                }
            }),
        ),
        (
            "an env value changes",
            Box::new(|p| p["spec"]["containers"][0]["env"][0]["value"] = json!("2")),
        ),
        (
            "a nested request changes",
            Box::new(|p| {
                p["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("200m");
            }),
        ),
        (
            "args change (an atomic list)",
            Box::new(|p| p["spec"]["containers"][1]["args"] = json!(["sleep"])),
        ),
        (
            "a volume becomes empty",
            Box::new(|p| p["spec"]["volumes"][0] = json!({"name": "data"})),
        ),
        (
            "an empty object gains a field",
            Box::new(|p| {
                p["spec"]["volumes"][0]["emptyDir"] = json!({"medium": "Memory"});
            }),
        ),
        (
            "a scalar becomes an object",
            Box::new(|p| p["spec"]["nodeName"] = json!({"a": 1})),
        ),
        (
            "a list becomes a scalar",
            Box::new(|p| p["spec"]["containers"] = json!("none")),
        ),
        (
            "metadata becomes a scalar",
            Box::new(|p| p["metadata"] = json!("odd")),
        ),
        (
            "the phase changes",
            Box::new(|p| p["status"]["phase"] = json!("Running")),
        ),
        (
            "a condition flips",
            Box::new(|p| {
                p["status"]["conditions"][1]["status"] = json!("True");
                p["status"]["conditions"][1]["lastTransitionTime"] = json!("t1");
            }),
        ),
        (
            "a condition is added",
            Box::new(|p| {
                edit_list(&mut p["status"]["conditions"], |c| {
                    c.push(json!({"type": "Initialized", "status": "True"}))
                })
            }),
        ),
        (
            "conditions reordered",
            Box::new(|p| edit_list(&mut p["status"]["conditions"], |c| c.swap(0, 1))),
        ),
        (
            "a condition is removed",
            Box::new(|p| {
                edit_list(&mut p["status"]["conditions"], |c| {
                    c.remove(0);
                })
            }),
        ),
        (
            "container statuses change (an atomic list)",
            Box::new(|p| {
                p["status"]["containerStatuses"][0]["ready"] = json!(true);
            }),
        ),
        ("status removed", Box::new(|p| remove(p, "status"))),
        ("the kind changes", Box::new(|p| p["kind"] = json!("Other"))),
    ]
}

/// A custom resource schema with a set, an atomic map and a list keyed by two fields.
fn crd_schema() -> Value {
    json!({"properties": {"spec": {"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
        "routes": {"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["host", "port"],
            "items": {"type": "object", "properties": {
                "weights": {"type": "object", "additionalProperties": {"type": "integer"}}}}}
    }}}})
}

fn custom() -> Value {
    json!({"apiVersion": "x.io/v1", "kind": "Route", "metadata": {"name": "r"},
        "spec": {"tags": ["a", "b"], "selector": {"app": "web"},
            "routes": [{"host": "h", "port": 80, "weights": {"a": 1}}, {"host": "h", "port": 81}]}})
}

/// A small deterministic generator, so the generated cases are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

/// Changes one value somewhere in `v`: replaces, removes, adds, duplicates or reorders.
fn mutate(v: &mut Value, rng: &mut Lcg) {
    let descend = rng.below(3) != 0;
    match v {
        Value::Object(m) if !m.is_empty() && descend => {
            let k = m
                .keys()
                .nth(rng.below(m.len()))
                .cloned()
                .unwrap_or_default();
            if let Some(child) = m.get_mut(&k) {
                mutate(child, rng);
            }
        }
        Value::Array(a) if !a.is_empty() && descend => {
            let i = rng.below(a.len());
            mutate(&mut a[i], rng);
        }
        Value::Object(m) => match rng.below(4) {
            0 if !m.is_empty() => {
                let k = m
                    .keys()
                    .nth(rng.below(m.len()))
                    .cloned()
                    .unwrap_or_default();
                m.remove(&k);
            }
            1 => {
                m.insert(format!("n{}", rng.below(3)), json!(rng.below(2)));
            }
            2 => *v = json!({}),
            _ => *v = Value::Null,
        },
        Value::Array(a) => match rng.below(4) {
            0 if !a.is_empty() => {
                a.remove(rng.below(a.len()));
            }
            1 if !a.is_empty() => {
                let i = rng.below(a.len());
                let copy = a[i].clone();
                a.push(copy);
            }
            2 => a.reverse(),
            _ => a.push(json!({"name": format!("g{}", rng.below(3)), "type": "T"})),
        },
        _ => {
            *v = match rng.below(4) {
                0 => json!(rng.below(3)),
                1 => json!(format!("s{}", rng.below(3))),
                2 => json!({"k": rng.below(2)}),
                _ => Value::Null,
            }
        }
    }
}

#[test]
fn changed_leaves_agree_with_comparing_every_leaf() {
    let schema = Schema::for_kind("", "Pod");
    let base = pod();
    for (name, change) in pod_changes() {
        let mut new = base.clone();
        change(&mut new);
        for (old, new) in [(&base, &new), (&new, &base)] {
            assert_eq!(
                changed_leaves(old, new, schema),
                comparing_every_leaf(old, new, schema),
                "{name}"
            );
        }
    }
    // A create, and a delete of everything.
    for (old, new) in [(&Value::Null, &base), (&base, &Value::Null)] {
        assert_eq!(
            changed_leaves(old, new, schema),
            comparing_every_leaf(old, new, schema)
        );
    }

    let crd = crd_schema();
    let crd_root = Schema::Json(&crd);
    let mut rng = Lcg(14);
    for (base, schema) in [(pod(), schema), (custom(), crd_root)] {
        for round in 0..400 {
            let mut new = base.clone();
            for _ in 0..=rng.below(3) {
                mutate(&mut new, &mut rng);
            }
            let expected = comparing_every_leaf(&base, &new, schema);
            assert_eq!(
                changed_leaves(&base, &new, schema),
                expected,
                "round {round}: {new}"
            );
            assert_eq!(
                changed_leaves(&new, &base, schema),
                comparing_every_leaf(&new, &base, schema),
                "round {round} reversed: {new}"
            );
        }
    }
}

#[test]
fn a_status_update_reports_only_what_it_changed() {
    let schema = Schema::for_kind("", "Pod");
    let old = pod();
    let mut new = old.clone();
    new["status"]["conditions"][1]["status"] = json!("True");
    new["metadata"]["resourceVersion"] = json!("8");
    let got = changed_leaves(&old, &new, schema);
    let ready = vec![
        PathElement::Field("status".into()),
        PathElement::Field("conditions".into()),
        PathElement::Key("{\"type\":\"Ready\"}".into()),
        PathElement::Field("status".into()),
    ];
    assert_eq!(got.changed, FieldSet::from([ready]));
    assert!(got.removed.is_empty());
}
