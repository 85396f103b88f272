//! The paths of a run, the environment every command gets, and running commands so that a
//! signal stops them at once.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use actiondo_harness::process::stop_tree;
use anyhow::Context as _;

use crate::signals;

/// How long a command stopped by a signal gets after `SIGTERM`.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// Variables `cargo run` sets for the xtask that the commands it runs must not inherit
/// (they describe the xtask package, not theirs); prefixes end with `_`.
const CARGO_RUN_VARS: [&str; 6] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PKG_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
];

/// The paths of the run and the environment its commands get.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The workspace (where `Cargo.toml` and `tests/run.sh` are).
    pub(crate) root: PathBuf,
    /// `.tools/`.
    pub(crate) tools: PathBuf,
    /// `.tools/venv/`.
    pub(crate) venv: PathBuf,
    /// `.tools/logs/`.
    pub(crate) logs: PathBuf,
    /// Set for every command, in order (later wins).
    env: Vec<(OsString, OsString)>,
    /// Removed from every command's environment.
    unset: Vec<OsString>,
}

impl Ctx {
    /// The paths under the workspace root and the base environment (no prompts, no
    /// update notices, no pip cache).
    pub(crate) fn new() -> anyhow::Result<Self> {
        let root = workspace_root()?;
        // A `.tools` that is a symlink (a worktree sharing another checkout's tools) is
        // resolved, so that the links in `.tools/bin` outlive the worktree.
        let tools = root.join(".tools");
        let tools = tools.canonicalize().unwrap_or(tools);
        let mut ctx = Self {
            venv: tools.join("venv"),
            logs: tools.join("logs"),
            tools,
            root,
            env: Vec::new(),
            unset: Vec::new(),
        };
        for (key, value) in [
            ("DEBIAN_FRONTEND", "noninteractive"),
            ("PIP_NO_INPUT", "1"),
            ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
            ("npm_config_update_notifier", "false"),
            ("npm_config_fund", "false"),
            ("npm_config_audit", "false"),
            // Every package is installed once into a venv: a cache only doubles the disk.
            ("PIP_NO_CACHE_DIR", "1"),
        ] {
            ctx.set(key, value);
        }
        Ok(ctx)
    }

    /// Set `key` for every command run from now on.
    pub(crate) fn set(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
    }

    /// Remove `key` from the environment of every command run from now on.
    pub(crate) fn unset(&mut self, key: impl AsRef<OsStr>) {
        self.unset.push(key.as_ref().to_owned());
    }

    /// `program` with the run's environment, in the workspace root.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if CARGO_RUN_VARS.iter().any(|v| {
                if v.ends_with('_') {
                    key.starts_with(v)
                } else {
                    key == *v
                }
            }) {
                command.env_remove(key.as_ref());
            }
        }
        for key in &self.unset {
            command.env_remove(key);
        }
        command
            .current_dir(&self.root)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// `path` relative to the workspace root (or to `.tools`' parent), for messages.
    pub(crate) fn rel<'a>(&self, path: &'a Path) -> &'a Path {
        let tools_parent = self.tools.parent().unwrap_or(&self.root);
        path.strip_prefix(&self.root)
            .or_else(|_| path.strip_prefix(tools_parent))
            .unwrap_or(path)
    }
}

/// The workspace root: `CARGO_MANIFEST_DIR/..` under `cargo run`, else the parent of the
/// folder holding this binary's `target/`, else the current directory's ancestor with
/// `tests/run.sh`.
fn workspace_root() -> anyhow::Result<PathBuf> {
    let looks_right =
        |dir: &Path| dir.join("tests/run.sh").is_file() && dir.join("Cargo.toml").is_file();
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|d| d.parent().map(Path::to_path_buf))
        .filter(|d| looks_right(d))
    {
        return Ok(dir);
    }
    let candidates = std::env::current_exe()
        .ok()
        .into_iter()
        .chain(std::env::current_dir().ok());
    for start in candidates {
        if let Some(dir) = start.ancestors().find(|d| looks_right(d)) {
            return Ok(dir.to_path_buf());
        }
    }
    anyhow::bail!("cannot find the workspace root (a folder with Cargo.toml and tests/run.sh)")
}

/// The exit status as the shell reports it: the code, or 128 + the signal.
pub(crate) fn code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Wait for `child` (in our process group), looking for signals every 50 ms; on one, stop
/// it and everything below it and end with [`Interrupted`](crate::Interrupted).
pub(crate) fn wait(child: &mut Child) -> anyhow::Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if let Some(signal) = signals::received() {
            stop_tree(child, STOP_GRACE);
            return Err(crate::Interrupted(signal).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `command` (terminal stdio) to its end.
pub(crate) fn status(command: &mut Command) -> anyhow::Result<ExitStatus> {
    signals::check()?;
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {}", describe(command)))?;
    wait(&mut child)
}

/// Run `command`; a non-zero exit ends the run with that status (the command printed why).
pub(crate) fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = status(command)?;
    if status.success() {
        Ok(())
    } else {
        Err(crate::Exit(code(status)).into())
    }
}

/// Run `command`; a non-zero exit is the error `what` (a sentence saying what failed).
pub(crate) fn run_or(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = status(command)?;
    anyhow::ensure!(status.success(), "{what}");
    Ok(())
}

/// Whether `command` succeeds, its output discarded.
pub(crate) fn succeeds(command: &mut Command) -> anyhow::Result<bool> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match status(command) {
        Ok(status) => Ok(status.success()),
        Err(e) if e.is::<crate::Interrupted>() => Err(e),
        Err(_) => Ok(false),
    }
}

/// `command`'s standard output (its stderr discarded), if it succeeds.
pub(crate) fn output(command: &mut Command) -> Option<String> {
    let out = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The program and its arguments, for messages.
pub(crate) fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The executable `name` on `PATH` (`command -v`).
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return is_executable(Path::new(name)).then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file with an execute bit.
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `'name' not found: hint` unless `name` is on `PATH`.
pub(crate) fn need(name: &str, hint: &str) -> anyhow::Result<PathBuf> {
    which(name).with_context(|| format!("'{name}' not found: {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signalled_command_reports_128_plus_the_signal() {
        let status = Command::new("sh")
            .args(["-c", "kill -TERM $$"])
            .status()
            .expect("sh");
        assert_eq!(code(status), 143);
        let status = Command::new("sh")
            .args(["-c", "exit 7"])
            .status()
            .expect("sh");
        assert_eq!(code(status), 7);
    }

    #[test]
    fn cargo_run_variables_are_not_passed_on() {
        let ctx = Ctx::new().expect("ctx");
        // Under `cargo test`, CARGO_MANIFEST_DIR and CARGO_PKG_NAME are set for us.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let out = output(ctx.command("env").env("KEPT", "yes")).expect("env");
        assert!(out.lines().any(|l| l == "KEPT=yes"), "{out}");
        assert!(out.lines().any(|l| l == "PIP_NO_CACHE_DIR=1"), "{out}");
        assert!(
            !out.lines()
                .any(|l| l.starts_with("CARGO_PKG_") || l.starts_with("CARGO_MANIFEST_DIR=")),
            "{out}"
        );
        assert!(ctx.root.join("tests/run.sh").is_file());
    }
}
