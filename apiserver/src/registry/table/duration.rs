//! Upstream's `duration.HumanDuration`: the short ages kubectl prints.

/// A duration in kubectl's short form: `45s`, `3m20s`, `5h`, `2d3h`, `1y30d`.
///
/// ```
/// use kybernetes_apiserver::registry::table::human_duration;
/// assert_eq!(human_duration(chrono::Duration::seconds(182)), "3m2s");
/// assert_eq!(human_duration(chrono::Duration::hours(51)), "2d3h");
/// ```
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    // Up to a second in the future is "now": clocks of machines differ a little.
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
        assert_eq!(human_duration(d(119)), "119s");
        assert_eq!(human_duration(d(200)), "3m20s");
        assert_eq!(human_duration(d(300)), "5m");
        assert_eq!(human_duration(d(3600 * 5)), "5h");
        assert_eq!(human_duration(d(3600 * 5 + 60 * 7)), "5h7m");
        assert_eq!(human_duration(d(3600 * 51)), "2d3h");
        assert_eq!(human_duration(d(86400 * 30)), "30d");
        assert_eq!(human_duration(d(86400 * (365 * 3 + 4))), "3y4d");
        assert_eq!(human_duration(d(-1)), "0s");
        assert_eq!(human_duration(d(-5)), "<invalid>");
    }
}
