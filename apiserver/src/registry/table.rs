//! What a kind shows in `kubectl get` (upstream's `TableConvertor`): column definitions and
//! the cells of one row. [`Strategy::table_columns`](super::Strategy::table_columns) and
//! [`Strategy::table_cells`](super::Strategy::table_cells) default to the generic NAME and AGE
//! table that upstream shows for kinds without printer columns.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::object::meta_str;

/// A column of a `meta.k8s.io/v1` `Table` (`TableColumnDefinition`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableColumn {
    /// The header (`NAME`, `READY`).
    pub name: &'static str,
    /// The OpenAPI type of the cells: string, integer, number, boolean, date.
    pub type_: &'static str,
    /// The OpenAPI format (`name` for the name column), may be empty.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 for the default view; higher only with `-o wide`.
    pub priority: i32,
}

impl TableColumn {
    /// The column as JSON, for a `Table`'s `columnDefinitions`.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The generic columns: NAME and AGE.
pub fn generic_columns() -> Vec<TableColumn> {
    vec![
        TableColumn {
            name: "Name",
            type_: "string",
            format: "name",
            description: "Name must be unique within a namespace.",
            priority: 0,
        },
        TableColumn {
            name: "Age",
            type_: "string",
            format: "",
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
            priority: 0,
        },
    ]
}

/// The generic cells of `obj`: its name and its age at `now`.
pub fn generic_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(meta_str(obj, "name").unwrap_or("")),
        json!(age(obj, now)),
    ]
}

/// How long ago `obj` was created, as kubectl prints it (`<unknown>` without a timestamp).
pub fn age(obj: &Value, now: DateTime<Utc>) -> String {
    meta_str(obj, "creationTimestamp")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| human_duration(now.signed_duration_since(t.with_timezone(&Utc))))
        .unwrap_or_else(|| "<unknown>".into())
}

/// A duration in kubectl's short form: `45s`, `3m20s`, `5h`, `2d3h`, `1y30d`.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    let with = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    if minutes < 10 {
        return with(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(45)), "45s");
        assert_eq!(human_duration(d(200)), "3m20s");
        assert_eq!(human_duration(d(3600 * 5)), "5h");
        assert_eq!(human_duration(d(3600 * 51)), "2d3h");
        assert_eq!(human_duration(d(-5)), "<invalid>");
    }
}
