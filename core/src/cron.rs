//! CronJob schedules with the semantics of upstream's parser (robfig/cron `ParseStandard`):
//! five fields (minute, hour, day of month, month, day of week) of lists, ranges, steps and
//! names, `*` and `?`, and the descriptors `@yearly`/`@annually`, `@monthly`, `@weekly`,
//! `@daily`/`@midnight` and `@hourly`; times are evaluated in an IANA time zone.
//!
//! ```
//! use kybernetes_core::cron::Schedule;
//! let every_five = Schedule::parse("*/5 * * * *", None)?;
//! let t = "2026-01-01T10:02:00Z".parse()?;
//! assert_eq!(every_five.next_after(t).map(|n| n.to_rfc3339()), Some("2026-01-01T10:05:00+00:00".into()));
//! let weekdays = Schedule::parse("30 9 * JAN-MAR mon-fri", Some("Europe/Berlin"))?;
//! // 2026-01-03 is a Saturday: the next run is Monday 09:30 in Berlin (08:30 UTC).
//! let t = "2026-01-03T00:00:00Z".parse()?;
//! assert_eq!(weekdays.next_after(t).map(|n| n.to_rfc3339()), Some("2026-01-05T08:30:00+00:00".into()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Why a schedule or time zone is invalid; the message is upstream's where it has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The schedule does not parse.
    #[error("{0}")]
    Syntax(String),
    /// The time zone is not a known IANA name.
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
}

/// A parsed schedule in its time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Either day field was `*` or `?`: days match only when both fields do (robfig's rule).
    day_star: bool,
    tz: Tz,
}

struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Field = Field {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Field = Field {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Resolves an IANA time-zone name; `None` is UTC.
pub fn time_zone(name: Option<&str>) -> Result<Tz, CronError> {
    match name {
        None => Ok(Tz::UTC),
        Some(n) => n
            .parse::<Tz>()
            .map_err(|_| CronError::UnknownTimeZone(n.to_string())),
    }
}

impl Schedule {
    /// Parses `spec` in the time zone `tz` (an IANA name; `None` is UTC).
    pub fn parse(spec: &str, tz: Option<&str>) -> Result<Schedule, CronError> {
        let tz = time_zone(tz)?;
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(CronError::Syntax("empty spec string".into()));
        }
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err(CronError::Syntax(
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into(),
            ));
        }
        let expanded = match spec.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            d if d.starts_with('@') => {
                return Err(CronError::Syntax(format!(
                    "unrecognized descriptor: {spec}"
                )));
            }
            _ => spec.to_string(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::Syntax(format!(
                "expected exactly 5 fields, found {}: {spec}",
                fields.len()
            )));
        }
        let (dom, dom_star) = parse_field(fields[2], &DOM)?;
        let (dow, dow_star) = parse_field(fields[4], &DOW)?;
        Ok(Schedule {
            minute: parse_field(fields[0], &MINUTE)?.0,
            hour: parse_field(fields[1], &HOUR)?.0,
            dom,
            month: parse_field(fields[3], &MONTH)?.0,
            dow,
            day_star: dom_star || dow_star,
            tz,
        })
    }

    /// The schedule's time zone.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = bit(&self.dom, d.day());
        let dow = bit(&self.dow, d.weekday().num_days_from_sunday());
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `t`, within five years (robfig's `Next`).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz).naive_local();
        let mut c = local.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = c + Duration::days(5 * 366);
        while c < limit {
            if !bit(&self.month, c.month()) {
                c = first_of_next_month(c)?;
                continue;
            }
            if !self.day_matches(c.date()) {
                c = c.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !bit(&self.hour, c.hour()) {
                c = c.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if !bit(&self.minute, c.minute()) {
                c += Duration::minutes(1);
                continue;
            }
            // A local time skipped by a DST change does not exist: go on looking.
            match self.tz.from_local_datetime(&c).earliest() {
                Some(at) if at.with_timezone(&Utc) > t => return Some(at.with_timezone(&Utc)),
                _ => c += Duration::minutes(1),
            }
        }
        None
    }
}

fn first_of_next_month(c: NaiveDateTime) -> Option<NaiveDateTime> {
    let (y, m) = if c.month() == 12 {
        (c.year() + 1, 1)
    } else {
        (c.year(), c.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)
}

fn bit(bits: &u64, n: u32) -> bool {
    bits & (1u64 << n) != 0
}

/// One comma-separated field; returns its bits and whether it was `*` or `?`.
fn parse_field(field: &str, f: &Field) -> Result<(u64, bool), CronError> {
    let mut bits = 0u64;
    let mut star = false;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| {
                    CronError::Syntax(format!("failed to parse int from {s}: invalid syntax"))
                })?;
                (r, Some(step))
            }
            None => (part, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            if step.is_none() {
                star = true;
            }
            (f.min, f.max)
        } else {
            match range.split_once('-') {
                Some((a, b)) => (value(a, f)?, value(b, f)?),
                None => {
                    let v = value(range, f)?;
                    // `N/step` runs from N to the end of the field, as robfig does.
                    (v, if step.is_some() { f.max } else { v })
                }
            }
        };
        let step = step.unwrap_or(1);
        if start < f.min {
            return Err(CronError::Syntax(format!(
                "beginning of range ({start}) below minimum ({}): {part}",
                f.min
            )));
        }
        if end > f.max {
            return Err(CronError::Syntax(format!(
                "end of range ({end}) above maximum ({}): {part}",
                f.max
            )));
        }
        if start > end {
            return Err(CronError::Syntax(format!(
                "beginning of range ({start}) beyond end of range ({end}): {part}"
            )));
        }
        if step == 0 {
            return Err(CronError::Syntax(format!(
                "step of range should be a positive number: {part}"
            )));
        }
        let mut v = start;
        while v <= end {
            bits |= 1u64 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

fn value(s: &str, f: &Field) -> Result<u32, CronError> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        return Ok(f.min + i as u32);
    }
    s.parse::<u32>()
        .map_err(|_| CronError::Syntax(format!("failed to parse int from {s}: invalid syntax")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn next(spec: &str, from: &str) -> String {
        Schedule::parse(spec, None)
            .expect("parse")
            .next_after(at(from))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    }

    #[test]
    fn descriptors_expand_to_their_standard_schedules() {
        assert_eq!(
            next("@hourly", "2026-01-01T10:00:00Z"),
            "2026-01-01T11:00:00+00:00"
        );
        assert_eq!(
            next("@daily", "2026-01-01T10:00:00Z"),
            "2026-01-02T00:00:00+00:00"
        );
        assert_eq!(
            next("@midnight", "2026-01-01T10:00:00Z"),
            "2026-01-02T00:00:00+00:00"
        );
        // 2026-01-01 is a Thursday.
        assert_eq!(
            next("@weekly", "2026-01-01T10:00:00Z"),
            "2026-01-04T00:00:00+00:00"
        );
        assert_eq!(
            next("@monthly", "2026-01-15T10:00:00Z"),
            "2026-02-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@yearly", "2026-01-15T10:00:00Z"),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@annually", "2026-01-15T10:00:00Z"),
            "2027-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn lists_ranges_steps_and_names() {
        assert_eq!(
            next("0,30 * * * *", "2026-01-01T10:10:00Z"),
            "2026-01-01T10:30:00+00:00"
        );
        assert_eq!(
            next("15-17 * * * *", "2026-01-01T10:16:00Z"),
            "2026-01-01T10:17:00+00:00"
        );
        assert_eq!(
            next("10/20 * * * *", "2026-01-01T10:31:00Z"),
            "2026-01-01T10:50:00+00:00"
        );
        assert_eq!(
            next("0 0 1 feb *", "2026-01-01T10:00:00Z"),
            "2026-02-01T00:00:00+00:00"
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_match_either_unless_one_is_a_star() {
        // The 13th, or any Friday: 2026-01-02 is a Friday.
        assert_eq!(
            next("0 0 13 * fri", "2026-01-01T10:00:00Z"),
            "2026-01-02T00:00:00+00:00"
        );
        // Any day of the month that is a Friday.
        assert_eq!(
            next("0 0 * * 5", "2026-01-03T10:00:00Z"),
            "2026-01-09T00:00:00+00:00"
        );
    }

    #[test]
    fn invalid_schedules_and_zones_are_rejected() {
        for bad in [
            "",
            "* * * *",
            "61 * * * *",
            "* * * * 7",
            "5-1 * * * *",
            "*/0 * * * *",
            "@every 5m",
            "TZ=UTC * * * * *",
            "x * * * *",
        ] {
            assert!(
                Schedule::parse(bad, None).is_err(),
                "{bad:?} should not parse"
            );
        }
        assert_eq!(
            Schedule::parse("* * * * *", Some("Mars/Olympus")),
            Err(CronError::UnknownTimeZone("Mars/Olympus".into()))
        );
    }

    #[test]
    fn a_time_zone_shifts_the_schedule() {
        let s = Schedule::parse("0 9 * * *", Some("America/New_York")).expect("parse");
        let n = s
            .next_after(at("2026-07-01T00:00:00Z"))
            .map(|t| t.to_rfc3339());
        assert_eq!(n.as_deref(), Some("2026-07-01T13:00:00+00:00"));
    }
}
