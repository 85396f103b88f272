//! The test tools under `.tools/`, installed idempotently at pinned versions: a stamp
//! file next to each install names the spec it was made from, and a changed pin
//! re-installs. The installs themselves are pip, npm, tar, cp and apt-get.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use crate::cmd::{self, Ctx, is_executable, need, run_or, succeeds, which};
use crate::{info, is_ci};

// Pinned versions of the servers the suites run against (bump deliberately; a changed
// pin re-installs on the next run).
const DDB_SIM_PKG: &str = "amplify-dynamodb-simulator@2.9.30";
const MOTO_PKG: &str = "moto[server]==5.2.5";
// The template and workflow checkers gate every run: pinned too, so that a new release's
// new rules show up in a deliberate bump, not as a red CI run.
const SAM_PKG: &str = "aws-sam-cli==1.170.0";
const CFN_LINT_PKG: &str = "cfn-lint==1.58.0";
const ASL_VALIDATOR_PKG: &str = "asl-validator@4.0.0";
// The Lambda emulator of the e2e tests (its pip package brings zig along).
const CARGO_LAMBDA_PKG: &str = "cargo-lambda==1.9.2";
// MCP client tests (docs/architecture.md §7.6): the official MCP Python SDK, in a venv of
// its own (.tools/mcp-venv), where cli/tests/mcp.rs finds it; not linked into .tools/bin.
const MCP_CLIENT_PKG: &str = "mcp==2.3.0";

/// Every tool, in install order; `ACTIONDO_TOOLS` may name only these.
const ALL: [&str; 7] = [
    "dynamodb-local",
    "moto",
    "cargo-lambda",
    "chromium",
    "sam",
    "cfn-lint",
    "asl-validator",
];
/// What `--checks-only` installs.
const CHECKS: [&str; 3] = ["sam", "cfn-lint", "asl-validator"];

/// Free disk (GiB) a run needs by default: the tools (~1.5 GiB) and a dev build of the
/// workspace (~8 GiB).
const MIN_FREE_GIB: u64 = 10;

/// Enough free space for the tools and the build, or a clear failure (before an install
/// fails half-way on a full disk).
pub(crate) fn check_disk(ctx: &Ctx) -> anyhow::Result<()> {
    let need_gib = match std::env::var("ACTIONDO_MIN_FREE_GIB") {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .with_context(|| format!("ACTIONDO_MIN_FREE_GIB={v} is not a whole number"))?,
        Err(_) => MIN_FREE_GIB,
    };
    let stat = rustix::fs::statvfs(&ctx.root)
        .with_context(|| format!("statvfs {}", ctx.root.display()))?;
    let free_kib = stat.f_bavail.saturating_mul(stat.f_frsize) / 1024;
    info(&format!(
        "disk: {} GiB free under {} (need {need_gib} GiB)",
        free_kib / 1024 / 1024,
        ctx.root.display()
    ));
    anyhow::ensure!(
        free_kib >= need_gib * 1024 * 1024,
        "only {} MiB free under {}; the tools and the build need {need_gib} GiB (set ACTIONDO_MIN_FREE_GIB to change)",
        free_kib / 1024,
        ctx.root.display()
    );
    Ok(())
}

/// The servers, the checkers and what `ACTIONDO_TOOLS` adds (every tool is installed
/// anyway; the names are still checked); with `checks_only`, only the checkers.
pub(crate) fn install(ctx: &Ctx, checks_only: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let wanted: &[&str] = if checks_only {
        &CHECKS
    } else {
        let requested = std::env::var("ACTIONDO_TOOLS").unwrap_or_default();
        if requested != "all" {
            for tool in requested.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
                anyhow::ensure!(
                    ALL.contains(&tool),
                    "unknown tool '{tool}' in ACTIONDO_TOOLS"
                );
            }
        }
        &ALL
    };
    std::fs::create_dir_all(&ctx.logs)
        .with_context(|| format!("cannot create {}", ctx.logs.display()))?;
    for tool in wanted {
        match *tool {
            "dynamodb-local" => dynamodb_local(ctx)?,
            "moto" => venv_pip(ctx, &ctx.venv, "moto", MOTO_PKG, "moto_server")?,
            "cargo-lambda" => venv_pip(
                ctx,
                &ctx.venv,
                "cargo-lambda",
                CARGO_LAMBDA_PKG,
                "cargo-lambda",
            )?,
            "cfn-lint" => venv_pip(ctx, &ctx.venv, "cfn-lint", CFN_LINT_PKG, "cfn-lint")?,
            "sam" => venv_pip(ctx, &ctx.tools.join("venv-sam"), "sam", SAM_PKG, "sam")?,
            "asl-validator" => asl_validator(ctx)?,
            "chromium" => chromium(ctx)?,
            other => anyhow::bail!("no installer for {other}"),
        }
    }
    info(&format!("tools ready in {}s", started.elapsed().as_secs()));
    Ok(())
}

