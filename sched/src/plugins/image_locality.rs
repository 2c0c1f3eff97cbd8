//! ImageLocality: prefers nodes that already hold the pod's images, weighing each image by its
//! size and by how widely it has spread, so one node does not attract every pod of an image
//! (upstream's `imagelocality` plugin).

use k8s_openapi::api::core::v1::Container;

use crate::framework::{MAX_NODE_SCORE, ScorePlugin};
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;

const MB: i64 = 1024 * 1024;
/// Below this sum of scaled image sizes a node scores 0 (upstream's `minThreshold`).
pub const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, the sum at which a node scores the maximum (upstream's
/// `maxContainerThreshold`).
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The ImageLocality score (weight 1).
#[derive(Clone, Copy, Debug, Default)]
pub struct ImageLocality;

/// The name the node reports for an image: without a tag or digest, `:latest` (upstream's
/// `normalizedImageName`).
///
/// ```
/// use kybernetes_sched::plugins::normalized_image_name;
/// assert_eq!(normalized_image_name("busybox"), "busybox:latest");
/// assert_eq!(normalized_image_name("registry:5000/app"), "registry:5000/app:latest");
/// assert_eq!(normalized_image_name("nginx:1.27"), "nginx:1.27");
/// ```
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':').map_or(-1, |i| i as isize);
    let slash = name.rfind('/').map_or(-1, |i| i as isize);
    match colon <= slash {
        true => format!("{name}:latest"),
        false => name.to_string(),
    }
}

/// Upstream's `calculatePriority`: the sum clamped to the thresholds, scaled into 0..=100.
fn calculate_priority(sum: i64, containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * containers.max(1) as i64;
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

fn containers<'a>(pod: &PodInfo<'a>) -> impl Iterator<Item = &'a Container> {
    let spec = pod.pod().spec.as_ref();
    let init = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten());
    init.chain(spec.into_iter().flat_map(|s| s.containers.iter()))
}

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &str {
        "ImageLocality"
    }

    fn score(&self, pod: &PodInfo<'_>, node: &NodeInfo) -> i64 {
        let states = pod.image_states();
        let total = states.total_nodes().max(1) as f64;
        let mut sum = 0i64;
        let mut count = 0usize;
        for c in containers(pod) {
            count += 1;
            let Some(image) = c.image.as_deref() else {
                continue;
            };
            let name = normalized_image_name(image);
            if let Some(&size) = node.images().get(&name) {
                // Upstream's scaledImageScore: the size times the share of nodes holding it.
                let spread = states.nodes_with(&name) as f64 / total;
                sum += (size as f64 * spread) as i64;
            }
        }
        calculate_priority(sum, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use crate::snapshot::Snapshot;
    use serde_json::json;

    fn node_with(name: &str, images: serde_json::Value) -> k8s_openapi::api::core::v1::Node {
        let info = node(name, json!({"status": {"images": images}}));
        info.node().clone()
    }

    #[test]
    fn big_local_images_score_high_and_spread_scales_them_down() {
        let big = json!([{"names": ["app:v1"], "sizeBytes": 500 * MB}]);
        let snapshot = Snapshot::new(
            vec![
                node_with("a", big.clone()),
                node_with("b", json!([])),
                node_with("c", json!([])),
                node_with("d", json!([])),
            ],
            vec![],
        );
        let p = pod(json!({"containers": [{"name": "c", "image": "app:v1"}]}));
        let info = PodInfo::new(&p).with_images(snapshot.images());
        let score = |n: &str| ImageLocality.score(&info, snapshot.node(n).expect("node"));
        // One node of four: 500 MiB * 1/4 = 125 MiB → 100 * (125 - 23) / (1000 - 23).
        assert_eq!(score("a"), 100 * (125 - 23) / (1000 - 23));
        assert_eq!(score("b"), 0);

        let everywhere = Snapshot::new(
            vec![node_with("a", big.clone()), node_with("b", big)],
            vec![],
        );
        let info = PodInfo::new(&p).with_images(everywhere.images());
        assert_eq!(
            ImageLocality.score(&info, everywhere.node("a").expect("a")),
            100 * (500 - 23) / (1000 - 23)
        );
    }

    #[test]
    fn thresholds_clamp_and_scale_with_the_number_of_containers() {
        assert_eq!(calculate_priority(0, 1), 0);
        assert_eq!(calculate_priority(5000 * MB, 1), 100);
        assert_eq!(
            calculate_priority(1000 * MB, 2),
            100 * (1000 - 23) / (2000 - 23)
        );
    }

    #[test]
    fn untagged_images_match_latest() {
        let n = node_with(
            "a",
            json!([{"names": ["busybox:latest"], "sizeBytes": 2000 * MB}]),
        );
        let snapshot = Snapshot::new(vec![n], vec![]);
        let p = pod(json!({"containers": [{"name": "c", "image": "busybox"}]}));
        let info = PodInfo::new(&p).with_images(snapshot.images());
        assert_eq!(ImageLocality.score(&info, &snapshot.nodes()[0]), 100);
    }
}
