//! Interactive exec in fake containers: a handful of built-in commands, run against the
//! session's stdin, stdout and stderr.
//!
//! A command the container's script names ([`ContainerScript::on_exec`]) prints its scripted
//! result. Otherwise these built-ins run (the program may be a path: `/bin/sh` is `sh`):
//!
//! | command | does |
//! |---|---|
//! | `echo [-n] ARGS…` | prints its arguments |
//! | `cat` | copies stdin to stdout until stdin closes |
//! | `env`, `printenv [NAME]` | prints the container's environment (or one value) |
//! | `hostname` | prints the pod's hostname |
//! | `true`, `false`, `exit N` | exit 0, 1 or N |
//! | `sleep SECONDS` | waits (tokio time) |
//! | `sh -c 'A; B && C'` | runs each command in turn (`&&` stops at a failure; `>&2` sends a command's output to stderr) |
//! | `sh` | reads commands from stdin, one a line, until `exit` or the end of stdin |
//!
//! Any other command exits 0 and prints nothing, as every command of an unscripted fake
//! container does. A running exec ends with code 137 when its container stops.
//!
//! [`ContainerScript::on_exec`]: super::ContainerScript::on_exec

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::oneshot;

use super::Inner;
use super::script::ContainerScript;
use crate::Error;
use crate::session_pipes::{drain, session};
use crate::stream::{ExecRequest, ExecResult, ExecSession};

/// How much each stream of a session buffers.
const PIPE_BYTES: usize = 64 * 1024;

/// The exit code of a process killed because its container stopped (SIGKILL).
const KILLED: i32 = 137;

/// What the exec runs with: the container's environment and its pod's hostname.
#[derive(Clone, Debug, Default)]
pub(crate) struct ExecContext {
    pub(crate) env: Vec<(String, String)>,
    pub(crate) hostname: String,
}

/// One step of a fake command.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// Print, then continue with exit code `code` so far.
    Output {
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        code: i32,
    },
    /// Copy stdin to stdout until it closes.
    Cat,
    /// Wait.
    Sleep(Duration),
    /// Stop with this code.
    Exit(i32),
    /// Run the rest only if the last code was 0.
    AndThen,
    /// Read commands from stdin, one a line.
    Shell,
}

fn output(stdout: impl Into<Vec<u8>>, code: i32) -> Step {
    Step::Output {
        stdout: stdout.into(),
        stderr: Vec::new(),
        code,
    }
}

fn failure(stderr: String, code: i32) -> Step {
    Step::Output {
        stdout: Vec::new(),
        stderr: stderr.into_bytes(),
        code,
    }
}

/// The steps of `cmd` in a container with `script`.
fn program(cmd: &[String], script: &ContainerScript, ctx: &ExecContext) -> Vec<Step> {
    if let Some(r) = script.exec_result(cmd) {
        return vec![scripted(r)];
    }
    let Some((first, args)) = cmd.split_first() else {
        return vec![failure("exec: no command given\n".into(), 126)];
    };
    let name = first.rsplit('/').next().unwrap_or(first);
    match (name, args) {
        ("sh" | "bash" | "ash", [flag, line, ..]) if flag == "-c" => shell_line(line, script, ctx),
        ("sh" | "bash" | "ash", []) => vec![Step::Shell],
        _ => vec![builtin(name, args, ctx)],
    }
}

fn scripted(r: &ExecResult) -> Step {
    Step::Output {
        stdout: r.stdout.to_vec(),
        stderr: r.stderr.to_vec(),
        code: r.exit_code,
    }
}

/// One line of shell: commands separated by `;` and `&&`, words split on blanks, with
/// single and double quotes.
fn shell_line(line: &str, script: &ContainerScript, ctx: &ExecContext) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut words = Vec::new();
    let flush = |words: &mut Vec<String>, steps: &mut Vec<Step>| {
        // `>&2` sends the command's output to stderr.
        let before = words.len();
        words.retain(|w| w != ">&2" && w != "1>&2");
        let to_stderr = words.len() != before;
        if !words.is_empty() {
            steps.extend(
                program(words, script, ctx)
                    .into_iter()
                    .map(|step| match step {
                        Step::Output {
                            stdout,
                            mut stderr,
                            code,
                        } if to_stderr => {
                            stderr.extend(stdout);
                            Step::Output {
                                stdout: Vec::new(),
                                stderr,
                                code,
                            }
                        }
                        other => other,
                    }),
            );
        }
        words.clear();
    };
    for token in tokens(line) {
        match token {
            Token::Word(w) => words.push(w),
            Token::Semi => flush(&mut words, &mut steps),
            Token::And => {
                flush(&mut words, &mut steps);
                steps.push(Step::AndThen);
            }
        }
    }
    flush(&mut words, &mut steps);
    steps
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Semi,
    And,
}

