//! P3: upstream's scheduler_perf SchedulingBasic, end to end through the API: 5,000 nodes
//! (API objects, no agents), 1,000 pods already bound, then 10,000 plain pods created and
//! scheduled; prints pods/s from the first create to the last pod seen bound (issue 14
//! target: ≥ 20,000 pods/s; upstream's CI floor for this case is 680 pods/s).
//!
//! Scale knob: `KYB_P3_SCALE` (default 1) scales the node and pod counts, e.g. 0.1 for a
//! quick run; `KYB_P3_RUNS` (default 3) sets the runs, the median is reported.

mod common;
mod scheduling_basic;

use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (scale, n) = common::scale("KYB_P3_SCALE")?;
    let runs = common::env_usize("KYB_P3_RUNS", 3)?.max(1);
    let (nodes, placed, pods) = (n(5000.0), n(1000.0), n(10_000.0));
    common::print_conditions(&format!(
        "P3 SchedulingBasic: {nodes} nodes (API objects), {placed} pods bound, {pods} pods created and scheduled through the API (KYB_P3_SCALE={scale})"
    ));
    let mut samples = Vec::new();
    for _ in 0..runs {
        let elapsed = scheduling_basic::run(nodes, placed, pods, |_| {
            (json!({"app": "measured"}), json!({}))
        })
        .await?;
        println!(
            "P3 run: {pods} pods bound in {} ms = {:.0} pods/s",
            elapsed.as_millis(),
            pods as f64 / elapsed.as_secs_f64()
        );
        samples.push(elapsed);
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "P3 SchedulingBasic median of {runs}: {:.0} pods/s  (target: >= 20000 pods/s)",
        pods as f64 / median.as_secs_f64()
    );
    Ok(())
}
