//! `KubeSchedulerConfiguration`: upstream's YAML decodes, validation reports upstream's field
//! errors, plugin sets merge and expand as upstream's do, and the frameworks built from it
//! place pods as configured.

use k8s_openapi::api::core::v1::{Node, Pod};
use kybernetes_sched::kube_scheduler_config::{
    DefaultConstraint, Plugin, PluginConfig, PluginSet, Plugins, PodTopologySpreadArgs,
};
use kybernetes_sched::{
    ConfigError, Framework, KubeSchedulerConfiguration, KubeSchedulerProfile, Scheduler, Snapshot,
};
use serde_json::json;

fn frameworks(yaml: &str) -> Vec<(String, Framework)> {
    KubeSchedulerConfiguration::from_yaml(yaml)
        .expect("decodes")
        .frameworks()
        .expect("valid")
}

/// The field errors of an invalid configuration, as `field: detail` lines.
fn errors(yaml: &str) -> Vec<String> {
    let config = KubeSchedulerConfiguration::from_yaml(yaml).expect("decodes");
    match config.frameworks() {
        Ok(_) => panic!("expected an invalid configuration"),
        Err(e) => e.field_errors().iter().map(ToString::to_string).collect(),
    }
}

fn sorted(mut v: Vec<(&str, i64)>) -> Vec<(&str, i64)> {
    v.sort();
    v
}

const HEADER: &str =
    "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";

#[test]
fn the_default_configuration_is_the_default_framework() {
    let built = KubeSchedulerConfiguration::default()
        .frameworks()
        .expect("valid");
    assert_eq!(built.len(), 1);
    let (name, fw) = &built[0];
    let default = Framework::default_plugins();
    assert_eq!(name, "default-scheduler");
    assert_eq!(fw.filter_names(), default.filter_names());
    assert_eq!(sorted(fw.score_names()), sorted(default.score_names()));
    assert!(fw.preemption_enabled());
}

#[test]
fn upstream_multiple_profiles_example_decodes() {
    // The example of upstream's "Scheduler Configuration" page, multiple profiles.
    let built = frameworks(include_str!("../testdata/multiple-profiles.yaml"));
    let names: Vec<&str> = built.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["default-scheduler", "no-scoring-scheduler"]);
    assert_eq!(built[0].1.score_names().len(), 7);
    assert!(built[1].1.score_names().is_empty());
    assert_eq!(built[1].1.filter_names(), built[0].1.filter_names());
}

#[test]
fn score_weights_replace_defaults_in_place_and_star_disables_all() {
    let built = frameworks(&format!(
        "{HEADER}profiles:
  - schedulerName: weighted
    plugins:
      score:
        enabled:
        - name: ImageLocality
          weight: 5
        disabled:
        - name: NodeResourcesBalancedAllocation
  - schedulerName: only-fit
    plugins:
      score:
        disabled:
        - name: '*'
        enabled:
        - name: NodeResourcesFit
          weight: 4
  - schedulerName: multi-point-weight
    plugins:
      multiPoint:
        enabled:
        - name: TaintToleration
          weight: 9
"
    ));
    let weighted = built[0].1.score_names();
    assert!(weighted.contains(&("ImageLocality", 5)), "{weighted:?}");
    assert!(
        !weighted
            .iter()
            .any(|(n, _)| *n == "NodeResourcesBalancedAllocation")
    );
    assert_eq!(weighted.len(), 6);
    assert_eq!(built[1].1.score_names(), [("NodeResourcesFit", 4)]);
    // The filters are untouched by score settings.
    assert_eq!(built[1].1.filter_names().len(), 9);
    let multi = built[2].1.score_names();
    assert!(multi.contains(&("TaintToleration", 9)), "{multi:?}");
}

#[test]
fn a_plugin_disabled_in_multi_point_leaves_every_extension_point() {
    let built = frameworks(&format!(
        "{HEADER}profiles:
  - plugins:
      multiPoint:
        disabled:
        - name: TaintToleration
        - name: DefaultPreemption
"
    ));
    let (name, fw) = &built[0];
    assert_eq!(name, "default-scheduler");
    assert!(!fw.filter_names().contains(&"TaintToleration"));
    assert!(
        !fw.score_names()
            .iter()
            .any(|(n, _)| *n == "TaintToleration")
    );
    assert!(!fw.preemption_enabled());
}

