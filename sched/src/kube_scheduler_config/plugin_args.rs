//! The `pluginConfig` args this scheduler acts on, decoded by plugin name and validated as
//! upstream's `validation_pluginargs.go` does: `PodTopologySpreadArgs`, `NodeResourcesFitArgs`
//! and `NodeResourcesBalancedAllocationArgs`.

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{API_VERSION, FieldError, KubeSchedulerProfile};
use crate::plugins::{
    NodeResourcesBalancedAllocation, NodeResourcesFit, PodTopologySpread, ScoringStrategy,
};

/// Upstream's `PodTopologySpreadArgs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTopologySpreadArgs {
    /// `kubescheduler.config.k8s.io/v1`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `PodTopologySpreadArgs`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The constraints of pods without their own, with `defaultingType: List`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_constraints: Vec<DefaultConstraint>,
    /// `System` (upstream's built-in defaults, the default) or `List`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaulting_type: Option<String>,
}

/// One of PodTopologySpread's `defaultConstraints`. The pods it counts are those the
/// Services and controllers selecting the pod select, so it has no `labelSelector`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultConstraint {
    /// The largest allowed difference in matching pods between domains (above 0).
    pub max_skew: i32,
    /// The node label whose values are the domains.
    pub topology_key: String,
    /// `ScheduleAnyway` (`DoNotSchedule` is upstream's too, not supported here yet).
    pub when_unsatisfiable: String,
    /// Forbidden, as upstream: the selector is deduced for each pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<serde_json::Value>,
}

/// Upstream's `NodeResourcesFitArgs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeResourcesFitArgs {
    /// `kubescheduler.config.k8s.io/v1`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `NodeResourcesFitArgs`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Resources the filter ignores (not supported here: must be empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_resources: Vec<String>,
    /// Resource groups the filter ignores (not supported here: must be empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_resource_groups: Vec<String>,
    /// How nodes are scored (default LeastAllocated over cpu and memory, weight 1 each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring_strategy: Option<ScoringStrategyArgs>,
}

/// Upstream's `ScoringStrategy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScoringStrategyArgs {
    /// `LeastAllocated` or `MostAllocated` (`RequestedToCapacityRatio` is upstream's too, not
    /// supported here).
    #[serde(rename = "type", default)]
    pub type_: String,
    /// The resources scored, with their weights (`1..=100`); empty means cpu and memory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceSpec>,
    /// Only with `RequestedToCapacityRatio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_to_capacity_ratio: Option<serde_json::Value>,
}

/// Upstream's `ResourceSpec`: a resource name and its weight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceSpec {
    /// `cpu`, `memory`, or an extended resource.
    pub name: String,
    /// How much it counts.
    #[serde(default)]
    pub weight: i64,
}

/// Upstream's `NodeResourcesBalancedAllocationArgs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BalancedAllocationArgs {
    /// `kubescheduler.config.k8s.io/v1`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `NodeResourcesBalancedAllocationArgs`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The resources balanced (weight must be 1); empty means cpu and memory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceSpec>,
}

/// The plugin instances a profile's args configure; `None` means the plugin's defaults.
#[derive(Default)]
pub(super) struct ConfiguredPlugins {
    pub(super) spread: Option<PodTopologySpread>,
    pub(super) fit: Option<NodeResourcesFit>,
    pub(super) balanced: Option<NodeResourcesBalancedAllocation>,
}

