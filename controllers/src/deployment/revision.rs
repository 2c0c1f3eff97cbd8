//! Revisions and pod template identity, after upstream's `deployment_util.go` and
//! `controller_utils.go`: the `pod-template-hash`, template equality that ignores it, finding
//! the new and old ReplicaSets, and the revision annotations.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

use super::replicas::{
    DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, set_replicas_annotations,
};

/// The label (on ReplicaSets, their selectors and pods) that tells one revision's pods from
/// another's (upstream's `DefaultDeploymentUniqueLabelKey`).
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The revision of a deployment and of each of its ReplicaSets.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The earlier revisions a ReplicaSet had, comma separated.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The longest revision history kept (upstream's default `maxRevHistoryLengthInChars`).
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Deployment annotations that are not copied to its ReplicaSets (upstream's
/// `skipCopyAnnotation`).
fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        "kubectl.kubernetes.io/last-applied-configuration"
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | "deprecated.deployment.rollback.to"
    )
}

/// 32-bit FNV-1a, the hash upstream's `ComputeHash` uses.
struct Fnv1a32(u32);

impl Fnv1a32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }
}

/// Writes `v` as JSON with object keys sorted, so the bytes do not depend on map order.
fn write_canonical(v: &Value, h: &mut Fnv1a32) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            h.write(b"{");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    h.write(b",");
                }
                h.write(Value::String(k.clone()).to_string().as_bytes());
                h.write(b":");
                if let Some(v) = m.get(k) {
                    write_canonical(v, h);
                }
            }
            h.write(b"}");
        }
        Value::Array(a) => {
            h.write(b"[");
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    h.write(b",");
                }
                write_canonical(v, h);
            }
            h.write(b"]");
        }
        other => h.write(other.to_string().as_bytes()),
    }
}

/// Upstream's `rand.SafeEncodeString`: maps each character onto an alphabet without vowels, so
/// a hash never spells a word.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` of a template (upstream's `ComputeHash`): FNV-1a over the
/// template's canonical JSON and the collision count, safely encoded.
///
/// ```
/// use kybernetes_controllers::deployment::revision::pod_template_hash;
/// let t = k8s_openapi::api::core::v1::PodTemplateSpec::default();
/// assert_eq!(pod_template_hash(&t, None), pod_template_hash(&t, None));
/// assert_ne!(pod_template_hash(&t, None), pod_template_hash(&t, Some(1)));
/// ```
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h = Fnv1a32(Fnv1a32::OFFSET);
    write_canonical(
        &serde_json::to_value(template).unwrap_or(Value::Null),
        &mut h,
    );
    if let Some(c) = collision_count {
        h.write(&(c as u32).to_le_bytes());
    }
    safe_encode(&h.0.to_string())
}

/// Drops nulls, empty objects and empty arrays, so that a missing field and an empty one
/// compare equal (as upstream's semantic equality treats nil and empty maps and slices).
fn normalize(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let m: serde_json::Map<String, Value> = m
                .into_iter()
                .filter_map(|(k, v)| normalize(v).map(|v| (k, v)))
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        Value::Array(a) => {
            let a: Vec<Value> = a
                .into_iter()
                .map(|v| normalize(v).unwrap_or(Value::Null))
                .collect();
            (!a.is_empty()).then_some(Value::Array(a))
        }
        other => Some(other),
    }
}

fn without_hash(t: &PodTemplateSpec) -> Option<Value> {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    normalize(serde_json::to_value(&t).unwrap_or(Value::Null))
}

