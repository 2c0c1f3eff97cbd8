//! Which scheduled time a CronJob should run now (upstream's `mostRecentScheduleTime`), and the
//! name of the Job for it.

use chrono::{DateTime, Utc};
use kybernetes_core::cron::Schedule;

/// More missed start times than this raise the `TooManyMissedTimes` warning (upstream's limit).
pub const MISSED_TIMES_WARNING: i64 = 100;

/// The latest scheduled time in `(earliest, now]` and how many were missed in that window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MostRecent {
    /// The time to run now, if any schedule time passed.
    pub time: Option<DateTime<Utc>>,
    /// How many schedule times passed since `earliest` (the latest included).
    pub missed: i64,
}

/// Upstream's `mostRecentScheduleTime`: the schedule times after `earliest` (the last schedule
/// time, or the CronJob's creation) up to `now`. With `starting_deadline`, times older than
/// `now - starting_deadline` are not counted. Long windows are counted by the schedule's
/// interval, as upstream does, instead of being walked one by one.
pub fn most_recent(
    schedule: &Schedule,
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
    starting_deadline: Option<i64>,
) -> MostRecent {
    let earliest = match starting_deadline {
        Some(sds) => earliest.max(now - chrono::Duration::seconds(sds)),
        None => earliest,
    };
    let Some(t1) = schedule.next_after(earliest).filter(|t| *t <= now) else {
        return MostRecent {
            time: None,
            missed: 0,
        };
    };
    let Some(t2) = schedule.next_after(t1).filter(|t| *t <= now) else {
        return MostRecent {
            time: Some(t1),
            missed: 1,
        };
    };
    let mut latest = t2;
    let mut missed = 2;
    while let Some(t) = schedule.next_after(latest).filter(|t| *t <= now) {
        latest = t;
        missed += 1;
        if missed > MISSED_TIMES_WARNING {
            // Count the rest by the interval between the first two times.
            let interval = (t2 - t1).num_seconds().max(1);
            let count = (now - t1).num_seconds() / interval + 1;
            let last = now - chrono::Duration::seconds((now - t1).num_seconds() % interval);
            let time = schedule
                .next_after(last - chrono::Duration::seconds(1))
                .filter(|t| *t <= now)
                .unwrap_or(latest);
            return MostRecent {
                time: Some(time.max(latest)),
                missed: count.max(missed),
            };
        }
    }
    MostRecent {
        time: Some(latest),
        missed,
    }
}

/// Upstream's `getJobName`: `<cronjob>-<scheduled time in minutes since the epoch>`.
///
/// ```
/// let t = "2026-01-01T10:05:00Z".parse().expect("time");
/// assert_eq!(kybernetes_controllers::cronjob::schedule::job_name("hello", t), "hello-29454365");
/// ```
pub fn job_name(cronjob: &str, scheduled: DateTime<Utc>) -> String {
    format!("{cronjob}-{}", scheduled.timestamp() / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn the_latest_missed_time_runs_and_the_misses_are_counted() {
        let s = Schedule::parse("*/5 * * * *", None).expect("parse");
        let r = most_recent(
            &s,
            at("2026-01-01T10:00:00Z"),
            at("2026-01-01T10:17:00Z"),
            None,
        );
        assert_eq!(r.time, Some(at("2026-01-01T10:15:00Z")));
        assert_eq!(r.missed, 3);
        let none = most_recent(
            &s,
            at("2026-01-01T10:00:00Z"),
            at("2026-01-01T10:04:00Z"),
            None,
        );
        assert_eq!(
            none,
            MostRecent {
                time: None,
                missed: 0
            }
        );
    }

    #[test]
    fn a_starting_deadline_limits_the_window_and_long_gaps_count_past_one_hundred() {
        let s = Schedule::parse("* * * * *", None).expect("parse");
        let r = most_recent(
            &s,
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T10:00:30Z"),
            Some(120),
        );
        assert_eq!((r.time, r.missed), (Some(at("2026-01-01T10:00:00Z")), 2));
        let r = most_recent(
            &s,
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T10:00:30Z"),
            None,
        );
        assert_eq!(r.time, Some(at("2026-01-01T10:00:00Z")));
        assert_eq!(r.missed, 600);
    }
}
