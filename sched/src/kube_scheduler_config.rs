//! Upstream's component configuration, `kubescheduler.config.k8s.io/v1`
//! `KubeSchedulerConfiguration`, for the fields this scheduler acts on: several profiles, each
//! a [`Framework`](crate::Framework) chosen by the pods' `spec.schedulerName`, with plugins
//! enabled and disabled per extension point, score weights, `percentageOfNodesToScore` and
//! the args of PodTopologySpread, NodeResourcesFit and NodeResourcesBalancedAllocation.
//!
//! Decoding is strict as upstream's: an unknown field is an error naming it. [`build`]
//! validates like upstream's `ValidateKubeSchedulerConfiguration` and then builds each
//! profile's framework like upstream's `NewFramework` (defaults merged into `multiPoint`,
//! `multiPoint` expanded to the extension points each plugin implements), returning every
//! problem at once with its field path.
//!
//! ```
//! use kybernetes_sched::KubeSchedulerConfiguration;
//!
//! let config = KubeSchedulerConfiguration::from_yaml(r#"
//! apiVersion: kubescheduler.config.k8s.io/v1
//! kind: KubeSchedulerConfiguration
//! profiles:
//!   - schedulerName: default-scheduler
//!   - schedulerName: no-scoring-scheduler
//!     plugins:
//!       preScore:
//!         disabled:
//!           - name: '*'
//!       score:
//!         disabled:
//!           - name: '*'
//! "#)?;
//! let profiles = config.build()?;
//! assert_eq!(profiles[1].scheduler_name(), "no-scoring-scheduler");
//! # Ok::<(), kybernetes_sched::ConfigError>(())
//! ```
//!
//! [`build`]: KubeSchedulerConfiguration::build

mod plugin_args;
mod plugin_set;
mod validation;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::SchedulerConfig;
use crate::framework::Framework;
use crate::profile::Profile;

pub use plugin_args::{
    BalancedAllocationArgs, DefaultConstraint, NodeResourcesFitArgs, PodTopologySpreadArgs,
    ResourceSpec, ScoringStrategyArgs,
};

/// The `apiVersion` of the configuration.
pub const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";
/// The `kind` of the configuration.
pub const KIND: &str = "KubeSchedulerConfiguration";
/// The profile a pod without `spec.schedulerName` is scheduled by.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Upstream's `KubeSchedulerConfiguration` (v1). `Default` is upstream's defaulted
/// configuration: one profile, `default-scheduler`, with the default plugins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeSchedulerConfiguration {
    /// `kubescheduler.config.k8s.io/v1` (required in a file, optional in code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `KubeSchedulerConfiguration` (required in a file, optional in code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// How many nodes upstream filters and scores in parallel (16). Checked (above 0) but
    /// without effect: this scheduler runs a cycle's plugins on one thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i32>,
    /// The share of nodes to find feasible before scoring, `0..=100`; unset or 0 is
    /// upstream's adaptive percentage. A profile's own value overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage_of_nodes_to_score: Option<i32>,
    /// The first retry delay of a pod that failed to schedule, in seconds (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_initial_backoff_seconds: Option<i64>,
    /// The longest retry delay, in seconds (10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_max_backoff_seconds: Option<i64>,
    /// The profiles; none means one `default-scheduler` profile with the default plugins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<KubeSchedulerProfile>,
}

/// Upstream's `KubeSchedulerProfile`: one scheduler name and its framework.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeSchedulerProfile {
    /// The `spec.schedulerName` of the pods this profile schedules (`default-scheduler`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    /// Overrides the top-level `percentageOfNodesToScore` for this profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage_of_nodes_to_score: Option<i32>,
    /// Plugins enabled and disabled per extension point, merged with the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Plugins>,
    /// The plugins' arguments, one entry per plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugin_config: Vec<PluginConfig>,
}

/// Upstream's `Plugins`: a [`PluginSet`] per extension point, and `multiPoint` for plugins
/// that join every extension point they implement.
///
/// PreFilter and PreScore are part of this crate's Filter and Score plugins: a plugin's
/// PreFilter runs whenever its Filter does, its PreScore whenever its Score does. The
/// `preEnqueue` (SchedulingGates), `queueSort` (PrioritySort), `bind` (DefaultBinder),
/// `reserve` and `preBind` (VolumeBinding) steps are built into the scheduling loop: their
/// sets are checked, and those plugins cannot be left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Plugins {
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub pre_enqueue: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub queue_sort: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub pre_filter: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub filter: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub post_filter: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub pre_score: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub score: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub reserve: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub permit: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub pre_bind: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub bind: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub post_bind: PluginSet,
    #[serde(default, skip_serializing_if = "PluginSet::is_empty")]
    pub multi_point: PluginSet,
}

