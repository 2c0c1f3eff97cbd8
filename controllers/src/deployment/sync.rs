//! Finding and creating the new ReplicaSet, scaling (proportionally when a deployment is scaled
//! mid-rollout), pausing, and trimming the revision history, after upstream's
//! `deployment/sync.go`.

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::{debug, info};

use super::progress::{self, PROGRESSING};
use super::replicas::{self, active, rs_replicas};
use super::revision::{self, POD_TEMPLATE_HASH_LABEL};
use super::{Error, Result, Rollout, api_err};
use crate::controller_ref::{controller_ref, is_controlled_by};
use crate::reconcile::{is_already_exists, is_not_found};

/// Replaces the ReplicaSet with `updated`'s uid, wherever it is.
pub(super) fn replace(
    new_rs: &mut Option<ReplicaSet>,
    old: &mut [ReplicaSet],
    updated: ReplicaSet,
) {
    if let Some(n) = new_rs.as_mut()
        && n.metadata.uid == updated.metadata.uid
    {
        *n = updated;
        return;
    }
    if let Some(o) = old
        .iter_mut()
        .find(|o| o.metadata.uid == updated.metadata.uid)
    {
        *o = updated;
    }
}

/// All ReplicaSets: the old ones, then the new one.
pub(super) fn all_of(old: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> Vec<ReplicaSet> {
    old.iter().chain(new_rs).cloned().collect()
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    a.metadata
        .creation_timestamp
        .cmp(&b.metadata.creation_timestamp)
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

impl Rollout<'_> {
    /// The deployment's replicas plus maxSurge, for the max-replicas annotation.
    pub(super) fn max_replicas(&self) -> i32 {
        self.desired() + self.fence.surge
    }

    /// Upstream's `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (created if `create`
    /// and missing) and all the old ones.
    pub(super) async fn get_all_replica_sets_and_sync_revision(
        &mut self,
        rs_list: Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
        let existing = revision::find_new_replica_set(&self.d, &rs_list);
        let new_uid = existing.as_ref().and_then(|rs| rs.metadata.uid.clone());
        let old: Vec<ReplicaSet> = rs_list
            .into_iter()
            .filter(|rs| new_uid.is_none() || rs.metadata.uid != new_uid)
            .collect();
        let new_revision = revision::max_revision(&old) + 1;
        let new_rs = match existing {
            Some(existing) => Some(
                self.sync_existing_new_replica_set(existing, new_revision)
                    .await?,
            ),
            None if create => Some(self.create_new_replica_set(&old, new_revision).await?),
            None => None,
        };
        Ok((new_rs, old))
    }

    /// The create half of upstream's `getNewReplicaSet`.
    async fn create_new_replica_set(
        &mut self,
        old: &[ReplicaSet],
        new_revision: i64,
    ) -> Result<ReplicaSet> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = revision::pod_template_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.name())),
                namespace: self.d.namespace(),
                owner_references: Some(vec![controller_ref(&self.d)]),
                labels,
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new_rs)).collect();
        let count = replicas::new_rs_new_replicas(&self.d, self.fence, &all, &new_rs);
        if let Some(s) = new_rs.spec.as_mut() {
            s.replicas = Some(count);
        }
        let mut annotations = Default::default();
        revision::set_new_replica_set_annotations(
            &self.d,
            &mut annotations,
            new_revision,
            false,
            self.desired(),
            self.max_replicas(),
        );
        new_rs.metadata.annotations = Some(annotations);

        let name = new_rs.name_any();
        let (created, already_existed) =
            match self.rs_api.create(&PostParams::default(), &new_rs).await {
                Ok(created) => (created, false),
                Err(e) if is_already_exists(&e) => {
                    (self.existing_or_collision(&name, e).await?, true)
                }
                Err(e) => {
                    let message = format!("Failed to create new replica set {name:?}: {e}");
                    if progress::has_progress_deadline(&self.d) {
                        let mut status = self.d.status.clone().unwrap_or_default();
                        let cond = progress::new_condition(
                            &self.ctx.clock,
                            PROGRESSING,
                            "False",
                            "ReplicaSetCreateError",
                            message.clone(),
                        );
                        progress::set_condition(&mut status, cond);
                        self.write_status(status).await?;
                    }
                    self.event("Warning", "ReplicaSetCreateError", message);
                    return Err(api_err(format!("create replica set {name}"))(e));
                }
            };
        self.ctx.rs_writes.mutation(created.clone());
        if !already_existed {
            info!(deployment = %self.name(), replicaset = %name, replicas = count, "created new replica set");
            if count > 0 {
                self.event(
                    "Normal",
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {name} from 0 to {count}"),
                );
            }
        }
        self.write_revision(&new_revision.to_string()).await?;
        if !already_existed && progress::has_progress_deadline(&self.d) {
            let mut status = self.d.status.clone().unwrap_or_default();
            let message = format!("Created new replica set {name:?}");
            progress::set_condition(
                &mut status,
                progress::new_condition(
                    &self.ctx.clock,
                    PROGRESSING,
                    "True",
                    progress::NEW_RS_REASON,
                    message,
                ),
            );
            self.write_status(status).await?;
        }
        Ok(created)
    }

    /// The new ReplicaSet's name is taken: it is ours if it is controlled by this deployment and
    /// has its template; otherwise it is a hash collision, and the collision count goes up so
    /// the next attempt hashes differently.
    async fn existing_or_collision(&mut self, name: &str, err: kube::Error) -> Result<ReplicaSet> {
        let rs = self
            .rs_api
            .get(name)
            .await
            .map_err(api_err(format!("get replica set {name}")))?;
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let template = self
            .d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let rs_template = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        if is_controlled_by(&rs.metadata, &uid)
            && revision::equal_ignore_hash(&template, &rs_template)
        {
            return Ok(rs);
        }
        let mut status = self.d.status.clone().unwrap_or_default();
        status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
        self.write_status(status).await?;
        debug!(deployment = %self.name(), replicaset = name, error = %err, "found a hash collision");
        Err(Error::HashCollision(name.to_string()))
    }

    /// Upstream's `scale`: puts the deployment's replicas into its ReplicaSets. One active (or
    /// no active) ReplicaSet takes them all; a saturated new ReplicaSet means the old ones go to
    /// 0; otherwise, during a rolling update, the difference is shared out in proportion to
    /// each ReplicaSet's size.
    pub(super) async fn scale(
        &mut self,
        new_rs: &mut Option<ReplicaSet>,
        old: &mut [ReplicaSet],
    ) -> Result<()> {
        let desired = self.desired();
        if let Some(target) = find_active_or_latest(new_rs.as_ref(), old) {
            if rs_replicas(&target) != desired {
                let (_, updated) = self
                    .scale_replica_set_and_record_event(&target, desired)
                    .await?;
                replace(new_rs, old, updated);
            }
            return Ok(());
        }
        if replicas::is_saturated(&self.d, new_rs.as_ref()) {
            for rs in active(old) {
                let (_, updated) = self.scale_replica_set_and_record_event(&rs, 0).await?;
                replace(new_rs, old, updated);
            }
            return Ok(());
        }
        if !replicas::is_rolling_update(&self.d) {
            return Ok(());
        }
        let mut all = active(&all_of(old, new_rs.as_ref()));
        let allowed = if desired > 0 {
            desired + self.fence.surge
        } else {
            0
        };
        let to_add = allowed - replicas::sum_replicas(&all);
        let operation = match to_add.cmp(&0) {
            Ordering::Greater => {
                // Larger first; among equals, newer first.
                all.sort_by(|a, b| {
                    rs_replicas(b)
                        .cmp(&rs_replicas(a))
                        .then_with(|| by_creation(b, a))
                });
                "up"
            }
            Ordering::Less => {
                // Larger first; among equals, older first.
                all.sort_by(|a, b| {
                    rs_replicas(b)
                        .cmp(&rs_replicas(a))
                        .then_with(|| by_creation(a, b))
                });
                "down"
            }
            Ordering::Equal => "",
        };
        let mut added = 0;
        let mut sizes = Vec::with_capacity(all.len());
        for rs in &all {
            let share = replicas::proportion(rs, &self.d, self.fence, to_add, added);
            sizes.push(rs_replicas(rs) + share);
            added += share;
        }
        // Leftovers go to the largest ReplicaSet.
        if let Some(first) = sizes.first_mut()
            && to_add != 0
        {
            *first = (*first + to_add - added).max(0);
        }
        for (rs, size) in all.iter().zip(sizes) {
            let updated = self.scale_replica_set(rs, size, operation).await?;
            replace(new_rs, old, updated);
        }
        Ok(())
    }

    /// Upstream's `scaleReplicaSetAndRecordEvent`: scales if the size differs; true if it did.
    pub(super) async fn scale_replica_set_and_record_event(
        &mut self,
        rs: &ReplicaSet,
        size: i32,
    ) -> Result<(bool, ReplicaSet)> {
        let current = rs_replicas(rs);
        if current == size {
            return Ok((false, rs.clone()));
        }
        let operation = if current < size { "up" } else { "down" };
        let updated = self.scale_replica_set(rs, size, operation).await?;
        Ok((true, updated))
    }

    /// Upstream's `scaleReplicaSet`: writes the size and the desired/max replicas annotations.
    async fn scale_replica_set(
        &mut self,
        rs: &ReplicaSet,
        size: i32,
        operation: &str,
    ) -> Result<ReplicaSet> {
        let current = rs_replicas(rs);
        let size_changed = current != size;
        let (desired, max) = (self.desired(), self.max_replicas());
        if !size_changed && !replicas::replicas_annotations_need_update(rs, desired, max) {
            return Ok(rs.clone());
        }
        let patch = json!({
            "metadata": {"annotations": {
                replicas::DESIRED_REPLICAS_ANNOTATION: desired.to_string(),
                replicas::MAX_REPLICAS_ANNOTATION: max.to_string(),
            }},
            "spec": {"replicas": size},
        });
        let name = rs.name_any();
        let updated = self
            .rs_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!("scale replica set {name}")))?;
        self.ctx.rs_writes.mutation(updated.clone());
        if size_changed {
            debug!(deployment = %self.name(), replicaset = %name, from = current, to = size, "scaled");
            self.event(
                "Normal",
                "ScalingReplicaSet",
                format!("Scaled {operation} replica set {name} from {current} to {size}"),
            );
        }
        Ok(updated)
    }

    /// Upstream's `isScalingEvent`: an active ReplicaSet was scaled for a different size.
    pub(super) async fn is_scaling_event(&mut self, rs_list: &[ReplicaSet]) -> Result<bool> {
        let (new_rs, old) = self
            .get_all_replica_sets_and_sync_revision(rs_list.to_vec(), false)
            .await?;
        let desired = self.desired();
        Ok(active(&all_of(&old, new_rs.as_ref()))
            .iter()
            .any(|rs| replicas::desired_replicas_annotation(rs).is_some_and(|d| d != desired)))
    }

    /// Upstream's `sync`: scaling and status only, for paused deployments and scaling events.
    pub(super) async fn sync(&mut self, rs_list: Vec<ReplicaSet>) -> Result<()> {
        let (mut new_rs, mut old) = self
            .get_all_replica_sets_and_sync_revision(rs_list, false)
            .await?;
        self.scale(&mut new_rs, &mut old).await?;
        if self.paused() {
            self.cleanup_deployment(&old).await?;
        }
        self.sync_deployment_status(&old, new_rs.as_ref()).await
    }

    /// Upstream's `syncStatusOnly`, for a deployment being deleted.
    pub(super) async fn sync_status_only(&mut self, rs_list: Vec<ReplicaSet>) -> Result<()> {
        let (new_rs, old) = self
            .get_all_replica_sets_and_sync_revision(rs_list, false)
            .await?;
        self.sync_deployment_status(&old, new_rs.as_ref()).await
    }

    /// Upstream's `checkPausedConditions`: a Progressing=Unknown condition with reason
    /// DeploymentPaused / DeploymentResumed, so a paused deployment never times out.
    pub(super) async fn check_paused_conditions(&mut self) -> Result<()> {
        if !progress::has_progress_deadline(&self.d) {
            return Ok(());
        }
        let mut status = self.d.status.clone().unwrap_or_default();
        let reason = progress::get_condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(progress::TIMED_OUT_REASON) {
            return Ok(());
        }
        let paused_cond = reason.as_deref() == Some(progress::PAUSED_REASON);
        let (reason, message) = match (self.paused(), paused_cond) {
            (true, false) => (progress::PAUSED_REASON, "Deployment is paused"),
            (false, true) => (progress::RESUMED_REASON, "Deployment is resumed"),
            _ => return Ok(()),
        };
        progress::set_condition(
            &mut status,
            progress::new_condition(
                &self.ctx.clock,
                PROGRESSING,
                "Unknown",
                reason,
                message.into(),
            ),
        );
        self.write_status(status).await
    }

    /// Upstream's `cleanupDeployment`: deletes the oldest old ReplicaSets beyond
    /// `revisionHistoryLimit`, only those with no replicas left and an up-to-date status.
    pub(super) async fn cleanup_deployment(&mut self, old: &[ReplicaSet]) -> Result<()> {
        let Some(limit) = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .filter(|l| *l != i32::MAX)
        else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - i64::from(limit.max(0));
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| {
            revision::revision(a.metadata.annotations.as_ref())
                .cmp(&revision::revision(b.metadata.annotations.as_ref()))
                .then_with(|| by_creation(a, b))
        });
        for rs in cleanable.into_iter().take(diff as usize) {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if replicas::rs_actual(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let name = rs.name_any();
            debug!(deployment = %self.name(), replicaset = %name, "trimming revision history");
            match self.rs_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => self.ctx.rs_writes.deletion(rs),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_err(format!("delete replica set {name}"))(e)),
            }
        }
        Ok(())
    }
}

/// The only active ReplicaSet, or the newest if none is active (upstream's
/// `FindActiveOrLatest`); `None` when several are active.
fn find_active_or_latest(new_rs: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Option<ReplicaSet> {
    let mut sorted_old = old.to_vec();
    sorted_old.sort_by(|a, b| by_creation(b, a));
    let all = active(&all_of(&sorted_old, new_rs));
    match all.len() {
        0 => new_rs.cloned().or_else(|| sorted_old.first().cloned()),
        1 => all.into_iter().next(),
        _ => None,
    }
}
