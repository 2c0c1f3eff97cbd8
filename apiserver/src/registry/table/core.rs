//! The core group's printers (pods are in [`super::pod`]): nodes, services, endpoints,
//! namespaces, config maps, secrets, service accounts, events, replication controllers,
//! persistent volumes and claims, resource quotas.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{
    Printer, TableColumn, age, container_cells, format_labels, int, items, len, name, since, text,
};

/// (group, resource, printer) of each kind here.
pub static PRINTERS: &[(&str, &str, Printer)] = &[
    ("", "nodes", Printer::new(NODE_COLUMNS, node)),
    ("", "services", Printer::new(SERVICE_COLUMNS, service)),
    ("", "endpoints", Printer::new(ENDPOINTS_COLUMNS, endpoints)),
    ("", "namespaces", Printer::new(NAMESPACE_COLUMNS, namespace)),
    ("", "configmaps", Printer::new(CONFIGMAP_COLUMNS, configmap)),
    ("", "secrets", Printer::new(SECRET_COLUMNS, secret)),
    (
        "",
        "serviceaccounts",
        Printer::new(SERVICEACCOUNT_COLUMNS, serviceaccount),
    ),
    ("", "events", Printer::new(EVENT_COLUMNS, event)),
    (
        "events.k8s.io",
        "events",
        Printer::new(EVENT_COLUMNS, event),
    ),
    (
        "",
        "replicationcontrollers",
        Printer::new(RC_COLUMNS, replicationcontroller),
    ),
    (
        "",
        "persistentvolumes",
        Printer::new(PV_COLUMNS, persistentvolume),
    ),
    (
        "",
        "persistentvolumeclaims",
        Printer::new(PVC_COLUMNS, persistentvolumeclaim),
    ),
    (
        "",
        "resourcequotas",
        Printer::new(QUOTA_COLUMNS, resourcequota),
    ),
];

const CONTAINERS: TableColumn = TableColumn::wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: TableColumn = TableColumn::wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.into()
    }
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        "<unknown>".into()
    } else {
        s.into()
    }
}

static NODE_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new("Status", "string", "The status of the node"),
    TableColumn::new("Roles", "string", "The roles of the node"),
    TableColumn::AGE,
    TableColumn::new("Version", "string", "Kubelet Version reported by the node."),
    TableColumn::wide(
        "Internal-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    TableColumn::wide(
        "External-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    TableColumn::wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    TableColumn::wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    TableColumn::wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

/// The node's roles: `node-role.kubernetes.io/<role>` labels and the `kubernetes.io/role`
/// label, sorted (upstream's `findNodeRoles`).
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (k, v) in node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role"
            && let Some(v) = v.as_str().filter(|v| !v.is_empty())
        {
            roles.insert(v.to_string());
        }
    }
    or_none(&roles.into_iter().collect::<Vec<_>>().join(","))
}

fn node_address(node: &Value, type_: &str) -> String {
    items(node, "/status/addresses")
        .iter()
        .find(|a| text(a, "/type") == type_)
        .map(|a| text(a, "/address").to_string())
        .unwrap_or_else(|| "<none>".into())
}

fn node(n: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ready = items(n, "/status/conditions")
        .iter()
        .rfind(|c| text(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, "/status") == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    }];
    if n.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    vec![
        json!(name(n)),
        json!(status.join(",")),
        json!(node_roles(n)),
        json!(age(n, now)),
        json!(text(n, "/status/nodeInfo/kubeletVersion")),
        json!(node_address(n, "InternalIP")),
        json!(node_address(n, "ExternalIP")),
        json!(or_unknown(text(n, "/status/nodeInfo/osImage"))),
        json!(or_unknown(text(n, "/status/nodeInfo/kernelVersion"))),
        json!(or_unknown(text(
            n,
            "/status/nodeInfo/containerRuntimeVersion"
        ))),
    ]
}

