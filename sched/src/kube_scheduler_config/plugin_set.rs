//! From a profile's `plugins` to a [`Framework`]: upstream's default `multiPoint` plugins merged
//! with the profile's sets (v1 `mergePlugins`), then `multiPoint` expanded to every extension
//! point its plugins implement (the framework's `expandMultiPointPlugins`), then the Filter,
//! Score and PostFilter plugins instantiated with the profile's args.

use std::collections::HashSet;

use super::plugin_args::{self, ConfiguredPlugins};
use super::{FieldError, KubeSchedulerProfile, Plugin, PluginSet, Plugins};
use crate::framework::Framework;
use crate::plugins::{
    ImageLocality, InterPodAffinity, NodeAffinity, NodeName, NodePorts, NodeResourcesFit,
    NodeUnschedulable, PodTopologySpread, TaintToleration, VolumeBinding,
};

/// An extension point of the scheduling framework.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Point {
    PreEnqueue,
    QueueSort,
    PreFilter,
    Filter,
    PostFilter,
    PreScore,
    Score,
    Reserve,
    Permit,
    PreBind,
    Bind,
    PostBind,
}

use Point::*;

impl Point {
    /// The field of [`Plugins`] that configures this point.
    fn field(self) -> &'static str {
        match self {
            PreEnqueue => "preEnqueue",
            QueueSort => "queueSort",
            PreFilter => "preFilter",
            Filter => "filter",
            PostFilter => "postFilter",
            PreScore => "preScore",
            Score => "score",
            Reserve => "reserve",
            Permit => "permit",
            PreBind => "preBind",
            Bind => "bind",
            PostBind => "postBind",
        }
    }

    /// Upstream's interface name, as its errors say it.
    fn interface(self) -> &'static str {
        match self {
            PreEnqueue => "PreEnqueuePlugin",
            QueueSort => "QueueSortPlugin",
            PreFilter => "PreFilterPlugin",
            Filter => "FilterPlugin",
            PostFilter => "PostFilterPlugin",
            PreScore => "PreScorePlugin",
            Score => "ScorePlugin",
            Reserve => "ReservePlugin",
            Permit => "PermitPlugin",
            PreBind => "PreBindPlugin",
            Bind => "BindPlugin",
            PostBind => "PostBindPlugin",
        }
    }

    fn set(self, plugins: &Plugins) -> &PluginSet {
        match self {
            PreEnqueue => &plugins.pre_enqueue,
            QueueSort => &plugins.queue_sort,
            PreFilter => &plugins.pre_filter,
            Filter => &plugins.filter,
            PostFilter => &plugins.post_filter,
            PreScore => &plugins.pre_score,
            Score => &plugins.score,
            Reserve => &plugins.reserve,
            Permit => &plugins.permit,
            PreBind => &plugins.pre_bind,
            Bind => &plugins.bind,
            PostBind => &plugins.post_bind,
        }
    }
}

const ALL_POINTS: [Point; 12] = [
    PreEnqueue, QueueSort, PreFilter, Filter, PostFilter, PreScore, Score, Reserve, Permit,
    PreBind, Bind, PostBind,
];

/// A plugin upstream registers: which extension points it implements, and whether this crate
/// implements it.
struct Registered {
    name: &'static str,
    points: &'static [Point],
    implemented: bool,
}

/// A plugin this crate implements.
const fn ours(name: &'static str, points: &'static [Point]) -> Registered {
    Registered {
        name,
        points,
        implemented: true,
    }
}

/// An upstream plugin this crate does not implement: it may be disabled, not enabled.
const fn upstream_only(name: &'static str, points: &'static [Point]) -> Registered {
    Registered {
        name,
        points,
        implemented: false,
    }
}

