//! Conversions between the cluster clock's `chrono` times and `k8s-openapi`'s `jiff` ones.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;

/// A metav1.Time, truncated to seconds as the API stores it (so a written status compares
/// equal to the one read back).
pub(crate) fn time(t: DateTime<Utc>) -> Time {
    Time(Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A metav1.MicroTime, truncated to microseconds.
pub(crate) fn micro_time(t: DateTime<Utc>) -> MicroTime {
    MicroTime(Timestamp::from_microsecond(t.timestamp_micros()).unwrap_or(Timestamp::UNIX_EPOCH))
}
