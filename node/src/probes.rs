//! Liveness, readiness and startup probes (upstream's prober and probe workers): one task
//! per running container and probe, with the upstream timing fields. A task reports only
//! verdict changes to its pod worker.
//!
//! Upstream's initial verdicts hold: a container is live until its liveness probe fails
//! `failureThreshold` times, not ready until its readiness probe passes `successThreshold`
//! times, and not started until its startup probe passes; liveness and readiness probes only
//! run once the startup probe passed.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, Pod, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kybernetes_runtime::{HttpScheme, ProbeAction, ProbeKind, ProbeRequest, ProbeResult};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::context::AgentContext;
use crate::events::EventType;
use crate::pod_worker::PodWork;

/// The probe tasks of one pod and their latest verdicts, per container id.
#[derive(Default)]
pub(crate) struct Probes {
    workers: HashMap<(String, ProbeKind), AbortHandle>,
    results: HashMap<(String, ProbeKind), bool>,
}

/// A running container and its spec, as the probe manager needs them.
pub(crate) struct RunningContainer<'a> {
    pub(crate) spec: &'a Container,
    pub(crate) id: &'a str,
    pub(crate) started_at: DateTime<Utc>,
}

impl Probes {
    /// Records a verdict from a probe task.
    pub(crate) fn record(&mut self, container_id: String, kind: ProbeKind, ok: bool) {
        if self.workers.contains_key(&(container_id.clone(), kind)) {
            self.results.insert((container_id, kind), ok);
        }
    }

    fn result(&self, id: &str, kind: ProbeKind) -> Option<bool> {
        self.results.get(&(id.to_string(), kind)).copied()
    }

    /// Whether the container's startup probe passed (or it has none).
    pub(crate) fn started(&self, spec: &Container, id: &str) -> bool {
        spec.startup_probe.is_none() || self.result(id, ProbeKind::Startup) == Some(true)
    }

    /// Whether the container is ready: started, and its readiness probe passing (if any).
    pub(crate) fn ready(&self, spec: &Container, id: &str) -> bool {
        self.started(spec, id)
            && (spec.readiness_probe.is_none()
                || self.result(id, ProbeKind::Readiness) == Some(true))
    }

    /// The probe whose failure means the container must be restarted, if one failed.
    pub(crate) fn failed(&self, id: &str) -> Option<ProbeKind> {
        [ProbeKind::Startup, ProbeKind::Liveness]
            .into_iter()
            .find(|k| self.result(id, *k) == Some(false))
    }

    /// Forgets a container's verdicts (after it was killed).
    pub(crate) fn forget(&mut self, id: &str) {
        self.results.retain(|(cid, _), _| cid != id);
        self.workers.retain(|(cid, _), h| {
            let keep = cid != id;
            if !keep {
                h.abort();
            }
            keep
        });
    }

