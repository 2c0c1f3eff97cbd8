//! Removing pods from failed nodes: taint eviction (upstream `TaintEvictionController`)
//! deletes pods that stopped tolerating a node's NoExecute taints, and pod GC force-deletes
//! pods that no node agent is left to finish.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, Taint};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tracing::{debug, info, warn};

use super::taints::{eviction_time, no_execute_taints};
use super::{NodeLifecycle, min_time, node_name, ready_status, to_time};

impl NodeLifecycle {
    /// Upstream `TaintEvictionController.processPodOnNode` for every pod of a node.
    pub(super) async fn evict_pods(
        &self,
        node: &Node,
        pods: &[Arc<Pod>],
        now: DateTime<Utc>,
        next: &mut Option<DateTime<Utc>>,
    ) {
        let taints = no_execute_taints(node);
        let name = node.name_any();
        {
            let mut seen = self.taints_seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.retain(|(n, key), _| *n != name || taints.iter().any(|t| t.key == *key));
            for t in taints.iter().filter(|t| t.time_added.is_none()) {
                seen.entry((name.clone(), t.key.clone())).or_insert(now);
            }
        }
        if taints.is_empty() {
            return;
        }
        let first_seen = |t: &Taint| {
            let seen = self.taints_seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.get(&(name.clone(), t.key.clone()))
                .copied()
                .unwrap_or(now)
        };
        for pod in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            match eviction_time(
                pod,
                &taints,
                self.config.default_toleration_seconds,
                first_seen,
            ) {
                Some(at) if at <= now => self.evict(pod).await,
                Some(at) => *next = min_time(*next, at),
                None => {}
            }
        }
    }

    async fn evict(&self, pod: &Pod) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let name = pod.name_any();
        info!(pod = %name, node = ?node_name(pod), "evicting pod from a node with NoExecute taints");
        let condition = PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(to_time(self.clock.now())),
            ..Default::default()
        };
        let mut conditions: Vec<PodCondition> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(condition);
        let patch = json!({ "status": { "conditions": conditions } });
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            debug!(pod = %name, error = %e, "failed to add the DisruptionTarget condition");
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => warn!(pod = %name, error = %e, "failed to evict pod; will retry"),
        }
    }

    /// Upstream PodGC: force-deletes terminating pods on unreachable nodes, and pods bound to
    /// nodes that no longer exist.
    pub(super) async fn gc_pods(
        &self,
        nodes: &HashMap<String, Node>,
        pods_by_node: &HashMap<String, Vec<Arc<Pod>>>,
        now: DateTime<Utc>,
        next: &mut Option<DateTime<Utc>>,
    ) {
        let quarantine = chrono::Duration::from_std(self.config.node_monitor_grace_period)
            .unwrap_or(chrono::Duration::MAX);
        let mut still_orphaned = Vec::new();
        for (node_name, pods) in pods_by_node {
            match nodes.get(node_name) {
                Some(node) if ready_status(node) == "Unknown" => {
                    for pod in pods
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_some())
                    {
                        info!(pod = %pod.name_any(), node = %node_name, "force-deleting a terminating pod on an unreachable node");
                        self.force_delete(pod).await;
                    }
                }
                Some(_) => {}
                None => {
                    for pod in pods {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        let first = *self
                            .orphans
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(uid.clone())
                            .or_insert(now);
                        still_orphaned.push(uid);
                        if now < first + quarantine {
                            *next = min_time(*next, first + quarantine);
                            continue;
                        }
                        // Check with the API server that the node is really gone.
                        let api: Api<Node> = Api::all(self.client.clone());
                        if let Ok(None) = api.get_opt(node_name).await {
                            info!(pod = %pod.name_any(), node = %node_name, "force-deleting a pod bound to a missing node");
                            self.force_delete(pod).await;
                        }
                    }
                }
            }
        }
        self.orphans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|uid, _| still_orphaned.contains(uid));
    }

    async fn force_delete(&self, pod: &Pod) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                warn!(pod = %pod.name_any(), error = %e, "failed to force-delete pod; will retry")
            }
        }
    }
}
