//! Test support: a real etcd for the etcd tests.
//!
//! - `KYB_ETCD_ENDPOINTS=http://127.0.0.1:2379[,...]` set: tests use that etcd, and a test that
//!   cannot reach it fails.
//! - unset: tests start their own etcd (the `etcd` binary on `PATH`, Debian's `etcd-server`) on
//!   free loopback ports under a temp dir, and stop it when done. If there is no `etcd` binary,
//!   the test fails when `KYB_REQUIRE_ETCD=1`, and is skipped with a note otherwise.
//!
//! Every etcd started here runs under a small `sh` watchdog that kills it (SIGKILL) within a
//! second of the test process going away, so a killed test run leaves no etcd behind.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long an etcd (or cluster) may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the tests find etcd.
pub enum EtcdSource {
    /// An etcd the caller runs (`KYB_ETCD_ENDPOINTS`).
    External(Vec<String>),
    /// One started for this test; stopped when dropped.
    Owned(EtcdCluster),
}

impl EtcdSource {
    /// The client endpoints.
    pub fn endpoints(&self) -> Vec<String> {
        match self {
            EtcdSource::External(e) => e.clone(),
            EtcdSource::Owned(c) => c.endpoints(),
        }
    }
}

/// The endpoints from `KYB_ETCD_ENDPOINTS`, if set.
pub fn endpoints_from_env() -> Option<Vec<String>> {
    let value = std::env::var("KYB_ETCD_ENDPOINTS").ok()?;
    let endpoints: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!endpoints.is_empty()).then_some(endpoints)
}

/// The `etcd` binary on `PATH`, or `None` after printing a skip note (panics instead when
/// `KYB_REQUIRE_ETCD=1`).
pub fn etcd_binary(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("KYB_REQUIRE_ETCD").is_ok_and(|v| v == "1") {
            panic!(
                "{test}: KYB_REQUIRE_ETCD=1 but there is no `etcd` on PATH (apt-get install etcd-server)"
            );
        }
        eprintln!(
            "SKIPPED {test}: no `etcd` on PATH and KYB_ETCD_ENDPOINTS is unset (apt-get install etcd-server)"
        );
    }
    found
}

/// An etcd for `test`: the one in `KYB_ETCD_ENDPOINTS`, else a fresh single member, else `None`
/// (skipped; see the module docs).
pub fn etcd_for(test: &str) -> Option<EtcdSource> {
    if let Some(endpoints) = endpoints_from_env() {
        return Some(EtcdSource::External(endpoints));
    }
    let binary = etcd_binary(test)?;
    Some(EtcdSource::Owned(EtcdCluster::start(&binary, test, 1, &[])))
}

