//! `metadata.managedFields`: who owns which fields, and how an `Update` (create, PUT, a
//! non-apply PATCH) moves ownership, as upstream's field manager records it.

use serde_json::{Map, Value, json};

use super::fieldpath::{self, FieldSet};
use crate::patch::schema::Schema;

/// `operation: Apply`.
pub const APPLY: &str = "Apply";
/// `operation: Update`.
pub const UPDATE: &str = "Update";

/// Upstream keeps at most this many `Update` entries; older ones merge into
/// [`ANCIENT_CHANGES`], one per apiVersion.
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager that the oldest `Update` entries merge into past [`MAX_UPDATE_MANAGERS`].
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `manager`.
    pub manager: String,
    /// `operation`: `Apply` or `Update`.
    pub operation: String,
    /// `apiVersion` the manager wrote with.
    pub api_version: String,
    /// `time` of the last change of this entry's fields.
    pub time: Option<String>,
    /// `subresource`, empty for the main resource.
    pub subresource: String,
    /// `fieldsV1`.
    pub fields: FieldSet,
}

impl Entry {
    /// True when `self` and the identity `(manager, operation, apiVersion, subresource)` are
    /// the same manager, as upstream's manager identifier says: appliers are one manager
    /// whatever apiVersion they use; updaters are one per apiVersion.
    pub fn is(&self, manager: &str, operation: &str, api_version: &str, subresource: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == APPLY || self.api_version == api_version)
    }

    /// The manager as upstream prints it in a conflict: `"kubectl" using apps/v1` for an
    /// updater, `"kubectl"` for an applier, with `with subresource "status"` when it wrote
    /// through one.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == UPDATE {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// Decodes `metadata.managedFields`; malformed entries are dropped, as upstream resets
/// managed fields it cannot decode.
pub fn decode(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(String::from);
            Some(Entry {
                manager: s("manager").unwrap_or_default(),
                operation: s("operation")?,
                api_version: s("apiVersion").unwrap_or_default(),
                time: s("time"),
                subresource: s("subresource").unwrap_or_default(),
                fields: fieldpath::from_fields_v1(e.get("fieldsV1")?)?,
            })
        })
        .collect()
}

/// Writes `entries` (without empty ones) into `metadata.managedFields`, in upstream's order:
/// appliers before updaters, then oldest first, then by manager, apiVersion and subresource.
pub fn encode_into(obj: &mut Value, entries: &[Entry]) {
    let mut sorted: Vec<&Entry> = entries.iter().filter(|e| !e.fields.is_empty()).collect();
    sorted.sort_by(|p, q| {
        (
            &p.operation,
            &p.time,
            &p.manager,
            &p.api_version,
            &p.subresource,
        )
            .cmp(&(
                &q.operation,
                &q.time,
                &q.manager,
                &q.api_version,
                &q.subresource,
            ))
    });
    let list: Vec<Value> = sorted
        .into_iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), json!(e.manager));
            m.insert("operation".into(), json!(e.operation));
            m.insert("apiVersion".into(), json!(e.api_version));
            if let Some(t) = &e.time {
                m.insert("time".into(), json!(t));
            }
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), fieldpath::to_fields_v1(&e.fields));
            if !e.subresource.is_empty() {
                m.insert("subresource".into(), json!(e.subresource));
            }
            Value::Object(m)
        })
        .collect();
    let meta = crate::object::meta_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Who writes, for [`record_update`].
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// The apiVersion of the request.
    pub api_version: &'a str,
    /// The subresource written through, empty for the main resource.
    pub subresource: &'a str,
    /// The time now, from the cluster clock.
    pub now: &'a str,
}

/// Records an `Update` by `writer` that turned `old` into `new` (`old` is `null` for a
/// create): the writer takes the fields it added or changed, other managers lose them, and
/// removed fields leave every set. When `new` carries managedFields that differ from `old`'s,
/// the client reset them, and they are the starting point (as upstream allows).
pub fn record_update(old: &Value, new: &mut Value, schema: Schema<'_>, writer: Writer<'_>) {
    let old_entries = decode(old);
    let sent = new.pointer("/metadata/managedFields").cloned();
    let mut entries = match &sent {
        Some(v) if Some(v) != old.pointer("/metadata/managedFields") => decode(new),
        _ => old_entries.clone(),
    };
    // Status writers update often and change little: walk only the parts that differ.
    let fieldpath::ChangedLeaves { changed, removed } = fieldpath::changed_leaves(old, new, schema);
    if !changed.is_empty() || !removed.is_empty() {
        for e in &mut entries {
            e.fields
                .retain(|p| !changed.contains(p) && !removed.contains(p));
        }
        let mine = entries.iter().position(|e| {
            e.is(
                writer.manager,
                UPDATE,
                writer.api_version,
                writer.subresource,
            )
        });
        let entry = match mine {
            Some(i) => &mut entries[i],
            None => {
                entries.push(Entry {
                    manager: writer.manager.to_string(),
                    operation: UPDATE.into(),
                    api_version: writer.api_version.to_string(),
                    time: None,
                    subresource: writer.subresource.to_string(),
                    fields: FieldSet::new(),
                });
                let last = entries.len() - 1;
                &mut entries[last]
            }
        };
        entry.fields.extend(changed);
        entry.time = Some(writer.now.to_string());
    }
    entries.retain(|e| !e.fields.is_empty());
    cap_update_managers(&mut entries);
    if sent.is_none() && entries == old_entries && old.pointer("/metadata/managedFields").is_none()
    {
        return;
    }
    encode_into(new, &entries);
}

