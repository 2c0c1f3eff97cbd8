//! API field values in the forms controllers compute with: `metav1.LabelSelector` as a selector,
//! `IntOrString` percentages, and `metav1.Time` as chrono time.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as MetaLabelSelector, Time};
use kybernetes_core::selector::{LabelSelector, SelectorError};
use serde_json::Value;

/// Converts a `metav1.LabelSelector` as upstream's `metav1.LabelSelectorAsSelector`: `None`
/// matches nothing, an empty selector everything.
///
/// ```
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
/// let sel = LabelSelector { match_labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() };
/// let sel = kybernetes_controllers::api_values::label_selector(Some(&sel))?;
/// assert_eq!(sel.to_string(), "app=web");
/// assert!(kybernetes_controllers::api_values::label_selector(None)?.is_nothing());
/// # Ok::<(), kybernetes_core::selector::SelectorError>(())
/// ```
pub fn label_selector(
    selector: Option<&MetaLabelSelector>,
) -> Result<LabelSelector, SelectorError> {
    match selector {
        None => Ok(LabelSelector::nothing()),
        Some(sel) => {
            let v = serde_json::to_value(sel).unwrap_or(Value::Null);
            LabelSelector::from_json(&v)
        }
    }
}

/// Upstream's `GetScaledValueFromIntOrPercent`: an integer as is, a percentage of `total`
/// rounded up or down; the error says why the value is neither.
pub fn scaled_int_or_percent(
    v: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    total: i32,
    round_up: bool,
) -> Result<i32, String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match v {
        IntOrString::Int(n) if *n >= 0 => Ok(*n),
        IntOrString::Int(n) => Err(format!("{n} must be greater than or equal to 0")),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| {
                    format!("invalid value for IntOrString: {s:?} is not a percentage")
                })?;
            let scaled = i64::from(total) * pct;
            let v = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            Ok(v.min(i64::from(i32::MAX)) as i32)
        }
    }
}

/// A metav1.Time for `t`, truncated to whole seconds as the wire form is (so a round trip
/// through the API server compares equal).
pub fn to_time(t: DateTime<Utc>) -> Time {
    let ts = k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    Time(ts)
}

/// The chrono form of a metav1.Time.
pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}
