//! Printers of networking.k8s.io: Ingresses and IngressClasses, as upstream's `printIngress`
//! and `printIngressClass`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Printer, TableColumn, age, items, name, text};

/// (group, resource, printer) of each kind here.
pub static PRINTERS: &[(&str, &str, Printer)] = &[
    (
        "networking.k8s.io",
        "ingresses",
        Printer::new(INGRESS_COLUMNS, ingress),
    ),
    (
        "networking.k8s.io",
        "ingressclasses",
        Printer::new(INGRESS_CLASS_COLUMNS, ingressclass),
    ),
];

static INGRESS_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new("Class", "string", "The name of the IngressClass resource."),
    TableColumn::new(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    TableColumn::new(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    TableColumn::new("Ports", "string", "Ports of TLS configurations that open"),
    TableColumn::AGE,
];

/// Upstream's `printIngress`: the class (`<none>`), at most three hosts (`*` without any),
/// the load balancer's addresses, `80` or `80, 443` with TLS, and the age.
fn ingress(ing: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let class = match text(ing, "/spec/ingressClassName") {
        "" => "<none>",
        class => class,
    };
    let hosts: Vec<&str> = items(ing, "/spec/rules")
        .iter()
        .filter_map(|r| r.get("host").and_then(Value::as_str))
        .filter(|h| !h.is_empty())
        .collect();
    let hosts = match hosts.len() {
        0 => "*".to_string(),
        n if n > 3 => format!("{} + {} more...", hosts[..3].join(","), n - 3),
        _ => hosts.join(","),
    };
    let address: Vec<&str> = items(ing, "/status/loadBalancer/ingress")
        .iter()
        .filter_map(|lb| {
            lb.get("ip")
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty())
                .or_else(|| lb.get("hostname").and_then(Value::as_str))
        })
        .collect();
    let ports = match items(ing, "/spec/tls").is_empty() {
        true => "80",
        false => "80, 443",
    };
    vec![
        json!(name(ing)),
        json!(class),
        json!(hosts),
        json!(address.join(",")),
        json!(ports),
        json!(age(ing, now)),
    ]
}

static INGRESS_CLASS_COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    TableColumn::new(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    TableColumn::AGE,
];

/// Upstream's `printIngressClass`: parameters print as `Kind.group/name`, or `<none>`.
fn ingressclass(class: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let parameters = match class.pointer("/spec/parameters") {
        Some(p) if p.is_object() => {
            let kind = text(p, "/kind");
            let kind = match text(p, "/apiGroup") {
                "" => kind.to_string(),
                group => format!("{kind}.{group}"),
            };
            format!("{kind}/{}", text(p, "/name"))
        }
        _ => "<none>".to_string(),
    };
    vec![
        json!(name(class)),
        json!(text(class, "/spec/controller")),
        json!(parameters),
        json!(age(class, now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::table::builtin;

    #[test]
    fn ingresses_show_class_hosts_address_and_ports() {
        let ing = json!({"metadata": {"name": "web"},
            "spec": {"ingressClassName": "kybernetes", "tls": [{"hosts": ["a.example.com"]}],
                "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}, {}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}, {"hostname": "lb.example.com"}]}}});
        let c = builtin("networking.k8s.io", "ingresses")
            .row(&ing, Utc::now())
            .cells;
        assert_eq!(
            c[1..5],
            [
                json!("kybernetes"),
                json!("a.example.com,b.example.com"),
                json!("127.0.0.1,lb.example.com"),
                json!("80, 443")
            ]
        );
        let bare = json!({"metadata": {"name": "bare"}, "spec": {}});
        let c = builtin("networking.k8s.io", "ingresses")
            .row(&bare, Utc::now())
            .cells;
        assert_eq!(
            c[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
    }

    #[test]
    fn ingress_classes_show_controller_and_parameters() {
        let class = json!({"metadata": {"name": "k"}, "spec": {"controller": "kybernetes.io/ingress",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "Params", "name": "p"}}});
        let c = builtin("networking.k8s.io", "ingressclasses")
            .row(&class, Utc::now())
            .cells;
        assert_eq!(
            c[1..3],
            [
                json!("kybernetes.io/ingress"),
                json!("Params.k8s.example.com/p")
            ]
        );
    }
}
