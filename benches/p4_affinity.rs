//! P4: upstream's SchedulingBasic shape with inter-pod constraints, end to end through the
//! API: 5,000 nodes (API objects, no agents), 1,000 pods already bound, then 10,000 pods
//! created and scheduled. Two runs: required pod anti-affinity on `kubernetes.io/hostname`
//! (4 groups of 2,500, each repelling its own group) and a `maxSkew: 1` `DoNotSchedule`
//! topology spread constraint over 10 zones. Target ≥ 5,000 pods/s each (release).
//!
//! `KYB_P4_SCALE` (default 1) scales the node and pod counts, e.g. 0.1 for a quick run.

mod common;
mod scheduling_basic;

use serde_json::json;

use scheduling_basic::ZONE;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (scale, n) = common::scale("KYB_P4_SCALE")?;
    let (nodes, placed, pods) = (n(5000.0), n(1000.0), n(10_000.0));
    common::print_conditions(&format!(
        "P4: {nodes} nodes (API objects), {placed} pods bound, {pods} pods created and scheduled through the API (KYB_P4_SCALE={scale})"
    ));
    for shape in ["anti-affinity", "topology-spread"] {
        let elapsed = scheduling_basic::run(nodes, placed, pods, |i| match shape {
            "anti-affinity" => {
                let group = format!("g{}", i % 4);
                (
                    json!({"app": "measured", "group": group}),
                    json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"group": group}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
                )
            }
            _ => (
                json!({"app": "measured"}),
                json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE,
                    "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "measured"}}}]}),
            ),
        })
        .await?;
        println!(
            "P4 {shape}: {pods} pods bound in {} ms = {:.0} pods/s  (target: >= 5000 pods/s)",
            elapsed.as_millis(),
            pods as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}
