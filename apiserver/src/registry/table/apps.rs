//! The apps group's printers: deployments, replica sets, stateful sets, daemon sets and
//! controller revisions.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{
    Printer, TableColumn, age, container_cells, format_label_selector, format_labels, int, name,
    selector_string, text,
};

/// (group, resource, printer) of each kind here.
pub static PRINTERS: &[(&str, &str, Printer)] = &[
    (
        "apps",
        "deployments",
        Printer::new(DEPLOYMENT_COLUMNS, deployment),
    ),
    (
        "apps",
        "replicasets",
        Printer::new(REPLICASET_COLUMNS, replicaset),
    ),
    (
        "apps",
        "statefulsets",
        Printer::new(STATEFULSET_COLUMNS, statefulset),
    ),
    (
        "apps",
        "daemonsets",
        Printer::new(DAEMONSET_COLUMNS, daemonset),
    ),
    (
        "apps",
        "controllerrevisions",
        Printer::new(CONTROLLERREVISION_COLUMNS, controllerrevision),
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
const SELECTOR: TableColumn = TableColumn::wide(
    "Selector",
    "string",
    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
);

/// `spec.replicas`, defaulted to 1 as the API does.
fn desired(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

static DEPLOYMENT_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new("Ready", "string", "Number of the pod with ready state"),
    TableColumn::new(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    TableColumn::new(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    TableColumn::AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn deployment(d: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = container_cells(d.pointer("/spec/template/spec"));
    // A deployment prints its selector as is: empty for none (`selector.String()`).
    let selector =
        selector_string(d.pointer("/spec/selector")).unwrap_or_else(|_| "<invalid>".into());
    vec![
        json!(name(d)),
        json!(format!(
            "{}/{}",
            int(d, "/status/readyReplicas"),
            desired(d)
        )),
        json!(int(d, "/status/updatedReplicas")),
        json!(int(d, "/status/availableReplicas")),
        json!(age(d, now)),
        json!(containers),
        json!(images),
        json!(selector),
    ]
}

static REPLICASET_COLUMNS: &[TableColumn] = &[
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
        "The number of ready replicas for this replica set.",
    ),
    TableColumn::AGE,
    CONTAINERS,
    IMAGES,
    TableColumn::wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count.",
    ),
];

fn replicaset(rs: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = container_cells(rs.pointer("/spec/template/spec"));
    vec![
        json!(name(rs)),
        json!(desired(rs)),
        json!(int(rs, "/status/replicas")),
        json!(int(rs, "/status/readyReplicas")),
        json!(age(rs, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(rs.pointer("/spec/selector"))),
    ]
}

static STATEFULSET_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new("Ready", "string", "Number of the pod with ready state"),
    TableColumn::AGE,
    CONTAINERS,
    IMAGES,
];

fn statefulset(s: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = container_cells(s.pointer("/spec/template/spec"));
    vec![
        json!(name(s)),
        json!(format!(
            "{}/{}",
            int(s, "/status/readyReplicas"),
            desired(s)
        )),
        json!(age(s, now)),
        json!(containers),
        json!(images),
    ]
}

static DAEMONSET_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
    ),
    TableColumn::new(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    TableColumn::new(
        "Ready",
        "integer",
        "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
    ),
    TableColumn::new(
        "Up-to-date",
        "integer",
        "The total number of nodes that are running updated daemon pod",
    ),
    TableColumn::new(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    TableColumn::new(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    TableColumn::AGE,
    CONTAINERS,
    IMAGES,
    TableColumn::wide(
        "Selector",
        "string",
        "A label query over pods that are managed by the daemon set.",
    ),
];

fn daemonset(ds: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = container_cells(ds.pointer("/spec/template/spec"));
    vec![
        json!(name(ds)),
        json!(int(ds, "/status/desiredNumberScheduled")),
        json!(int(ds, "/status/currentNumberScheduled")),
        json!(int(ds, "/status/numberReady")),
        json!(int(ds, "/status/updatedNumberScheduled")),
        json!(int(ds, "/status/numberAvailable")),
        json!(format_labels(
            ds.pointer("/spec/template/spec/nodeSelector")
        )),
        json!(age(ds, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(ds.pointer("/spec/selector"))),
    ]
}

static CONTROLLERREVISION_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new("Controller", "string", "Controller of the object"),
    TableColumn::new(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    TableColumn::AGE,
];

/// The controlling owner as `kind.group/name`, lower-cased (`formatResourceName`).
fn controller_of(obj: &Value) -> String {
    let owner = super::items(obj, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true));
    let Some(owner) = owner else {
        return "<none>".into();
    };
    let group = text(owner, "/apiVersion")
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or("");
    let kind = text(owner, "/kind");
    let owner_name = text(owner, "/name");
    match (kind, group) {
        ("", _) => owner_name.to_string(),
        (k, "") => format!("{}/{owner_name}", k.to_lowercase()),
        (k, g) => format!("{}/{owner_name}", format!("{k}.{g}").to_lowercase()),
    }
}

fn controllerrevision(cr: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(cr)),
        json!(controller_of(cr)),
        json!(int(cr, "/revision")),
        json!(age(cr, now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::table::builtin;

    fn cells(resource: &str, obj: Value) -> Vec<Value> {
        builtin("apps", resource).row(&obj, Utc::now()).cells
    }

    fn template() -> Value {
        json!({"spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]}})
    }

    #[test]
    fn deployments_show_ready_of_desired_and_wide_containers() {
        let d = json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        let c = cells("deployments", d);
        assert_eq!(c[..4], [json!("web"), json!("2/3"), json!(3), json!(2)]);
        assert_eq!(
            c[5..],
            [json!("web,log"), json!("nginx,busybox"), json!("app=web")]
        );
    }

    #[test]
    fn replica_sets_daemon_sets_and_stateful_sets() {
        let rs = json!({"metadata": {"name": "rs"}, "spec": {"replicas": 2, "template": template()}, "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            cells("replicasets", rs)[1..4],
            [json!(2), json!(2), json!(1)]
        );
        let ds = json!({"metadata": {"name": "ds"}, "spec": {"template": template()}, "status": {"desiredNumberScheduled": 3, "numberReady": 3}});
        let c = cells("daemonsets", ds);
        assert_eq!(
            c[1..7],
            [
                json!(3),
                json!(0),
                json!(3),
                json!(0),
                json!(0),
                json!("<none>")
            ]
        );
        assert_eq!(c[10], "<none>");
        let sts = json!({"metadata": {"name": "db"}, "spec": {"template": template()}, "status": {"readyReplicas": 1}});
        assert_eq!(cells("statefulsets", sts)[1], "1/1");
    }

    #[test]
    fn controller_revisions_name_their_controller() {
        let cr = json!({"metadata": {"name": "db-1", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true},
        ]}, "revision": 2});
        assert_eq!(
            cells("controllerrevisions", cr)[1..3],
            [json!("statefulset.apps/db"), json!(2)]
        );
    }
}
