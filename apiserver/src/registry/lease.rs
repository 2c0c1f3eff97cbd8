//! Leases: a PUT may create one (upstream's `AllowCreateOnUpdate`), as leader election and
//! node heartbeats rely on.

use super::Strategy;

/// The strategy of coordination.k8s.io/v1 leases.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeaseStrategy;

impl Strategy for LeaseStrategy {
    fn allow_create_on_update(&self) -> bool {
        true
    }
}
