//! The autoscaler's status conditions (upstream's `setCondition`): `AbleToScale`,
//! `ScalingActive` and `ScalingLimited`, each with the time it last changed status.

use chrono::{DateTime, Utc};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerCondition;

use crate::api_values::to_time;

/// Whether the controller could read and update the target's scale.
pub const ABLE_TO_SCALE: &str = "AbleToScale";
/// Whether the metrics gave a replica count.
pub const SCALING_ACTIVE: &str = "ScalingActive";
/// Whether the count was held back by the bounds or the rate limits.
pub const SCALING_LIMITED: &str = "ScalingLimited";

/// Sets condition `type_` in `conditions`: the transition time changes only with the status.
pub fn set_condition(
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) {
    let status = if status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.status = status.into();
                c.last_transition_time = Some(to_time(now));
            }
            c.reason = Some(reason.into());
            c.message = Some(message);
        }
        None => conditions.push(HorizontalPodAutoscalerCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(to_time(now)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_time_moves_only_when_the_status_does() {
        let t0 = DateTime::<Utc>::from_timestamp(1_000_000, 0).unwrap_or_default();
        let t1 = t0 + chrono::Duration::seconds(30);
        let mut cs = Vec::new();
        set_condition(
            &mut cs,
            ABLE_TO_SCALE,
            true,
            "SucceededGetScale",
            "a".into(),
            t0,
        );
        set_condition(
            &mut cs,
            ABLE_TO_SCALE,
            true,
            "ReadyForNewScale",
            "b".into(),
            t1,
        );
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].reason.as_deref(), Some("ReadyForNewScale"));
        assert_eq!(cs[0].last_transition_time, Some(to_time(t0)));
        set_condition(
            &mut cs,
            ABLE_TO_SCALE,
            false,
            "FailedGetScale",
            "c".into(),
            t1,
        );
        assert_eq!(cs[0].last_transition_time, Some(to_time(t1)));
    }
}
