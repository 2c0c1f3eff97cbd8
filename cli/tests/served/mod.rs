//! `kybernetes serve` started as a child process for the command-line tests: it is ready when
//! it prints its `export KUBECONFIG=` line, and it is stopped with SIGTERM.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

/// The `kybernetes` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_kybernetes");

/// A running `kybernetes serve`.
pub struct Served {
    child: Child,
    /// The kubeconfig it wrote.
    pub kubeconfig: String,
}

impl Served {
    /// Starts `kybernetes serve --listen 127.0.0.1:0 --data-dir DATA ARGS…` and waits for its
    /// first line.
    pub fn start(data: &Path, args: &[&str]) -> Served {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kybernetes serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the first line");
        let kubeconfig = line
            .trim()
            .rsplit_once("export KUBECONFIG=")
            .map(|(_, p)| p.to_string())
            .unwrap_or_else(|| panic!("no `export KUBECONFIG=` in {line:?}"));
        Served { child, kubeconfig }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        self.child.wait().expect("wait for kybernetes serve")
    }
}
