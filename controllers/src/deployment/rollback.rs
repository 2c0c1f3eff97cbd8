//! Rollback, as apps/v1 does it: `kubectl rollout undo` writes an earlier revision's template
//! back into the deployment, and the controller finds the ReplicaSet that already has that
//! template (upstream's `FindNewReplicaSet` / `EqualIgnoreHash`) and makes it the new one again
//! instead of creating another. Reusing it raises its revision above every other ReplicaSet's
//! (so rolling 1 → 2 and back gives revision 3 on the first ReplicaSet) and records the old
//! revision in `deployment.kubernetes.io/revision-history`.
//!
//! The same path keeps an unchanged new ReplicaSet's annotations and `minReadySeconds` in step
//! with the deployment (the existing-ReplicaSet half of upstream's `getNewReplicaSet`).

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tracing::info;

use super::progress::{self, PROGRESSING};
use super::revision::{self, REVISION_ANNOTATION};
use super::{Result, Rollout, api_err};

impl Rollout<'_> {
    /// Brings an existing new ReplicaSet up to date: the next revision if it was an old one,
    /// the deployment's annotations and `minReadySeconds`. Once it is, the deployment takes its
    /// revision and, if it has no Progressing condition yet, FoundNewReplicaSet.
    pub(super) async fn sync_existing_new_replica_set(
        &mut self,
        existing: ReplicaSet,
        new_revision: i64,
    ) -> Result<ReplicaSet> {
        let mut annotations = existing.metadata.annotations.clone().unwrap_or_default();
        let old_revision = revision::revision(Some(&annotations));
        let annotations_changed = revision::set_new_replica_set_annotations(
            &self.d,
            &mut annotations,
            new_revision,
            true,
            self.desired(),
            self.max_replicas(),
        );
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let min_ready_changed = existing
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
            != min_ready.unwrap_or(0);
        if annotations_changed || min_ready_changed {
            let name = existing.name_any();
            let patch = json!({
                "metadata": {"annotations": annotations},
                "spec": {"minReadySeconds": min_ready},
            });
            let updated = self
                .rs_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err(format!("update replica set {name}")))?;
            let revision = revision::revision(updated.metadata.annotations.as_ref());
            if revision != old_revision {
                info!(deployment = %self.name(), replicaset = %name, from = old_revision, to = revision, "reusing replica set");
            }
            self.ctx.rs_writes.mutation(updated.clone());
            return Ok(updated);
        }

        if let Some(rev) = existing.annotations().get(REVISION_ANNOTATION).cloned() {
            self.write_revision(&rev).await?;
        }
        let mut status = self.d.status.clone().unwrap_or_default();
        if progress::has_progress_deadline(&self.d)
            && progress::get_condition(&status, PROGRESSING).is_none()
        {
            let message = format!("Found new replica set {:?}", existing.name_any());
            let cond = progress::new_condition(
                &self.ctx.clock,
                PROGRESSING,
                "True",
                progress::FOUND_NEW_RS_REASON,
                message,
            );
            progress::set_condition(&mut status, cond);
            self.write_status(status).await?;
        }
        Ok(existing)
    }
}