/// Whether two templates are equal apart from the `pod-template-hash` label (upstream's
/// `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// Oldest first, then by name (upstream's `ReplicaSetsByCreationTimestamp`).
pub fn sort_by_creation(rss: &mut [ReplicaSet]) {
    rss.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

fn template_of(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

/// The ReplicaSet whose template is the deployment's, the oldest if several are (upstream's
/// `FindNewReplicaSet`).
pub fn find_new_replica_set(d: &Deployment, rss: &[ReplicaSet]) -> Option<ReplicaSet> {
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut sorted = rss.to_vec();
    sort_by_creation(&mut sorted);
    sorted
        .into_iter()
        .find(|rs| equal_ignore_hash(&template_of(rs), &template))
}

/// The revision annotation of an object, 0 when absent or malformed.
pub fn revision(annotations: Option<&BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The highest revision among `rss` (upstream's `MaxRevision`).
pub fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter()
        .map(|rs| revision(rs.metadata.annotations.as_ref()))
        .max()
        .unwrap_or(0)
}

/// Copies the deployment's annotations onto the ReplicaSet, except the ones the controller owns
/// (upstream's `copyDeploymentAnnotationsToReplicaSet`); true if any changed.
fn copy_deployment_annotations(d: &Deployment, annotations: &mut BTreeMap<String, String>) -> bool {
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Upstream's `SetNewReplicaSetAnnotations`: copies the deployment's annotations, raises the
/// revision to `new_revision` (keeping the old one in the revision history) and, for a ReplicaSet
/// being created, sets the desired/max replicas annotations. True if anything changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    annotations: &mut BTreeMap<String, String>,
    new_revision: i64,
    exists: bool,
    desired: i32,
    max: i32,
) -> bool {
    let mut changed = copy_deployment_annotations(d, annotations);
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_revision = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(r)) => r,
        // A malformed revision is left alone, as upstream does.
        Some(Err(_)) => return changed,
    };
    if old_revision < new_revision {
        annotations.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            push_revision_history(annotations, &old);
        }
    }
    if !exists && set_replicas_annotations(annotations, desired, max) {
        changed = true;
    }
    changed
}

/// Appends `old` to the revision history, dropping the oldest entries beyond the length limit.
fn push_revision_history(annotations: &mut BTreeMap<String, String>, old: &str) {
    let history = annotations
        .get(REVISION_HISTORY_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    if history.is_empty() {
        annotations.insert(REVISION_HISTORY_ANNOTATION.into(), old.to_string());
        return;
    }
    let mut revisions: Vec<&str> = history.split(',').collect();
    let mut total = history.len() + old.len() + 1;
    let mut start = 0;
    while total > MAX_REVISION_HISTORY_CHARS && start < revisions.len() {
        total -= revisions[start].len() + 1;
        start += 1;
    }
    if total <= MAX_REVISION_HISTORY_CHARS {
        revisions = revisions.split_off(start);
        revisions.push(old);
        annotations.insert(REVISION_HISTORY_ANNOTATION.into(), revisions.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(image: &str, hash: Option<&str>) -> PodTemplateSpec {
        let mut labels = json!({"app": "web"});
        if let Some(h) = hash {
            labels[POD_TEMPLATE_HASH_LABEL] = json!(h);
        }
        serde_json::from_value(json!({
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn template_equality_ignores_the_hash_label() {
        assert!(equal_ignore_hash(
            &template("a", None),
            &template("a", Some("xyz"))
        ));
        assert!(!equal_ignore_hash(
            &template("a", None),
            &template("b", None)
        ));
    }

    #[test]
    fn hash_is_stable_and_safely_encoded() {
        let h = pod_template_hash(&template("a", None), None);
        assert_eq!(h, pod_template_hash(&template("a", None), None));
        assert_ne!(h, pod_template_hash(&template("b", None), None));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn a_reused_replica_set_gets_the_next_revision_and_remembers_the_old_one() {
        let d = Deployment::default();
        let mut a = BTreeMap::from([(REVISION_ANNOTATION.to_string(), "1".to_string())]);
        assert!(set_new_replica_set_annotations(&d, &mut a, 3, true, 1, 2));
        assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some("3"));
        assert_eq!(
            a.get(REVISION_HISTORY_ANNOTATION).map(String::as_str),
            Some("1")
        );
        assert!(!set_new_replica_set_annotations(&d, &mut a, 3, true, 1, 2));
    }
}