fn tokens(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    while let Some(ch) = chars.next() {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            } else {
                word.get_or_insert_default().push(ch);
            }
            continue;
        }
        match ch {
            '\'' | '"' => {
                quote = Some(ch);
                word.get_or_insert_default();
            }
            ';' | '\n' => {
                out.extend(word.take().map(Token::Word));
                out.push(Token::Semi);
            }
            '&' if chars.peek() == Some(&'&') => {
                chars.next();
                out.extend(word.take().map(Token::Word));
                out.push(Token::And);
            }
            c if c.is_whitespace() => out.extend(word.take().map(Token::Word)),
            c => word.get_or_insert_default().push(c),
        }
    }
    out.extend(word.map(Token::Word));
    out
}

fn builtin(name: &str, args: &[String], ctx: &ExecContext) -> Step {
    match name {
        "echo" => match args.split_first() {
            Some((n, rest)) if n == "-n" => output(rest.join(" "), 0),
            _ => output(format!("{}\n", args.join(" ")), 0),
        },
        "cat" if args.is_empty() => Step::Cat,
        "env" | "printenv" if args.is_empty() => {
            let mut s = String::new();
            for (k, v) in &ctx.env {
                s.push_str(&format!("{k}={v}\n"));
            }
            output(s, 0)
        }
        "printenv" => {
            let values: Vec<&str> = args
                .iter()
                .filter_map(|a| ctx.env.iter().rev().find(|(k, _)| k == a))
                .map(|(_, v)| v.as_str())
                .collect();
            let code = if values.len() == args.len() { 0 } else { 1 };
            let s: String = values.iter().map(|v| format!("{v}\n")).collect();
            output(s, code)
        }
        "hostname" => output(format!("{}\n", ctx.hostname), 0),
        "true" => output("", 0),
        "false" => output("", 1),
        "exit" => match args.first().map(|a| a.parse::<i32>()) {
            None => Step::Exit(0),
            Some(Ok(code)) => Step::Exit(code & 0xff),
            Some(Err(_)) => failure(format!("sh: exit: Illegal number: {}\n", args[0]), 2),
        },
        "sleep" => match args.first().map(|a| a.parse::<f64>()) {
            Some(Ok(secs)) if secs >= 0.0 && secs.is_finite() => {
                Step::Sleep(Duration::from_secs_f64(secs))
            }
            _ => failure("sleep: invalid time interval\n".into(), 1),
        },
        _ => output("", 0),
    }
}

/// The session's end of its pipes.
struct ProcessIo {
    stdin: Option<BufReader<DuplexStream>>,
    stdout: DuplexStream,
    stderr: DuplexStream,
    tty: bool,
}

impl ProcessIo {
    async fn print(&mut self, stdout: &[u8], stderr: &[u8]) -> std::io::Result<()> {
        self.stdout.write_all(stdout).await?;
        if self.tty {
            self.stdout.write_all(stderr).await
        } else {
            self.stderr.write_all(stderr).await
        }
    }

    async fn cat(&mut self) -> std::io::Result<()> {
        if let Some(stdin) = &mut self.stdin {
            tokio::io::copy_buf(stdin, &mut self.stdout).await?;
        }
        Ok(())
    }

    async fn read_line(&mut self) -> std::io::Result<Option<String>> {
        let Some(stdin) = &mut self.stdin else {
            return Ok(None);
        };
        let mut line = String::new();
        if stdin.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        Ok(Some(line))
    }
}

/// Runs steps; `Err(code)` means an `exit` stopped the whole process.
fn run<'a>(
    steps: &'a [Step],
    io: &'a mut ProcessIo,
    script: &'a ContainerScript,
    ctx: &'a ExecContext,
) -> BoxFuture<'a, std::io::Result<std::result::Result<i32, i32>>> {
    Box::pin(async move {
        let mut code = 0;
        for step in steps {
            match step {
                Step::Output {
                    stdout,
                    stderr,
                    code: c,
                } => {
                    io.print(stdout, stderr).await?;
                    code = *c;
                }
                Step::Cat => {
                    io.cat().await?;
                    code = 0;
                }
                Step::Sleep(d) => {
                    tokio::time::sleep(*d).await;
                    code = 0;
                }
                Step::Exit(c) => return Ok(Err(*c)),
                Step::AndThen if code != 0 => return Ok(Ok(code)),
                Step::AndThen => {}
                Step::Shell => {
                    while let Some(line) = io.read_line().await? {
                        let steps = shell_line(&line, script, ctx);
                        match run(&steps, io, script, ctx).await? {
                            Ok(c) => code = c,
                            Err(c) => return Ok(Err(c)),
                        }
                    }
                }
            }
        }
        Ok(Ok(code))
    })
}