/// Decodes and validates each `pluginConfig` entry of `profile` (at `path`).
pub(super) fn configure(
    path: &str,
    profile: &KubeSchedulerProfile,
    errors: &mut Vec<FieldError>,
) -> ConfiguredPlugins {
    let mut out = ConfiguredPlugins::default();
    let mut seen = HashSet::new();
    for (i, config) in profile.plugin_config.iter().enumerate() {
        let path = format!("{path}.pluginConfig[{i}]");
        let name = config.name.as_str();
        if !seen.insert(name) {
            errors.push(FieldError {
                field: path.clone(),
                detail: format!("Duplicate value: {name:?}"),
            });
            continue;
        }
        let args_path = format!("{path}.args");
        match name {
            "PodTopologySpread" => {
                out.spread =
                    decode::<PodTopologySpreadArgs>(&args_path, name, &config.args, errors)
                        .and_then(|a| {
                            check_type_meta(&args_path, &a.api_version, &a.kind, name, errors);
                            spread(&args_path, &a, errors)
                        });
            }
            "NodeResourcesFit" => {
                out.fit = decode::<NodeResourcesFitArgs>(&args_path, name, &config.args, errors)
                    .and_then(|a| {
                        check_type_meta(&args_path, &a.api_version, &a.kind, name, errors);
                        fit(&args_path, &a, errors)
                    });
            }
            "NodeResourcesBalancedAllocation" => {
                out.balanced =
                    decode::<BalancedAllocationArgs>(&args_path, name, &config.args, errors)
                        .and_then(|a| {
                            check_type_meta(&args_path, &a.api_version, &a.kind, name, errors);
                            balanced(&args_path, &a, errors)
                        });
            }
            _ if super::plugin_set::is_known(name) => errors.push(FieldError {
                field: args_path,
                detail: format!(
                    "args of plugin {name:?} are not supported; the configurable plugins are: \
                     NodeResourcesBalancedAllocation, NodeResourcesFit, PodTopologySpread"
                ),
            }),
            _ => errors.push(FieldError {
                field: format!("{path}.name"),
                detail: format!("Invalid value: {name:?}: unknown plugin"),
            }),
        }
    }
    out
}

fn decode<T: DeserializeOwned>(
    path: &str,
    plugin: &str,
    args: &serde_json::Value,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let args = if args.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        args.clone()
    };
    match serde_json::from_value(args) {
        Ok(a) => Some(a),
        Err(e) => {
            errors.push(FieldError {
                field: path.to_string(),
                detail: format!("decoding {plugin}Args: {e}"),
            });
            None
        }
    }
}

/// `apiVersion` and `kind` of the args, when given, must be upstream's.
fn check_type_meta(
    path: &str,
    api_version: &Option<String>,
    kind: &Option<String>,
    plugin: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some(v) = api_version.as_deref().filter(|v| *v != API_VERSION) {
        errors.push(FieldError {
            field: format!("{path}.apiVersion"),
            detail: format!("Unsupported value: {v:?}: supported values: {API_VERSION:?}"),
        });
    }
    let want = format!("{plugin}Args");
    if let Some(k) = kind.as_deref().filter(|k| *k != want) {
        errors.push(FieldError {
            field: path.to_string(),
            detail: format!("Invalid value: {k:?}: has to match plugin args ({want})"),
        });
    }
}

fn invalid(errors: &mut Vec<FieldError>, field: String, detail: String) {
    errors.push(FieldError { field, detail });
}

