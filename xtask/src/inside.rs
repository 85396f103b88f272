//! The run inside the namespace (or on the host loopback, as the fallback): DynamoDB
//! Local and moto on free ports, the test environment, then `cargo test` (or the command
//! of `--servers-only`); every process it started is stopped on the way out, on a signal
//! too.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use actiondo_harness::net::{free_ports, http_status};
use actiondo_harness::pids::stop_leftovers;
use actiondo_harness::process::{Group, Signal, signal_process};
use anyhow::Context as _;

use crate::cmd::{self, Ctx, is_executable};
use crate::{Options, info, section, signals, warn};

/// How long each server gets to answer HTTP, by default (`ACTIONDO_SERVER_WAIT_SECS`).
const SERVER_WAIT_SECS: u64 = 60;

/// Where the inner run writes the `tests: …` line for the outer run (internal).
pub(crate) const TOTALS_ENV: &str = "ACTIONDO_XTASK_TOTALS";

/// The inner run; its exit status.
pub(crate) fn main(options: &Options) -> anyhow::Result<i32> {
    if std::process::id() == 1 {
        return init();
    }
    let mut ctx = Ctx::new()?;
    ctx.unset(TOTALS_ENV);
    if std::env::var("ACTIONDO_IN_NETNS").is_ok_and(|v| v == "1") {
        cmd::run_or(
            ctx.command(crate::outer::ip_command())
                .args(["link", "set", "lo", "up"]),
            "cannot bring up loopback in the network namespace",
        )?;
    }
    section("starting servers");
    let pid_dir = match std::env::var_os(actiondo_harness::PID_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => anyhow::bail!(
            "{} is not set (run `cargo xtask test` without --inside)",
            actiondo_harness::PID_DIR_ENV
        ),
    };
    // Dropped in reverse order: the leftovers of killed test binaries, then the servers.
    let _servers = start_servers(&mut ctx, &pid_dir)?;
    let _leftovers = Leftovers(pid_dir);

    let rest = &options.rest;
    let code = if options.servers_only {
        if rest.is_empty() {
            // Interactive debugging shell: in the foreground (terminal).
            section("shell with servers up (exit to stop them)");
            signals::ignore_interrupts(true);
            cmd::code(cmd::status(&mut ctx.command("bash"))?)
        } else {
            section(&format!("running: {}", rest.join(" ")));
            let mut command = ctx.command(&rest[0]);
            command.args(&rest[1..]);
            cmd::code(cmd::status(&mut command)?)
        }
    } else {
        let scope = scope(rest);
        let mut shown = vec!["cargo test".to_owned()];
        shown.extend(scope.iter().map(|s| (*s).to_owned()));
        shown.extend(["--offline".into(), "--no-fail-fast".into()]);
        shown.extend(rest.iter().cloned());
        section(&shown.join(" "));
        let mut command = ctx.command("cargo");
        command
            .arg("test")
            .args(scope)
            .args(["--offline", "--no-fail-fast"])
            .args(rest);
        let (code, totals) = tee(command, &ctx.logs.join("cargo-test.log"), std::io::stdout())?;
        if let (Some(file), Some(line)) = (std::env::var_os(TOTALS_ENV), totals) {
            let _ = std::fs::write(file, format!("{line}\n"));
        }
        code
    };
    Ok(code)
}

/// `--workspace`, unless the arguments (before a `--` of their own) name packages: then
/// it would win over the caller's `-p`.
fn scope(args: &[String]) -> &'static [&'static str] {
    for arg in args {
        match arg.as_str() {
            "--" => break,
            "-p" | "--package" => return &[],
            a if a.starts_with("-p") || a.starts_with("--package=") => return &[],
            _ => {}
        }
    }
    &["--workspace"]
}

