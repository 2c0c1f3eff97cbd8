use std::time::Instant;
use k8s_openapi::api::core::v1::{Node, Pod};
use kybernetes_sched::{Framework, Scheduler, Snapshot};
use serde_json::json;

fn cpu_ns() -> u64 { std::fs::read_to_string("/proc/thread-self/schedstat").unwrap().split_whitespace().next().unwrap().parse().unwrap() }
fn main() {
    let nodes: Vec<Node> = (0..5000).map(|i| serde_json::from_value(json!({
        "metadata": {"name": format!("node-{i}"), "labels": {"kubernetes.io/hostname": format!("node-{i}"), "zone": format!("z{}", i % 3)}},
        "spec": {},
        "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"}},
    })).unwrap()).collect();
    let mk = |i: usize, node: Option<String>| -> Pod { serde_json::from_value(json!({
        "metadata": {"name": format!("p-{i}"), "namespace": "default", "uid": format!("uid-{i}")},
        "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    })).unwrap() };
    let placed: Vec<Pod> = (0..1000).map(|i| mk(i, Some(format!("node-{}", i % 5000)))).collect();
    let pending: Vec<Pod> = (1000..11000).map(|i| mk(i, None)).collect();
    let t = Instant::now();
    let mut snap = Snapshot::new(nodes, placed);
    println!("snapshot built in {:?}", t.elapsed());
    let fw = Framework::default_plugins();
    let t = Instant::now();
    let c0 = cpu_ns();
    for p in &pending {
        let node = fw.schedule(p, &snap).unwrap();
        snap.assume(p, &node).unwrap();
    }
    let e = t.elapsed();
    let cpu = (cpu_ns() - c0) as f64 / 1e9;
    println!("cpu {:.3}s: {:.0} pods/s of CPU", cpu, 10000.0 / cpu);
    println!("10000 pods in {:?}: {:.0} pods/s", e, 10000.0 / e.as_secs_f64());
}