static SERVICE_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Type",
        "string",
        "type determines how the Service is exposed. Defaults to ClusterIP.",
    ),
    TableColumn::new(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    TableColumn::new(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    TableColumn::new(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
    ),
    TableColumn::AGE,
    TableColumn::wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];

/// EXTERNAL-IP of a service (`getServiceExternalIP`, wide: load balancer addresses unclipped).
fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = items(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match text(svc, "/spec/type") {
        "ClusterIP" | "NodePort" if !external.is_empty() => external.join(","),
        "ClusterIP" | "NodePort" => "<none>".into(),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = items(svc, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| match (text(i, "/ip"), text(i, "/hostname")) {
                    ("", "") => None,
                    ("", host) => Some(host),
                    (ip, _) => Some(ip),
                })
                .collect();
            let mut all: Vec<&str> = ingress.into_iter().collect();
            if all.is_empty() && external.is_empty() {
                return "<pending>".into();
            }
            all.extend(external);
            all.join(",")
        }
        "ExternalName" => text(svc, "/spec/externalName").into(),
        _ => "<unknown>".into(),
    }
}

fn service(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let cluster_ip = items(svc, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    let ports: Vec<String> = items(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = match text(p, "/protocol") {
                "" => "TCP",
                other => other,
            };
            match int(p, "/nodePort") {
                0 => format!("{}/{protocol}", int(p, "/port")),
                node_port => format!("{}:{node_port}/{protocol}", int(p, "/port")),
            }
        })
        .collect();
    vec![
        json!(name(svc)),
        json!(text(svc, "/spec/type")),
        json!(cluster_ip),
        json!(service_external_ip(svc)),
        json!(or_none(&ports.join(","))),
        json!(age(svc, now)),
        json!(format_labels(svc.pointer("/spec/selector"))),
    ]
}

static ENDPOINTS_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    TableColumn::AGE,
];

/// ENDPOINTS: up to three `ip:port` (or bare IPs without ports) and ` + N more...`
/// (upstream's `formatEndpoints`).
fn format_endpoints(ep: &Value) -> String {
    let subsets = items(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    let mut more = false;
    let mut push = |list: &mut Vec<String>, entry: String| {
        if list.len() == MAX {
            more = true;
            return false;
        }
        list.push(entry);
        true
    };
    for ss in subsets {
        let addresses = items(ss, "/addresses");
        let ports = items(ss, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if !push(&mut list, text(a, "/ip").to_string()) {
                    break;
                }
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                let ip = text(a, "/ip");
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                if !push(&mut list, format!("{host}:{}", int(port, "/port"))) {
                    break;
                }
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn endpoints(ep: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(ep)),
        json!(format_endpoints(ep)),
        json!(age(ep, now)),
    ]
}

static NAMESPACE_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new("Status", "string", "The status of the namespace"),
    TableColumn::AGE,
];

fn namespace(ns: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(ns)),
        json!(text(ns, "/status/phase")),
        json!(age(ns, now)),
    ]
}

static CONFIGMAP_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new("Data", "string", "Data contains the configuration data."),
    TableColumn::AGE,
];

fn configmap(cm: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(cm)),
        json!(len(cm, "/data") + len(cm, "/binaryData")),
        json!(age(cm, now)),
    ]
}

static SECRET_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    TableColumn::new("Data", "string", "Data contains the secret data."),
    TableColumn::AGE,
];

fn secret(s: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(s)),
        json!(text(s, "/type")),
        json!(len(s, "/data")),
        json!(age(s, now)),
    ]
}

static SERVICEACCOUNT_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    TableColumn::AGE,
];

fn serviceaccount(sa: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(sa)),
        json!(len(sa, "/secrets")),
        json!(age(sa, now)),
    ]
}