/// Resolves once the container is no longer running (or is gone).
async fn container_stopped(inner: Arc<Inner>, id: String) {
    let mut version = {
        let st = inner.lock();
        match st.containers.get(&id) {
            Some(c) => c.log_version.subscribe(),
            None => return,
        }
    };
    loop {
        let running = inner
            .lock()
            .containers
            .get(&id)
            .is_some_and(|c| c.status.state.is_running());
        if !running || version.changed().await.is_err() {
            return;
        }
    }
}

/// Starts `request.cmd` in container `id`, which runs with `script` and `ctx`.
pub(crate) fn exec_session(
    inner: &Arc<Inner>,
    id: &str,
    request: ExecRequest,
    script: ContainerScript,
    ctx: ExecContext,
) -> ExecSession {
    let steps = program(&request.cmd, &script, &ctx);
    let reads_stdin = steps.iter().any(|s| matches!(s, Step::Cat | Step::Shell));
    let (in_w, in_r) = tokio::io::duplex(PIPE_BYTES);
    let (out_w, out_r) = tokio::io::duplex(PIPE_BYTES);
    let (err_w, err_r) = tokio::io::duplex(PIPE_BYTES);
    let stdin = if request.stdin && reads_stdin {
        Some(BufReader::new(in_r))
    } else {
        // Nothing reads it: drain it so that writers never block.
        tokio::spawn(drain(in_r));
        None
    };
    let mut io = ProcessIo {
        stdin,
        stdout: out_w,
        stderr: err_w,
        tty: request.tty,
    };
    let (exit_tx, exit_rx) = oneshot::channel();
    let stopped = container_stopped(inner.clone(), id.to_string());
    tokio::spawn(async move {
        let code = tokio::select! {
            r = run(&steps, &mut io, &script, &ctx) => match r {
                Ok(Ok(code) | Err(code)) => code,
                // The client went away mid-write: the process dies of SIGPIPE.
                Err(_) => 141,
            },
            () = stopped => KILLED,
        };
        drop(io);
        // Nobody waiting for the exit code (the session was dropped) is fine.
        let _ = exit_tx.send(code);
    });
    session(
        request.stdin,
        request.stdout,
        request.stderr,
        request.tty,
        (in_w, out_r, err_r),
        async move {
            exit_rx.await.map_err(|_| Error::Backend {
                context: "exec session ended without an exit code".into(),
                source: None,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(cmd: &[&str]) -> Vec<Step> {
        let ctx = ExecContext {
            env: vec![("A".into(), "1".into()), ("B".into(), "two".into())],
            hostname: "web-0".into(),
        };
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        program(&cmd, &ContainerScript::default(), &ctx)
    }

    #[test]
    fn builtins_print_what_a_shell_would() {
        assert_eq!(
            steps(&["echo", "hi", "there"]),
            vec![output("hi there\n", 0)]
        );
        assert_eq!(steps(&["/bin/echo", "-n", "x"]), vec![output("x", 0)]);
        assert_eq!(steps(&["env"]), vec![output("A=1\nB=two\n", 0)]);
        assert_eq!(steps(&["printenv", "B"]), vec![output("two\n", 0)]);
        assert_eq!(steps(&["printenv", "C"]), vec![output("", 1)]);
        assert_eq!(steps(&["hostname"]), vec![output("web-0\n", 0)]);
        assert_eq!(steps(&["cat"]), vec![Step::Cat]);
        assert_eq!(steps(&["sh"]), vec![Step::Shell]);
    }

    #[test]
    fn sh_dash_c_splits_commands_and_quotes() {
        assert_eq!(steps(&["sh", "-c", "exit 3"]), vec![Step::Exit(3)]);
        assert_eq!(
            steps(&["/bin/sh", "-c", "echo 'a; b'; false && echo no"]),
            vec![
                output("a; b\n", 0),
                output("", 1),
                Step::AndThen,
                output("no\n", 0)
            ]
        );
    }

    #[test]
    fn output_can_go_to_stderr() {
        assert_eq!(
            steps(&["sh", "-c", "echo oops >&2; exit 1"]),
            vec![failure("oops\n".into(), 0), Step::Exit(1)]
        );
    }

    #[test]
    fn scripted_results_win_over_builtins() {
        let script = ContainerScript::default().on_exec(&["echo", "x"], ExecResult::exit(7));
        let cmd = vec!["echo".to_string(), "x".to_string()];
        let s = program(&cmd, &script, &ExecContext::default());
        assert_eq!(s, vec![scripted(&ExecResult::exit(7))]);
    }
}
