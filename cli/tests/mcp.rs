//! The MCP trigger driven by the official Python SDK of the protocol (a client this project
//! did not write): `tests/mcp/test_mcp.py` runs `actiondo mcp` over stdio and `/mcp` of
//! `actiondo serve` over streamable HTTP against this test's `actiondo` binary.
//!
//! The SDK lives in `.tools/mcp-venv` (installed, pinned, by `./tests/run.sh`);
//! `ACTIONDO_MCP_PYTHON` names another interpreter that has it. Without it the test
//! prints `*** NOT RUN ***` and passes — unless `ACTIONDO_TEST_REQUIRE_INFRA=1` or
//! `CI=true`, which make it fail.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (this package is `cli/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The Python with the MCP SDK, if installed.
fn python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("ACTIONDO_MCP_PYTHON") {
        return Some(PathBuf::from(python));
    }
    let tools = std::env::var_os("ACTIONDO_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools"));
    let python = tools.join("mcp-venv").join("bin").join("python");
    python.exists().then_some(python)
}

#[test]
fn the_official_python_sdk_drives_the_mcp_server_over_stdio_and_http() {
    let Some(python) = python() else {
        assert!(
            !actiondo::testing::infra_required(),
            "the MCP Python SDK is not installed (.tools/mcp-venv), and this run requires it; run ./tests/run.sh"
        );
        eprintln!(
            "*** NOT RUN *** the MCP Python SDK is not installed (.tools/mcp-venv); ./tests/run.sh installs it"
        );
        return;
    };
    let output = Command::new(&python)
        .arg(root().join("tests/mcp/test_mcp.py"))
        .env("ACTIONDO_BIN", env!("CARGO_BIN_EXE_actiondo"))
        // The tests choose their own stores.
        .env_remove("ACTIONDO_STORE")
        .current_dir(root())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => panic!("cannot run {}: {e}", python.display()),
    };
    let report = String::from_utf8_lossy(&output.stderr);
    eprintln!("{report}");
    assert!(
        output.status.success(),
        "the MCP client tests failed:\n{report}"
    );
    assert!(report.contains("\nOK"), "no test result in:\n{report}");
}