/// Run `command` with stdout and stderr into one pipe, copied to `out` (our stdout) and to
/// `log`; its exit status and the `tests: …` line of its `test result:` lines. On a
/// signal, the command and everything below it are stopped.
fn tee(
    mut command: Command,
    log: &Path,
    mut out: impl std::io::Write + Send + 'static,
) -> anyhow::Result<(i32, Option<String>)> {
    let mut file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let (mut reader, writer) = std::io::pipe()?;
    command.stdout(writer.try_clone()?).stderr(writer);
    let spawned = command.spawn();
    // The command's copies of the pipe's write end must go, or the copy never ends.
    drop(command);
    let mut child = spawned.context("cannot run cargo test")?;
    let copier = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        // Complete lines are searched for `test result:`; `line` holds the last partial one.
        let (mut line, mut results) = (Vec::new(), String::new());
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                    let _ = file.write_all(&buf[..n]);
                    for &byte in &buf[..n] {
                        if byte == b'\n' {
                            let text = String::from_utf8_lossy(&line);
                            if text.contains("test result:") {
                                results.push_str(&text);
                                results.push('\n');
                            }
                            line.clear();
                        } else {
                            line.push(byte);
                        }
                    }
                }
            }
        }
        crate::outer::test_totals(&results)
    });
    let status = cmd::wait(&mut child)?;
    // Everything written before the exit is read; a process that outlives cargo and
    // keeps the pipe is not waited for.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !copier.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let totals = if copier.is_finished() {
        copier.join().ok().flatten()
    } else {
        None
    };
    Ok((cmd::code(status), totals))
}

/// The servers of the run (stopped on drop, each with its process group).
#[derive(Debug)]
struct Servers {
    _dynamodb: Group,
    _moto: Group,
}

/// Start DynamoDB Local and moto on two free loopback ports, wait until both answer HTTP,
/// and export the test environment into `ctx`.
fn start_servers(ctx: &mut Ctx, pid_dir: &Path) -> anyhow::Result<Servers> {
    let started = Instant::now();
    let ddb = ctx.tools.join("dynamodb-local");
    let moto_server = ctx.venv.join("bin/moto_server");
    anyhow::ensure!(
        ddb.join("DynamoDBLocal.jar").is_file(),
        "DynamoDB Local is not installed (run without --inside)"
    );
    anyhow::ensure!(
        is_executable(&moto_server),
        "moto_server is not installed (run without --inside)"
    );
    anyhow::ensure!(
        is_executable(&ctx.tools.join("bin/cargo-lambda")),
        "cargo-lambda is not installed (run without --inside)"
    );
    std::fs::create_dir_all(&ctx.logs)?;
    let [p, q] = free_ports::<2>().context("could not pick free loopback ports")?;
    // sqlite4java's native libraries live in DynamoDBLocal_lib. DynamoDB Local writes
    // dynamodb-local-metadata.json into its working directory and would try to send
    // telemetry: run it from its own folder, telemetry off.
    let ddb_log = ctx.logs.join("dynamodb-local.log");
    let dynamodb = Group::spawn(
        "DynamoDB Local",
        ctx.command("java")
            .arg("-Djava.library.path=DynamoDBLocal_lib")
            .args([
                "-jar",
                "DynamoDBLocal.jar",
                "-inMemory",
                "-disableTelemetry",
                "-port",
            ])
            .arg(p.to_string())
            .current_dir(&ddb),
        &ddb_log,
    )
    .context("cannot start DynamoDB Local (java)")?;
    let moto = Group::spawn(
        "moto",
        ctx.command(&moto_server)
            .args(["-H", "127.0.0.1", "-p"])
            .arg(q.to_string())
            .current_dir(&ctx.tools),
        ctx.logs.join("moto.log"),
    )
    .context("cannot start moto_server")?;
    let limit = Duration::from_secs(
        std::env::var("ACTIONDO_SERVER_WAIT_SECS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(SERVER_WAIT_SECS),
    );
    wait_http(&dynamodb, p, "/", limit)?;
    wait_http(&moto, q, "/moto-api/", limit)?;
    info(&format!(
        "DynamoDB Local on 127.0.0.1:{p} (pid {}), moto on 127.0.0.1:{q} (pid {}), up in {}s",
        dynamodb.pid(),
        moto.pid(),
        started.elapsed().as_secs()
    ));

    ctx.set(
        "ACTIONDO_TEST_DYNAMODB_LOCAL_URL",
        format!("http://127.0.0.1:{p}"),
    );
    ctx.set("ACTIONDO_TEST_MOTO_URL", format!("http://127.0.0.1:{q}"));
    ctx.set("ACTIONDO_TEST_REQUIRE_INFRA", "1");
    let tools = ctx.tools.clone();
    ctx.set("ACTIONDO_TOOLS_DIR", &tools);
    ctx.set(actiondo_harness::PID_DIR_ENV, pid_dir);
    for (key, value) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("CARGO_NET_OFFLINE", "true"),
    ] {
        ctx.set(key, value);
    }
    for key in ["NO_PROXY", "no_proxy"] {
        let mut value = OsString::from("127.0.0.1,localhost");
        if let Some(old) = std::env::var_os(key).filter(|v| !v.is_empty()) {
            value.push(",");
            value.push(old);
        }
        ctx.set(key, value);
    }
    let mut path = OsString::from(ctx.tools.join("bin"));
    if let Some(old) = std::env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    ctx.set("PATH", path);
    Ok(Servers {
        _dynamodb: dynamodb,
        _moto: moto,
    })
}