    /// Starts the probe tasks running containers need and stops the others.
    pub(crate) fn reconcile(
        &mut self,
        ctx: &Arc<AgentContext>,
        tx: &mpsc::UnboundedSender<PodWork>,
        pod: &Arc<Pod>,
        running: &[RunningContainer<'_>],
        pod_ip: Option<IpAddr>,
    ) {
        let mut wanted = HashSet::new();
        for c in running {
            let mut probes = Vec::new();
            if let Some(p) = &c.spec.startup_probe
                && !self.started(c.spec, c.id)
            {
                probes.push((ProbeKind::Startup, p));
            }
            if self.started(c.spec, c.id) {
                if let Some(p) = &c.spec.liveness_probe {
                    probes.push((ProbeKind::Liveness, p));
                }
                if let Some(p) = &c.spec.readiness_probe {
                    probes.push((ProbeKind::Readiness, p));
                }
            }
            for (kind, probe) in probes {
                let key = (c.id.to_string(), kind);
                wanted.insert(key.clone());
                if self.workers.contains_key(&key) {
                    continue;
                }
                let Some(action) = probe_action(probe, c.spec, pod_ip) else {
                    continue;
                };
                let task = ProbeTask {
                    ctx: ctx.clone(),
                    tx: tx.clone(),
                    pod: pod.clone(),
                    container: c.spec.name.clone(),
                    container_id: c.id.to_string(),
                    started_at: c.started_at,
                    timing: Timing::of(probe, kind),
                    request: ProbeRequest {
                        kind,
                        action,
                        timeout: Timing::of(probe, kind).timeout,
                    },
                };
                let handle = tokio::spawn(task.run());
                self.workers.insert(key, handle.abort_handle());
            }
        }
        self.workers.retain(|k, h| {
            let keep = wanted.contains(k);
            if !keep {
                h.abort();
            }
            keep
        });
        let running_ids: HashSet<&str> = running.iter().map(|c| c.id).collect();
        self.results
            .retain(|(id, _), _| running_ids.contains(id.as_str()));
    }

    /// Stops every probe task.
    pub(crate) fn stop_all(&mut self) {
        for (_, h) in self.workers.drain() {
            h.abort();
        }
    }
}

/// A probe's timing fields with upstream defaults.
#[derive(Clone, Copy, Debug)]
struct Timing {
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

impl Timing {
    fn of(p: &Probe, kind: ProbeKind) -> Timing {
        let secs = |v: Option<i32>, default: u64, min: u64| {
            Duration::from_secs(v.map(|s| s.max(0) as u64).unwrap_or(default).max(min))
        };
        let success = match kind {
            // Liveness and startup probes must use 1, as upstream validation enforces.
            ProbeKind::Readiness => p.success_threshold.unwrap_or(1).max(1) as u32,
            _ => 1,
        };
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: success,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

struct ProbeTask {
    ctx: Arc<AgentContext>,
    tx: mpsc::UnboundedSender<PodWork>,
    pod: Arc<Pod>,
    container: String,
    container_id: String,
    started_at: DateTime<Utc>,
    timing: Timing,
    request: ProbeRequest,
}

impl ProbeTask {
    async fn run(self) {
        let first = self.started_at
            + chrono::Duration::from_std(self.timing.initial_delay).unwrap_or_default();
        tokio::time::sleep_until(self.ctx.instant_at(first)).await;
        let kind = self.request.kind;
        let (mut successes, mut failures) = (0u32, 0u32);
        let mut verdict: Option<bool> = None;
        loop {
            let limit = self.request.timeout + Duration::from_millis(100);
            let result = match tokio::time::timeout(
                limit,
                self.ctx.runtime.probe(&self.container_id, &self.request),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => ProbeResult::Failure(format!(
                    "probe timed out after {:?}",
                    self.request.timeout
                )),
            };
            match result {
                ProbeResult::Success => {
                    successes += 1;
                    failures = 0;
                }
                ProbeResult::Failure(message) => {
                    failures += 1;
                    successes = 0;
                    self.ctx.recorder.pod(
                        &self.pod,
                        Some(&self.container),
                        EventType::Warning,
                        "Unhealthy",
                        format!("{} probe failed: {message}", kind.as_str()),
                    );
                }
            }
            let now = if successes >= self.timing.success_threshold {
                Some(true)
            } else if failures >= self.timing.failure_threshold {
                Some(false)
            } else {
                verdict
            };
            if now != verdict {
                verdict = now;
                if let Some(ok) = now {
                    let msg = PodWork::Probe {
                        container_id: self.container_id.clone(),
                        kind,
                        ok,
                    };
                    if self.tx.send(msg).is_err() {
                        return;
                    }
                }
            }
            match (kind, verdict) {
                // A started container needs no more startup probes; a failed liveness or
                // startup probe gets the container killed, which ends this task.
                (ProbeKind::Startup, Some(_)) | (ProbeKind::Liveness, Some(false)) => return,
                _ => {}
            }
            tokio::time::sleep(self.timing.period).await;
        }
    }
}

/// A named or numbered port of `container`.
fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(s) => match s.parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok()),
        },
    }
}

fn host_or(host: &Option<String>, pod_ip: Option<IpAddr>) -> String {
    host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| {
        pod_ip
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "127.0.0.1".into())
    })
}

/// The runtime action of a probe or lifecycle handler.
pub(crate) fn handler_action(
    exec: Option<&ExecAction>,
    http_get: Option<&HTTPGetAction>,
    tcp_socket: Option<&TCPSocketAction>,
    grpc: Option<&GRPCAction>,
    container: &Container,
    pod_ip: Option<IpAddr>,
) -> Option<ProbeAction> {
    if let Some(e) = exec {
        return Some(ProbeAction::Exec {
            command: e.command.clone().unwrap_or_default(),
        });
    }
    if let Some(h) = http_get {
        let scheme = if h
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"))
        {
            HttpScheme::Https
        } else {
            HttpScheme::Http
        };
        return Some(ProbeAction::HttpGet {
            scheme,
            host: host_or(&h.host, pod_ip),
            port: resolve_port(&h.port, container)?,
            path: h.path.clone().unwrap_or_else(|| "/".into()),
            headers: h
                .http_headers
                .iter()
                .flatten()
                .map(|hd| (hd.name.clone(), hd.value.clone()))
                .collect(),
        });
    }
    if let Some(t) = tcp_socket {
        return Some(ProbeAction::TcpSocket {
            host: host_or(&t.host, pod_ip),
            port: resolve_port(&t.port, container)?,
        });
    }
    if let Some(g) = grpc {
        return Some(ProbeAction::Grpc {
            host: host_or(&None, pod_ip),
            port: u16::try_from(g.port).ok()?,
            service: g.service.clone(),
        });
    }
    None
}

fn probe_action(p: &Probe, container: &Container, pod_ip: Option<IpAddr>) -> Option<ProbeAction> {
    handler_action(
        p.exec.as_ref(),
        p.http_get.as_ref(),
        p.tcp_socket.as_ref(),
        p.grpc.as_ref(),
        container,
        pod_ip,
    )
}
