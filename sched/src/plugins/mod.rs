//! The built-in plugins, named and behaving as upstream's.

mod balanced_allocation;
mod image_locality;
mod inter_pod_affinity;
mod node_affinity;
mod node_name;
mod node_ports;
mod node_resources_fit;
mod node_unschedulable;
mod pod_topology_spread;
mod taint_toleration;
mod volume_binding;

pub use balanced_allocation::NodeResourcesBalancedAllocation;
pub use image_locality::{ImageLocality, normalized_image_name};
pub use inter_pod_affinity::InterPodAffinity;
pub(crate) use inter_pod_affinity::InterPodAffinityState;
pub use node_affinity::NodeAffinity;
pub use node_name::NodeName;
pub use node_ports::NodePorts;
pub use node_resources_fit::{NodeResourcesFit, ScoringStrategy};
pub use node_unschedulable::NodeUnschedulable;
pub use pod_topology_spread::PodTopologySpread;
pub(crate) use pod_topology_spread::TopologySpreadState;
pub use taint_toleration::{TaintToleration, find_untolerated_taint, tolerates};
pub use volume_binding::VolumeBinding;

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for plugin unit tests.
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    use crate::snapshot::NodeInfo;

    /// A node named `name` with 4 CPUs, 8 GiB and room for 110 pods, merged with `extra`.
    pub fn node(name: &str, extra: Value) -> NodeInfo {
        let mut v = json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
        });
        merge(&mut v, extra);
        NodeInfo::new(serde_json::from_value::<Node>(v).expect("node"))
    }

    /// A pod with one container, merged with `spec`.
    pub fn pod(spec: Value) -> Pod {
        let mut v = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c"}]}});
        merge(&mut v["spec"], spec);
        serde_json::from_value(v).expect("pod")
    }

    fn merge(target: &mut Value, patch: Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
            (t, p) => *t = p,
        }
    }
}
