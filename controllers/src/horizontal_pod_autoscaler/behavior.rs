//! From the metrics' proposal to the replica count written to `/scale` (upstream's
//! `normalizeDesiredReplicas` and `normalizeDesiredReplicasWithBehaviors`): the stabilization
//! windows over the recommendations of each autoscaler, then the rate limits (the `behavior`
//! policies, or without a behavior the legacy limit of doubling or 4 pods), then
//! `minReplicas`/`maxReplicas`. Each step names the condition upstream sets for it.

use chrono::{DateTime, Utc};
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerBehavior,
};

/// The scale-down stabilization window when an autoscaler sets none (upstream's
/// `--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DOWNSCALE_STABILIZATION_SECONDS: i32 = 300;

/// One recommendation of the metrics, with when it was made.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Recommendation {
    replicas: i32,
    at: DateTime<Utc>,
}

/// One change of the replica count, with when it was made.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ScaleEvent {
    change: i32,
    at: DateTime<Utc>,
    outdated: bool,
}

/// What the controller remembers of one autoscaler between syncs (upstream keeps the same in
/// memory, so a restart forgets it, as upstream's does).
#[derive(Clone, Debug, Default)]
pub struct History {
    recommendations: Vec<Recommendation>,
    scale_up_events: Vec<ScaleEvent>,
    scale_down_events: Vec<ScaleEvent>,
}

/// A condition the normalization decided: (status is True, reason, message).
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The replica count to write.
    pub replicas: i32,
    /// The `AbleToScale` reason and message.
    pub able_to_scale: (&'static str, &'static str),
    /// Whether `ScalingLimited` is True, and its reason and message.
    pub limited: (bool, &'static str, &'static str),
}

const READY_FOR_NEW_SCALE: (&str, &str) =
    ("ReadyForNewScale", "recommended size matches current size");
const SCALE_DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const SCALE_UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const SCALE_UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const SCALE_DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const WITHIN_RANGE: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);

fn seconds(s: i32) -> chrono::Duration {
    chrono::Duration::seconds(i64::from(s))
}

