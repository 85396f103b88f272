//! The `cargo lambda watch` process: start, readiness, log, and a stop that leaves no
//! process behind.
//!
//! # How cargo-lambda runs the functions (1.9.2)
//!
//! `cargo lambda watch` serves the Lambda Invoke API and, per function, the Runtime API.
//! Nothing runs until the first invoke of a function `name`; then it spawns
//! `cargo run --color … --manifest-path Cargo.toml --bin name` with the watch's own
//! environment plus `AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME` and a few more.
//! That `cargo run` builds the binary if it is stale: with the binaries built beforehand
//! (`cargo build --workspace --bins`, the feature set `cargo run --bin` resolves in this
//! workspace) it only checks freshness (about 0.3 s) and starts it; a stale binary is
//! compiled then and there (a minute or more), and any other cargo holding the build
//! directory lock makes it wait. The first invoke of each function is therefore slow and
//! its time unknowable: [`Stack`](crate::Stack) warms every function up with a generous
//! limit before a test runs, and no test times anything.
//!
//! The function processes run in their own session (watchexec's process groups), not in
//! the watch's process group. On `SIGTERM` cargo-lambda stops them itself; [`Watch`]'s
//! `Drop` sends `SIGTERM` to the watch's process group, waits, then `SIGKILL`s whatever
//! of the process tree (recorded from `/proc` before the stop) is still alive.
//!
//! `--ignore-changes` is always passed: other edits in the checkout must not restart the
//! functions under a test.
//!
//! Two quirks of the emulator to know when reading results:
//!
//! - the Runtime API's `Lambda-Runtime-Deadline-Ms` is the constant `600000` (a duration
//!   where Lambda sends an absolute Unix time), so a function sees a deadline in 1970;
//!   `actiondo` then gives a `RemainingTime` lease its floor of 1 s;
//! - a function that exits (e.g. a bad configuration at start-up) is logged as
//!   `command exited` and its pending invokes never answer: [`Watch::failures`] counts
//!   those lines so that a caller can stop waiting.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

/// How long a stopping watch gets to end its functions before everything is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A folder where each running watch is named by a file `<pid>` (deleted when the watch is
/// stopped), so that the test runner can stop the watch of a test binary killed outright
/// (`./tests/run.sh` sets it).
pub const PID_DIR_ENV: &str = "ACTIONDO_E2E_PID_DIR";

/// Log lines by which cargo-lambda reports that a function process ended or could not
/// be built.
const FAILURE_MARKERS: [&str; 3] = [
    "command exited",
    "command killed",
    "error: could not compile",
];

/// A running `cargo lambda watch` (its whole process tree is stopped on drop).
#[derive(Debug)]
pub struct Watch {
    child: Mutex<Child>,
    addr: SocketAddr,
    log: PathBuf,
    keep_log: bool,
    stop_grace: Duration,
    pid_file: Option<PathBuf>,
}

