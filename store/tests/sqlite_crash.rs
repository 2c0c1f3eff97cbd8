//! Kills a process that writes to a `SqliteStore` with SIGKILL at random moments, 20 times on
//! the same file, and checks after each kill that the database opens cleanly, every
//! acknowledged write is there, and revisions never go backwards.
//!
//! SIGKILL ends the process but not the kernel, so this proves that a write is acknowledged
//! only after SQLite committed it and that recovery from a torn process is clean; it cannot
//! prove the fsync that protects against power loss (`synchronous=FULL` is there for that).
#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::TempDir;
use kybernetes_store::{Error, SqliteStore, Store};

const ITERATIONS: u64 = 20;
const WRITER: &str = env!("CARGO_BIN_EXE_kyb-store-crash-writer");

/// A small xorshift generator seeded from the clock (printed, so a failure can be replayed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What the test knows from the acknowledgements so far.
#[derive(Default)]
struct Acked {
    /// Created keys and their revisions (keys are never updated).
    created: BTreeMap<String, i64>,
    /// Keys whose delete was acknowledged.
    deleted: BTreeSet<String>,
    /// Keys whose delete was started but not acknowledged: either outcome is fine.
    maybe_deleted: BTreeSet<String>,
    /// The last acknowledged counter write: (revision, value).
    counter: Option<(i64, u64)>,
    /// The highest acknowledged revision.
    max_revision: i64,
}

/// Reads complete lines (a line cut short by the kill is dropped), sending the first one as soon
/// as it arrives.
fn read_lines(child: &mut Child) -> (mpsc::Receiver<String>, JoinHandle<Vec<String>>) {
    let stdout = child.stdout.take().expect("piped stdout");
    let (first_tx, first_rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        loop {
            let mut buf = Vec::new();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) if buf.ends_with(b"\n") => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                    if lines.is_empty() {
                        let _ = first_tx.send(line.clone());
                    }
                    lines.push(line);
                }
                Ok(_) => break,
            }
        }
        lines
    });
    (first_rx, handle)
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    err
}

/// Applies one iteration's acknowledgements, checking their revisions only go up.
fn apply(acked: &mut Acked, iteration: u64, lines: &[String], open_revision: i64) {
    let mut last = open_revision;
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        let revision = |s: &str| -> i64 {
            s.parse()
                .unwrap_or_else(|_| panic!("iteration {iteration}: bad line {line:?}"))
        };
        match parts.as_slice() {
            ["open", _] => continue,
            ["intent-delete", key] => {
                acked.maybe_deleted.insert((*key).to_owned());
                continue;
            }
            ["create", rev, key] => {
                let rev = revision(rev);
                acked.created.insert((*key).to_owned(), rev);
                check_order(iteration, &mut last, rev, line);
            }
            ["counter", rev, value] => {
                let rev = revision(rev);
                let value: u64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("iteration {iteration}: bad line {line:?}"));
                if let Some((_, before)) = acked.counter {
                    assert!(
                        value > before,
                        "iteration {iteration}: counter went from {before} back to {value}"
                    );
                }
                acked.counter = Some((rev, value));
                check_order(iteration, &mut last, rev, line);
            }
            ["delete", rev, key] => {
                let rev = revision(rev);
                acked.maybe_deleted.remove(*key);
                acked.deleted.insert((*key).to_owned());
                check_order(iteration, &mut last, rev, line);
            }
            _ => panic!("iteration {iteration}: unexpected line {line:?}"),
        }
    }
    acked.max_revision = acked.max_revision.max(last);
}

fn check_order(iteration: u64, last: &mut i64, rev: i64, line: &str) {
    assert!(
        rev > *last,
        "iteration {iteration}: revision went backwards ({rev} after {last}) at {line:?}"
    );
    *last = rev;
}

