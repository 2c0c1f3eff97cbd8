//! DefaultPreemption, the PostFilter: when a pod fits no node, find nodes where removing pods
//! of lower priority makes it fit, pick the fewest and least important victims, and choose one
//! node by upstream's ordering (upstream's `defaultpreemption` plugin and its `preemption`
//! Evaluator). This part only decides; the scheduling loop deletes the victims and nominates
//! the preemptor ([`prepare`]).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kybernetes_core::selector::LabelSelector;

use crate::framework::{FilterPlugin, Framework, Simulation, pod_info};
use crate::nominated::pod_priority;
use crate::pod_info::PodInfo;
use crate::snapshot::{NodeInfo, Snapshot};
use crate::unschedulable::{Rejection, Unschedulable};

pub(crate) mod prepare;

/// The plugin's name, for [`Framework::without`].
pub const NAME: &str = "DefaultPreemption";

/// Dry runs stop once this share of the potential nodes gave a candidate that violates no
/// budget (upstream's `minCandidateNodesPercentage`)...
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// ...or this many, whichever is more (upstream's `minCandidateNodesAbsolute`).
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// The condition type, reason and message prefix a victim gets before it is deleted.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
/// Upstream's `PodReasonPreemptionByScheduler`.
pub const PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";

/// Upstream's status of a node with no pod of lower priority.
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// Upstream's status of the nodes where preemption cannot help.
const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

/// The outcome of the PostFilter for a pod that fits nowhere.
#[derive(Clone, Debug)]
pub enum PostFilter {
    /// No PostFilter ran (preemption is off).
    Skipped,
    /// Preemption cannot make the pod fit; `message` (`preemption: ...`) is appended to the
    /// pod's `Unschedulable` message, and with `clear_nomination` the pod's
    /// `status.nominatedNodeName` is cleared.
    Unresolved {
        /// Why, in upstream's words.
        message: String,
        /// Whether the pod's nomination should go (no candidate node is left).
        clear_nomination: bool,
    },
    /// Evicting `victims` from `node` makes the pod fit there.
    Nominated(Preemption),
}

/// The chosen node and what must go from it.
#[derive(Clone, Debug)]
pub struct Preemption {
    /// The node the preemptor is nominated to.
    pub node: String,
    /// The pods to delete, most important first.
    pub victims: Vec<Arc<Pod>>,
    /// How many victims are beyond what their PodDisruptionBudgets allow.
    pub pdb_violations: usize,
}

/// When the pod started (`status.startTime`); a pod not yet started counts as starting now,
/// that is after every started one (upstream's `GetPodStartTime`).
fn start_time(pod: &Pod) -> i128 {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or(i128::MAX, |t| t.0.as_nanosecond())
}

/// Upstream's `MoreImportantPod` as an ordering: higher priority first, then the earlier start.
fn more_important_first(a: &Arc<Pod>, b: &Arc<Pod>) -> Ordering {
    pod_priority(b)
        .cmp(&pod_priority(a))
        .then_with(|| start_time(a).cmp(&start_time(b)))
}

/// Whether a pod is being deleted because the scheduler preempted it (upstream's
/// `podTerminatingByPreemption`).
fn terminating_by_preemption(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == DISRUPTION_TARGET
                        && c.status == "True"
                        && c.reason.as_deref() == Some(PREEMPTION_BY_SCHEDULER)
                })
            })
}

/// Upstream's `PodEligibleToPreemptOthers`.
fn eligible(pod: &Pod, snapshot: &Snapshot, failure: &Unschedulable) -> Result<(), &'static str> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never.");
    }
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty());
    let Some(nominated) = nominated else {
        return Ok(());
    };
    if failure
        .rejection_of(nominated)
        .is_some_and(Rejection::is_unresolvable)
    {
        return Ok(());
    }
    let priority = pod_priority(pod);
    let waiting = snapshot.node(nominated).is_some_and(|n| {
        n.pods()
            .iter()
            .any(|p| pod_priority(p) < priority && terminating_by_preemption(p))
    });
    match waiting {
        true => Err("not eligible due to a terminating pod on the nominated node."),
        false => Ok(()),
    }
}

