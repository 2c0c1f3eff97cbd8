//! Endpoints: written by the endpoints controller with PUT, which may create them (upstream's
//! `AllowCreateOnUpdate`).

use super::Strategy;

/// The strategy of core/v1 endpoints.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn allow_create_on_update(&self) -> bool {
        true
    }
}