static EVENT_COLUMNS: &[TableColumn] = &[
    TableColumn::new(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    TableColumn::new(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    TableColumn::new(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    TableColumn::new("Object", "string", "The object that this event is about."),
    TableColumn::wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    ),
    TableColumn::wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    TableColumn::new(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    TableColumn::wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    TableColumn::wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
    ),
    TableColumn {
        priority: 1,
        ..TableColumn::NAME
    },
];

/// An event's fields under their core/v1 names, from either core/v1 or events.k8s.io/v1.
struct EventFields<'a> {
    involved: Option<&'a Value>,
    first: &'a str,
    last: &'a str,
    count: i64,
    source_component: &'a str,
    source_host: &'a str,
    message: &'a str,
}

impl<'a> EventFields<'a> {
    fn of(ev: &'a Value) -> Self {
        let api_version = text(ev, "/apiVersion");
        if api_version.starts_with("events.k8s.io/") {
            EventFields {
                involved: ev.get("regarding"),
                first: text(ev, "/deprecatedFirstTimestamp"),
                last: text(ev, "/deprecatedLastTimestamp"),
                count: int(ev, "/deprecatedCount"),
                source_component: text(ev, "/deprecatedSource/component"),
                source_host: text(ev, "/deprecatedSource/host"),
                message: text(ev, "/note"),
            }
        } else {
            EventFields {
                involved: ev.get("involvedObject"),
                first: text(ev, "/firstTimestamp"),
                last: text(ev, "/lastTimestamp"),
                count: int(ev, "/count"),
                source_component: text(ev, "/source/component"),
                source_host: text(ev, "/source/host"),
                message: text(ev, "/message"),
            }
        }
    }
}

/// The reporting controller: `reportingComponent` in core/v1, `reportingController` in
/// events.k8s.io/v1.
fn reporting_controller(ev: &Value) -> &str {
    match text(ev, "/reportingController") {
        "" => text(ev, "/reportingComponent"),
        c => c,
    }
}

fn event(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let f = EventFields::of(ev);
    fn present(s: &str) -> Option<&str> {
        (!s.is_empty()).then_some(s)
    }
    let first = match present(f.first) {
        Some(t) => since(Some(t), now),
        None => since(present(text(ev, "/eventTime")), now),
    };
    let mut last = match present(f.last) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = f.count;
    if let Some(series) = ev.get("series").filter(|s| s.is_object()) {
        last = since(present(text(series, "/lastObservedTime")), now);
        count = int(series, "/count");
    } else if count == 0 {
        // Singleton events of the new API have no count.
        count = 1;
    }
    let kind = f
        .involved
        .map(|o| text(o, "/kind").to_lowercase())
        .unwrap_or_default();
    let target = match f.involved.map(|o| text(o, "/name")).unwrap_or("") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = match f.source_component {
        "" => reporting_controller(ev),
        c => c,
    };
    let instance = match f.source_host {
        "" => text(ev, "/reportingInstance"),
        h => h,
    };
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(text(ev, "/type")),
        json!(text(ev, "/reason")),
        json!(target),
        json!(f.involved.map(|o| text(o, "/fieldPath")).unwrap_or("")),
        json!(source),
        json!(f.message.trim()),
        json!(first),
        json!(count),
        json!(name(ev)),
    ]
}

static RC_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
    ),
    TableColumn::new(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    TableColumn::new(
        "Ready",
        "integer",
        "The number of ready replicas for this replication controller.",
    ),
    TableColumn::AGE,
    CONTAINERS,
    IMAGES,
    TableColumn::wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the Replicas count.",
    ),
];

fn replicationcontroller(rc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = container_cells(rc.pointer("/spec/template/spec"));
    vec![
        json!(name(rc)),
        json!(
            rc.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ),
        json!(int(rc, "/status/replicas")),
        json!(int(rc, "/status/readyReplicas")),
        json!(age(rc, now)),
        json!(containers),
        json!(images),
        json!(format_labels(rc.pointer("/spec/selector"))),
    ]
}