/// Wait until `server` gives any HTTP answer on `path`, looking for signals meanwhile.
fn wait_http(server: &Group, port: u16, path: &str, limit: Duration) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let what = format!("answer on http://{addr}{path}");
    let started = Instant::now();
    loop {
        signals::check()?;
        let ready = http_status(addr, path, Duration::from_secs(2)).is_some();
        match server.readiness(&what, ready, started, limit) {
            Ok(true) => return Ok(()),
            Ok(false) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => anyhow::bail!(e),
        }
    }
}

/// The e2e harness names each server a test starts in a process group of its own by a
/// file in `$ACTIONDO_E2E_PID_DIR`, deleted when it is stopped; a file left over means a
/// test binary was killed outright. On drop: stop those process groups, remove the files.
struct Leftovers(PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        stop_leftovers(&self.0, Duration::from_secs(5), warn);
    }
}

/// The first process of the PID namespace: runs the inner xtask as its child, passes
/// `SIGINT`/`SIGTERM`/`SIGHUP` on to it, reaps every orphan the kernel hands it (the
/// processes of killed test binaries), and exits with the child's status. When it exits,
/// the kernel kills whatever is left in the namespace.
fn init() -> anyhow::Result<i32> {
    use rustix::process::{WaitOptions, wait};
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .spawn()
        .context("cannot start the inner run")?;
    let child_pid = i32::try_from(child.id())?;
    let mut forwarded = None;
    loop {
        match wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                if pid.as_raw_nonzero().get() == child_pid {
                    // Reaped here, so `child` must not be waited for again.
                    std::mem::forget(child);
                    return Ok(status
                        .exit_status()
                        .or_else(|| status.terminating_signal().map(|s| 128 + s))
                        .unwrap_or(1));
                }
                continue;
            }
            Ok(None) => {}
            Err(e) if e == rustix::io::Errno::CHILD => {
                return Ok(child.try_wait()?.map_or(1, cmd::code));
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(signal) = signals::received()
            && forwarded != Some(signal)
        {
            let signal = match signal {
                signals::INT => Signal::INT,
                signals::HUP => Signal::HUP,
                _ => Signal::TERM,
            };
            signal_process(child_pid, signal);
            forwarded = signals::received();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_workspace_is_tested_unless_packages_are_named() {
        assert_eq!(scope(&args(&[])), ["--workspace"]);
        assert_eq!(scope(&args(&["store::"])), ["--workspace"]);
        assert!(scope(&args(&["-p", "actiondo-e2e"])).is_empty());
        assert!(scope(&args(&["-pactiondo"])).is_empty());
        assert!(scope(&args(&["--package=actiondo"])).is_empty());
        assert!(scope(&args(&["--package", "actiondo"])).is_empty());
        // After cargo test's own `--`, `-p` is an argument for the test binaries.
        assert_eq!(scope(&args(&["--", "-p"])), ["--workspace"]);
    }

    #[test]
    fn tee_copies_the_output_to_the_log_and_returns_the_status() {
        let log = std::env::temp_dir().join(format!("xtask-tee-{}.log", std::process::id()));
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "echo out; echo err >&2; printf 'test result: ok. 2 passed; 1 failed; 3 ignored;\\n'; exit 3",
        ]);
        let (code, totals) = tee(command, &log, std::io::sink()).expect("tee");
        assert_eq!(code, 3);
        assert_eq!(
            totals.as_deref(),
            Some("tests: 2 passed, 1 failed, 3 skipped")
        );
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
        let _ = std::fs::remove_file(&log);
    }
}
