//! Resource arithmetic: quantities as integers, a node's allocatable resources and a pod's
//! requests, computed as upstream's `resourcehelper.PodRequests` does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The CPU a container without a CPU request counts for when scoring (upstream's
/// `DefaultMilliCPURequest`, 0.1 core).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory a container without a memory request counts for when scoring (upstream's
/// `DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource the scheduler tracks (upstream's `framework.Resource`).
///
/// Used for a node's allocatable resources, the sum a node's pods request, and one pod's
/// requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// The number of pods (a node's `pods` allocatable; unused for requests).
    pub allowed_pod_number: i64,
    /// Scalar resources: extended resources (`example.com/gpu`), `hugepages-*` and
    /// `attachable-volumes-*`, in their integer unit.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// The resources of a `ResourceList` (a node's allocatable, a pod's overhead).
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    /// let list = BTreeMap::from([
    ///     ("cpu".to_string(), Quantity("1500m".into())),
    ///     ("memory".to_string(), Quantity("1Gi".into())),
    ///     ("pods".to_string(), Quantity("110".into())),
    /// ]);
    /// let r = kybernetes_sched::Resource::from_list(&list);
    /// assert_eq!((r.milli_cpu, r.memory, r.allowed_pod_number), (1500, 1 << 30, 110));
    /// ```
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list {
            r.set(name, q);
        }
        r
    }

    /// Sets one resource from its quantity; names the scheduler does not track are ignored.
    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = milli_value(q),
            "memory" => self.memory = value(q),
            "ephemeral-storage" => self.ephemeral_storage = value(q),
            "pods" => self.allowed_pod_number = value(q),
            other if is_scalar_resource_name(other) => {
                self.scalar.insert(other.to_string(), value(q));
            }
            _ => {}
        }
    }

    /// Adds `other` to `self`, resource by resource.
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.allowed_pod_number = self
            .allowed_pod_number
            .saturating_add(other.allowed_pod_number);
        for (name, v) in &other.scalar {
            let e = self.scalar.entry(name.clone()).or_default();
            *e = e.saturating_add(*v);
        }
    }

    /// Subtracts `other` from `self`, resource by resource; scalars that reach zero are dropped.
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        self.allowed_pod_number = self
            .allowed_pod_number
            .saturating_sub(other.allowed_pod_number);
        for (name, v) in &other.scalar {
            if let Some(e) = self.scalar.get_mut(name) {
                *e = e.saturating_sub(*v);
                if *e == 0 {
                    self.scalar.remove(name);
                }
            }
        }
    }

    /// Raises each resource of `self` to at least the one of `other`.
    fn max_with(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let e = self.scalar.entry(name.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// The amount of a resource by its Kubernetes name (`cpu` in millicores).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.allowed_pod_number,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }
}

/// Upstream's `IsScalarResourceName`: extended resources and `kubernetes.io/`-prefixed native
/// resources (both contain a `/`), `hugepages-*` and `attachable-volumes-*`.
pub fn is_scalar_resource_name(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

/// What one pod asks of a node: its requests, and the non-zero requests that scoring uses
/// (a container without a CPU or memory request counts as 100m / 200 MiB).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// The requests, as NodeResourcesFit's Filter compares them with free capacity.
    pub requests: Resource,
    /// The requests with upstream's defaults for missing CPU and memory requests (only
    /// `milli_cpu` and `memory` are meaningful).
    pub non_zero: Resource,
}

impl PodRequests {
    /// Computes a pod's requests as upstream's `resourcehelper.PodRequests`:
    /// `max(sum(containers) + sum(sidecars), max over init containers of (init + sidecars
    /// started before it))`, plus `spec.overhead`. A container resource with a limit but no
    /// request counts its limit, as API defaulting would make it.
    ///
    /// ```
    /// use k8s_openapi::api::core::v1::Pod;
    /// let pod: Pod = serde_json::from_value(serde_json::json!({
    ///     "metadata": {"name": "p"},
    ///     "spec": {
    ///         "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "2"}}}],
    ///         "containers": [
    ///             {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
    ///             {"name": "b", "resources": {"requests": {"cpu": "500m"}}},
    ///         ],
    ///     },
    /// }))?;
    /// let r = kybernetes_sched::PodRequests::of(&pod);
    /// assert_eq!(r.requests.milli_cpu, 2000); // the init container dominates
    /// assert_eq!(r.requests.memory, 1 << 30);
    /// assert_eq!(r.non_zero.memory, (1 << 30) + 200 * 1024 * 1024); // b counts 200 MiB
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn of(pod: &Pod) -> PodRequests {
        let Some(spec) = &pod.spec else {
            return PodRequests::default();
        };
        let mut sum = PodRequests::default();
        for c in &spec.containers {
            sum.add(&container_requests(c));
        }
        let mut sidecars = PodRequests::default();
        let mut init_max = PodRequests::default();
        for c in spec.init_containers.iter().flatten() {
            let reqs = container_requests(c);
            let peak = if c.restart_policy.as_deref() == Some("Always") {
                sum.add(&reqs);
                sidecars.add(&reqs);
                sidecars.clone()
            } else {
                let mut peak = reqs;
                peak.add(&sidecars);
                peak
            };
            init_max.max_with(&peak);
        }
        sum.max_with(&init_max);
        if let Some(overhead) = &spec.overhead {
            let overhead = Resource::from_list(overhead);
            sum.requests.add(&overhead);
            sum.non_zero.add(&overhead);
        }
        sum
    }

    fn add(&mut self, other: &PodRequests) {
        self.requests.add(&other.requests);
        self.non_zero.add(&other.non_zero);
    }

    fn max_with(&mut self, other: &PodRequests) {
        self.requests.max_with(&other.requests);
        self.non_zero.max_with(&other.non_zero);
    }
}

/// One container's requests (limits standing in for missing requests) and non-zero requests.
fn container_requests(c: &Container) -> PodRequests {
    let mut out = PodRequests::default();
    let Some(res) = &c.resources else {
        out.non_zero.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        out.non_zero.memory = DEFAULT_MEMORY_REQUEST;
        return out;
    };
    let requests = res.requests.as_ref();
    let limits = res.limits.as_ref();
    let (mut has_cpu, mut has_memory) = (false, false);
    for (name, q) in requests.into_iter().flatten() {
        has_cpu |= name == "cpu";
        has_memory |= name == "memory";
        out.requests.set(name, q);
    }
    for (name, q) in limits.into_iter().flatten() {
        if requests.is_some_and(|r| r.contains_key(name)) || name == "pods" {
            continue;
        }
        has_cpu |= name == "cpu";
        has_memory |= name == "memory";
        out.requests.set(name, q);
    }
    out.non_zero.milli_cpu = if has_cpu {
        out.requests.milli_cpu
    } else {
        DEFAULT_MILLI_CPU_REQUEST
    };
    out.non_zero.memory = if has_memory {
        out.requests.memory
    } else {
        DEFAULT_MEMORY_REQUEST
    };
    out
}

/// A node's allocatable resources (`status.allocatable`, or `status.capacity` when a node
/// reports no allocatable, as upstream's node status defaulting does).
pub fn node_allocatable(node: &Node) -> Resource {
    let status = node.status.as_ref();
    match status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())) {
        Some(list) => Resource::from_list(list),
        None => Resource::default(),
    }
}

