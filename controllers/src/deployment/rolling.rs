//! The RollingUpdate strategy, after upstream's `deployment/rolling.go`: the new ReplicaSet
//! grows while all pods stay within `replicas + maxSurge`, and old ReplicaSets shrink while at
//! least `replicas - maxUnavailable` pods stay available.

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::progress;
use super::replicas::{self, active, rs_available, rs_available_kept, rs_replicas};
use super::sync::{all_of, replace};
use super::{Result, Rollout};

fn sort_by_creation(rss: &mut [ReplicaSet]) {
    super::revision::sort_by_creation(rss);
}

impl Rollout<'_> {
    /// Upstream's `rolloutRolling`: one step of scaling up, else one of scaling down, then the
    /// status.
    pub(super) async fn rollout_rolling(&mut self, rs_list: Vec<ReplicaSet>) -> Result<()> {
        let (mut new_rs, mut old) = self
            .get_all_replica_sets_and_sync_revision(rs_list, true)
            .await?;
        if self.reconcile_new_replica_set(&mut new_rs, &old).await? {
            return self.sync_rollout_status(&old, new_rs.as_ref()).await;
        }
        if self
            .reconcile_old_replica_sets(new_rs.as_ref(), &mut old)
            .await?
        {
            return self.sync_rollout_status(&old, new_rs.as_ref()).await;
        }
        if progress::deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(&old).await?;
        }
        self.sync_rollout_status(&old, new_rs.as_ref()).await
    }

    /// Upstream's `reconcileNewReplicaSet`: grows (or trims) the new ReplicaSet; true if scaled.
    async fn reconcile_new_replica_set(
        &mut self,
        new_rs: &mut Option<ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<bool> {
        let Some(current) = new_rs.clone() else {
            return Ok(false);
        };
        let desired = self.desired();
        let size = rs_replicas(&current);
        if size == desired {
            return Ok(false);
        }
        let target = if size > desired {
            desired
        } else {
            let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&current)).collect();
            replicas::new_rs_new_replicas(&self.d, self.fence, &all, &current)
        };
        let (scaled, updated) = self
            .scale_replica_set_and_record_event(&current, target)
            .await?;
        *new_rs = Some(updated);
        Ok(scaled)
    }

    /// Upstream's `reconcileOldReplicaSets`: shrinks old ReplicaSets, first their unhealthy
    /// pods, then healthy ones as far as maxUnavailable allows; true if anything was scaled.
    async fn reconcile_old_replica_sets(
        &mut self,
        new_rs: Option<&ReplicaSet>,
        old: &mut [ReplicaSet],
    ) -> Result<bool> {
        let old_active = active(old);
        if replicas::sum_replicas(&old_active) == 0 {
            return Ok(false);
        }
        let all_pods = replicas::sum_replicas(&all_of(old, new_rs));
        let min_available = self.desired() - self.fence.unavailable;
        let new_unavailable = new_rs.map_or(0, |rs| rs_replicas(rs) - rs_available_kept(rs));
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let mut old_active = old_active;
        let cleaned = self
            .cleanup_unhealthy_replicas(&mut old_active, max_scaled_down)
            .await?;
        let all = all_of(&old_active, new_rs);
        let scaled_down = self
            .scale_down_old_replica_sets_for_rolling_update(&all, &mut old_active)
            .await?;
        for rs in old_active {
            let mut none = None;
            replace(&mut none, old, rs);
        }
        Ok(cleaned + scaled_down > 0)
    }

    /// Upstream's `cleanupUnhealthyReplicas`: removes unavailable pods of old ReplicaSets
    /// (oldest first), at most `max_cleanup`; returns how many.
    async fn cleanup_unhealthy_replicas(
        &mut self,
        old: &mut [ReplicaSet],
        max_cleanup: i32,
    ) -> Result<i32> {
        sort_by_creation(old);
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= max_cleanup {
                break;
            }
            let size = rs_replicas(rs);
            let available = rs_available(rs);
            if size == 0 || size <= available {
                continue;
            }
            let scaled_down = (max_cleanup - total).min(size - available);
            let (_, updated) = self
                .scale_replica_set_and_record_event(rs, size - scaled_down)
                .await?;
            *rs = updated;
            total += scaled_down;
        }
        Ok(total)
    }

    /// Upstream's `scaleDownOldReplicaSetsForRollingUpdate`: shrinks old ReplicaSets (oldest
    /// first) by the available pods above `replicas - maxUnavailable`; returns how many.
    async fn scale_down_old_replica_sets_for_rolling_update(
        &mut self,
        all: &[ReplicaSet],
        old: &mut [ReplicaSet],
    ) -> Result<i32> {
        let min_available = self.desired() - self.fence.unavailable;
        let available: i32 = all.iter().map(rs_available_kept).sum();
        if available <= min_available {
            return Ok(0);
        }
        sort_by_creation(old);
        let to_scale_down = available - min_available;
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= to_scale_down {
                break;
            }
            let size = rs_replicas(rs);
            if size == 0 {
                continue;
            }
            let scale_down = size.min(to_scale_down - total);
            let (_, updated) = self
                .scale_replica_set_and_record_event(rs, size - scale_down)
                .await?;
            *rs = updated;
            total += scale_down;
        }
        Ok(total)
    }
}
