//! Pid files: how the test command stops what a test binary killed outright left running.
//!
//! The test command (`cargo xtask test`) makes a fresh folder per run and hands it to the
//! tests as `ACTIONDO_E2E_PID_DIR`. Each server a test starts in a process group of its
//! own (`cargo lambda watch`, a test's `moto_server`) is named there by a file `<pid>`
//! ([`PidFile`], deleted when the server is stopped). A file left over means that the
//! test binary died without stopping it: [`stop_leftovers`] stops those process groups.
//! Pids are those of the test command's PID namespace, where both run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::{Signal, exists, signal_group};

/// The variable naming the folder of pid files (set by the test command).
pub const PID_DIR_ENV: &str = "ACTIONDO_E2E_PID_DIR";

/// A file `$ACTIONDO_E2E_PID_DIR/<pid>` naming a running process group; deleted on drop.
#[derive(Debug)]
pub struct PidFile(PathBuf);

impl PidFile {
    /// Write `<pid>` with `description` into `$ACTIONDO_E2E_PID_DIR`; `None` when the
    /// variable is not set (a plain `cargo test`) or the file cannot be written.
    pub fn create(pid: u32, description: &str) -> Option<Self> {
        let dir = std::env::var_os(PID_DIR_ENV)?;
        Self::create_in(Path::new(&dir), pid, description)
    }

    /// Write `<pid>` with `description` into `dir`.
    pub fn create_in(dir: &Path, pid: u32, description: &str) -> Option<Self> {
        let file = dir.join(pid.to_string());
        std::fs::write(&file, format!("{description}\n")).ok()?;
        Some(Self(file))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Stop every process group named by a file in `dir` that still runs (`SIGTERM`, up to
/// `grace`, then `SIGKILL`), telling `warn` about each; then delete the files and `dir`.
/// Returns how many groups were stopped.
pub fn stop_leftovers(dir: &Path, grace: Duration, mut warn: impl FnMut(&str)) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut stopped = 0;
    for entry in entries.filter_map(Result::ok) {
        let file = entry.path();
        let pid = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
            .filter(|pid| *pid > 0);
        if let Some(pid) = pid
            && exists(pid)
        {
            let what = std::fs::read_to_string(&file).unwrap_or_default();
            let what = what.lines().next().unwrap_or("a server");
            warn(&format!(
                "stopping {what} (process group {pid}) left by a killed test"
            ));
            signal_group(pid, Signal::TERM);
            let deadline = Instant::now() + grace;
            while exists(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            signal_group(pid, Signal::KILL);
            stopped += 1;
        }
        let _ = std::fs::remove_file(&file);
    }
    let _ = std::fs::remove_dir(dir);
    stopped
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt as _;
    use std::process::Command;

    use super::*;

    #[test]
    fn a_left_over_group_is_stopped_and_the_folder_removed() {
        let dir =
            std::env::temp_dir().join(format!("actiondo-harness-pids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        // A process group whose owner "died": nothing but the pid file refers to it.
        let mut orphan = Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .expect("sleep");
        let file = PidFile::create_in(&dir, orphan.id(), "sleep on port 1").expect("pid file");
        std::mem::forget(file);
        std::fs::write(dir.join("not-a-pid"), "x").expect("stray file");
        let mut warnings = Vec::new();
        let stopped = stop_leftovers(&dir, Duration::from_millis(300), |w| {
            warnings.push(w.to_owned())
        });
        assert_eq!(stopped, 1);
        assert_eq!(
            warnings,
            [format!(
                "stopping sleep on port 1 (process group {}) left by a killed test",
                orphan.id()
            )]
        );
        let status = orphan.wait().expect("wait");
        assert!(!status.success(), "sleep was signalled: {status}");
        assert!(!dir.exists(), "the folder is removed");
    }

    #[test]
    fn a_pid_file_is_deleted_on_drop() {
        let dir =
            std::env::temp_dir().join(format!("actiondo-harness-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = PidFile::create_in(&dir, 4242, "moto_server on port 9").expect("pid file");
        assert_eq!(
            std::fs::read_to_string(file.path()).expect("read"),
            "moto_server on port 9\n"
        );
        let path = file.path().to_owned();
        drop(file);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