static PV_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Capacity",
        "string",
        "capacity is the description of the persistent volume's resources and capacity.",
    ),
    TableColumn::new(
        "Access Modes",
        "string",
        "accessModes contains all ways the volume can be mounted.",
    ),
    TableColumn::new(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
    ),
    TableColumn::new(
        "Status",
        "string",
        "phase indicates if a volume is available, bound to a claim, or released by a claim.",
    ),
    TableColumn::new(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    TableColumn::new("StorageClass", "string", "StorageClass of the pv"),
    TableColumn::new(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
    ),
    TableColumn::new(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
    ),
    TableColumn::AGE,
    TableColumn::wide(
        "VolumeMode",
        "string",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
    ),
];

/// Access modes in upstream's short form and fixed order (`GetAccessModesAsString`).
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| has(long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class: the beta annotation, else `spec.storageClassName`.
fn storage_class(obj: &Value) -> &str {
    match obj
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str)
    {
        Some(class) => class,
        None => text(obj, "/spec/storageClassName"),
    }
}

fn or_unset(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or("<unset>").to_string()
}

fn deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn persistentvolume(pv: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match pv.pointer("/spec/claimRef") {
        Some(c) if c.is_object() => format!("{}/{}", text(c, "/namespace"), text(c, "/name")),
        _ => String::new(),
    };
    let phase = if deleting(pv) {
        "Terminating"
    } else {
        text(pv, "/status/phase")
    };
    vec![
        json!(name(pv)),
        json!(match text(pv, "/spec/capacity/storage") {
            "" => "0",
            q => q,
        }),
        json!(access_modes(items(pv, "/spec/accessModes"))),
        json!(text(pv, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(storage_class(pv)),
        json!(or_unset(pv.pointer("/spec/volumeAttributesClassName"))),
        json!(text(pv, "/status/reason")),
        json!(age(pv, now)),
        json!(or_unset(pv.pointer("/spec/volumeMode"))),
    ]
}

static PVC_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    TableColumn::new(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    TableColumn::new(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    TableColumn::new(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    TableColumn::new("StorageClass", "string", "StorageClass of the pvc"),
    TableColumn::new(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    TableColumn::AGE,
    TableColumn::wide(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim.",
    ),
];

fn persistentvolumeclaim(pvc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = if deleting(pvc) {
        "Terminating"
    } else {
        text(pvc, "/status/phase")
    };
    let bound = !text(pvc, "/spec/volumeName").is_empty();
    let (capacity, modes) = if bound {
        (
            match text(pvc, "/status/capacity/storage") {
                "" => "0".to_string(),
                q => q.to_string(),
            },
            access_modes(items(pvc, "/status/accessModes")),
        )
    } else {
        (String::new(), String::new())
    };
    vec![
        json!(name(pvc)),
        json!(phase),
        json!(text(pvc, "/spec/volumeName")),
        json!(capacity),
        json!(modes),
        json!(storage_class(pvc)),
        json!(or_unset(pvc.pointer("/spec/volumeAttributesClassName"))),
        json!(age(pvc, now)),
        json!(or_unset(pvc.pointer("/spec/volumeMode"))),
    ]
}

static QUOTA_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    TableColumn::new(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    TableColumn::AGE,
];

/// REQUEST and LIMIT: `resource: used/hard` for each hard limit, sorted, `limits.*` in LIMIT.
fn resourcequota(q: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let hard = q.pointer("/status/hard").and_then(Value::as_object);
    let mut resources: Vec<&String> = hard.into_iter().flat_map(|h| h.keys()).collect();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for r in resources {
        let used = q
            .pointer(&format!(
                "/status/used/{}",
                r.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .unwrap_or("0");
        let limit = hard
            .and_then(|h| h.get(r.as_str()))
            .and_then(Value::as_str)
            .unwrap_or("0");
        let entry = format!("{r}: {used}/{limit}");
        let is_limit = r.split('.').count() > 1 && r.split('.').next() == Some("limits");
        if is_limit {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![
        json!(name(q)),
        json!(requests.join(", ")),
        json!(limits.join(", ")),
        json!(age(q, now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::table::builtin;

    fn now() -> DateTime<Utc> {
        kybernetes_core::clock::parse_time("2024-05-01T12:00:00Z").expect("time")
    }

    fn cells(resource: &str, obj: Value) -> Vec<Value> {
        builtin("", resource).row(&obj, now()).cells
    }

    #[test]
    fn nodes_show_readiness_roles_and_scheduling() {
        let n = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2024-04-29T09:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.1.0.2"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Kybernetes", "kernelVersion": "k", "containerRuntimeVersion": "fake://1"},
            },
        });
        assert_eq!(
            cells("nodes", n),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,edge"),
                json!("2d3h"),
                json!("v1.33.0"),
                json!("10.1.0.2"),
                json!("<none>"),
                json!("Kybernetes"),
                json!("k"),
                json!("fake://1"),
            ]
        );
        let bare = cells("nodes", json!({"metadata": {"name": "n2"}}));
        assert_eq!(bare[1], "Unknown");
        assert_eq!(bare[2], "<none>");
        assert_eq!(bare[7], "<unknown>");
    }

    #[test]
    fn services_show_type_ips_and_ports() {
        let svc = json!({
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.10"], "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]},
        });
        let c = cells("services", svc);
        assert_eq!(
            c[1..5],
            [
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        assert_eq!(c[6], "app=web");
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"]}});
        assert_eq!(cells("services", lb)[3], "<pending>");
        let headless = json!({"metadata": {"name": "h"}, "spec": {"type": "ClusterIP", "clusterIPs": ["None"]}});
        let c = cells("services", headless);
        assert_eq!(
            (c[2].clone(), c[4].clone(), c[6].clone()),
            (json!("None"), json!("<none>"), json!("<none>"))
        );
    }

    #[test]
    fn endpoints_show_three_addresses_and_how_many_more() {
        let ep = json!({"metadata": {"name": "e"}, "subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}, {"ip": "10.0.0.4"}],
            "ports": [{"port": 8080}],
        }]});
        assert_eq!(
            cells("endpoints", ep)[1],
            "10.0.0.1:8080,10.0.0.2:8080,[fd00::3]:8080 + 1 more..."
        );
        assert_eq!(
            cells("endpoints", json!({"metadata": {"name": "e"}}))[1],
            "<none>"
        );
    }

    #[test]
    fn events_read_both_apis() {
        let core = json!({
            "metadata": {"name": "e1"}, "type": "Normal", "reason": "Scheduled", "message": " ok ",
            "involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "scheduler"},
            "firstTimestamp": "2024-05-01T11:00:00Z", "lastTimestamp": "2024-05-01T11:59:00Z", "count": 3,
        });
        let c = cells("events", core);
        assert_eq!(
            c,
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/p"),
                json!(""),
                json!("scheduler"),
                json!("ok"),
                json!("60m"),
                json!(3),
                json!("e1"),
            ]
        );
        let new_api = json!({
            "apiVersion": "events.k8s.io/v1", "metadata": {"name": "e2"}, "type": "Warning",
            "reason": "BackOff", "note": "restarting", "regarding": {"kind": "Pod", "name": "q"},
            "eventTime": "2024-05-01T11:58:00.000000Z", "reportingController": "kubelet", "reportingInstance": "n1",
        });
        let c = builtin("events.k8s.io", "events")
            .row(&new_api, now())
            .cells;
        assert_eq!(c[0], "2m");
        assert_eq!(c[3], "pod/q");
        assert_eq!(c[5], "kubelet, n1");
        assert_eq!(c[6], "restarting");
        assert_eq!(c[8], 1);
    }

    #[test]
    fn data_counts_and_quotas() {
        let cm =
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
        assert_eq!(cells("configmaps", cm)[1], 2);
        let s = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}});
        assert_eq!(cells("secrets", s)[1..3], [json!("Opaque"), json!(1)]);
        let q = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi"},
            "used": {"pods": "3", "limits.cpu": "500m"},
        }});
        let c = cells("resourcequotas", q);
        assert_eq!(c[1], "pods: 3/10, requests.memory: 0/1Gi");
        assert_eq!(c[2], "limits.cpu: 500m/2");
    }
}