/// The install recorded in `file` was made from `spec`.
fn stamp_ok(file: &Path, spec: &str) -> bool {
    std::fs::read_to_string(file).is_ok_and(|s| s.trim_end_matches('\n') == spec)
}

fn write_stamp(file: &Path, spec: &str) -> anyhow::Result<()> {
    std::fs::write(file, format!("{spec}\n"))
        .with_context(|| format!("cannot write {}", file.display()))
}

/// Expose the installed executable `path` as `.tools/bin/name` (a symlink, swapped in).
fn link_tool(ctx: &Ctx, path: &Path, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        is_executable(path),
        "expected executable {} after install",
        path.display()
    );
    let bin = ctx.tools.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    let link = bin.join(name);
    if std::fs::read_link(&link).is_ok_and(|target| target == path) {
        return Ok(());
    }
    let tmp = bin.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(path, &tmp)
        .and_then(|()| std::fs::rename(&tmp, &link))
        .with_context(|| format!("cannot link {} to {}", link.display(), path.display()))
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn apt_install(ctx: &Ctx, packages: &[&str]) -> anyhow::Result<()> {
    let list = packages.join(" ");
    anyhow::ensure!(
        is_root() && which("apt-get").is_some(),
        "need {list} (not root or no apt-get: install it yourself)"
    );
    info(&format!("apt-get install {list}"));
    let failed = || format!("apt-get install {list} failed");
    run_or(ctx.command("apt-get").args(["update", "-qq"]), &failed())?;
    run_or(
        ctx.command("apt-get")
            .args(["install", "-y", "-qq"])
            .args(packages)
            .stdout(std::process::Stdio::null()),
        &failed(),
    )
}

fn ensure_java(ctx: &Ctx) -> anyhow::Result<()> {
    if which("java").is_none() {
        apt_install(ctx, &["openjdk-17-jre-headless"])?;
    }
    anyhow::ensure!(
        succeeds(ctx.command("java").arg("-version"))?,
        "java is installed but does not run"
    );
    Ok(())
}