impl Watch {
    /// Start `cargo_lambda lambda watch -A 127.0.0.1 -P <port> --ignore-changes` in
    /// `workspace` (where `Cargo.toml` is) with `env` added to this process's
    /// environment, in a process group of its own, output to `log`.
    pub fn spawn(
        cargo_lambda: &Path,
        workspace: &Path,
        port: u16,
        env: &[(String, String)],
        log: PathBuf,
    ) -> std::io::Result<Self> {
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let mut command = Command::new(cargo_lambda);
        command
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
            .arg("--invoke-port")
            .arg(port.to_string())
            .args(["--ignore-changes", "--color", "never"])
            .current_dir(workspace)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command.spawn()?;
        let pid_file = std::env::var_os(PID_DIR_ENV)
            .map(|dir| PathBuf::from(dir).join(child.id().to_string()))
            .filter(|file| {
                std::fs::write(file, format!("cargo lambda watch on port {port}\n")).is_ok()
            });
        Ok(Self {
            child: Mutex::new(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            keep_log: false,
            stop_grace: STOP_GRACE,
            pid_file,
        })
    }

    /// Where the Invoke API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The file with the watch's output (and the functions').
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Keep the log file after the stop (it is deleted otherwise, unless a panic is
    /// unwinding).
    pub fn keep_log(&mut self) {
        self.keep_log = true;
    }

    /// The exit status, if the watch has ended.
    pub fn exited(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.try_wait().ok().flatten()
    }

    /// How many times the log reports a function process that ended or did not build.
    pub fn failures(&self) -> usize {
        let Ok(file) = File::open(&self.log) else {
            return 0;
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|line| FAILURE_MARKERS.iter().any(|m| line.contains(m)))
            .count()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Wait until the Invoke API accepts connections; an error (with the log's tail) if the
    /// watch ends first or `limit` passes.
    pub async fn wait_listening(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "cargo lambda watch exited ({status}) before listening on {}; its log:\n{}",
                    self.addr,
                    self.log_tail(40)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "cargo lambda watch did not listen on {} within {limit:?}; its log:\n{}",
                    self.addr,
                    self.log_tail(40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let Ok(pid) = i32::try_from(child.id()) else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        let tree = descendants(pid);
        if let Some(group) = Pid::from_raw(pid) {
            let _ = kill_process_group(group, Signal::TERM);
        }
        let deadline = Instant::now() + self.stop_grace;
        while Instant::now() < deadline {
            let watch_done = child.try_wait().ok().flatten().is_some();
            if watch_done && tree.iter().all(|p| !p.alive()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in &tree {
            if p.alive()
                && let Some(pid) = Pid::from_raw(p.pid)
            {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
        if let Some(group) = Pid::from_raw(pid) {
            let _ = kill_process_group(group, Signal::KILL);
        }
        let _ = child.wait();
        // SIGKILL is not instant: be done only when the tree is.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && tree.iter().any(Proc::alive) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
        if let Some(file) = &self.pid_file {
            let _ = std::fs::remove_file(file);
        }
        if std::thread::panicking() || self.keep_log {
            eprintln!(
                "--- cargo lambda watch log ({}), last lines:\n{}\n---",
                self.log.display(),
                self.log_tail(60)
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A process found in `/proc`: its number there, its pid in our PID namespace (they
/// differ when the tests run in `unshare --pid` without a `/proc` of their own, as under
/// `./tests/run.sh`), and its start time (which tells a reused number apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    proc_pid: i32,
    pid: i32,
    start: u64,
}

impl Proc {
    fn alive(&self) -> bool {
        proc_stat(self.proc_pid).is_some_and(|s| s.start == self.start && s.state != 'Z')
    }
}

#[derive(Debug, Clone, Copy)]
struct Stat {
    ppid: i32,
    state: char,
    start: u64,
}

/// Fields of `/proc/N/stat` (see proc(5)): after the command name in parentheses come
/// the state (field 3), the parent (4) and, 19 fields later, the start time (22).
fn proc_stat(proc_pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{proc_pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The pid of `/proc/N` in the innermost PID namespace (the last `NSpid` of its status).
fn namespace_pid(proc_pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{proc_pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// Every process below our child `child` (a pid of our namespace), from a scan of `/proc`.
fn descendants(child: i32) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<(i32, Stat)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|n| Some((n, proc_stat(n)?)))
        .collect();
    // `/proc/self` is this process as `/proc` numbers it; our child is the process it
    // started whose namespace pid is `child`.
    let me: Option<i32> = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse().ok());
    let root = all
        .iter()
        .find(|(n, stat)| Some(stat.ppid) == me && namespace_pid(*n) == Some(child))
        .map_or(child, |(n, _)| *n);
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (n, stat) in &all {
            if stat.ppid == parent {
                found.push(Proc {
                    proc_pid: *n,
                    pid: namespace_pid(*n).unwrap_or(*n),
                    start: stat.start,
                });
                frontier.push(*n);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_process_tree_is_stopped() {
        // A shell with one child in its process group and one in a session of its own,
        // like a function under watchexec; neither of the sleeps ends by itself.
        let shell = Command::new("sh")
            .args(["-c", "setsid sleep 300 & sleep 300"])
            .process_group(0)
            .spawn()
            .expect("sh");
        let pid = i32::try_from(shell.id()).expect("pid");
        let mut tree = Vec::new();
        for _ in 0..200 {
            tree = descendants(pid);
            if tree.len() >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(tree.len() >= 2, "sh has two sleeping children: {tree:?}");
        let log = std::env::temp_dir().join(format!("actiondo-e2e-watch-test-{pid}.log"));
        std::fs::write(&log, "x").expect("log");
        let watch = Watch {
            child: Mutex::new(shell),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            log: log.clone(),
            keep_log: false,
            stop_grace: Duration::from_millis(300),
            pid_file: None,
        };
        drop(watch);
        assert!(
            tree.iter().all(|p| !p.alive()),
            "every process of the tree is gone: {tree:?}"
        );
        assert!(!log.exists(), "the log of a passing test is removed");
    }
}
