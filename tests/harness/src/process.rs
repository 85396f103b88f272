//! Children in process groups of their own, and stops that leave no process behind.
//!
//! A server (DynamoDB Local, moto, `cargo lambda watch`) is spawned with
//! `setpgid(0, 0)`: a terminal's `Ctrl-C` does not reach it, and one signal to its group
//! reaches what it started in that group. Some of what it starts escapes the group (the
//! functions of `cargo lambda watch` run in sessions of their own, watchexec's), so a stop
//! first records the whole process tree from `/proc`, sends `SIGTERM` to the group, waits
//! up to a grace period for the tree to end, and `SIGKILL`s whatever of it is left.
//!
//! `/proc` may number processes differently from our PID namespace (the test command runs
//! the tests in `unshare --pid` without a `/proc` of its own): a process is recorded with
//! both numbers, and its start time, which tells a reused number apart.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The signals of [`signal_group`] and [`signal_process`].
pub use rustix::process::Signal;
use rustix::process::{Pid, kill_process, kill_process_group};

use crate::pids::PidFile;

/// How long a stopping group gets after `SIGTERM` before it is killed, by default.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a stop waits for `SIGKILL`ed processes to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A child in a process group of its own, with its output in a log file; stopped (with
/// its whole process tree) on drop.
#[derive(Debug)]
pub struct Group {
    name: String,
    child: Mutex<Child>,
    log: PathBuf,
    stop_grace: Duration,
    pid_file: Option<PidFile>,
}

impl Group {
    /// Spawn `command` as `name` (for messages) in a process group of its own, stdin from
    /// `/dev/null`, stdout and stderr to a new file `log`.
    ///
    /// # Errors
    ///
    /// When the log cannot be created or the command cannot be started.
    pub fn spawn(
        name: impl Into<String>,
        command: &mut Command,
        log: impl Into<PathBuf>,
    ) -> io::Result<Self> {
        let log = log.into();
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()?;
        Ok(Self {
            name: name.into(),
            child: Mutex::new(child),
            log,
            stop_grace: STOP_GRACE,
            pid_file: None,
        })
    }

    /// How long [`stop`](Self::stop) waits after `SIGTERM` before it kills.
    #[must_use]
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Name the group by a file in `$ACTIONDO_E2E_PID_DIR` (when it is set) holding
    /// `description`, deleted when the group is dropped; see [`crate::pids`].
    pub fn register_pid_file(&mut self, description: &str) {
        self.pid_file = PidFile::create(self.pid(), description);
    }

    /// The child's pid (and the process group's id).
    pub fn pid(&self) -> u32 {
        self.lock().id()
    }

    /// The name given at [`spawn`](Self::spawn).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// The exit status, if the child has ended.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.lock().try_wait().ok().flatten()
    }

    /// One step of a readiness wait begun at `started`: `Ok(true)` when `ready`,
    /// `Ok(false)` to keep waiting, an error (with the log's tail) when the child has ended
    /// or `limit` has passed. `what` completes "did not …": `answer on http://…`.
    ///
    /// # Errors
    ///
    /// When the child has ended, or `limit` has passed, without `ready`.
    pub fn readiness(
        &self,
        what: &str,
        ready: bool,
        started: Instant,
        limit: Duration,
    ) -> Result<bool, String> {
        if ready {
            return Ok(true);
        }
        if let Some(status) = self.exited() {
            return Err(format!(
                "{} exited ({status}) before it could {what}; last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            ));
        }
        if started.elapsed() >= limit {
            return Err(format!(
                "{} did not {what} within {}s; last lines of {}:\n{}",
                self.name,
                limit.as_secs(),
                self.log.display(),
                self.log_tail(40)
            ));
        }
        Ok(false)
    }

    /// Wait (blocking) until `probe` answers true, polling every `interval`; see
    /// [`readiness`](Self::readiness).
    ///
    /// # Errors
    ///
    /// As [`readiness`](Self::readiness).
    pub fn wait_ready(
        &self,
        what: &str,
        limit: Duration,
        interval: Duration,
        mut probe: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let started = Instant::now();
        while !self.readiness(what, probe(), started, limit)? {
            std::thread::sleep(interval);
        }
        Ok(())
    }

    /// Stop the group and every process the child started: `SIGTERM` to the group, up to
    /// the grace period for the child and its tree to end, then `SIGKILL` to what is left.
    /// Returns when they are gone (or 5 s after the `SIGKILL`). Idempotent.
    pub fn stop(&self) {
        let mut child = self.lock();
        let Ok(pid) = i32::try_from(child.id()) else {
            return;
        };
        let group = Pid::from_raw(pid);
        if child.try_wait().ok().flatten().is_some() {
            // Whatever the ended leader left in its group.
            if let Some(group) = group {
                let _ = kill_process_group(group, Signal::KILL);
            }
            return;
        }
        let tree = descendants(pid);
        if let Some(group) = group {
            let _ = kill_process_group(group, Signal::TERM);
        }
        if wait_ended(&mut child, &tree, self.stop_grace) {
            return;
        }
        kill_all(&tree);
        if let Some(group) = group {
            let _ = kill_process_group(group, Signal::KILL);
        }
        let _ = child.wait();
        wait_gone(&tree);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
        // The pid file goes after the stop (field drop order).
    }
}

/// Stop `child`, which shares our process group (a command in the terminal's foreground),
/// and every process below it: `SIGTERM` to each, up to `grace` for them to end, then
/// `SIGKILL` to what is left; the child is reaped.
pub fn stop_tree(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let tree = descendants(pid);
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, Signal::TERM);
    }
    for p in &tree {
        if p.alive()
            && let Some(pid) = Pid::from_raw(p.pid)
        {
            let _ = kill_process(pid, Signal::TERM);
        }
    }
    if wait_ended(child, &tree, grace) {
        return;
    }
    kill_all(&tree);
    let _ = child.kill();
    let _ = child.wait();
    wait_gone(&tree);
}

