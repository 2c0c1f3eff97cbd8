//! Why a pod fits no node: each node's rejection, and upstream's `FitError` message.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// Why one node cannot take the pod: one or more reasons from the first filter plugin that
/// rejected it (upstream's `Status` with code `Unschedulable`).
///
/// ```
/// use kybernetes_sched::Rejection;
/// let r: Rejection = "node(s) were unschedulable".into();
/// assert_eq!(r.reasons(), ["node(s) were unschedulable"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    reasons: Vec<Cow<'static, str>>,
    unresolvable: bool,
}

impl Rejection {
    /// A rejection with one reason.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection {
            reasons: vec![reason.into()],
            unresolvable: false,
        }
    }

    /// A rejection with several reasons (NodeResourcesFit names every missing resource).
    pub fn with_reasons(reasons: Vec<Cow<'static, str>>) -> Rejection {
        Rejection {
            reasons,
            unresolvable: false,
        }
    }

    /// A rejection that removing pods from the node cannot resolve (upstream's
    /// `UnschedulableAndUnresolvable`: a taint, a node selector, a cordon), so preemption
    /// skips the node.
    ///
    /// ```
    /// use kybernetes_sched::Rejection;
    /// assert!(Rejection::unresolvable("node(s) were unschedulable").is_unresolvable());
    /// assert!(!Rejection::new("Insufficient cpu").is_unresolvable());
    /// ```
    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection {
            reasons: vec![reason.into()],
            unresolvable: true,
        }
    }

    /// Whether preemption cannot help on this node (see [`Rejection::unresolvable`]).
    pub fn is_unresolvable(&self) -> bool {
        self.unresolvable
    }

    /// The reasons, as they appear in the pod's `Unschedulable` message.
    pub fn reasons(&self) -> &[Cow<'static, str>] {
        &self.reasons
    }
}

impl From<&'static str> for Rejection {
    fn from(reason: &'static str) -> Rejection {
        Rejection::new(reason)
    }
}

impl From<String> for Rejection {
    fn from(reason: String) -> Rejection {
        Rejection::new(reason)
    }
}

/// Why a pod could not be scheduled: how many nodes there were and why each was rejected
/// (upstream's `FitError`). Its `Display` form is upstream's message, which goes into the
/// pod's `PodScheduled=False` condition and the `FailedScheduling` event.
///
/// ```
/// use kybernetes_sched::{Rejection, Unschedulable};
/// let u = Unschedulable::new(3, vec![
///     ("a".into(), Rejection::new("Insufficient cpu")),
///     ("b".into(), Rejection::new("Insufficient cpu")),
///     ("c".into(), Rejection::new("node(s) were unschedulable")),
/// ]);
/// assert_eq!(u.to_string(), "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu.");
/// assert_eq!(Unschedulable::new(0, vec![]).to_string(), "no nodes available to schedule pods");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unschedulable {
    num_all_nodes: usize,
    rejections: Vec<(String, Rejection)>,
    /// What the PostFilter (preemption) said, appended to the message.
    post_filter_message: Option<String>,
    /// The filter plugins that rejected some node (upstream's `UnschedulablePlugins`).
    plugins: Vec<String>,
}

impl Unschedulable {
    /// A failure over `num_all_nodes` nodes with each node's rejection.
    pub fn new(num_all_nodes: usize, rejections: Vec<(String, Rejection)>) -> Unschedulable {
        Unschedulable {
            num_all_nodes,
            rejections,
            post_filter_message: None,
            plugins: Vec::new(),
        }
    }

    /// Names the filter plugins that rejected nodes, so the scheduling queue retries the pod
    /// only on cluster events that can lift those rejections. A failure that names none is
    /// retried on every event.
    ///
    /// ```
    /// use kybernetes_sched::{Rejection, Unschedulable};
    /// let u = Unschedulable::new(1, vec![("a".into(), Rejection::new("Insufficient cpu"))])
    ///     .with_plugins(vec!["NodeResourcesFit".into()]);
    /// assert_eq!(u.plugins(), ["NodeResourcesFit"]);
    /// ```
    pub fn with_plugins(mut self, plugins: Vec<String>) -> Unschedulable {
        self.plugins = plugins;
        self
    }

    /// The filter plugins that rejected nodes (see [`with_plugins`](Self::with_plugins)).
    pub fn plugins(&self) -> &[String] {
        &self.plugins
    }

    /// Appends what the PostFilter found (`preemption: ...`) to the message, as upstream's
    /// `FitError` does with its `PostFilterMsg`.
    pub fn set_post_filter_message(&mut self, message: impl Into<String>) {
        self.post_filter_message = Some(message.into());
    }

    /// The rejection of the node called `name`, if it was rejected.
    pub fn rejection_of(&self, name: &str) -> Option<&Rejection> {
        self.rejections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r)
    }

    /// How many nodes the scheduler considered.
    pub fn num_all_nodes(&self) -> usize {
        self.num_all_nodes
    }

    /// Each rejected node with its rejection.
    pub fn rejections(&self) -> &[(String, Rejection)] {
        &self.rejections
    }

    /// How many nodes gave each reason.
    pub fn reason_histogram(&self) -> HashMap<&str, usize> {
        let mut histogram: HashMap<&str, usize> = HashMap::new();
        for (_, rejection) in &self.rejections {
            for reason in rejection.reasons() {
                *histogram.entry(reason.as_ref()).or_default() += 1;
            }
        }
        histogram
    }
}

impl fmt::Display for Unschedulable {
    /// `0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu.`
    /// with the `count reason` items sorted as strings, as upstream sorts them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_all_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let mut items: Vec<String> = self
            .reason_histogram()
            .into_iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        items.sort();
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if !items.is_empty() {
            write!(f, " {}.", items.join(", "))?;
        }
        if let Some(message) = &self.post_filter_message {
            write!(f, " {message}.")?;
        }
        Ok(())
    }
}

impl std::error::Error for Unschedulable {}
