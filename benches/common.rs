//! Shared helpers for the benchmark binaries.

#![allow(dead_code)]

use std::time::Duration;

/// Prints the conditions a figure was measured under.
pub fn print_conditions(what: &str) {
    print_conditions_for(what, "FakeRuntime");
}

/// Prints the conditions a figure was measured under, with the container runtime(s) used.
pub fn print_conditions_for(what: &str, runtime: &str) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("# {what}");
    println!(
        "# conditions: {cores} cores, {profile} build, tokio multi-thread runtime, in-process API server, MemoryStore, {runtime}, LocalNetwork"
    );
}

/// min / median / p90 / max of a set of durations, in milliseconds.
pub fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "n={} min={:.2}ms median={:.2}ms p90={:.2}ms max={:.2}ms",
        samples.len(),
        ms(samples[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(samples[samples.len() - 1])
    )
}

/// The `q` quantile (0.0–1.0) of sorted `samples`, nearest rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
