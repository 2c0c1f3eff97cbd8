//! Test helper for `tests/sqlite_crash.rs`; not a user tool.
//!
//! `kyb-store-crash-writer <db path> <tag>` opens a `SqliteStore` (with background compaction
//! every 20 ms, keeping 50 revisions, so kills also land inside compactions) and writes until it
//! is killed. After every acknowledged write it prints one line to stdout and flushes:
//!
//! - `open <current revision>` once, after opening;
//! - `create <revision> <key>`: created `/crash/<tag>/<n>`;
//! - `counter <revision> <value>`: set `/crash/counter` to `value` (read-modify-write);
//! - `intent-delete <key>` before, and `delete <revision> <key>` after, deleting a key.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use kybernetes_store::{SqliteOptions, SqliteStore, Store};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(tag)) = (args.next(), args.next()) else {
        eprintln!("usage: kyb-store-crash-writer <db path> <tag>");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kyb-store-crash-writer: starting tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&path, &tag)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kyb-store-crash-writer: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &str, tag: &str) -> Result<(), BoxError> {
    let options = SqliteOptions {
        compaction_interval: Some(Duration::from_millis(20)),
        keep_revisions: 50,
    };
    let store = SqliteStore::open_with(path, options)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "open {}", store.current_revision().await?)?;
    out.flush()?;
    let counter = "/crash/counter";
    for n in 0u64.. {
        let key = format!("/crash/{tag}/{n:06}");
        let kv = store.create(&key, Bytes::from(n.to_string())).await?;
        writeln!(out, "create {} {key}", kv.mod_revision)?;
        out.flush()?;

        let kv = match store.get(counter).await? {
            None => store.create(counter, Bytes::from_static(b"1")).await?,
            Some(kv) => {
                let value: u64 = std::str::from_utf8(&kv.value)?.parse()?;
                store
                    .update(
                        counter,
                        Bytes::from((value + 1).to_string()),
                        kv.mod_revision,
                    )
                    .await?
            }
        };
        writeln!(
            out,
            "counter {} {}",
            kv.mod_revision,
            std::str::from_utf8(&kv.value)?
        )?;
        out.flush()?;

        if n % 5 == 4 {
            let victim = format!("/crash/{tag}/{:06}", n - 2);
            writeln!(out, "intent-delete {victim}")?;
            out.flush()?;
            let (_, revision) = store.delete(&victim, None).await?;
            writeln!(out, "delete {revision} {victim}")?;
            out.flush()?;
        }
    }
    Ok(())
}