/// How many candidates a dry run looks for among `n` potential nodes (upstream's
/// `calculateNumCandidates`).
fn num_candidates(n: usize) -> usize {
    (n * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(n)
}

/// A budget with its selector parsed, and how many disruptions it still allows in this dry run.
struct Budget<'a> {
    pdb: &'a PodDisruptionBudget,
    selector: LabelSelector,
}

fn budgets(snapshot: &Snapshot) -> Vec<Budget<'_>> {
    snapshot
        .pdbs()
        .filter_map(|pdb| {
            let selector = pdb.spec.as_ref()?.selector.as_ref()?;
            let selector = LabelSelector::from_json(&serde_json::to_value(selector).ok()?).ok()?;
            // A budget with an empty selector matches nothing here, as upstream.
            (!selector.is_empty()).then_some(Budget { pdb, selector })
        })
        .collect()
}

/// Upstream's `filterPodsWithPDBViolation`: splits the (ordered) pods into those whose
/// eviction would exceed a matching budget's `status.disruptionsAllowed` and the rest; a pod
/// the budget already counts as disrupted (`status.disruptedPods`) costs nothing.
fn split_by_budget(pods: Vec<Arc<Pod>>, budgets: &[Budget<'_>]) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut allowed: Vec<i32> = budgets
        .iter()
        .map(|b| b.pdb.status.as_ref().map_or(0, |s| s.disruptions_allowed))
        .collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for pod in pods {
        let labels = pod.metadata.labels.as_ref();
        let mut violated = false;
        if let Some(labels) = labels.filter(|l| !l.is_empty()) {
            for (i, b) in budgets.iter().enumerate() {
                if b.pdb.metadata.namespace != pod.metadata.namespace || !b.selector.matches(labels)
                {
                    continue;
                }
                let disrupted = b
                    .pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .is_some_and(|d| {
                        d.contains_key(pod.metadata.name.as_deref().unwrap_or_default())
                    });
                if disrupted {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        match violated {
            true => violating.push(pod),
            false => fine.push(pod),
        }
    }
    (violating, fine)
}

/// A node where preemption makes the pod fit.
#[derive(Debug)]
struct Candidate {
    node: String,
    victims: Vec<Arc<Pod>>,
    pdb_violations: usize,
}

/// Upstream's `SelectVictimsOnNode`: remove every pod of lower priority; if the pod then fits,
/// put them back one at a time, most important first and budget-protected ones before the
/// rest, keeping each that still lets the pod fit. What cannot come back is the victim list.
fn select_victims(
    filters: &[&dyn FilterPlugin],
    pod: &PodInfo<'_>,
    node: &NodeInfo,
    snapshot: &Snapshot,
    budgets: &[Budget<'_>],
) -> Result<Candidate, Rejection> {
    let priority = pod_priority(pod.pod());
    let mut potential: Vec<Arc<Pod>> = node
        .pods()
        .iter()
        .filter(|p| pod_priority(p) < priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Rejection::unresolvable(NO_VICTIMS));
    }
    // Every filter's PreFilter state follows the removals and reprieves, so InterPodAffinity
    // and PodTopologySpread see the victims gone as NodeResourcesFit does.
    let mut sim = Simulation::new(filters, pod, node);
    for p in &potential {
        sim.remove_pod(p);
    }
    sim.run(snapshot)?;
    potential.sort_by(more_important_first);
    let (violating, fine) = split_by_budget(potential, budgets);
    let mixed = !violating.is_empty() && !fine.is_empty();
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    let mut reprieve = |p: Arc<Pod>, sim: &mut Simulation<'_, '_>| -> bool {
        sim.add_pod(p.clone());
        let fits = sim.run(snapshot).is_ok();
        if !fits {
            sim.remove_pod(&p);
            victims.push(p);
        }
        fits
    };
    for p in violating {
        if !reprieve(p, &mut sim) {
            pdb_violations += 1;
        }
    }
    for p in fine {
        reprieve(p, &mut sim);
    }
    if mixed {
        victims.sort_by(more_important_first);
    }
    Ok(Candidate {
        node: node.name().to_string(),
        victims,
        pdb_violations,
    })
}

/// Upstream's `pickOneNodeForPreemption`: the fewest budget violations, then the lowest
/// highest-victim priority, the smallest priority sum, the fewest victims, the latest start of
/// the most important victims; then the first.
fn pick_one(candidates: Vec<Candidate>) -> Option<Candidate> {
    type Score = fn(&Candidate) -> i128;
    let scores: [Score; 5] = [
        |c| -(c.pdb_violations as i128),
        |c| -(c.victims.first().map_or(0, |p| pod_priority(p)) as i128),
        |c| {
            // Shifted by 2^31 so pods of negative priority add up as upstream's do.
            -c.victims
                .iter()
                .map(|p| pod_priority(p) as i128 + (i32::MAX as i128 + 1))
                .sum::<i128>()
        },
        |c| -(c.victims.len() as i128),
        |c| earliest_start_of_most_important(&c.victims),
    ];
    let mut remaining = candidates;
    for score in scores {
        if remaining.len() <= 1 {
            break;
        }
        let best = remaining.iter().map(score).max().unwrap_or(0);
        remaining.retain(|c| score(c) == best);
    }
    remaining.into_iter().next()
}

/// The earliest start among the victims of the highest priority (upstream's
/// `GetEarliestPodStartTime`).
fn earliest_start_of_most_important(victims: &[Arc<Pod>]) -> i128 {
    let Some(top) = victims.iter().map(|p| pod_priority(p)).max() else {
        return i128::MIN;
    };
    victims
        .iter()
        .filter(|p| pod_priority(p) == top)
        .map(|p| start_time(p))
        .min()
        .unwrap_or(i128::MIN)
}

/// Runs DefaultPreemption for `pod`, which `failure` says fits nowhere.
pub(crate) fn preempt(
    framework: &Framework,
    pod: &Pod,
    snapshot: &Snapshot,
    failure: &Unschedulable,
) -> PostFilter {
    if let Err(reason) = eligible(pod, snapshot, failure) {
        return PostFilter::Unresolved {
            message: format!("preemption: {reason}"),
            clear_nomination: false,
        };
    }
    let info = pod_info(pod, snapshot);
    let filters = framework.active_filters(&info);
    let potential: Vec<&NodeInfo> = snapshot
        .nodes()
        .iter()
        .filter(|n| {
            failure
                .rejection_of(n.name())
                .is_some_and(|r| !r.is_unresolvable())
        })
        .collect();
    let mut statuses: BTreeMap<String, Rejection> = BTreeMap::new();
    let (mut fine, mut violating) = (Vec::new(), Vec::new());
    if !potential.is_empty() {
        let budgets = budgets(snapshot);
        let wanted = num_candidates(potential.len());
        let offset = (framework.next_random() % potential.len() as u64) as usize;
        for i in 0..potential.len() {
            let node = potential[(offset + i) % potential.len()];
            match select_victims(&filters, &info, node, snapshot, &budgets) {
                Ok(c) if c.pdb_violations == 0 => fine.push(c),
                Ok(c) => violating.push(c),
                Err(r) => {
                    statuses.insert(node.name().to_string(), r);
                }
            }
            if fine.len() >= wanted {
                break;
            }
        }
    }
    fine.append(&mut violating);
    match pick_one(fine) {
        Some(c) => PostFilter::Nominated(Preemption {
            node: c.node,
            victims: c.victims,
            pdb_violations: c.pdb_violations,
        }),
        None => {
            let rejections = snapshot
                .nodes()
                .iter()
                .map(|n| {
                    let r = statuses
                        .remove(n.name())
                        .unwrap_or_else(|| Rejection::unresolvable(NOT_HELPFUL));
                    (n.name().to_string(), r)
                })
                .collect();
            let fit = Unschedulable::new(snapshot.num_nodes(), rejections);
            PostFilter::Unresolved {
                message: format!("preemption: {fit}"),
                clear_nomination: true,
            }
        }
    }
}
