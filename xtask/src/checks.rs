//! The template and workflow checks, offline: `sam validate --lint`, `cfn-lint`,
//! `asl-validator` on every `workflows/*.asl.json`, `tests/check_stack.py` and
//! `tests/check_deps.py`. Each prints its time; a failure ends the run with its status.

use std::process::Command;
use std::time::Instant;

use crate::cmd::{self, Ctx};
use crate::info;

/// Run every check.
pub(crate) fn templates(ctx: &Ctx) -> anyhow::Result<()> {
    let template = ctx.root.join("template.yaml");
    anyhow::ensure!(template.is_file(), "template.yaml is missing");
    let mut workflows: Vec<String> = std::fs::read_dir(ctx.root.join("workflows"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name.ends_with(".asl.json"))
                .map(|name| format!("workflows/{name}"))
                .collect()
        })
        .unwrap_or_default();
    workflows.sort();
    anyhow::ensure!(!workflows.is_empty(), "no workflows/*.asl.json to check");
    let bin = ctx.tools.join("bin");
    check(
        "sam validate --lint",
        offline(ctx.command(bin.join("sam")))
            .args(["validate", "--lint", "--template-file"])
            .arg(&template),
    )?;
    check(
        "cfn-lint",
        offline(ctx.command(bin.join("cfn-lint")))
            .args(["--include-checks", "I", "--"])
            .arg(&template),
    )?;
    // One process for every file (node starts once); it fails if any file is invalid.
    let mut asl = ctx.command(bin.join("asl-validator"));
    for workflow in &workflows {
        asl.arg("--json-path").arg(workflow);
    }
    check(
        &format!("asl-validator ({} workflows)", workflows.len()),
        &mut asl,
    )?;
    let python = ctx.venv.join("bin/python");
    for script in ["check_stack.py", "check_deps.py"] {
        check(
            script,
            ctx.command(&python)
                .arg(ctx.root.join("tests").join(script)),
        )?;
    }
    Ok(())
}

/// The SAM CLI and cfn-lint need a region and credentials to exist (any will do; nothing
/// is sent), and no telemetry. A profile from the caller's environment could point at a
/// missing file, so it is dropped.
fn offline(mut command: Command) -> Command {
    command
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SAM_CLI_TELEMETRY", "0");
    command
}

/// Run one check; print its time; a failure ends the run with its exit status.
fn check(name: &str, command: &mut Command) -> anyhow::Result<()> {
    let started = Instant::now();
    let status = cmd::status(command)?;
    if !status.success() {
        let code = cmd::code(status);
        eprintln!(
            "ERROR: check \"{name}\" failed (exit {code}): {}",
            cmd::describe(command)
        );
        return Err(crate::Exit(code).into());
    }
    info(&format!(
        "{name}: ok ({} ms)",
        started.elapsed().as_millis()
    ));
    Ok(())
}