/// Upstream's `PluginSet`: plugins to add to an extension point, and default plugins to take
/// away (`*` takes away all of them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSet {
    /// Added after the defaults; one with a default plugin's name replaces it in place (to
    /// change its weight).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled: Vec<Plugin>,
    /// Default plugins to leave out, or `*` for all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<Plugin>,
}

impl PluginSet {
    fn is_empty(&self) -> bool {
        self.enabled.is_empty() && self.disabled.is_empty()
    }

    /// A set that enables `plugins`.
    pub fn enable<'a>(plugins: impl IntoIterator<Item = &'a str>) -> PluginSet {
        PluginSet {
            enabled: plugins.into_iter().map(Plugin::named).collect(),
            disabled: Vec::new(),
        }
    }

    /// A set that disables `plugins` (`"*"` for every default one).
    pub fn disable<'a>(plugins: impl IntoIterator<Item = &'a str>) -> PluginSet {
        PluginSet {
            enabled: Vec::new(),
            disabled: plugins.into_iter().map(Plugin::named).collect(),
        }
    }
}

/// Upstream's `Plugin`: a name and, for Score plugins, a weight (unset or 0 means 1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plugin {
    /// The plugin's name (upstream's, such as `NodeResourcesFit`).
    pub name: String,
    /// The Score weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

impl Plugin {
    /// The plugin `name` with no weight.
    pub fn named(name: &str) -> Plugin {
        Plugin {
            name: name.to_string(),
            weight: None,
        }
    }

    /// The Score plugin `name` with `weight`.
    pub fn weighted(name: &str, weight: i32) -> Plugin {
        Plugin {
            name: name.to_string(),
            weight: Some(weight),
        }
    }
}

/// Upstream's `PluginConfig`: the args of one plugin, decoded by the plugin's name
/// (`PodTopologySpreadArgs`, `NodeResourcesFitArgs`, `NodeResourcesBalancedAllocationArgs`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    /// The plugin's name.
    pub name: String,
    /// Its args, as written (`apiVersion` and `kind` may be given).
    #[serde(default)]
    pub args: serde_json::Value,
}

impl PluginConfig {
    /// The args `args` of the plugin `name`.
    pub fn new(name: &str, args: impl Serialize) -> Result<PluginConfig, ConfigError> {
        Ok(PluginConfig {
            name: name.to_string(),
            args: serde_json::to_value(args).map_err(|e| ConfigError::Decode(e.to_string()))?,
        })
    }
}

/// One problem with a configuration, at a field path (`profiles[1].schedulerName`), worded as
/// upstream's field errors are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `profiles[0].plugins.score.enabled[1]`.
    pub field: String,
    /// What: `Duplicate value: "profiles[0].schedulerName"`.
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It did not decode (bad YAML or JSON, an unknown field, a wrong type).
    #[error("decoding KubeSchedulerConfiguration: {0}")]
    Decode(String),
    /// It decoded but is invalid; every problem found is listed.
    #[error("invalid KubeSchedulerConfiguration: {}", join(.0))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// The field errors, empty for a decoding error.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Decode(_) => &[],
            ConfigError::Invalid(errors) => errors,
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    all.join("; ")
}

impl KubeSchedulerConfiguration {
    /// Decodes a YAML (or JSON) document. `apiVersion` and `kind` must be upstream's.
    pub fn from_yaml(yaml: &str) -> Result<KubeSchedulerConfiguration, ConfigError> {
        let config: KubeSchedulerConfiguration =
            serde_norway::from_str(yaml).map_err(|e| ConfigError::Decode(e.to_string()))?;
        config.check_type_meta()?;
        Ok(config)
    }

    /// Decodes a JSON document. `apiVersion` and `kind` must be upstream's.
    pub fn from_json(json: &str) -> Result<KubeSchedulerConfiguration, ConfigError> {
        let config: KubeSchedulerConfiguration =
            serde_json::from_str(json).map_err(|e| ConfigError::Decode(e.to_string()))?;
        config.check_type_meta()?;
        Ok(config)
    }