impl History {
    /// Records the target's count as the first recommendation (upstream's
    /// `recordInitialRecommendation`), so a fresh controller does not scale down at once.
    pub fn record_initial(&mut self, current: i32, now: DateTime<Utc>) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Recommendation {
                replicas: current,
                at: now,
            });
        }
    }

    /// Stores `r`, reusing the slot of a sample older than every window.
    fn store_recommendation(&mut self, slot: Option<usize>, r: Recommendation) {
        match slot.and_then(|i| self.recommendations.get_mut(i)) {
            Some(old) => *old = r,
            None => self.recommendations.push(r),
        }
    }

    /// Normalization without a `behavior` (upstream's `normalizeDesiredReplicas`): the highest
    /// recommendation of the last 300 s, then the legacy rate limit and the bounds.
    pub fn normalize(
        &mut self,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        now: DateTime<Utc>,
    ) -> Decision {
        let cutoff = now - seconds(DOWNSCALE_STABILIZATION_SECONDS);
        let mut stabilized = desired;
        let mut slot = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at < cutoff {
                slot = Some(i);
            } else {
                stabilized = stabilized.max(r.replicas);
            }
        }
        self.store_recommendation(
            slot,
            Recommendation {
                replicas: desired,
                at: now,
            },
        );
        let able_to_scale = if stabilized != desired {
            SCALE_DOWN_STABILIZED
        } else {
            READY_FOR_NEW_SCALE
        };
        // Guards against a bogus usage spike: at most double, or up to 4, per sync.
        let scale_up_limit = (2 * current).max(4);
        let (max_allowed, over) = if max > scale_up_limit {
            (scale_up_limit, SCALE_UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        let (replicas, limit) = if stabilized < min {
            (min, TOO_FEW)
        } else if stabilized > max_allowed {
            (max_allowed, over)
        } else {
            (stabilized, WITHIN_RANGE)
        };
        Decision {
            replicas,
            able_to_scale,
            limited: (replicas != stabilized, limit.0, limit.1),
        }
    }

    /// Normalization with a `behavior` (upstream's `normalizeDesiredReplicasWithBehaviors`):
    /// the stabilization windows, then the policies' rate limits, then the bounds.
    pub fn normalize_with_behavior(
        &mut self,
        behavior: &HorizontalPodAutoscalerBehavior,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        now: DateTime<Utc>,
    ) -> Decision {
        let up = behavior.scale_up.clone().unwrap_or_else(default_scale_up);
        let down = behavior
            .scale_down
            .clone()
            .unwrap_or_else(default_scale_down);
        let up_window = up.stabilization_window_seconds.unwrap_or(0);
        let down_window = down
            .stabilization_window_seconds
            .unwrap_or(DOWNSCALE_STABILIZATION_SECONDS);
        let stabilized = self.stabilize(current, desired, up_window, down_window, now);
        let able_to_scale = if stabilized == desired {
            READY_FOR_NEW_SCALE
        } else if desired >= current {
            SCALE_UP_STABILIZED
        } else {
            SCALE_DOWN_STABILIZED
        };
        let (replicas, limit) = self.rate_limit(&up, &down, current, stabilized, min, max, now);
        Decision {
            replicas,
            able_to_scale,
            limited: (replicas != stabilized, limit.0, limit.1),
        }
    }

    /// Upstream's `stabilizeRecommendationWithBehaviors`: the count moves up no further than
    /// the lowest recommendation of the scale-up window, and down no further than the highest
    /// of the scale-down window.
    fn stabilize(
        &mut self,
        current: i32,
        desired: i32,
        up_window: i32,
        down_window: i32,
        now: DateTime<Utc>,
    ) -> i32 {
        let up_cutoff = now - seconds(up_window);
        let down_cutoff = now - seconds(down_window);
        let (mut up_rec, mut down_rec) = (desired, desired);
        let mut slot = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at > up_cutoff {
                up_rec = up_rec.min(r.replicas);
            }
            if r.at > down_cutoff {
                down_rec = down_rec.max(r.replicas);
            }
            if r.at < up_cutoff && r.at < down_cutoff {
                slot = Some(i);
            }
        }
        self.store_recommendation(
            slot,
            Recommendation {
                replicas: desired,
                at: now,
            },
        );
        current.max(up_rec).min(down_rec)
    }

    /// Upstream's `convertDesiredReplicasWithBehaviorRate`.
    #[allow(clippy::too_many_arguments)]
    fn rate_limit(
        &self,
        up: &HPAScalingRules,
        down: &HPAScalingRules,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        now: DateTime<Utc>,
    ) -> (i32, (&'static str, &'static str)) {
        if desired > current {
            let limit = self.scale_up_limit(up, current, now).max(current);
            let (allowed, reason) = if max > limit {
                (limit, SCALE_UP_LIMIT)
            } else {
                (max, TOO_MANY)
            };
            if desired > allowed {
                return (allowed, reason);
            }
        } else if desired < current {
            let limit = self.scale_down_limit(down, current, now).min(current);
            let (allowed, reason) = if min < limit {
                (limit, SCALE_DOWN_LIMIT)
            } else {
                (min, TOO_FEW)
            };
            if desired < allowed {
                return (allowed, reason);
            }
        }
        (desired, WITHIN_RANGE)
    }

    /// The replicas at the start of a policy's period: the current count without the changes
    /// made within it.
    fn period_start(&self, current: i32, period: i32, now: DateTime<Utc>) -> i32 {
        let cutoff = now - seconds(period);
        let sum = |events: &[ScaleEvent]| -> i32 {
            events
                .iter()
                .filter(|e| e.at > cutoff)
                .map(|e| e.change)
                .sum()
        };
        current - sum(&self.scale_up_events) + sum(&self.scale_down_events)
    }

    /// Upstream's `calculateScaleUpLimitWithScalingRules`.
    fn scale_up_limit(&self, rules: &HPAScalingRules, current: i32, now: DateTime<Utc>) -> i32 {
        let select = rules.select_policy.as_deref().unwrap_or("Max");
        if select == "Disabled" {
            return current;
        }
        let proposals = policies(rules).iter().map(|p| {
            let start = self.period_start(current, p.period_seconds, now);
            if p.type_ == "Pods" {
                start.saturating_add(p.value)
            } else {
                // Rounded up, so a small target can still grow.
                (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
            }
        });
        if select == "Min" {
            proposals.min().unwrap_or(i32::MAX)
        } else {
            proposals.max().unwrap_or(i32::MIN)
        }
    }

    /// Upstream's `calculateScaleDownLimitWithBehaviors`.
    fn scale_down_limit(&self, rules: &HPAScalingRules, current: i32, now: DateTime<Utc>) -> i32 {
        let select = rules.select_policy.as_deref().unwrap_or("Max");
        if select == "Disabled" {
            return current;
        }
        let proposals = policies(rules).iter().map(|p| {
            let start = self.period_start(current, p.period_seconds, now);
            if p.type_ == "Pods" {
                start - p.value
            } else {
                (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
            }
        });
        if select == "Min" {
            proposals.max().unwrap_or(i32::MIN)
        } else {
            proposals.min().unwrap_or(i32::MAX)
        }
    }

    /// Records a change of the count (upstream's `storeScaleEvent`), reusing the slot of an
    /// event older than the direction's longest policy period. Without a behavior nothing
    /// reads the events, so none is kept.
    pub fn record_scale(
        &mut self,
        behavior: Option<&HorizontalPodAutoscalerBehavior>,
        from: i32,
        to: i32,
        now: DateTime<Utc>,
    ) {
        let Some(b) = behavior else { return };
        let (rules, events) = if to > from {
            (
                b.scale_up.clone().unwrap_or_else(default_scale_up),
                &mut self.scale_up_events,
            )
        } else {
            (
                b.scale_down.clone().unwrap_or_else(default_scale_down),
                &mut self.scale_down_events,
            )
        };
        let longest = policies(&rules)
            .iter()
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0);
        let cutoff = now - seconds(longest);
        for e in events.iter_mut() {
            if e.at <= cutoff {
                e.outdated = true;
            }
        }
        let event = ScaleEvent {
            change: (to - from).abs(),
            at: now,
            outdated: false,
        };
        match events.iter_mut().rev().find(|e| e.outdated) {
            Some(slot) => *slot = event,
            None => events.push(event),
        }
    }
}