/// Whether `pid` names a live process (a zombie counts as live: `kill(pid, 0)`).
pub fn exists(pid: i32) -> bool {
    Pid::from_raw(pid).is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

/// Send `signal` to the process group `group`; false when there is no such group.
pub fn signal_group(group: i32, signal: Signal) -> bool {
    Pid::from_raw(group).is_some_and(|group| kill_process_group(group, signal).is_ok())
}

/// Send `signal` to the process `pid`; false when there is no such process.
pub fn signal_process(pid: i32, signal: Signal) -> bool {
    Pid::from_raw(pid).is_some_and(|pid| kill_process(pid, signal).is_ok())
}

/// The last `n` lines of the file `path` (empty when it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Up to `grace` for `child` to end and every process of `tree` to be gone.
fn wait_ended(child: &mut Child, tree: &[Proc], grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        let done = child.try_wait().ok().flatten().is_some();
        if done && tree.iter().all(|p| !p.alive()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill_all(tree: &[Proc]) {
    for p in tree {
        if p.alive()
            && let Some(pid) = Pid::from_raw(p.pid)
        {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

/// `SIGKILL` is not instant: be done only when the tree is (or after [`KILL_WAIT`]).
fn wait_gone(tree: &[Proc]) {
    let deadline = Instant::now() + KILL_WAIT;
    while Instant::now() < deadline && tree.iter().any(Proc::alive) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process found in `/proc`: its number there, its pid in our PID namespace (they
/// differ in `unshare --pid` without a `/proc` of its own), and its start time (which
/// tells a reused number apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    proc_pid: i32,
    pid: i32,
    start: u64,
}

impl Proc {
    /// Its pid in our PID namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether it still runs (the same process, not a zombie).
    pub fn alive(&self) -> bool {
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
pub fn descendants(child: i32) -> Vec<Proc> {
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

    /// A shell with one child in its process group and one in a session of its own, like
    /// a function under watchexec; neither of the sleeps ends by itself.
    fn shell_with_two_sleeps(group: bool) -> (Child, Vec<Proc>) {
        let mut command = Command::new("sh");
        command.args(["-c", "setsid sleep 300 & sleep 300"]);
        if group {
            command.process_group(0);
        }
        let shell = command.spawn().expect("sh");
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
        (shell, tree)
    }

    #[test]
    fn a_group_stops_its_whole_process_tree() {
        let dir = std::env::temp_dir().join(format!("actiondo-harness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("group.log");
        let group = Group::spawn(
            "sh",
            Command::new("sh").args(["-c", "echo started; setsid sleep 300 & sleep 300"]),
            &log,
        )
        .expect("spawn")
        .with_stop_grace(Duration::from_millis(300));
        let pid = i32::try_from(group.pid()).expect("pid");
        let mut tree = Vec::new();
        for _ in 0..200 {
            tree = descendants(pid);
            if tree.len() >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(tree.len() >= 2, "sh has two sleeping children: {tree:?}");
        assert!(group.exited().is_none());
        drop(group);
        assert!(
            tree.iter().all(|p| !p.alive()),
            "every process of the tree is gone: {tree:?}"
        );
        assert_eq!(log_tail(&log, 5), "started");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_foreground_child_is_stopped_with_its_tree() {
        let (mut shell, tree) = shell_with_two_sleeps(false);
        stop_tree(&mut shell, Duration::from_millis(300));
        assert!(shell.try_wait().expect("wait").is_some(), "sh is reaped");
        assert!(
            tree.iter().all(|p| !p.alive()),
            "every process of the tree is gone: {tree:?}"
        );
    }

    #[test]
    fn readiness_fails_early_when_the_child_ends() {
        let dir = std::env::temp_dir().join(format!("actiondo-harness-r-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let group = Group::spawn(
            "failing server",
            Command::new("sh").args(["-c", "echo bad configuration; exit 3"]),
            dir.join("server.log"),
        )
        .expect("spawn");
        let error = group
            .wait_ready(
                "answer on 127.0.0.1:1",
                Duration::from_secs(60),
                Duration::from_millis(20),
                || false,
            )
            .expect_err("the child ends before it is ready");
        assert!(
            error.starts_with("failing server exited (exit status: 3) before it could answer"),
            "{error}"
        );
        assert!(error.ends_with("bad configuration"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
