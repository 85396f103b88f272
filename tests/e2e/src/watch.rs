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
//! of the process tree (recorded from `/proc` before the stop) is still alive: the stop
//! of [`actiondo_harness::Group`], which the test command uses for its servers too.
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

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use actiondo_harness::Group;

/// How long a stopping watch gets to end its functions before everything is killed.
pub const STOP_GRACE: Duration = actiondo_harness::process::STOP_GRACE;

/// A folder where each running watch is named by a file `<pid>` (deleted when the watch is
/// stopped), so that the test command can stop the watch of a test binary killed outright
/// (`./tests/run.sh` sets it; see `actiondo_harness::pids`).
pub const PID_DIR_ENV: &str = actiondo_harness::PID_DIR_ENV;

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
    group: Group,
    addr: SocketAddr,
    keep_log: bool,
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
        let mut command = Command::new(cargo_lambda);
        command
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
            .arg("--invoke-port")
            .arg(port.to_string())
            .args(["--ignore-changes", "--color", "never"])
            .current_dir(workspace)
            .envs(env.iter().map(|(k, v)| (k, v)));
        let mut group = Group::spawn("cargo lambda watch", &mut command, log)?;
        group.register_pid_file(&format!("cargo lambda watch on port {port}"));
        Ok(Self {
            group,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            keep_log: false,
        })
    }

    /// Where the Invoke API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The file with the watch's output (and the functions').
    pub fn log_path(&self) -> &Path {
        self.group.log_path()
    }

    /// Keep the log file after the stop (it is deleted otherwise, unless a panic is
    /// unwinding).
    pub fn keep_log(&mut self) {
        self.keep_log = true;
    }

    /// The exit status, if the watch has ended.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.group.exited()
    }

    /// How many times the log reports a function process that ended or did not build.
    pub fn failures(&self) -> usize {
        let Ok(file) = std::fs::File::open(self.group.log_path()) else {
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
        self.group.log_tail(n)
    }

    /// Wait until the Invoke API accepts connections; an error (with the log's tail) if the
    /// watch ends first or `limit` passes.
    pub async fn wait_listening(&self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        let what = format!("listen on {}", self.addr);
        loop {
            let ready = tokio::net::TcpStream::connect(self.addr).await.is_ok();
            if self.group.readiness(&what, ready, started, limit)? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The watch's functions end with it (the group's stop covers the whole tree).
        self.group.stop();
        if std::thread::panicking() || self.keep_log {
            eprintln!(
                "--- cargo lambda watch log ({}), last lines:\n{}\n---",
                self.log_path().display(),
                self.log_tail(60)
            );
        } else {
            let _ = std::fs::remove_file(self.log_path());
        }
    }
}