fn policies(rules: &HPAScalingRules) -> &[HPAScalingPolicy] {
    rules.policies.as_deref().unwrap_or(&[])
}

fn policy(type_: &str, value: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds: 15,
    }
}

/// The scale-up rules a behavior without `scaleUp` gets (upstream's defaults).
pub fn default_scale_up() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".into()),
        policies: Some(vec![policy("Pods", 4), policy("Percent", 100)]),
        ..Default::default()
    }
}

/// The scale-down rules a behavior without `scaleDown` gets (upstream's defaults).
pub fn default_scale_down() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: None,
        select_policy: Some("Max".into()),
        policies: Some(vec![policy("Percent", 100)]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default()
    }

    fn at(s: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(s)
    }

    fn default_behavior() -> HorizontalPodAutoscalerBehavior {
        HorizontalPodAutoscalerBehavior {
            scale_up: Some(default_scale_up()),
            scale_down: Some(default_scale_down()),
        }
    }

    /// One sync: normalize, then record the change as the controller does.
    fn sync(
        h: &mut History,
        b: &HorizontalPodAutoscalerBehavior,
        current: i32,
        desired: i32,
        s: i64,
    ) -> i32 {
        h.record_initial(current, at(s));
        let d = h.normalize_with_behavior(b, current, desired, 1, 10, at(s));
        if d.replicas != current {
            h.record_scale(Some(b), current, d.replicas, at(s));
        }
        d.replicas
    }

    #[test]
    fn default_scale_up_adds_4_pods_or_doubles_per_15_seconds() {
        let (mut h, b) = (History::default(), default_behavior());
        assert_eq!(sync(&mut h, &b, 1, 40, 0), 5, "1 + 4 pods beats 100%");
        assert_eq!(
            sync(&mut h, &b, 5, 40, 5),
            5,
            "the period began at 1 replica"
        );
        assert_eq!(sync(&mut h, &b, 5, 40, 15), 10, "a new period: 100% of 5");
    }

    #[test]
    fn scale_down_waits_for_the_window_and_its_highest_recommendation() {
        let (mut h, b) = (History::default(), default_behavior());
        h.record_initial(8, at(0));
        let d = h.normalize_with_behavior(&b, 8, 2, 1, 10, at(60));
        assert_eq!(d.replicas, 8);
        assert_eq!(d.able_to_scale.0, "ScaleDownStabilized");
        let d = h.normalize_with_behavior(&b, 8, 2, 1, 10, at(301));
        assert_eq!(d.replicas, 2, "the 8 has left the 300 s window");
        assert_eq!(d.able_to_scale.0, "ReadyForNewScale");
        assert!(!d.limited.0);
    }

    #[test]
    fn policies_limit_the_rate_and_select_policy_picks_among_them() {
        let mut b = default_behavior();
        b.scale_down = Some(HPAScalingRules {
            stabilization_window_seconds: Some(0),
            select_policy: Some("Min".into()),
            policies: Some(vec![policy("Pods", 2), policy("Percent", 50)]),
            ..Default::default()
        });
        let mut h = History::default();
        let d = h.normalize_with_behavior(&b, 10, 1, 1, 10, at(0));
        assert_eq!(
            d.replicas, 8,
            "Min selects the smaller change: 2 pods rather than 50%"
        );
        assert_eq!(d.limited, (true, "ScaleDownLimit", SCALE_DOWN_LIMIT.1));
        if let Some(r) = b.scale_down.as_mut() {
            r.select_policy = Some("Disabled".into());
        }
        assert_eq!(
            History::default()
                .normalize_with_behavior(&b, 10, 1, 1, 10, at(0))
                .replicas,
            10
        );
    }

    #[test]
    fn bounds_win_and_say_so() {
        let (mut h, b) = (History::default(), default_behavior());
        let d = h.normalize_with_behavior(&b, 8, 40, 1, 10, at(0));
        assert_eq!(d.replicas, 10);
        assert_eq!(d.limited, (true, "TooManyReplicas", TOO_MANY.1));
        let d = History::default().normalize(3, 0, 2, 10, at(0));
        assert_eq!(d.replicas, 2);
        assert_eq!(d.limited.1, "TooFewReplicas");
    }

    #[test]
    fn without_a_behavior_scale_up_is_at_most_double_or_4() {
        let mut h = History::default();
        h.record_initial(1, at(0));
        let d = h.normalize(1, 20, 1, 10, at(0));
        assert_eq!(d.replicas, 4);
        assert_eq!(d.limited.1, "ScaleUpLimit");
        assert_eq!(h.normalize(4, 20, 1, 10, at(15)).replicas, 8);
        // The highest recommendation of the last 300 s wins, even over a lower current count.
        assert_eq!(h.normalize(8, 1, 1, 10, at(200)).replicas, 10);
        assert_eq!(h.normalize(8, 1, 1, 10, at(316)).replicas, 1);
    }
}