#[test]
fn multi_point_star_needs_the_loop_plugins_back() {
    let errs = errors(&format!(
        "{HEADER}profiles:
  - schedulerName: bare
    plugins:
      multiPoint:
        disabled:
        - name: '*'
        enabled:
        - name: NodeResourcesFit
"
    ));
    assert!(
        errs.contains(&"profiles[0].plugins.queueSort: only one queue sort plugin required for profile with scheduler name \"bare\", but got 0".to_string()),
        "{errs:?}"
    );
    assert!(
        errs.contains(&"profiles[0].plugins.bind: at least one bind plugin is needed for profile with scheduler name \"bare\"".to_string()),
        "{errs:?}"
    );
    let built = frameworks(&format!(
        "{HEADER}profiles:
  - schedulerName: bare
    plugins:
      multiPoint:
        disabled:
        - name: '*'
        enabled:
        - name: SchedulingGates
        - name: PrioritySort
        - name: DefaultBinder
        - name: NodeResourcesFit
          weight: 2
"
    ));
    assert_eq!(built[0].1.filter_names(), ["NodeResourcesFit"]);
    assert_eq!(built[0].1.score_names(), [("NodeResourcesFit", 2)]);
    assert!(!built[0].1.preemption_enabled());
}

#[test]
fn validation_reports_upstream_field_errors() {
    let errs = errors(&format!(
        "{HEADER}percentageOfNodesToScore: 101
podInitialBackoffSeconds: 5
podMaxBackoffSeconds: 2
profiles:
  - schedulerName: a
    percentageOfNodesToScore: -1
  - schedulerName: a
  - schedulerName: ''
"
    ));
    assert_eq!(
        errs,
        [
            "profiles[0].percentageOfNodesToScore: Invalid value: -1: not in valid range [0-100]",
            "profiles[1].schedulerName: Duplicate value: \"profiles[0].schedulerName\"",
            "profiles[2].schedulerName: Required value",
            "percentageOfNodesToScore: Invalid value: 101: not in valid range [0-100]",
            "podMaxBackoffSeconds: Invalid value: 2: must be greater than or equal to PodInitialBackoffSeconds",
        ]
    );
}

#[test]
fn unknown_plugins_and_bad_weights_are_named() {
    let errs = errors(&format!(
        "{HEADER}profiles:
  - plugins:
      score:
        enabled:
        - name: NodeNumber
        - name: ImageLocality
          weight: -3
        disabled:
        - name: NodeResourcesLeastAllocated
      filter:
        enabled:
        - name: ImageLocality
        - name: VolumeZone
"
    ));
    let has = |s: &str| errs.iter().any(|e| e.starts_with(s));
    assert!(
        has("profiles[0].plugins.score.enabled[0]: Invalid value: \"NodeNumber\": unknown plugin"),
        "{errs:?}"
    );
    assert!(
        has("profiles[0].plugins.score.enabled[1].weight: Invalid value: -3: must not be negative"),
        "{errs:?}"
    );
    assert!(
        has(
            "profiles[0].plugins.score.disabled[0]: Invalid value: \"NodeResourcesLeastAllocated\""
        ),
        "{errs:?}"
    );
    assert!(
        has(
            "profiles[0].plugins.filter.enabled[0]: plugin \"ImageLocality\" does not extend FilterPlugin plugin"
        ),
        "{errs:?}"
    );
    assert!(
        has(
            "profiles[0].plugins.filter.enabled[1]: Invalid value: \"VolumeZone\": upstream plugin not implemented"
        ),
        "{errs:?}"
    );
}

#[test]
fn unknown_fields_and_missing_type_meta_fail_to_decode() {
    let e = KubeSchedulerConfiguration::from_yaml(&format!(
        "{HEADER}profiles:\n  - schedulerName: a\n    plugin: {{}}\n"
    ))
    .expect_err("unknown field");
    assert!(matches!(e, ConfigError::Decode(_)));
    assert!(e.to_string().contains("unknown field `plugin`"), "{e}");
    let e = KubeSchedulerConfiguration::from_yaml("profiles: []\n").expect_err("no kind");
    assert!(e.to_string().contains("missing apiVersion and kind"), "{e}");
    let e = KubeSchedulerConfiguration::from_yaml(
        "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n",
    )
    .expect("decodes")
    .build()
    .expect_err("old version");
    assert!(
        e.to_string().contains("apiVersion: Unsupported value"),
        "{e}"
    );
}

#[test]
fn plugin_args_are_decoded_and_validated() {
    let errs = errors(&format!(
        "{HEADER}profiles:
  - pluginConfig:
    - name: PodTopologySpread
      args:
        defaultingType: System
        defaultConstraints:
        - maxSkew: 0
          topologyKey: zone
          whenUnsatisfiable: ScheduleAnyway
    - name: NodeResourcesFit
      args:
        scoringStrategy:
          type: Packed
          resources:
          - name: cpu
            weight: 101
    - name: NodeResourcesFit
      args: {{}}
    - name: NodeResourcesBalancedAllocation
      args:
        colour: blue
    - name: Unheard
      args: {{}}
"
    ));
    let expected = [
        "profiles[0].pluginConfig[0].args.defaultingType: Invalid value: \"System\": when .defaultConstraints are not empty",
        "profiles[0].pluginConfig[0].args.defaultConstraints[0].maxSkew: Invalid value: 0: not in valid range (0, inf)",
        "profiles[0].pluginConfig[1].args.scoringStrategy.type: Unsupported value: \"Packed\"",
        "profiles[0].pluginConfig[1].args.scoringStrategy.resources[0].weight: Invalid value: 101: resource weight of cpu not in valid range (0, 100]",
        "profiles[0].pluginConfig[2]: Duplicate value: \"NodeResourcesFit\"",
        "profiles[0].pluginConfig[3].args: decoding NodeResourcesBalancedAllocationArgs: unknown field `colour`",
        "profiles[0].pluginConfig[4].name: Invalid value: \"Unheard\": unknown plugin",
    ];
    for want in expected {
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {errs:?}"
        );
    }
    assert_eq!(errs.len(), expected.len(), "{errs:?}");
}

