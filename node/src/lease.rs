//! The node lease heartbeat (upstream's `nodelease` controller): a `coordination.k8s.io`
//! Lease named after the node in `kube-node-lease`, owned by the Node, renewed every
//! `renew_interval` with the cluster clock's time.

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::context::AgentContext;
use crate::convert::micro_time;

/// The namespace node leases live in.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

struct NodeLease {
    ctx: Arc<AgentContext>,
    api: Api<Lease>,
    node_uid: String,
    /// The lease as last written (its resourceVersion makes the next renewal a cheap update).
    current: Option<Lease>,
}

impl NodeLease {
    fn spec(&self) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.ctx.name().to_string()),
            lease_duration_seconds: Some(self.ctx.config.lease_duration.as_secs() as i32),
            renew_time: Some(micro_time(self.ctx.now())),
            ..Default::default()
        }
    }

    fn new_lease(&self) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.ctx.name().to_string()),
                namespace: Some(NODE_LEASE_NAMESPACE.into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: self.ctx.name().to_string(),
                    uid: self.node_uid.clone(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(self.spec()),
        }
    }

    /// Renews the lease, creating it if needed.
    async fn renew(&mut self) -> Result<(), kube::Error> {
        let name = self.ctx.name().to_string();
        let base = match self.current.take() {
            Some(l) => Some(l),
            None => self.api.get_opt(&name).await?,
        };
        let written = match base {
            Some(mut lease) => {
                lease.spec = Some(LeaseSpec {
                    acquire_time: lease.spec.as_ref().and_then(|s| s.acquire_time.clone()),
                    ..self.spec()
                });
                self.api
                    .replace(&name, &PostParams::default(), &lease)
                    .await?
            }
            None => {
                self.api
                    .create(&PostParams::default(), &self.new_lease())
                    .await?
            }
        };
        self.current = Some(written);
        Ok(())
    }
}

/// Renews the node lease until `shutdown`. The first renewal happens at once.
pub(crate) async fn run_lease(
    ctx: Arc<AgentContext>,
    node_uid: String,
    shutdown: CancellationToken,
) {
    let api = Api::namespaced(ctx.client.clone(), NODE_LEASE_NAMESPACE);
    let every = ctx.config.renew_interval;
    let mut lease = NodeLease {
        ctx,
        api,
        node_uid,
        current: None,
    };
    loop {
        match lease.renew().await {
            Ok(()) => debug!("node lease renewed"),
            Err(e) => {
                warn!(error = %e, "renewing the node lease failed");
                // The cached copy may be stale (409); read it again next time.
                lease.current = None;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