fn spread(
    path: &str,
    args: &PodTopologySpreadArgs,
    errors: &mut Vec<FieldError>,
) -> Option<PodTopologySpread> {
    let before = errors.len();
    let defaulting = args.defaulting_type.as_deref().unwrap_or("System");
    match defaulting {
        "System" if !args.default_constraints.is_empty() => invalid(
            errors,
            format!("{path}.defaultingType"),
            "Invalid value: \"System\": when .defaultConstraints are not empty".to_string(),
        ),
        "System" | "List" => {}
        other => invalid(
            errors,
            format!("{path}.defaultingType"),
            format!("Unsupported value: {other:?}: supported values: \"List\", \"System\""),
        ),
    }
    let mut seen = HashSet::new();
    for (i, c) in args.default_constraints.iter().enumerate() {
        let p = format!("{path}.defaultConstraints[{i}]");
        if c.max_skew <= 0 {
            invalid(
                errors,
                format!("{p}.maxSkew"),
                format!("Invalid value: {}: not in valid range (0, inf)", c.max_skew),
            );
        }
        if c.topology_key.is_empty() {
            invalid(
                errors,
                format!("{p}.topologyKey"),
                "Required value: can not be empty".to_string(),
            );
        }
        match c.when_unsatisfiable.as_str() {
            "ScheduleAnyway" => {}
            "DoNotSchedule" => invalid(
                errors,
                format!("{p}.whenUnsatisfiable"),
                "Unsupported value: \"DoNotSchedule\": default constraints can only score here \
                 (supported values: \"ScheduleAnyway\")"
                    .to_string(),
            ),
            "" => invalid(
                errors,
                format!("{p}.whenUnsatisfiable"),
                "Required value: can not be empty".to_string(),
            ),
            other => invalid(
                errors,
                format!("{p}.whenUnsatisfiable"),
                format!(
                    "Unsupported value: {other:?}: supported values: \"DoNotSchedule\", \"ScheduleAnyway\""
                ),
            ),
        }
        if c.label_selector.is_some() {
            invalid(
                errors,
                format!("{p}.labelSelector"),
                "Forbidden: constraint must not define a selector, as they deduced for each pod"
                    .to_string(),
            );
        }
        if !seen.insert((c.topology_key.as_str(), c.when_unsatisfiable.as_str())) {
            invalid(
                errors,
                p,
                format!(
                    "Duplicate value: \"{{{}, {}}}\"",
                    c.topology_key, c.when_unsatisfiable
                ),
            );
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(match defaulting {
        "System" => PodTopologySpread::default(),
        _ => PodTopologySpread::with_default_constraints(
            args.default_constraints
                .iter()
                .map(|c| (c.topology_key.clone(), i64::from(c.max_skew))),
        ),
    })
}

fn fit(
    path: &str,
    args: &NodeResourcesFitArgs,
    errors: &mut Vec<FieldError>,
) -> Option<NodeResourcesFit> {
    let before = errors.len();
    if !args.ignored_resources.is_empty() {
        invalid(
            errors,
            format!("{path}.ignoredResources"),
            "Forbidden: not supported by this scheduler".to_string(),
        );
    }
    if !args.ignored_resource_groups.is_empty() {
        invalid(
            errors,
            format!("{path}.ignoredResourceGroups"),
            "Forbidden: not supported by this scheduler".to_string(),
        );
    }
    let Some(strategy) = &args.scoring_strategy else {
        return (errors.len() == before).then(NodeResourcesFit::default);
    };
    let p = format!("{path}.scoringStrategy");
    let kind = match strategy.type_.as_str() {
        "LeastAllocated" => Some(ScoringStrategy::LeastAllocated),
        "MostAllocated" => Some(ScoringStrategy::MostAllocated),
        "RequestedToCapacityRatio" => {
            invalid(
                errors,
                format!("{p}.type"),
                "Unsupported value: \"RequestedToCapacityRatio\": not supported by this \
                 scheduler (supported values: \"LeastAllocated\", \"MostAllocated\")"
                    .to_string(),
            );
            None
        }
        other => {
            invalid(
                errors,
                format!("{p}.type"),
                format!(
                    "Unsupported value: {other:?}: supported values: \"LeastAllocated\", \
                     \"MostAllocated\", \"RequestedToCapacityRatio\""
                ),
            );
            None
        }
    };
    if strategy.requested_to_capacity_ratio.is_some()
        && strategy.type_ != "RequestedToCapacityRatio"
    {
        invalid(
            errors,
            format!("{p}.requestedToCapacityRatio"),
            "Forbidden: must be nil when type is not RequestedToCapacityRatio".to_string(),
        );
    }
    for (i, r) in strategy.resources.iter().enumerate() {
        if r.weight <= 0 || r.weight > 100 {
            invalid(
                errors,
                format!("{p}.resources[{i}].weight"),
                format!(
                    "Invalid value: {}: resource weight of {} not in valid range (0, 100]",
                    r.weight, r.name
                ),
            );
        }
    }
    let kind = kind.filter(|_| errors.len() == before)?;
    let resources: Vec<(&str, i64)> = if strategy.resources.is_empty() {
        vec![("cpu", 1), ("memory", 1)]
    } else {
        strategy
            .resources
            .iter()
            .map(|r| (r.name.as_str(), r.weight))
            .collect()
    };
    Some(NodeResourcesFit::new(kind, &resources))
}

fn balanced(
    path: &str,
    args: &BalancedAllocationArgs,
    errors: &mut Vec<FieldError>,
) -> Option<NodeResourcesBalancedAllocation> {
    let before = errors.len();
    let mut seen = HashSet::new();
    for (i, r) in args.resources.iter().enumerate() {
        if !seen.insert(r.name.as_str()) {
            invalid(
                errors,
                format!("{path}.resources[{i}].name"),
                format!("Duplicate value: {:?}", r.name),
            );
        }
        if r.weight != 1 {
            invalid(
                errors,
                format!("{path}.resources[{i}].weight"),
                format!("Invalid value: {}: must be 1", r.weight),
            );
        }
    }
    if errors.len() > before {
        return None;
    }
    if args.resources.is_empty() {
        return Some(NodeResourcesBalancedAllocation::default());
    }
    let names: Vec<&str> = args.resources.iter().map(|r| r.name.as_str()).collect();
    Some(NodeResourcesBalancedAllocation::new(&names))
}
