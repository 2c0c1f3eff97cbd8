//! `Priority`: a new pod's `priorityClassName` is resolved to `spec.priority` and
//! `spec.preemptionPolicy`, and at most one PriorityClass may be the global default, as
//! upstream's admission plugin of that name.

use std::sync::Arc;

use k8s_openapi::api::scheduling::v1::PriorityClass;
use kybernetes_core::ApiError;
use kybernetes_store::{ListOptions, Store};
use serde_json::{Value, json};

use super::{Admission, AdmissionAttributes, Operation};

/// Where PriorityClasses are stored.
const PRIORITY_CLASS_PREFIX: &str = "/registry/scheduling.k8s.io/priorityclasses/";

/// The priority of a pod when no class is the global default (upstream's
/// `DefaultPriorityWhenNoDefaultClassExists`).
const DEFAULT_PRIORITY: i64 = 0;

/// Upstream's `Priority` admission plugin.
///
/// - Pod create: a named class must exist (else 403 `no PriorityClass with name X was
///   found`); an unnamed pod gets the global default class (the lowest-valued one, if several)
///   or priority 0. A client-set `spec.priority` or `spec.preemptionPolicy` that differs from
///   the class's is refused.
/// - Pod update: a priority or policy the client left out is carried over from the stored pod.
/// - PriorityClass create and update: a second global default is refused.
pub struct Priority {
    store: Arc<dyn Store>,
}

impl Priority {
    /// A plugin reading PriorityClasses from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Priority { store }
    }

    async fn classes(&self) -> Result<Vec<PriorityClass>, ApiError> {
        let list = self
            .store
            .list(PRIORITY_CLASS_PREFIX, ListOptions::default())
            .await
            .map_err(|e| {
                ApiError::internal(format!("listing priority classes for admission: {e}"))
            })?;
        let mut classes = Vec::with_capacity(list.items.len());
        for kv in &list.items {
            match serde_json::from_slice::<PriorityClass>(&kv.value) {
                Ok(c) => classes.push(c),
                Err(e) => tracing::warn!(key = %kv.key, error = %e, "unreadable priority class"),
            }
        }
        Ok(classes)
    }

    /// Upstream's `getDefaultPriorityClass`: of the global defaults, the lowest value.
    fn default_class(classes: &[PriorityClass]) -> Option<&PriorityClass> {
        classes
            .iter()
            .filter(|c| c.global_default == Some(true))
            .min_by_key(|c| c.value)
    }

    async fn admit_pod_create(
        &self,
        a: &AdmissionAttributes<'_>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let forbidden = |message: String| {
            ApiError::forbidden(format!("pods \"{}\" is forbidden: {message}", a.name))
        };
        let named = obj
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let classes = self.classes().await?;
        let (class_name, priority, policy) = match &named {
            Some(name) => {
                let Some(class) = classes
                    .iter()
                    .find(|c| c.metadata.name.as_deref() == Some(name))
                else {
                    return Err(forbidden(format!(
                        "no PriorityClass with name {name} was found"
                    )));
                };
                (
                    Some(name.clone()),
                    i64::from(class.value),
                    class.preemption_policy.clone(),
                )
            }
            None => match Self::default_class(&classes) {
                Some(c) => (
                    c.metadata.name.clone(),
                    i64::from(c.value),
                    c.preemption_policy.clone(),
                ),
                None => (None, DEFAULT_PRIORITY, None),
            },
        };
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if let Some(given) = spec.get("priority").and_then(Value::as_i64)
            && given != priority
        {
            return Err(forbidden(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            )));
        }
        if let Some(name) = class_name {
            spec.insert("priorityClassName".into(), json!(name));
        }
        spec.insert("priority".into(), json!(priority));
        if let Some(policy) = policy {
            if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
                && given != policy
            {
                return Err(forbidden(format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                )));
            }
            spec.insert("preemptionPolicy".into(), json!(policy));
        }
        Ok(())
    }
}

/// Copies `field` of the stored pod's spec into the new one when the client left it out.
fn keep_from_old(obj: &mut Value, old: &Value, field: &str) {
    let Some(previous) = old
        .pointer(&format!("/spec/{field}"))
        .filter(|v| !v.is_null())
    else {
        return;
    };
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        && spec.get(field).is_none_or(Value::is_null)
    {
        spec.insert(field.into(), previous.clone());
    }
}

#[async_trait::async_trait]
impl Admission for Priority {
    fn name(&self) -> &str {
        "Priority"
    }

    async fn admit(&self, a: &AdmissionAttributes<'_>, obj: &mut Value) -> Result<(), ApiError> {
        if a.subresource.is_some() || !a.resource.group.is_empty() || a.resource.plural != "pods" {
            return Ok(());
        }
        match a.operation {
            Operation::Create => self.admit_pod_create(a, obj).await,
            Operation::Update => {
                if let Some(old) = a.old_object {
                    keep_from_old(obj, old, "priority");
                    keep_from_old(obj, old, "preemptionPolicy");
                }
                Ok(())
            }
            Operation::Delete => Ok(()),
        }
    }

    async fn validate(&self, a: &AdmissionAttributes<'_>, obj: &Value) -> Result<(), ApiError> {
        if a.operation == Operation::Delete
            || a.resource.group != "scheduling.k8s.io"
            || a.resource.plural != "priorityclasses"
            || obj.get("globalDefault").and_then(Value::as_bool) != Some(true)
        {
            return Ok(());
        }
        let classes = self.classes().await?;
        let Some(existing) = Self::default_class(&classes) else {
            return Ok(());
        };
        let existing = existing.metadata.name.as_deref().unwrap_or_default();
        if a.operation == Operation::Create || existing != a.name {
            return Err(ApiError::forbidden(format!(
                "priorityclasses.scheduling.k8s.io \"{}\" is forbidden: PriorityClass {existing} is marked as default. Only one default can exist",
                a.name
            )));
        }
        Ok(())
    }
}