/// Upstream's in-tree registry (1.33).
const REGISTRY: &[Registered] = &[
    ours("SchedulingGates", &[PreEnqueue]),
    ours("PrioritySort", &[QueueSort]),
    ours("NodeUnschedulable", &[Filter]),
    ours("NodeName", &[Filter]),
    ours("TaintToleration", &[Filter, PreScore, Score]),
    ours("NodeAffinity", &[PreFilter, Filter, PreScore, Score]),
    ours("NodePorts", &[PreFilter, Filter]),
    ours("NodeResourcesFit", &[PreFilter, Filter, PreScore, Score]),
    upstream_only("VolumeRestrictions", &[PreFilter, Filter]),
    upstream_only("NodeVolumeLimits", &[PreFilter, Filter]),
    ours(
        "VolumeBinding",
        &[PreFilter, Filter, Reserve, PreBind, PreScore, Score],
    ),
    upstream_only("VolumeZone", &[PreFilter, Filter]),
    ours("PodTopologySpread", &[PreFilter, Filter, PreScore, Score]),
    ours("InterPodAffinity", &[PreFilter, Filter, PreScore, Score]),
    ours("DefaultPreemption", &[PostFilter]),
    ours("NodeResourcesBalancedAllocation", &[PreScore, Score]),
    ours("ImageLocality", &[Score]),
    ours("DefaultBinder", &[Bind]),
    upstream_only(
        "DynamicResources",
        &[PreEnqueue, PreFilter, Filter, PostFilter, Reserve, PreBind],
    ),
];

/// Upstream's default `multiPoint` plugins (v1 `getDefaultPlugins`) with their weights, less
/// those this crate does not implement.
const DEFAULT_MULTI_POINT: &[(&str, Option<i32>)] = &[
    ("SchedulingGates", None),
    ("PrioritySort", None),
    ("NodeUnschedulable", None),
    ("NodeName", None),
    ("TaintToleration", Some(3)),
    ("NodeAffinity", Some(2)),
    ("NodePorts", None),
    ("NodeResourcesFit", Some(1)),
    ("VolumeBinding", None),
    ("PodTopologySpread", Some(2)),
    ("InterPodAffinity", Some(2)),
    ("DefaultPreemption", None),
    ("NodeResourcesBalancedAllocation", Some(1)),
    ("ImageLocality", Some(1)),
    ("DefaultBinder", None),
];

fn registered(name: &str) -> Option<&'static Registered> {
    REGISTRY.iter().find(|r| r.name == name)
}

/// Whether `name` is one of upstream's in-tree plugins.
pub(super) fn is_known(name: &str) -> bool {
    registered(name).is_some()
}

fn implements(name: &str, point: Point) -> bool {
    registered(name).is_some_and(|r| r.points.contains(&point))
}

fn known_names() -> String {
    let names: Vec<&str> = REGISTRY
        .iter()
        .filter(|r| r.implemented)
        .map(|r| r.name)
        .collect();
    names.join(", ")
}

/// Checks the names and weights in one set of the profile's `plugins` (at `path`).
fn check_set(path: &str, set: &PluginSet, errors: &mut Vec<FieldError>) {
    for (i, p) in set.enabled.iter().enumerate() {
        let at = format!("{path}.enabled[{i}]");
        match registered(&p.name) {
            None => errors.push(FieldError {
                field: at.clone(),
                detail: format!(
                    "Invalid value: {:?}: unknown plugin; the plugins are: {}",
                    p.name,
                    known_names()
                ),
            }),
            Some(r) if !r.implemented => errors.push(FieldError {
                field: at.clone(),
                detail: format!(
                    "Invalid value: {:?}: upstream plugin not implemented by this scheduler",
                    p.name
                ),
            }),
            Some(_) => {}
        }
        if let Some(w) = p.weight.filter(|w| *w < 0) {
            errors.push(FieldError {
                field: format!("{at}.weight"),
                detail: format!("Invalid value: {w}: must not be negative"),
            });
        }
    }
    for (i, p) in set.disabled.iter().enumerate() {
        if p.name != "*" && !is_known(&p.name) {
            errors.push(FieldError {
                field: format!("{path}.disabled[{i}]"),
                detail: format!(
                    "Invalid value: {:?}: unknown plugin; the plugins are: {}",
                    p.name,
                    known_names()
                ),
            });
        }
    }
}

/// A set after merging: what is enabled, in order, and the names disabled.
struct Merged {
    enabled: Vec<Plugin>,
    disabled: HashSet<String>,
}

