//! Printers of the smaller groups: leases (coordination.k8s.io), pod disruption budgets
//! (policy), endpoint slices (discovery.k8s.io), horizontal pod autoscalers (autoscaling) and
//! storage classes (storage.k8s.io) and priority classes (scheduling.k8s.io).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Printer, TableColumn, age, int, int_or_string, items, list_with_more, name, text};

/// (group, resource, printer) of each kind here.
pub static PRINTERS: &[(&str, &str, Printer)] = &[
    (
        "coordination.k8s.io",
        "leases",
        Printer::new(LEASE_COLUMNS, lease),
    ),
    (
        "policy",
        "poddisruptionbudgets",
        Printer::new(PDB_COLUMNS, pdb),
    ),
    (
        "discovery.k8s.io",
        "endpointslices",
        Printer::new(SLICE_COLUMNS, endpointslice),
    ),
    (
        "autoscaling",
        "horizontalpodautoscalers",
        Printer::new(HPA_COLUMNS, hpa),
    ),
    (
        "storage.k8s.io",
        "storageclasses",
        Printer::new(STORAGE_CLASS_COLUMNS, storageclass),
    ),
    (
        "scheduling.k8s.io",
        "priorityclasses",
        Printer::new(PRIORITY_CLASS_COLUMNS, priorityclass),
    ),
];

static PRIORITY_CLASS_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Value",
        "integer",
        "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
    ),
    TableColumn::new(
        "Global-Default",
        "boolean",
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.",
    ),
    TableColumn::AGE,
    TableColumn::new(
        "PreemptionPolicy",
        "string",
        "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.",
    ),
];

/// Upstream's `printPriorityClass`.
fn priorityclass(pc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(pc)),
        json!(pc.get("value").and_then(Value::as_i64).unwrap_or(0)),
        json!(
            pc.get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        json!(age(pc, now)),
        json!(text(pc, "/preemptionPolicy")),
    ]
}

static STORAGE_CLASS_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Provisioner",
        "string",
        "provisioner indicates the type of the provisioner.",
    ),
    TableColumn::new(
        "ReclaimPolicy",
        "string",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.",
    ),
    TableColumn::new(
        "VolumeBindingMode",
        "string",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.",
    ),
    TableColumn::new(
        "AllowVolumeExpansion",
        "string",
        "allowVolumeExpansion shows whether the storage class allow volume expand.",
    ),
    TableColumn::AGE,
];

/// Upstream's `printStorageClass`: the name gets ` (default)` on the default class.
fn storageclass(sc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let annotation = |key: &str| {
        sc.pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            == Some("true")
    };
    let default = annotation(kybernetes_core::persistent_volume::IS_DEFAULT_CLASS_ANNOTATION)
        || annotation(kybernetes_core::persistent_volume::BETA_IS_DEFAULT_CLASS_ANNOTATION);
    let name = match default {
        true => format!("{} (default)", name(sc)),
        false => name(sc).to_string(),
    };
    let or = |path: &str, default: &'static str| match text(sc, path) {
        "" => default.to_string(),
        v => v.to_string(),
    };
    let expansion = sc
        .get("allowVolumeExpansion")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    vec![
        json!(name),
        json!(text(sc, "/provisioner")),
        json!(or("/reclaimPolicy", "Delete")),
        json!(or("/volumeBindingMode", "Immediate")),
        json!(expansion),
        json!(age(sc, now)),
    ]
}

static LEASE_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    TableColumn::AGE,
];

fn lease(l: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(l)),
        json!(text(l, "/spec/holderIdentity")),
        json!(age(l, now)),
    ]
}

static PDB_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    TableColumn::new(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    TableColumn::new(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    TableColumn::AGE,
];

fn pdb(p: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let or_na = |v: Option<String>| v.unwrap_or_else(|| "N/A".into());
    vec![
        json!(name(p)),
        json!(or_na(int_or_string(p.pointer("/spec/minAvailable")))),
        json!(or_na(int_or_string(p.pointer("/spec/maxUnavailable")))),
        json!(int(p, "/status/disruptionsAllowed")),
        json!(age(p, now)),
    ]
}

static SLICE_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    TableColumn::new(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    TableColumn::new(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    TableColumn::AGE,
];

fn endpointslice(s: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports: Vec<String> = items(s, "/ports")
        .iter()
        .map(|p| {
            match (
                p.get("port").and_then(Value::as_i64),
                p.get("name").and_then(Value::as_str),
            ) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".into(),
            }
        })
        .collect();
    let addresses: Vec<String> = items(s, "/endpoints")
        .iter()
        .flat_map(|e| items(e, "/addresses"))
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    vec![
        json!(name(s)),
        json!(text(s, "/addressType")),
        json!(list_with_more(&ports, 3)),
        json!(list_with_more(&addresses, 3)),
        json!(age(s, now)),
    ]
}

static HPA_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Reference",
        "string",
        "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.",
    ),
    TableColumn::new(
        "Targets",
        "string",
        "metrics contains the specifications for which to use to calculate the desired replica count.",
    ),
    TableColumn::new(
        "MinPods",
        "string",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
    ),
    TableColumn::new(
        "MaxPods",
        "string",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
    ),
    TableColumn::new(
        "Replicas",
        "string",
        "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
    ),
    TableColumn::AGE,
];

