//! Service accounts: the `token` subresource (`TokenRequest`).

use super::{Strategy, Subresource};

/// The strategy of core/v1 service accounts.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceAccountStrategy;

impl Strategy for ServiceAccountStrategy {
    fn subresource(&self, name: &str) -> Option<Subresource> {
        (name == "token").then_some(Subresource::Token)
    }
}