/// Upstream's `mergePluginSet`: the defaults less the disabled ones (all with `*`), a custom
/// plugin with a default's name replacing it in place, then the other custom plugins.
fn merge(defaults: &[Plugin], custom: &PluginSet) -> Merged {
    let disabled: HashSet<String> = custom.disabled.iter().map(|p| p.name.clone()).collect();
    let mut replaced = HashSet::new();
    let mut enabled = Vec::new();
    if !disabled.contains("*") {
        for d in defaults {
            if disabled.contains(&d.name) {
                continue;
            }
            match custom.enabled.iter().position(|c| c.name == d.name) {
                Some(i) => {
                    replaced.insert(i);
                    enabled.push(custom.enabled[i].clone());
                }
                None => enabled.push(d.clone()),
            }
        }
    }
    enabled.extend(
        custom
            .enabled
            .iter()
            .enumerate()
            .filter(|(i, _)| !replaced.contains(i))
            .map(|(_, p)| p.clone()),
    );
    Merged { enabled, disabled }
}

/// Upstream's error for a plugin enabled twice at one extension point.
fn already_registered(field: String, name: &str, point: Point) -> FieldError {
    FieldError {
        field,
        detail: format!(
            "plugin {name:?} already registered as {:?}",
            point.interface()
        ),
    }
}

/// The plugins of one extension point, in order (upstream's `expandMultiPointPlugins`): the
/// ones the point's own set overrides from `multiPoint`, then the other `multiPoint` ones that
/// implement the point, then the rest of the point's own set.
fn expand(
    path: &str,
    point: Point,
    own: &Merged,
    multi: &Merged,
    errors: &mut Vec<FieldError>,
) -> Vec<String> {
    let mut own_names: Vec<&str> = Vec::new();
    for (i, p) in own.enabled.iter().enumerate() {
        let at = format!("{path}.plugins.{}.enabled[{i}]", point.field());
        if !is_known(&p.name) {
            continue; // reported by check_set
        }
        if !implements(&p.name, point) {
            errors.push(FieldError {
                field: at,
                detail: format!(
                    "plugin {:?} does not extend {} plugin",
                    p.name,
                    point.interface()
                ),
            });
        } else if own_names.contains(&p.name.as_str()) {
            errors.push(already_registered(at, &p.name, point));
        } else {
            own_names.push(&p.name);
        }
    }
    if own.disabled.contains("*") {
        return own_names.into_iter().map(str::to_string).collect();
    }
    let mut overridden = HashSet::new();
    let mut from_multi: Vec<&str> = Vec::new();
    for (i, p) in multi.enabled.iter().enumerate() {
        if !implements(&p.name, point) || own.disabled.contains(&p.name) {
            continue;
        }
        if own_names.contains(&p.name.as_str()) {
            overridden.insert(p.name.as_str());
        } else if from_multi.contains(&p.name.as_str()) {
            errors.push(already_registered(
                format!("{path}.plugins.multiPoint.enabled[{i}]"),
                &p.name,
                point,
            ));
        } else {
            from_multi.push(&p.name);
        }
    }
    let (first, rest): (Vec<&str>, Vec<&str>) = own_names
        .iter()
        .copied()
        .partition(|n| overridden.contains(n));
    first
        .into_iter()
        .chain(from_multi)
        .chain(rest)
        .map(str::to_string)
        .collect()
}

/// Upstream's `getScoreWeights`: the weight in the `score` set, else in `multiPoint`; unset
/// or 0 is 1.
fn score_weight(name: &str, score: &Merged, multi: &Merged) -> i64 {
    score
        .enabled
        .iter()
        .chain(&multi.enabled)
        .find(|p| p.name == name)
        .and_then(|p| p.weight)
        .filter(|w| *w > 0)
        .map_or(1, i64::from)
}