/// The metrics and current metrics of an autoscaler in autoscaling/v2 form; an
/// autoscaling/v1 object's CPU target becomes one `Resource` metric, as upstream converts it.
fn hpa_metrics(h: &Value) -> (Vec<Value>, Vec<Value>) {
    if text(h, "/apiVersion") == "autoscaling/v1" {
        let target = h.pointer("/spec/targetCPUUtilizationPercentage").cloned();
        let spec = target
            .map(|t| json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}))
            .into_iter()
            .collect();
        let current = h
            .pointer("/status/currentCPUUtilizationPercentage")
            .map(|c| json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}))
            .into_iter()
            .collect();
        return (spec, current);
    }
    (
        items(h, "/spec/metrics").to_vec(),
        items(h, "/status/currentMetrics").to_vec(),
    )
}

/// One metric as `current/target` (upstream's `formatHPAMetrics` for one spec).
fn format_metric(spec: &Value, status: Option<&Value>) -> String {
    let unknown = || "<unknown>".to_string();
    let current = |source: &str, field: &str| {
        status
            .and_then(|s| s.get(source))
            .and_then(|s| s.pointer(&format!("/current/{field}")))
            .and_then(|v| int_or_string(Some(v)))
    };
    let value_or_average = |source: &str| {
        let target = spec.get(source).and_then(|s| s.get("target"));
        match target.and_then(|t| int_or_string(t.get("averageValue"))) {
            Some(avg) => format!(
                "{}/{avg} (avg)",
                current(source, "averageValue").unwrap_or_else(unknown)
            ),
            None => format!(
                "{}/{}",
                current(source, "value").unwrap_or_else(unknown),
                target
                    .and_then(|t| int_or_string(t.get("value")))
                    .unwrap_or_default()
            ),
        }
    };
    let resource = |source: &str| {
        let r = spec.get(source);
        let name = r.map(|r| text(r, "/name")).unwrap_or("");
        let target = r.and_then(|r| r.get("target"));
        match target.and_then(|t| int_or_string(t.get("averageValue"))) {
            Some(avg) => format!(
                "{name}: {}/{avg}",
                current(source, "averageValue").unwrap_or_else(unknown)
            ),
            None => format!(
                "{name}: {}/{}",
                current(source, "averageUtilization")
                    .map(|u| format!("{u}%"))
                    .unwrap_or_else(unknown),
                target
                    .and_then(|t| int_or_string(t.get("averageUtilization")))
                    .map(|u| format!("{u}%"))
                    .unwrap_or_else(|| "<auto>".into())
            ),
        }
    };
    match text(spec, "/type") {
        "External" => value_or_average("external"),
        "Object" => value_or_average("object"),
        "Pods" => format!(
            "{}/{}",
            current("pods", "averageValue").unwrap_or_else(unknown),
            spec.pointer("/pods/target/averageValue")
                .and_then(|v| int_or_string(Some(v)))
                .unwrap_or_default()
        ),
        "Resource" => resource("resource"),
        "ContainerResource" => resource("containerResource"),
        _ => "<unknown type>".into(),
    }
}

fn hpa(h: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (specs, statuses) = hpa_metrics(h);
    const MAX: usize = 2;
    let targets = if specs.is_empty() {
        "<none>".to_string()
    } else {
        let list: Vec<String> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| format_metric(s, statuses.get(i)))
            .collect();
        let shown = list[..list.len().min(MAX)].join(", ");
        if list.len() > MAX {
            format!("{shown} + {} more...", list.len() - MAX)
        } else {
            shown
        }
    };
    let min_pods = h
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .map(|m| m.to_string())
        .unwrap_or_else(|| "<unset>".into());
    vec![
        json!(name(h)),
        json!(format!(
            "{}/{}",
            text(h, "/spec/scaleTargetRef/kind"),
            text(h, "/spec/scaleTargetRef/name")
        )),
        json!(targets),
        json!(min_pods),
        json!(int(h, "/spec/maxReplicas")),
        json!(int(h, "/status/currentReplicas")),
        json!(age(h, now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::table::builtin;

    #[test]
    fn budgets_slices_and_leases() {
        let pdb = json!({"metadata": {"name": "b"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        let c = builtin("policy", "poddisruptionbudgets")
            .row(&pdb, Utc::now())
            .cells;
        assert_eq!(c[1..4], [json!("50%"), json!("N/A"), json!(1)]);
        let slice = json!({"metadata": {"name": "s"}, "addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "dns"}], "endpoints": [{"addresses": ["10.0.0.1"]}]});
        let c = builtin("discovery.k8s.io", "endpointslices")
            .row(&slice, Utc::now())
            .cells;
        assert_eq!(c[1..4], [json!("IPv4"), json!("80,dns"), json!("10.0.0.1")]);
        let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}});
        assert_eq!(
            builtin("coordination.k8s.io", "leases")
                .row(&lease, Utc::now())
                .cells[1],
            "me"
        );
    }

    #[test]
    fn autoscalers_show_metric_targets() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 20}}}]}});
        let c = builtin("autoscaling", "horizontalpodautoscalers")
            .row(&v2, Utc::now())
            .cells;
        assert_eq!(
            c[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 20%/50%"),
                json!("1"),
                json!(5),
                json!(2)
            ]
        );
        let v1 = json!({"apiVersion": "autoscaling/v1", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3, "targetCPUUtilizationPercentage": 80}});
        let c = builtin("autoscaling", "horizontalpodautoscalers")
            .row(&v1, Utc::now())
            .cells;
        assert_eq!(c[2..4], [json!("cpu: <unknown>/80%"), json!("<unset>")]);
    }
}