    /// A file must say what it is, as upstream's decoder requires.
    fn check_type_meta(&self) -> Result<(), ConfigError> {
        let mut missing = Vec::new();
        if self.api_version.is_none() {
            missing.push("apiVersion");
        }
        if self.kind.is_none() {
            missing.push("kind");
        }
        match missing.as_slice() {
            [] => Ok(()),
            _ => Err(ConfigError::Decode(format!(
                "missing {} (want apiVersion: {API_VERSION}, kind: {KIND})",
                missing.join(" and ")
            ))),
        }
    }

    /// A configuration with these profiles and upstream's defaults otherwise.
    pub fn with_profiles(
        profiles: impl IntoIterator<Item = KubeSchedulerProfile>,
    ) -> KubeSchedulerConfiguration {
        KubeSchedulerConfiguration {
            profiles: profiles.into_iter().collect(),
            ..KubeSchedulerConfiguration::default()
        }
    }

    /// Validates the configuration and builds each profile's scheduler, in order, for
    /// [`SchedulerLoop::spawn_profiles`](crate::SchedulerLoop::spawn_profiles). Every problem
    /// found is returned at once.
    pub fn build(&self) -> Result<Vec<Profile>, ConfigError> {
        Ok(self
            .frameworks()?
            .into_iter()
            .map(|(name, framework)| Profile::new(name, framework))
            .collect())
    }

    /// [`build`](Self::build), as each profile's scheduler name and [`Framework`] (to look at
    /// the plugins, or to call [`Scheduler::schedule`](crate::Scheduler::schedule) directly).
    ///
    /// ```
    /// use kybernetes_sched::KubeSchedulerConfiguration;
    /// let profiles = KubeSchedulerConfiguration::default().frameworks()?;
    /// let (name, framework) = &profiles[0];
    /// assert_eq!(name, "default-scheduler");
    /// assert!(framework.score_names().contains(&("TaintToleration", 3)));
    /// # Ok::<(), kybernetes_sched::ConfigError>(())
    /// ```
    pub fn frameworks(&self) -> Result<Vec<(String, Framework)>, ConfigError> {
        let mut errors = validation::validate(self);
        let default_profile = [KubeSchedulerProfile::default()];
        let profiles: &[KubeSchedulerProfile] = if self.profiles.is_empty() {
            &default_profile
        } else {
            &self.profiles
        };
        let mut built = Vec::with_capacity(profiles.len());
        for (i, profile) in profiles.iter().enumerate() {
            let percentage = profile
                .percentage_of_nodes_to_score
                .or(self.percentage_of_nodes_to_score)
                .unwrap_or(0);
            let path = format!("profiles[{i}]");
            if let Some(framework) = plugin_set::framework(&path, profile, &mut errors) {
                // Out-of-range percentages were reported by validate.
                let percentage = u32::try_from(percentage).unwrap_or(0);
                built.push((
                    profile.name().to_string(),
                    framework.with_percentage_of_nodes_to_score(percentage),
                ));
            }
        }
        if errors.is_empty() {
            Ok(built)
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// Sets the loop settings this configuration has (the backoffs) on `config`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kybernetes_sched::{KubeSchedulerConfiguration, SchedulerConfig};
    /// let mut config = SchedulerConfig::default();
    /// KubeSchedulerConfiguration { pod_max_backoff_seconds: Some(60), ..Default::default() }
    ///     .apply_to(&mut config);
    /// assert_eq!(config.pod_max_backoff, Duration::from_secs(60));
    /// assert_eq!(config.pod_initial_backoff, Duration::from_secs(1));
    /// ```
    pub fn apply_to(&self, config: &mut SchedulerConfig) {
        let seconds = |s: i64| std::time::Duration::from_secs(u64::try_from(s).unwrap_or(0));
        if let Some(s) = self.pod_initial_backoff_seconds {
            config.pod_initial_backoff = seconds(s);
        }
        if let Some(s) = self.pod_max_backoff_seconds {
            config.pod_max_backoff = seconds(s);
        }
    }
}

impl KubeSchedulerProfile {
    /// A profile named `scheduler_name` with the default plugins.
    pub fn named(scheduler_name: &str) -> KubeSchedulerProfile {
        KubeSchedulerProfile {
            scheduler_name: Some(scheduler_name.to_string()),
            ..KubeSchedulerProfile::default()
        }
    }

    /// The scheduler name, defaulted as upstream does.
    pub fn name(&self) -> &str {
        self.scheduler_name
            .as_deref()
            .unwrap_or(DEFAULT_SCHEDULER_NAME)
    }
}