fn node(name: &str, cpu: &str, labels: serde_json::Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "110"}},
    }))
    .expect("node")
}

fn pod(name: &str, cpu: &str, node: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "100Mi"}}}],
        },
    }))
    .expect("pod")
}

#[test]
fn most_allocated_scoring_packs_where_least_allocated_spreads() {
    let built = frameworks(&format!(
        "{HEADER}profiles:
  - schedulerName: default-scheduler
  - schedulerName: bin-packer
    plugins:
      score:
        disabled:
        - name: NodeResourcesBalancedAllocation
    pluginConfig:
    - name: NodeResourcesFit
      args:
        scoringStrategy:
          type: MostAllocated
          resources:
          - name: cpu
            weight: 1
"
    ));
    let snapshot = Snapshot::new(
        vec![node("busy", "4", json!({})), node("idle", "4", json!({}))],
        vec![pod("running", "2", Some("busy"))],
    );
    let incoming = pod("new", "1", None);
    assert_eq!(
        built[0].1.schedule(&incoming, &snapshot).expect("fits"),
        "idle"
    );
    assert_eq!(
        built[1].1.schedule(&incoming, &snapshot).expect("fits"),
        "busy"
    );
}

#[test]
fn percentage_of_nodes_to_score_is_global_unless_a_profile_overrides_it() {
    let config = KubeSchedulerConfiguration {
        percentage_of_nodes_to_score: Some(10),
        ..KubeSchedulerConfiguration::with_profiles([
            KubeSchedulerProfile::named("sampled"),
            KubeSchedulerProfile {
                percentage_of_nodes_to_score: Some(100),
                ..KubeSchedulerProfile::named("exhaustive")
            },
        ])
    };
    let built = config.frameworks().expect("valid");
    // 1000 busy nodes and one idle node far along: only a search of every node finds it.
    let mut nodes: Vec<Node> = (0..1000)
        .map(|i| node(&format!("n{i:04}"), "4", json!({})))
        .collect();
    let running: Vec<Pod> = (0..1000)
        .filter(|i| *i != 700)
        .map(|i| pod(&format!("r{i}"), "3", Some(&format!("n{i:04}"))))
        .collect();
    nodes.push(node("spare", "1", json!({})));
    let snapshot = Snapshot::new(nodes, running);
    let incoming = pod("new", "500m", None);
    let sampled = built[0].1.schedule(&incoming, &snapshot).expect("fits");
    let index: usize = sampled[1..].parse().expect("a numbered node");
    assert!(
        index < 100,
        "10 % of 1001 nodes is 100 searched; got {sampled}"
    );
    assert_eq!(
        built[1].1.schedule(&incoming, &snapshot).expect("fits"),
        "n0700"
    );
}

#[test]
fn list_defaulting_spreads_pods_without_constraints_by_the_given_keys() {
    let args = PodTopologySpreadArgs {
        defaulting_type: Some("List".to_string()),
        default_constraints: vec![DefaultConstraint {
            max_skew: 1,
            topology_key: "zone".to_string(),
            when_unsatisfiable: "ScheduleAnyway".to_string(),
            label_selector: None,
        }],
        ..PodTopologySpreadArgs::default()
    };
    let profile = KubeSchedulerProfile {
        plugins: Some(Plugins {
            score: PluginSet {
                enabled: vec![Plugin::weighted("PodTopologySpread", 2)],
                disabled: vec![Plugin::named("*")],
            },
            ..Plugins::default()
        }),
        plugin_config: vec![PluginConfig::new("PodTopologySpread", &args).expect("args")],
        ..KubeSchedulerProfile::named("zonal")
    };
    let built = KubeSchedulerConfiguration::with_profiles([profile])
        .frameworks()
        .expect("valid");
    assert_eq!(built[0].1.score_names(), [("PodTopologySpread", 2)]);
    // A DoNotSchedule default constraint is refused clearly (only scoring is supported).
    let errs = errors(&format!(
        "{HEADER}profiles:
  - pluginConfig:
    - name: PodTopologySpread
      args:
        defaultingType: List
        defaultConstraints:
        - maxSkew: 1
          topologyKey: zone
          whenUnsatisfiable: DoNotSchedule
"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("whenUnsatisfiable: Unsupported value: \"DoNotSchedule\""));
}
