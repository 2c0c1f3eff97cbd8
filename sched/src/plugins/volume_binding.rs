//! VolumeBinding: a pod's PersistentVolumeClaims must be usable from the node (upstream's
//! `volumebinding` plugin, its Filter part; the PreBind part is in the scheduling loop).

use crate::framework::FilterPlugin;
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;
use crate::unschedulable::Rejection;
use crate::volumes::find_pod_volumes;

/// Upstream's reason for a pod waiting on a claim the PV controller binds first.
const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// Upstream's VolumeBinding Filter plugin:
/// - a missing claim, or one being deleted, fits no node;
/// - an unbound claim of an `Immediate` class fits no node until the PV controller binds it;
/// - a bound claim's volume must admit the node by its node affinity;
/// - each unbound claim of a `WaitForFirstConsumer` class needs an available volume that
///   admits the node, or a class that can provision one.
#[derive(Clone, Copy, Debug, Default)]
pub struct VolumeBinding;

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &str {
        "VolumeBinding"
    }

    fn pre_filter(&self, pod: &PodInfo<'_>) -> bool {
        !pod.volume_claims().is_empty()
    }

    fn filter(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        let claims = pod.volume_claims();
        if let Some(problem) = &claims.problem {
            return Err(Rejection::unresolvable(problem.clone()));
        }
        if !claims.immediate.is_empty() {
            return Err(Rejection::unresolvable(UNBOUND_IMMEDIATE));
        }
        find_pod_volumes(claims, node, pod.volume_listers())
            .map(|_| ())
            .map_err(|c| Rejection::unresolvable(c.reason()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use crate::volumes::VolumeListers;
    use serde_json::{Value, json};

    fn listers(claims: Value, volumes: Value) -> VolumeListers {
        let mut l = VolumeListers::default();
        l.upsert_class(serde_json::from_value(json!({"metadata": {"name": "wait"}, "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"})).expect("class"));
        l.upsert_class(serde_json::from_value(json!({"metadata": {"name": "local-path"}, "provisioner": "kybernetes.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"})).expect("class"));
        l.upsert_class(serde_json::from_value(json!({"metadata": {"name": "now"}, "provisioner": "p", "volumeBindingMode": "Immediate"})).expect("class"));
        for c in claims.as_array().into_iter().flatten() {
            l.upsert_claim(serde_json::from_value(c.clone()).expect("claim"));
        }
        for v in volumes.as_array().into_iter().flatten() {
            l.upsert_volume(serde_json::from_value(v.clone()).expect("volume"));
        }
        l
    }

    fn claim(name: &str, class: &str, volume: Option<&str>) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class, "volumeName": volume,
                        "resources": {"requests": {"storage": "1Gi"}}}})
    }

    fn local_pv(name: &str, node: &str, class: &str) -> Value {
        json!({"metadata": {"name": name},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                        "local": {"path": "/d"},
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
               "status": {"phase": "Available"}})
    }

    fn using(claim: &str) -> k8s_openapi::api::core::v1::Pod {
        pod(json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}))
    }

    fn result(
        p: &k8s_openapi::api::core::v1::Pod,
        l: &VolumeListers,
        on: &str,
    ) -> Result<(), Rejection> {
        let info = PodInfo::new(p).with_volumes(l);
        let n = node(
            on,
            json!({"metadata": {"labels": {"kubernetes.io/hostname": on}}}),
        );
        VolumeBinding.filter(&info, &n)
    }

    #[test]
    fn a_local_volume_pins_its_pods_to_its_node() {
        let l = listers(
            json!([claim("c", "wait", None)]),
            json!([local_pv("pv-a", "a", "wait")]),
        );
        let p = using("c");
        assert!(
            PodInfo::new(&p)
                .with_volumes(&l)
                .volume_claims()
                .delayed
                .len()
                == 1
        );
        assert_eq!(result(&p, &l, "a"), Ok(()));
        assert_eq!(
            result(&p, &l, "b"),
            Err(Rejection::unresolvable(
                "node(s) didn't find available persistent volumes to bind"
            ))
        );
        let bound = listers(
            json!([claim("c", "wait", Some("pv-a"))]),
            json!([local_pv("pv-a", "a", "wait")]),
        );
        assert_eq!(
            result(&p, &bound, "b"),
            Err(Rejection::unresolvable(
                "node(s) had volume node affinity conflict"
            ))
        );
    }

    #[test]
    fn a_provisioning_class_fits_anywhere_and_immediate_claims_wait() {
        let l = listers(
            json!([claim("c", "local-path", None), claim("now", "now", None)]),
            json!([]),
        );
        assert_eq!(result(&using("c"), &l, "b"), Ok(()));
        assert_eq!(
            result(&using("now"), &l, "b"),
            Err(Rejection::unresolvable(UNBOUND_IMMEDIATE))
        );
        assert_eq!(
            result(&using("missing"), &l, "b"),
            Err(Rejection::unresolvable(
                "persistentvolumeclaim \"missing\" not found"
            ))
        );
        assert!(!VolumeBinding.pre_filter(&PodInfo::new(&pod(json!({}))).with_volumes(&l)));
    }
}