/// Reopens the database and checks every acknowledged write against it. Returns its revision.
/// What it finds for writes that may or may not have committed becomes the new baseline.
async fn verify(db: &Path, iteration: u64, acked: &mut Acked, last_current: i64) -> i64 {
    let store = SqliteStore::open(db)
        .unwrap_or_else(|e| panic!("iteration {iteration}: reopen failed: {e:?}"));
    store
        .check_integrity()
        .await
        .unwrap_or_else(|e| panic!("iteration {iteration}: {e}"));
    let current = store.current_revision().await.expect("current revision");
    assert!(
        current >= acked.max_revision,
        "iteration {iteration}: revision {current} is behind acknowledged {}",
        acked.max_revision
    );
    assert!(
        current >= last_current,
        "iteration {iteration}: revision went backwards from {last_current} to {current}"
    );
    let mut resolved = Vec::new();
    for (key, rev) in &acked.created {
        let got = store.get(key).await.expect("get");
        if acked.deleted.contains(key) {
            assert_eq!(
                got, None,
                "iteration {iteration}: acknowledged delete of {key} was lost"
            );
        } else if acked.maybe_deleted.contains(key) {
            resolved.push((key.clone(), got.is_none()));
        } else {
            let kv = got.unwrap_or_else(|| {
                panic!("iteration {iteration}: acknowledged create of {key} at {rev} was lost")
            });
            assert_eq!(
                kv.mod_revision, *rev,
                "iteration {iteration}: {key} has the wrong revision"
            );
        }
    }
    if let Some((rev, value)) = acked.counter {
        let kv = store
            .get("/crash/counter")
            .await
            .expect("get counter")
            .unwrap_or_else(|| panic!("iteration {iteration}: counter lost"));
        let stored: u64 = std::str::from_utf8(&kv.value)
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("counter value");
        // One more write may have committed without being acknowledged.
        assert!(
            stored == value || stored == value + 1,
            "iteration {iteration}: counter is {stored}, acknowledged {value}"
        );
        assert!(
            kv.mod_revision >= rev,
            "iteration {iteration}: counter revision {} is behind acknowledged {rev}",
            kv.mod_revision
        );
        acked.counter = Some((kv.mod_revision, stored));
    }
    for (key, gone) in resolved {
        acked.maybe_deleted.remove(&key);
        if gone {
            acked.deleted.insert(key);
        }
    }
    current
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = TempDir::new("crash");
    let db = dir.db();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut acked = Acked::default();
    let mut last_current = 0;
    let mut total_lines = 0;

    for iteration in 0..ITERATIONS {
        let mut child = Command::new(WRITER)
            .arg(&db)
            .arg(iteration.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the writer");
        let (first, reader) = read_lines(&mut child);
        let open_revision = match first.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line
                .strip_prefix("open ")
                .and_then(|r| r.parse::<i64>().ok())
                .unwrap_or_else(|| panic!("iteration {iteration}: first line {line:?}")),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "iteration {iteration}: writer did not open the store: {}",
                    stderr_of(&mut child)
                );
            }
        };
        assert!(
            open_revision >= last_current,
            "iteration {iteration}: reopened at {open_revision}, below {last_current}"
        );

        if iteration == 0 {
            // The writer holds the database: opening it here must fail, and say why.
            match SqliteStore::open(&db) {
                Err(Error::Backend { context, .. }) => {
                    assert!(context.contains("in use"), "unclear message: {context}")
                }
                other => panic!("open while another process holds the database: {other:?}"),
            }
        }

        let delay = Duration::from_millis(rng.next() % 150);
        let deadline = Instant::now() + delay;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "iteration {iteration}: writer exited by itself ({status}): {}",
                    stderr_of(&mut child)
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().expect("kill the writer");
        let status = child.wait().expect("wait for the writer");
        let lines = reader.join().expect("reader thread");
        assert!(
            status.code().is_none(),
            "iteration {iteration}: writer was not killed ({status}): {}",
            stderr_of(&mut child)
        );
        total_lines += lines.len();

        apply(&mut acked, iteration, &lines, open_revision);
        last_current = runtime.block_on(verify(&db, iteration, &mut acked, last_current));
    }
    eprintln!(
        "crash test: {ITERATIONS} kills, {total_lines} acknowledgements, {} keys created, final revision {last_current}",
        acked.created.len()
    );
    assert!(
        acked.created.len() as u64 >= ITERATIONS,
        "the writer barely wrote anything"
    );
}