/// A quantity in thousandths, rounded up (upstream's `Quantity.MilliValue()`); 0 if it does not
/// parse.
///
/// ```
/// use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
/// use kybernetes_sched::resources::milli_value;
/// assert_eq!(milli_value(&Quantity("250m".into())), 250);
/// assert_eq!(milli_value(&Quantity("1.5".into())), 1500);
/// assert_eq!(milli_value(&Quantity("0.0001".into())), 1);
/// ```
pub fn milli_value(q: &Quantity) -> i64 {
    parse_scaled(&q.0, 3).unwrap_or(0)
}

/// A quantity in units, rounded up (upstream's `Quantity.Value()`); 0 if it does not parse.
///
/// ```
/// use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
/// use kybernetes_sched::resources::value;
/// assert_eq!(value(&Quantity("2Gi".into())), 2 << 30);
/// assert_eq!(value(&Quantity("1k".into())), 1000);
/// assert_eq!(value(&Quantity("1e3".into())), 1000);
/// assert_eq!(value(&Quantity("100m".into())), 1);
/// ```
pub fn value(q: &Quantity) -> i64 {
    parse_scaled(&q.0, 0).unwrap_or(0)
}

/// Parses a quantity string and returns `value × 10^scale`, rounded up and saturated to `i64`.
/// `None` when the string is not a quantity.
pub fn parse_scaled(s: &str, scale: i32) -> Option<i64> {
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return None;
    }
    let (exp10, exp2) = suffix_exponents(suffix)?;
    let digits = int_part
        .bytes()
        .chain(frac_part.bytes())
        .skip_while(|&b| b == b'0');
    let mut mantissa: i128 = 0;
    for (n, b) in digits.enumerate() {
        if n >= 36 {
            return Some(if negative { i64::MIN } else { i64::MAX });
        }
        mantissa = mantissa * 10 + i128::from(b - b'0');
    }
    let mut v = mantissa.checked_mul(1i128.checked_shl(exp2)?);
    let exp = exp10 + scale - i32::try_from(frac_part.len()).ok()?;
    if exp >= 0 {
        v = v.and_then(|v| {
            10i128
                .checked_pow(exp.unsigned_abs())
                .and_then(|p| v.checked_mul(p))
        });
    } else {
        v = v.map(|v| match 10i128.checked_pow(exp.unsigned_abs()) {
            Some(p) => (v + p - 1) / p,
            None => i128::from(v != 0),
        });
    }
    let v = match v {
        Some(v) => i64::try_from(v).unwrap_or(i64::MAX),
        None => i64::MAX,
    };
    Some(if negative { -v } else { v })
}

