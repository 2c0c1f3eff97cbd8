//! The strategy of kinds with no rules of their own, and of every custom resource: the
//! generic metadata rules only (see [`super::before`]).

use super::Strategy;

/// The default strategy: every [`Strategy`] method keeps its generic behaviour.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenericStrategy;

impl Strategy for GenericStrategy {}