/// The framework of `profile` (at `path`), or `None` with the problems pushed onto `errors`.
pub(super) fn framework(
    path: &str,
    profile: &KubeSchedulerProfile,
    errors: &mut Vec<FieldError>,
) -> Option<Framework> {
    let before = errors.len();
    let configured = plugin_args::configure(path, profile, errors);
    let empty = Plugins::default();
    let custom = profile.plugins.as_ref().unwrap_or(&empty);
    for point in ALL_POINTS {
        check_set(
            &format!("{path}.plugins.{}", point.field()),
            point.set(custom),
            errors,
        );
    }
    check_set(
        &format!("{path}.plugins.multiPoint"),
        &custom.multi_point,
        errors,
    );
    let defaults: Vec<Plugin> = DEFAULT_MULTI_POINT
        .iter()
        .map(|(name, weight)| Plugin {
            name: (*name).to_string(),
            weight: *weight,
        })
        .collect();
    let multi = merge(&defaults, &custom.multi_point);
    let merged = |point: Point| merge(&[], point.set(custom));
    let mut at = |point: Point| expand(path, point, &merged(point), &multi, errors);
    let queue_sort = at(QueueSort);
    let bind = at(Bind);
    let pre_enqueue = at(PreEnqueue);
    let filters = at(Filter);
    let post_filter = at(PostFilter);
    let scores = at(Score);
    for point in [PreFilter, PreScore, Reserve, Permit, PreBind, PostBind] {
        at(point);
    }
    let name = profile.name();
    let loop_requires =
        |errors: &mut Vec<FieldError>, point: Point, plugin: &str, got: &[String]| {
            if !got.iter().any(|p| p == plugin) {
                errors.push(FieldError {
                    field: format!("{path}.plugins.{}", point.field()),
                    detail: format!(
                        "Required value: {plugin} must stay enabled in profile {name:?}: the \
                     scheduling loop always does its work (got {got:?})"
                    ),
                });
            }
        };
    if queue_sort.len() != 1 {
        errors.push(FieldError {
            field: format!("{path}.plugins.queueSort"),
            detail: format!(
                "only one queue sort plugin required for profile with scheduler name {name:?}, \
                 but got {}",
                queue_sort.len()
            ),
        });
    }
    if bind.is_empty() {
        errors.push(FieldError {
            field: format!("{path}.plugins.bind"),
            detail: format!(
                "at least one bind plugin is needed for profile with scheduler name {name:?}"
            ),
        });
    }
    loop_requires(errors, PreEnqueue, "SchedulingGates", &pre_enqueue);
    if errors.len() > before {
        return None;
    }
    let score_set = merged(Score);
    let mut fw =
        Framework::empty().with_preemption(post_filter.iter().any(|p| p == "DefaultPreemption"));
    for f in &filters {
        fw = add_filter(fw, f, &configured);
    }
    for s in &scores {
        fw = add_score(fw, s, &configured, score_weight(s, &score_set, &multi));
    }
    Some(fw)
}

fn spread(c: &ConfiguredPlugins) -> PodTopologySpread {
    c.spread.clone().unwrap_or_default()
}

fn fit(c: &ConfiguredPlugins) -> NodeResourcesFit {
    c.fit.clone().unwrap_or_default()
}

fn add_filter(fw: Framework, name: &str, c: &ConfiguredPlugins) -> Framework {
    match name {
        "NodeUnschedulable" => fw.with_filter(NodeUnschedulable),
        "NodeName" => fw.with_filter(NodeName),
        "TaintToleration" => fw.with_filter(TaintToleration),
        "NodeAffinity" => fw.with_filter(NodeAffinity),
        "NodePorts" => fw.with_filter(NodePorts),
        "NodeResourcesFit" => fw.with_filter(fit(c)),
        "VolumeBinding" => fw.with_filter(VolumeBinding),
        "PodTopologySpread" => fw.with_filter(spread(c)),
        "InterPodAffinity" => fw.with_filter(InterPodAffinity),
        // Only implemented Filter plugins get this far (check_set and expand).
        _ => fw,
    }
}

fn add_score(fw: Framework, name: &str, c: &ConfiguredPlugins, weight: i64) -> Framework {
    let fw = match name {
        "TaintToleration" => fw.with_score(TaintToleration),
        "NodeAffinity" => fw.with_score(NodeAffinity),
        "NodeResourcesFit" => fw.with_score(fit(c)),
        "NodeResourcesBalancedAllocation" => fw.with_score(c.balanced.clone().unwrap_or_default()),
        "ImageLocality" => fw.with_score(ImageLocality),
        "PodTopologySpread" => fw.with_score(spread(c)),
        "InterPodAffinity" => fw.with_score(InterPodAffinity),
        // VolumeBinding scores only with upstream's StorageCapacityScoring gate (off), and
        // then only by capacity: a constant here.
        _ => return fw,
    };
    fw.with_score_weight(name, weight)
}
