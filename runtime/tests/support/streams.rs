//! Reading a session's streams in the exec and attach tests of every test binary that runs
//! ContainerdRuntime (`runtime/tests`, the repo's whole-cluster `tests/`), which include this
//! file with `#[path]`.

#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The terminal size the tests set, as (columns, rows).
pub const SIZE: (u16, u16) = (123, 45);

/// What the shell prints for [`ASK_SIZE`] once the terminal has [`SIZE`] (`stty size` says
/// rows, then columns).
pub const STTY_SIZE: &str = "size=45 123";

/// A shell command that prints the terminal's size.
pub const ASK_SIZE: &[u8] = b"echo size=$(busybox stty size)\n";

/// Reads from `r` into `seen` until it holds `needle`, up to `within`; whether it did.
pub async fn read_until(
    r: &mut (impl AsyncRead + Unpin),
    seen: &mut String,
    needle: &str,
    within: Duration,
) -> bool {
    let reading = async {
        let mut buf = [0u8; 4096];
        while !seen.contains(needle) {
            let n = r.read(&mut buf).await.expect("read");
            assert!(n > 0, "the stream ended before {needle:?}: {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    tokio::time::timeout(within, reading).await.is_ok()
}

/// Writes `command` to the shell behind `stdin` until `stdout` shows `needle`, for at most
/// `within`: for an answer that may at first still be the old one (a resize travels apart
/// from the command that reads the size).
pub async fn ask_until(
    stdin: &mut (impl AsyncWrite + Unpin),
    stdout: &mut (impl AsyncRead + Unpin),
    command: &[u8],
    needle: &str,
    within: Duration,
) {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        stdin.write_all(command).await.expect("write stdin");
        if read_until(stdout, &mut seen, needle, Duration::from_secs(2)).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shell never printed {needle:?}: {seen:?}"
        );
    }
}