/// Blocks until this process holds the exclusive turn on a shared etcd (a lock file in the temp
/// dir named after the endpoints); the turn ends when the returned file is dropped.
pub fn lock_shared_etcd(endpoints: &[String]) -> File {
    let name: String = endpoints
        .join(",")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let path = std::env::temp_dir().join(format!("kyb-etcd-turn-{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("open etcd turn lock");
    file.lock().expect("lock etcd turn");
    file
}

/// One etcd member process.
pub struct Member {
    /// The member's name (`m0`, `m1`, ...).
    pub name: String,
    /// `http://127.0.0.1:<port>`, or `https://` with TLS.
    pub client_url: String,
    peer_url: String,
    dir: PathBuf,
    watchdog: Option<Child>,
}

impl Member {
    /// The etcd process id (read from the pid file the watchdog writes).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("etcd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the etcd process is still running.
    pub fn is_running(&self) -> bool {
        self.pid()
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid))
    }

    /// Kills the member with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// The member's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// One or more etcd members on loopback under a temp dir; stopped and removed on drop (the dir is
/// kept, and the logs printed, when the test panicked).
pub struct EtcdCluster {
    /// The members.
    pub members: Vec<Member>,
    dir: PathBuf,
    tls: bool,
}

impl EtcdCluster {
    /// Starts `size` members (a cluster if more than one) with `extra` flags for every member,
    /// and waits until every member reports healthy. Panics if they do not come up.
    pub fn start(binary: &Path, name: &str, size: usize, extra: &[String]) -> EtcdCluster {
        let tls = extra.iter().any(|a| a.starts_with("--cert-file"));
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let mut cluster = EtcdCluster::spawn(binary, name, size, extra, tls);
            match cluster.wait_healthy() {
                Ok(()) => return cluster,
                Err(e) => {
                    last_error = e;
                    for m in &mut cluster.members {
                        m.kill();
                    }
                }
            }
        }
        panic!("etcd for {name} did not start: {last_error}");
    }

    fn spawn(binary: &Path, name: &str, size: usize, extra: &[String], tls: bool) -> EtcdCluster {
        let dir = temp_dir(name);
        // Hold every listener until all ports are chosen, so no two are the same.
        let listeners: Vec<TcpListener> = (0..2 * size)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("local addr").port())
            .collect();
        drop(listeners);
        let scheme = if tls { "https" } else { "http" };
        let names: Vec<String> = (0..size).map(|i| format!("m{i}")).collect();
        let peer_urls: Vec<String> = (0..size)
            .map(|i| format!("http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect();
        let initial_cluster = names
            .iter()
            .zip(&peer_urls)
            .map(|(n, u)| format!("{n}={u}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = dir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "kyb".into());
        let members = (0..size)
            .map(|i| {
                let member_dir = dir.join(&names[i]);
                std::fs::create_dir_all(&member_dir).expect("create member dir");
                let client_url = format!("{scheme}://127.0.0.1:{}", ports[2 * i]);
                let mut args: Vec<String> = vec![
                    format!("--name={}", names[i]),
                    format!("--data-dir={}", member_dir.join("data").display()),
                    format!("--listen-client-urls={client_url}"),
                    format!("--advertise-client-urls={client_url}"),
                    format!("--listen-peer-urls={}", peer_urls[i]),
                    format!("--initial-advertise-peer-urls={}", peer_urls[i]),
                    format!("--initial-cluster={initial_cluster}"),
                    "--initial-cluster-state=new".into(),
                    format!("--initial-cluster-token={token}"),
                ];
                args.extend(extra.iter().cloned());
                let watchdog = spawn_watchdog(binary, &member_dir, &args);
                Member {
                    name: names[i].clone(),
                    client_url,
                    peer_url: peer_urls[i].clone(),
                    dir: member_dir,
                    watchdog: Some(watchdog),
                }
            })
            .collect();
        EtcdCluster { members, dir, tls }
    }

    /// The client endpoints of the members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The temp dir holding the members' data and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn wait_healthy(&self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        for m in &self.members {
            loop {
                if !self.tls && health(&m.client_url) {
                    break;
                }
                if self.tls && m.is_running() && tls_ready(&m.client_url, &m.log()) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "member {} not healthy within {START_TIMEOUT:?}; log:\n{}",
                        m.name,
                        tail(&m.log())
                    ));
                }
                if m.pid().is_some() && !m.is_running() {
                    return Err(format!(
                        "member {} exited; log:\n{}",
                        m.name,
                        tail(&m.log())
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
        if std::thread::panicking() {
            for m in &self.members {
                eprintln!(
                    "---- etcd {} log (kept in {}):\n{}",
                    m.name,
                    self.dir.display(),
                    tail(&m.log())
                );
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs etcd under a `sh` watchdog that records its pid and kills it when this process exits.
fn spawn_watchdog(binary: &Path, dir: &Path, args: &[String]) -> Child {
    const SCRIPT: &str = r#"
"$ETCD_BIN" "$@" >>"$ETCD_DIR/etcd.log" 2>&1 &
e=$!
echo "$e" > "$ETCD_DIR/etcd.pid"
while kill -0 "$e" 2>/dev/null; do
  if ! kill -0 "$KYB_PARENT" 2>/dev/null; then kill -9 "$e" 2>/dev/null; fi
  sleep 1
done
"#;
    let _ = std::fs::remove_file(dir.join("etcd.pid"));
    let child = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("sh")
        .args(args)
        .env("ETCD_BIN", binary)
        .env("ETCD_DIR", dir)
        .env("KYB_PARENT", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcd watchdog");
    // Wait for the pid file, so `kill` always finds the process.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join("etcd.pid").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// `GET /health` on a plain-HTTP client URL answers `"health":"true"`.
pub fn health(client_url: &str) -> bool {
    let Some(addr) = client_url.strip_prefix("http://") else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

/// A TLS member is ready when its port accepts connections and its log says it serves clients
/// (etcd 3.4 says "ready to serve client requests", 3.5 "serving client traffic").
fn tls_ready(client_url: &str, log: &str) -> bool {
    let addr = client_url.trim_start_matches("https://");
    TcpStream::connect(addr).is_ok()
        && (log.contains("ready to serve client requests")
            || log.contains("serving client traffic"))
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "kyb-etcd-{name}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Writes a file (test fixtures).
pub fn write_file(path: &Path, contents: &[u8]) {
    File::create(path)
        .and_then(|mut f| f.write_all(contents))
        .expect("write file");
}
