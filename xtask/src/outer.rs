//! The phases before the tests (install, toolchain, fmt, clippy, templates, build,
//! typescript), the namespace, the re-run inside it, and the summary.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actiondo_harness::process::{Signal, signal_process};

use crate::cmd::{self, Ctx, is_executable, need, which};
use crate::{Options, checks, info, is_ci, section, signals, tools, warn};

/// Where the run is, for the `FAILED in phase …` line.
struct Run {
    started: Instant,
    phase: &'static str,
}

impl Run {
    fn secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// The whole test command; the exit status.
pub(crate) fn main(options: Options) -> i32 {
    let mut run = Run {
        started: Instant::now(),
        phase: "setup",
    };
    match phases(&options, &mut run) {
        Ok(code) => code,
        Err(e) => {
            let code = crate::exit_code(&e);
            if code != 0 && run.phase != "tests" {
                eprintln!(
                    "\n==> FAILED in phase {} (exit {code}) after {}s",
                    run.phase,
                    run.secs()
                );
            }
            code
        }
    }
}

fn phases(options: &Options, run: &mut Run) -> anyhow::Result<i32> {
    // Captured first: a workspace build below may replace target/debug/xtask (same sources).
    let exe = std::env::current_exe()?;
    let mut ctx = Ctx::new()?;
    if std::io::stdout().is_terminal() && std::env::var_os("CARGO_TERM_COLOR").is_none() {
        ctx.set("CARGO_TERM_COLOR", "always");
    }
    anyhow::ensure!(
        !(options.checks_only && options.servers_only),
        "--checks-only and --servers-only exclude each other"
    );

    run.phase = "install";
    section("installing tools into .tools/");
    tools::check_disk(&ctx)?;
    if options.checks_only {
        anyhow::ensure!(
            options.rest.is_empty(),
            "--checks-only takes no arguments for cargo test"
        );
        tools::install(&ctx, true)?;
        run.phase = "templates";
        section("templates and workflows");
        checks::templates(&ctx)?;
        section(&format!(
            "summary: templates and workflows ok after {}s",
            run.secs()
        ));
        return Ok(0);
    }
    tools::install(&ctx, false)?;
    tools::mcp_client(&ctx)?;

    if !options.servers_only {
        // A clean CI build gains nothing from incremental artifacts, which double the
        // size of target/.
        if is_ci() {
            ctx.set("CARGO_INCREMENTAL", "0");
        }
        run.phase = "toolchain";
        need("cargo", "install the Rust toolchain")?;
        anyhow::ensure!(
            cmd::succeeds(ctx.command("cargo").args(["fmt", "--version"]))?,
            "cargo fmt (rustfmt) is not installed"
        );
        anyhow::ensure!(
            cmd::succeeds(ctx.command("cargo").args(["clippy", "--version"]))?,
            "cargo clippy is not installed"
        );

        run.phase = "fmt";
        section("fmt");
        cmd::run(ctx.command("cargo").args(["fmt", "--all", "--check"]))?;
        run.phase = "clippy";
        section("clippy");
        cmd::run(ctx.command("cargo").args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        run.phase = "templates";
        section("templates and workflows");
        checks::templates(&ctx)?;
        run.phase = "build";
        section("build (cargo test --workspace --no-run; cargo build --workspace --bins)");
        cmd::run(
            ctx.command("cargo")
                .args(["test", "--workspace", "--no-run"]),
        )?;
        // What `cargo lambda watch` runs in the e2e tests (cargo run --bin NAME, offline).
        cmd::run(
            ctx.command("cargo")
                .args(["build", "--workspace", "--bins"]),
        )?;

        // The TypeScript client (clients/typescript, docs/architecture.md §12): `npm ci`
        // puts its devDependency (typescript, pinned by package-lock.json) in
        // clients/typescript/node_modules (git-ignored) while the network is here;
        // `npm test` regenerates the action types from target/debug/actiondo, builds with
        // tsc and runs `node --test`, which starts its own `actiondo serve` on 127.0.0.1
        // (temp store, free port) and stops it.
        run.phase = "typescript";
        section("TypeScript client (npm ci, npm test)");
        if tools::node_available()? {
            let client = ctx.root.join("clients/typescript");
            cmd::run(
                ctx.command("npm")
                    .args(["ci", "--silent", "--loglevel=error"])
                    .current_dir(&client),
            )?;
            cmd::run(
                ctx.command("npm")
                    .args(["test", "--silent"])
                    .env("ACTIONDO_BIN", ctx.root.join("target/debug/actiondo"))
                    .current_dir(&client),
            )?;
        }
    }

    run.phase = "tests";
    section("test phase");
    let namespace = choose_namespace(&ctx)?;
    let _ = std::fs::remove_file(ctx.logs.join("cargo-test.log"));
    ctx.set(
        "ACTIONDO_IN_NETNS",
        if namespace.prefix.is_empty() {
            "0"
        } else {
            "1"
        },
    );
    // Per run (pids mean nothing in another run's namespace); made here so that it is
    // removed even when the namespace is killed. It also receives the inner run's test
    // totals: `.tools/logs` may be shared with other checkouts (a symlinked `.tools`).
    let run_dir = RunDir::create()?;
    let pids = run_dir.0.join("pids");
    std::fs::create_dir(&pids)?;
    ctx.set(actiondo_harness::PID_DIR_ENV, &pids);
    let totals_file = run_dir.0.join("totals");
    ctx.set(crate::inside::TOTALS_ENV, &totals_file);

    let mut inner = namespace.command(&ctx, &exe);
    inner.args(["test", "--inside"]);
    if options.servers_only {
        inner.arg("--servers-only");
    }
    let code = if options.servers_only && options.rest.is_empty() {
        // Interactive shell: in the foreground, the terminal's Ctrl-C is the shell's.
        signals::ignore_interrupts(true);
        let status = cmd::status(&mut inner)?;
        signals::ignore_interrupts(false);
        cmd::code(status)
    } else {
        inner.arg("--").args(&options.rest);
        run_inner(&mut inner, &namespace)?
    };
    let totals = std::fs::read_to_string(&totals_file).ok();
    drop(run_dir);

    if options.servers_only {
        section(&format!(
            "summary: --servers-only run exited {code} after {}s",
            run.secs()
        ));
        return Ok(code);
    }
    let status = if code == 0 {
        "ok".to_owned()
    } else {
        format!("FAILED (exit {code})")
    };
    section(&format!(
        "summary: fmt ok, clippy ok, templates ok, build ok, tests {status} after {}s",
        run.secs()
    ));
    // The last line, in the plain 'N passed, N failed, N skipped' form, summed over every
    // test binary (cargo prints one 'test result:' line per binary).
    let line = totals.or_else(|| {
        let log = std::fs::read_to_string(ctx.logs.join("cargo-test.log")).ok()?;
        test_totals(&log)
    });
    if let Some(line) = line.filter(|l| !l.trim().is_empty()) {
        println!("{}", line.trim_end());
    }
    Ok(code)
}

/// The re-run inside the namespace, waited for so that a signal is handled at once: with
/// a PID namespace, `SIGKILL` to `unshare` takes the whole namespace down (servers,
/// cargo, test binaries); without one, the inner xtask stops its own on `SIGTERM`.
fn run_inner(inner: &mut Command, namespace: &Namespace) -> anyhow::Result<i32> {
    let mut child = inner
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", cmd::describe(inner)))?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(cmd::code(status));
        }
        if let Some(signal) = signals::received() {
            if namespace.pid {
                let _ = child.kill();
            } else if let Ok(pid) = i32::try_from(child.id()) {
                signal_process(pid, Signal::TERM);
            }
            let _ = child.wait();
            eprintln!(
                "\n==> interrupted (signal {}); servers stopped",
                signals::name(signal)
            );
            return Err(crate::Interrupted(signal).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temporary folder of the run (`pids/`: `ACTIONDO_E2E_PID_DIR`; `totals`), removed on
/// drop.
struct RunDir(PathBuf);

impl RunDir {
    fn create() -> anyhow::Result<Self> {
        let base = std::env::temp_dir();
        for attempt in 0..100u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = base.join(format!(
                "actiondo-xtask.{}.{nanos:x}{attempt}",
                std::process::id()
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Self(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => anyhow::bail!("cannot create a temporary folder {}: {e}", dir.display()),
            }
        }
        anyhow::bail!("cannot create a temporary folder under {}", base.display())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the inner run is started: `unshare …` or nothing.
#[derive(Debug, Default)]
struct Namespace {
    prefix: Vec<String>,
    /// A PID namespace whose first process `unshare` kills (`--kill-child`): killing
    /// `unshare` kills everything inside.
    pid: bool,
}

impl Namespace {
    fn command(&self, ctx: &Ctx, exe: &Path) -> Command {
        match self.prefix.split_first() {
            Some((unshare, flags)) => {
                let mut command = ctx.command(unshare);
                command.args(flags).arg(exe);
                command
            }
            None => ctx.command(exe),
        }
    }
}

/// A private network (and PID) namespace if one can be made: `unshare` with the first
/// set of flags under which `ip link set lo up` works.
fn choose_namespace(ctx: &Ctx) -> anyhow::Result<Namespace> {
    if std::env::var("ACTIONDO_NETNS").is_ok_and(|v| v == "0") {
        warn(
            "ACTIONDO_NETNS=0: servers run on the host loopback (DynamoDB Local listens on all interfaces)",
        );
        return Ok(Namespace::default());
    }
    let ip = ip_command();
    let candidates: [&str; 2] = if rustix::process::geteuid().is_root() {
        ["--net --pid --fork --kill-child", "--net"]
    } else {
        [
            "--net --pid --fork --kill-child --map-root-user",
            "--net --map-root-user",
        ]
    };
    if which("unshare").is_some() && is_executable(&ip) {
        for flags in candidates {
            let mut probe = ctx.command("unshare");
            probe
                .args(flags.split(' '))
                .arg("--")
                .arg(&ip)
                .args(["link", "set", "lo", "up"])
                .stdin(Stdio::null());
            if cmd::succeeds(&mut probe)? {
                info(&format!("network namespace: unshare {flags}"));
                let mut prefix: Vec<String> = std::iter::once("unshare")
                    .chain(flags.split(' '))
                    .map(str::to_owned)
                    .collect();
                prefix.push("--".into());
                return Ok(Namespace {
                    prefix,
                    pid: flags.contains("--pid"),
                });
            }
        }
    }
    anyhow::ensure!(
        !is_ci(),
        "cannot create a network namespace (unshare/ip missing or not permitted); set ACTIONDO_NETNS=0 to run on the host loopback"
    );
    warn(
        "cannot create a network namespace; servers run on the host loopback (DynamoDB Local listens on all interfaces)",
    );
    Ok(Namespace::default())
}

/// `ip`, on `PATH` or in `/usr/sbin`.
pub(crate) fn ip_command() -> PathBuf {
    which("ip").unwrap_or_else(|| PathBuf::from("/usr/sbin/ip"))
}

/// `tests: N passed, N failed, N skipped` summed over the `test result:` lines of a
/// `cargo test` output (colours removed); `None` without any.
pub(crate) fn test_totals(log: &str) -> Option<String> {
    let (mut binaries, mut passed, mut failed, mut skipped) = (0, 0u64, 0u64, 0u64);
    for line in log.lines().map(strip_ansi) {
        let Some(rest) = line.strip_prefix("test result:") else {
            continue;
        };
        binaries += 1;
        passed += count(rest, "passed");
        failed += count(rest, "failed");
        skipped += count(rest, "ignored");
    }
    (binaries > 0).then(|| format!("tests: {passed} passed, {failed} failed, {skipped} skipped"))
}

/// The number before the first `word` of `text` (`3 passed` → 3).
fn count(text: &str, word: &str) -> u64 {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ';' || c == '.')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .find(|pair| pair[1] == word)
        .and_then(|pair| pair[0].parse().ok())
        .unwrap_or(0)
}

/// `line` without ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_every_test_binary() {
        let log = "\
running 3 tests
test a ... ok
test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
\u{1b}[1m\u{1b}[32mtest result:\u{1b}[0m FAILED. 10 passed; 2 failed; 0 ignored; 0 measured; 5 filtered out; finished in 1.20s
   Doc-tests x
test result: ok. 0 passed; 0 failed; 4 ignored; 0 measured; 0 filtered out; finished in 0.00s
";
        assert_eq!(
            test_totals(log).as_deref(),
            Some("tests: 13 passed, 2 failed, 5 skipped")
        );
        assert_eq!(test_totals("error: could not compile `x`\n"), None);
    }

    #[test]
    fn colours_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[1m\u{1b}[32mok\u{1b}[0m."), "ok.");
        assert_eq!(count("ok. 7 passed; 1 failed;", "failed"), 1);
        assert_eq!(count("ok. 7 passed;", "ignored"), 0);
    }
}