/// DynamoDB Local ships inside the npm package amplify-dynamodb-simulator
/// (`package/emulator/DynamoDBLocal.jar`); only the jar and its native libraries are kept.
fn dynamodb_local(ctx: &Ctx) -> anyhow::Result<()> {
    let dest = ctx.tools.join("dynamodb-local");
    let tmp = ctx.tools.join(".tmp-dynamodb-local");
    ensure_java(ctx)?;
    if dest.join("DynamoDBLocal.jar").is_file()
        && dest.join("DynamoDBLocal_lib").is_dir()
        && stamp_ok(&dest.join(".installed"), DDB_SIM_PKG)
    {
        info(&format!("dynamodb-local: present ({DDB_SIM_PKG})"));
        return Ok(());
    }
    need("npm", "install node/npm (needed to fetch DynamoDB Local)")?;
    info(&format!("dynamodb-local: npm pack {DDB_SIM_PKG}"));
    remove_all(&tmp)?;
    std::fs::create_dir_all(&tmp)?;
    run_or(
        ctx.command("npm")
            .args(["pack", DDB_SIM_PKG, "--silent", "--loglevel=error"])
            .current_dir(&tmp)
            .stdout(std::process::Stdio::null()),
        &format!("npm pack {DDB_SIM_PKG} failed"),
    )?;
    let tgz = std::fs::read_dir(&tmp)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .with_context(|| format!("npm pack {DDB_SIM_PKG} produced no tarball"))?;
    run_or(
        ctx.command("tar").arg("-xzf").arg(&tgz).arg("-C").arg(&tmp),
        &format!("cannot extract {}", tgz.display()),
    )?;
    let jar = find_file(&tmp, "DynamoDBLocal.jar")
        .with_context(|| format!("DynamoDBLocal.jar not found in {DDB_SIM_PKG}"))?;
    let lib = jar.with_file_name("DynamoDBLocal_lib");
    anyhow::ensure!(
        lib.is_dir(),
        "DynamoDBLocal_lib not found next to {}",
        jar.display()
    );
    // Stage, then swap in, so an interrupted install never looks complete.
    let out = tmp.join("out");
    std::fs::create_dir_all(&out)?;
    run_or(
        ctx.command("cp").arg(&jar).arg(&out),
        &format!("cannot copy {}", jar.display()),
    )?;
    run_or(
        ctx.command("cp").arg("-R").arg(&lib).arg(&out),
        &format!("cannot copy {}", lib.display()),
    )?;
    write_stamp(&out.join(".installed"), DDB_SIM_PKG)?;
    remove_all(&dest)?;
    std::fs::rename(&out, &dest)
        .with_context(|| format!("cannot move {} into place", out.display()))?;
    remove_all(&tmp)?;
    info(&format!(
        "dynamodb-local: installed into {}",
        ctx.rel(&dest).display()
    ));
    Ok(())
}

fn remove_all(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The first file called `name` under `dir` (depth first, sorted).
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in &entries {
        if path.is_file() && path.file_name().is_some_and(|n| n == name) {
            return Some(path.clone());
        }
    }
    entries
        .iter()
        .filter(|p| p.is_dir() && !p.is_symlink())
        .find_map(|p| find_file(p, name))
}

/// A Python venv at `venv` that runs, created (again) if it does not.
fn ensure_venv(ctx: &Ctx, venv: &Path, hint: &str) -> anyhow::Result<PathBuf> {
    let python = venv.join("bin/python");
    if is_executable(&python) && succeeds(ctx.command(&python).args(["-c", ""]))? {
        return Ok(python);
    }
    need("python3", hint)?;
    info(&format!("creating venv {}", ctx.rel(venv).display()));
    remove_all(venv)?;
    run_or(
        ctx.command("python3").args(["-m", "venv"]).arg(venv),
        "python3 -m venv failed (apt-get install python3-venv?)",
    )?;
    Ok(python)
}

/// pip-install `spec` into `venv` unless `bin` is already there from the same `spec`,
/// then expose `bin` in `.tools/bin`.
fn venv_pip(ctx: &Ctx, venv: &Path, name: &str, spec: &str, bin: &str) -> anyhow::Result<()> {
    let python = ensure_venv(
        ctx,
        venv,
        "install python3 (needed for the test tool venvs)",
    )?;
    let stamp = venv.join(format!(".installed-{name}"));
    if is_executable(&venv.join("bin").join(bin)) && stamp_ok(&stamp, spec) {
        info(&format!("{name}: present ({spec})"));
    } else {
        info(&format!("{name}: pip install {spec}"));
        run_or(
            ctx.command(&python)
                .args(["-m", "pip", "install", "-q", spec]),
            &format!("pip install {spec} failed"),
        )?;
        write_stamp(&stamp, spec)?;
    }
    link_tool(ctx, &venv.join("bin").join(bin), bin)
}