/// Merges the oldest `Update` entries into `ancient-changes` buckets (one per apiVersion) until
/// at most [`MAX_UPDATE_MANAGERS`] remain, as upstream's `capManagersManager` does. Appliers
/// are never merged.
fn cap_update_managers(entries: &mut Vec<Entry>) {
    let count = entries.iter().filter(|e| e.operation == UPDATE).count();
    if count <= MAX_UPDATE_MANAGERS {
        return;
    }
    let mut excess = count - MAX_UPDATE_MANAGERS;
    let (mut updaters, appliers): (Vec<Entry>, Vec<Entry>) =
        entries.drain(..).partition(|e| e.operation == UPDATE);
    updaters.sort_by(|a, b| a.time.cmp(&b.time));
    let mut kept: Vec<Entry> = Vec::with_capacity(updaters.len());
    for mut e in updaters {
        if excess > 0 {
            if let Some(bucket) = kept
                .iter_mut()
                .find(|k| k.manager == ANCIENT_CHANGES && k.api_version == e.api_version)
            {
                bucket.fields.extend(std::mem::take(&mut e.fields));
                bucket.time = e.time;
                excess -= 1;
                continue;
            }
            e.manager = ANCIENT_CHANGES.into();
            e.subresource.clear();
        }
        kept.push(e);
    }
    *entries = appliers;
    entries.extend(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer<'a>(manager: &'a str) -> Writer<'a> {
        Writer {
            manager,
            api_version: "apps/v1",
            subresource: "",
            now: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn an_update_of_a_field_moves_its_ownership() {
        let schema = Schema::for_kind("apps", "Deployment");
        let mut created =
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "paused": false}});
        record_update(&Value::Null, &mut created, schema, writer("creator"));
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(&created, &mut scaled, schema, writer("scaler"));
        let entries = decode(&scaled);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].manager, "creator");
        assert_eq!(
            fieldpath::to_fields_v1(&entries[0].fields),
            json!({"f:spec": {"f:paused": {}}})
        );
        assert_eq!(entries[1].manager, "scaler");
        assert_eq!(
            fieldpath::to_fields_v1(&entries[1].fields),
            json!({"f:spec": {"f:replicas": {}}})
        );
    }

    #[test]
    fn the_oldest_updaters_merge_into_ancient_changes_past_ten() {
        let schema = Schema::for_kind("", "ConfigMap");
        let mut obj = json!({"data": {}});
        for i in 0..12 {
            let mut next = obj.clone();
            next["data"][format!("k{i}")] = json!("v");
            let manager = format!("m{i:02}");
            let now = format!("2026-01-01T00:00:{i:02}Z");
            record_update(
                &obj,
                &mut next,
                schema,
                Writer {
                    manager: &manager,
                    api_version: "v1",
                    subresource: "",
                    now: &now,
                },
            );
            obj = next;
        }
        let entries = decode(&obj);
        assert_eq!(entries.len(), MAX_UPDATE_MANAGERS);
        let ancient = entries
            .iter()
            .find(|e| e.manager == ANCIENT_CHANGES)
            .expect("bucket");
        assert_eq!(
            fieldpath::to_fields_v1(&ancient.fields),
            json!({"f:data": {"f:k0": {}, "f:k1": {}, "f:k2": {}}})
        );
    }

    #[test]
    fn an_update_that_changes_nothing_leaves_managed_fields_alone() {
        let schema = Schema::for_kind("apps", "Deployment");
        let mut created = json!({"spec": {"replicas": 1}});
        record_update(&Value::Null, &mut created, schema, writer("creator"));
        let mut same = created.clone();
        record_update(&created, &mut same, schema, writer("other"));
        assert_eq!(same, created);
    }
}