/// The decimal and binary exponents of a quantity suffix.
fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    let pair = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other => {
            let exp = other.strip_prefix(['e', 'E'])?;
            let exp: i32 = exp.parse().ok()?;
            if exp.abs() > 60 {
                return None;
            }
            (exp, 0)
        }
    };
    Some(pair)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn quantities_round_up_like_upstream() {
        assert_eq!(milli_value(&q("1")), 1000);
        assert_eq!(milli_value(&q("100m")), 100);
        assert_eq!(milli_value(&q("1.5m")), 2);
        assert_eq!(milli_value(&q("500u")), 1);
        assert_eq!(value(&q("1.5")), 2);
        assert_eq!(value(&q("128Mi")), 128 << 20);
        assert_eq!(value(&q("1M")), 1_000_000);
        assert_eq!(value(&q("1E")), 1_000_000_000_000_000_000);
        assert_eq!(value(&q("8Ei")), i64::MAX);
        assert_eq!(value(&q("2e-1")), 1);
        assert_eq!(value(&q(".5Ki")), 512);
        assert_eq!(value(&q("0")), 0);
        assert_eq!(value(&q("abc")), 0);
        assert_eq!(parse_scaled("1x", 0), None);
        assert_eq!(parse_scaled("", 0), None);
        assert_eq!(parse_scaled("1.2.3", 0), None);
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    #[test]
    fn init_containers_count_as_upstream_max_of_sum_and_init() {
        let p = pod(json!({
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "1", "memory": "100Mi"}}},
                {"name": "i2", "resources": {"requests": {"cpu": "300m", "memory": "2Gi"}}},
            ],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "400m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "400m", "memory": "1Gi"}}},
            ],
        }));
        let r = PodRequests::of(&p);
        assert_eq!(r.requests.milli_cpu, 1000);
        assert_eq!(r.requests.memory, 2 << 30);
    }

    #[test]
    fn sidecars_add_to_containers_and_later_init_containers() {
        let p = pod(json!({
            "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "init", "resources": {"requests": {"cpu": "1"}}},
            ],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}],
        }));
        let r = PodRequests::of(&p);
        // max(500m + 200m, 1000m + 200m)
        assert_eq!(r.requests.milli_cpu, 1200);
    }

    #[test]
    fn limits_stand_in_for_missing_requests_and_overhead_is_added() {
        let p = pod(json!({
            "overhead": {"cpu": "50m"},
            "containers": [{"name": "a", "resources": {
                "limits": {"cpu": "1", "memory": "1Gi", "example.com/gpu": "2"},
                "requests": {"cpu": "250m"},
            }}],
        }));
        let r = PodRequests::of(&p);
        assert_eq!(r.requests.milli_cpu, 300);
        assert_eq!(r.requests.memory, 1 << 30);
        assert_eq!(r.requests.scalar.get("example.com/gpu"), Some(&2));
    }

    #[test]
    fn best_effort_containers_count_default_requests_only_for_scoring() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "0"}}}]}),
        );
        let r = PodRequests::of(&p);
        assert_eq!(r.requests, Resource::default());
        assert_eq!(r.non_zero.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.non_zero.memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn resources_add_and_subtract_scalars() {
        let mut a = Resource {
            milli_cpu: 100,
            ..Default::default()
        };
        let b = Resource {
            milli_cpu: 50,
            scalar: BTreeMap::from([("x/y".to_string(), 1)]),
            ..Default::default()
        };
        a.add(&b);
        assert_eq!(a.get("x/y"), 1);
        a.sub(&b);
        assert_eq!(
            a,
            Resource {
                milli_cpu: 100,
                ..Default::default()
            }
        );
    }
}