fn asl_validator(ctx: &Ctx) -> anyhow::Result<()> {
    let prefix = ctx.tools.join("node");
    let bin = prefix.join("node_modules/.bin/asl-validator");
    let stamp = prefix.join(".installed");
    if is_executable(&bin) && stamp_ok(&stamp, ASL_VALIDATOR_PKG) {
        info(&format!("asl-validator: present ({ASL_VALIDATOR_PKG})"));
    } else {
        need("npm", "install node/npm (needed for asl-validator)")?;
        info(&format!("asl-validator: npm install {ASL_VALIDATOR_PKG}"));
        std::fs::create_dir_all(&prefix)?;
        run_or(
            ctx.command("npm")
                .arg("install")
                .arg("--prefix")
                .arg(&prefix)
                .args([
                    "--silent",
                    "--loglevel=error",
                    "--no-save",
                    ASL_VALIDATOR_PKG,
                ])
                .stdout(std::process::Stdio::null()),
            &format!("npm install {ASL_VALIDATOR_PKG} failed"),
        )?;
        write_stamp(&stamp, ASL_VALIDATOR_PKG)?;
    }
    link_tool(ctx, &bin, "asl-validator")
}

/// The console browser test (issue 14): Debian's chromium and chromium-driver, which
/// cli/tests/console_browser.rs drives over WebDriver. Installed once with apt-get (it
/// needs root); the test fails under the test command (ACTIONDO_TEST_REQUIRE_INFRA=1)
/// when they are missing, it never skips.
fn chromium(ctx: &Ctx) -> anyhow::Result<()> {
    let chromedriver = Path::new("/usr/bin/chromedriver");
    if is_executable(Path::new("/usr/bin/chromium")) && is_executable(chromedriver) {
        let version = cmd::output(ctx.command(chromedriver).arg("--version")).unwrap_or_default();
        let version: Vec<&str> = version.split(' ').take(2).collect();
        info(&format!(
            "chromium: present ({})",
            version.join(" ").trim_end()
        ));
        return Ok(());
    }
    apt_install(ctx, &["chromium", "chromium-driver"])
}

/// The official MCP Python SDK in `.tools/mcp-venv` (cli/tests/mcp.rs).
pub(crate) fn mcp_client(ctx: &Ctx) -> anyhow::Result<()> {
    let venv = ctx.tools.join("mcp-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".installed-mcp");
    if is_executable(&python) && stamp_ok(&stamp, MCP_CLIENT_PKG) {
        info(&format!("mcp client: present ({MCP_CLIENT_PKG})"));
        return Ok(());
    }
    need(
        "python3",
        "install python3 (needed for the MCP client tests)",
    )?;
    info(&format!("mcp client: pip install {MCP_CLIENT_PKG}"));
    if !is_executable(&python) {
        run_or(
            ctx.command("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv failed",
        )?;
    }
    run_or(
        ctx.command(&python)
            .args(["-m", "pip", "install", "-q", MCP_CLIENT_PKG]),
        &format!("pip install {MCP_CLIENT_PKG} failed"),
    )?;
    write_stamp(&stamp, MCP_CLIENT_PKG)
}

/// Node and npm for the TypeScript client: present, or a warning (an error under CI).
pub(crate) fn node_available() -> anyhow::Result<bool> {
    if which("node").is_some() && which("npm").is_some() {
        return Ok(true);
    }
    anyhow::ensure!(
        !is_ci(),
        "node/npm not found: the TypeScript client's tests need Node 18 or later"
    );
    crate::warn("node/npm not found: the TypeScript client's tests (clients/typescript) NOT RUN");
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_matches_only_its_spec() {
        let dir = std::env::temp_dir().join(format!("xtask-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join(".installed");
        assert!(!stamp_ok(&file, MOTO_PKG), "no stamp, no install");
        write_stamp(&file, MOTO_PKG).expect("write");
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            "moto[server]==5.2.5\n"
        );
        assert!(stamp_ok(&file, MOTO_PKG));
        assert!(
            !stamp_ok(&file, "moto[server]==5.2.6"),
            "a changed pin re-installs"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_is_found_below_a_folder() {
        let dir = std::env::temp_dir().join(format!("xtask-find-{}", std::process::id()));
        let deep = dir.join("package/emulator");
        std::fs::create_dir_all(deep.join("DynamoDBLocal_lib")).expect("dirs");
        std::fs::write(deep.join("DynamoDBLocal.jar"), "jar").expect("jar");
        assert_eq!(
            find_file(&dir, "DynamoDBLocal.jar"),
            Some(deep.join("DynamoDBLocal.jar"))
        );
        assert_eq!(find_file(&dir, "missing.jar"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
