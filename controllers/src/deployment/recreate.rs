//! The Recreate strategy, after upstream's `deployment/recreate.go`: scale every old
//! ReplicaSet to 0, wait until none of their pods is left (terminating pods included), and only
//! then create or scale up the new ReplicaSet.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::progress;
use super::replicas::{rs_replicas, sum_actual};
use super::sync::all_of;
use super::{Result, Rollout};

impl Rollout<'_> {
    /// Upstream's `rolloutRecreate`.
    pub(super) async fn rollout_recreate(
        &mut self,
        rs_list: Vec<ReplicaSet>,
        pod_map: HashMap<String, Vec<Arc<Pod>>>,
    ) -> Result<()> {
        // The new ReplicaSet is not created yet: its pods must not start next to old ones.
        let (mut new_rs, mut old) = self
            .get_all_replica_sets_and_sync_revision(rs_list, false)
            .await?;
        if self
            .scale_down_old_replica_sets_for_recreate(&mut old)
            .await?
        {
            return self.sync_rollout_status(&old, new_rs.as_ref()).await;
        }
        if old_pods_running(new_rs.as_ref(), &old, &pod_map) {
            return self.sync_rollout_status(&old, new_rs.as_ref()).await;
        }
        if new_rs.is_none() {
            (new_rs, old) = self
                .get_all_replica_sets_and_sync_revision(all_of(&old, None), true)
                .await?;
        }
        if let Some(rs) = new_rs.clone() {
            let (_, updated) = self
                .scale_replica_set_and_record_event(&rs, self.desired())
                .await?;
            new_rs = Some(updated);
        }
        if progress::deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(&old).await?;
        }
        self.sync_rollout_status(&old, new_rs.as_ref()).await
    }

    /// Scales every active old ReplicaSet to 0; true if any was.
    async fn scale_down_old_replica_sets_for_recreate(
        &mut self,
        old: &mut [ReplicaSet],
    ) -> Result<bool> {
        let mut scaled = false;
        for rs in old.iter_mut() {
            if rs_replicas(rs) == 0 {
                continue;
            }
            let (did, updated) = self.scale_replica_set_and_record_event(rs, 0).await?;
            *rs = updated;
            scaled |= did;
        }
        Ok(scaled)
    }
}

/// Whether any pod of an old ReplicaSet is still there and not finished (upstream's
/// `oldPodsRunning`): the ReplicaSets' own counts first, then every pod they control,
/// terminating ones included.
fn old_pods_running(
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    pod_map: &HashMap<String, Vec<Arc<Pod>>>,
) -> bool {
    if sum_actual(old) > 0 {
        return true;
    }
    let new_uid = new_rs.and_then(|rs| rs.metadata.uid.as_deref());
    pod_map
        .iter()
        .filter(|(uid, _)| Some(uid.as_str()) != new_uid)
        .flat_map(|(_, pods)| pods)
        .any(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Failed" | "Succeeded"))
        })
}
