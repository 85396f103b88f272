//! `actiondo new`: what it generates is formatted, wired into the catalog and
//! `template.yaml`, and is what the README shows.
//!
//! The fast tests run the built binary in a temporary copy of the workspace *layout* (the
//! manifests, `template.yaml`, `workflows/`, `tests/check_stack.py`): the files it reads
//! and writes, without the sources, so no build is needed. The generated code is checked
//! with `rustfmt --check`; that it compiles, passes clippy and its tests, and is served
//! by the CLI is the ignored test at the end (a full build in a copy of the workspace,
//! minutes): `cargo test -p actiondo-cli --test new -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use actiondo_cli::new::{KeyArg, ModeArg, NewArgs, Scaffold};

/// The command the README's "Writing a new action" shows, as arguments.
const README_ARGS: [&str; 4] = [
    "new",
    "accept-order",
    "--description",
    "Accepts an order, once.",
];
/// The same command as the README writes it.
const README_COMMAND: &str = r#"actiondo new accept-order --description "Accepts an order, once.""#;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ is in the workspace")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn copy(from: &Path, to: &Path) {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).expect("create folder");
    }
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
}

/// A temporary copy of the files `actiondo new` reads and writes. The Python of
/// `.tools/venv` (installed by ./tests/run.sh) is linked in when it exists.
fn layout() -> tempfile::TempDir {
    let root = workspace();
    let dir = tempfile::tempdir().expect("temp dir");
    for file in [
        "Cargo.toml",
        "catalog/Cargo.toml",
        "template.yaml",
        "tests/check_stack.py",
    ] {
        copy(&root.join(file), &dir.path().join(file));
    }
    for folder in ["functions", "workflows"] {
        for entry in std::fs::read_dir(root.join(folder)).expect("read folder") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name").to_owned();
            let target = dir.path().join(folder).join(&name);
            if path.join("Cargo.toml").is_file() {
                copy(&path.join("Cargo.toml"), &target.join("Cargo.toml"));
            } else if path.is_file() {
                copy(&path, &target);
            }
        }
    }
    let tools = root.join(".tools");
    if tools.join("venv/bin/python").is_file() {
        std::os::unix::fs::symlink(&tools, dir.path().join(".tools")).expect("link .tools");
    }
    dir
}

fn actiondo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actiondo"))
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run actiondo")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn infra_required() -> bool {
    std::env::var("ACTIONDO_TEST_REQUIRE_INFRA").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether `tests/check_stack.py` can run in `dir` (a Python with cfn-lint).
fn check_stack_runs(dir: &Path) -> bool {
    let venv = dir.join(".tools/venv/bin/python");
    let python = if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    };
    Command::new(python)
        .args(["-c", "import cfnlint"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `rustfmt --check` of `files`; the diff when they are not formatted.
fn rustfmt_check(files: &[PathBuf]) -> Result<(), String> {
    let out = Command::new("rustfmt")
        .args(["--edition", "2024", "--check"])
        .args(files)
        .output()
        .map_err(|e| format!("rustfmt: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }
}

/// The ```rust blocks of a Markdown text.
fn rust_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn new_writes_the_package_the_catalog_entry_and_the_template() {
    let dir = layout();
    let root = dir.path();
    let run = actiondo(root, &README_ARGS);
    let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
    let package = root.join("functions/accept-order");
    for file in ["Cargo.toml", "src/lib.rs", "src/main.rs", "src/tests.rs"] {
        assert!(package.join(file).is_file(), "{file}: {stdout}{stderr}");
    }

    let manifest = read(&package.join("Cargo.toml"));
    for line in [
        "name = \"accept-order\"",
        "description = \"Accepts an order, once.\"",
        "actiondo = { workspace = true, features = [\"lambda\"] }",
        "actiondo = { workspace = true, features = [\"testing\"] }",
        "sqlite = [\"actiondo/sqlite\"]",
        "[lints]\nworkspace = true",
    ] {
        assert!(manifest.contains(line), "{line} missing:\n{manifest}");
    }
    let main = read(&package.join("src/main.rs"));
    assert!(
        main.contains("actiondo::run(accept_order::AcceptOrder).await"),
        "{main}"
    );
    assert!(
        !main.contains("from_env"),
        "a settings-free action has none: {main}"
    );

    let catalog = read(&root.join("catalog/Cargo.toml"));
    assert!(
        catalog.contains(
            "\naccept-order = { path = \"../functions/accept-order\" }\n\
             assign-owner = { path = \"../functions/assign-owner\" }\n"
        ),
        "{catalog}"
    );

    if !check_stack_runs(root) {
        assert!(
            !infra_required(),
            "no Python with cfn-lint for tests/check_stack.py, and this run requires one \
             (CI=true or ACTIONDO_TEST_REQUIRE_INFRA=1); run ./tests/run.sh: {stderr}"
        );
        assert_eq!(run.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stderr.contains("check_stack.py --fix"), "{stderr}");
        eprintln!(
            "\n*** NOT RUN: template.yaml written by actiondo new — no Python with cfn-lint \
             (./tests/run.sh installs one in .tools/venv). ***\n"
        );
        return;
    }
    assert_eq!(run.status.code(), Some(0), "{stdout}{stderr}");
    let template = read(&root.join("template.yaml"));
    for line in [
        "  AcceptOrderFunction:\n",
        "        Binary: accept-order\n",
        "      CodeUri: functions/accept-order\n",
        "      Description: accept-order - Accepts an order, once.\n",
        "          ACTIONDO_FUNCTION_ACCEPT_ORDER: !Ref AcceptOrderFunction\n",
        "              - !GetAtt AcceptOrderFunction.Arn\n",
    ] {
        assert!(template.contains(line), "{line} missing: {stdout}");
    }
    assert!(stdout.contains("agree"), "{stdout}");

    // The wiring check passes on the result, and a second run changes nothing.
    let python = if root.join(".tools/venv/bin/python").is_file() {
        root.join(".tools/venv/bin/python")
    } else {
        PathBuf::from("python3")
    };
    let check = Command::new(python)
        .arg("tests/check_stack.py")
        .arg("--fix")
        .current_dir(root)
        .output()
        .expect("check_stack.py");
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert_eq!(read(&root.join("template.yaml")), template);
}

#[test]
fn the_readme_recipe_is_the_scaffold_output() {
    let readme = read(&workspace().join("README.md"));
    assert!(
        readme.contains(README_COMMAND),
        "README.md must show `{README_COMMAND}`"
    );
    let dir = layout();
    actiondo(dir.path(), &README_ARGS);
    let lib = read(&dir.path().join("functions/accept-order/src/lib.rs"));
    let blocks = rust_blocks(&readme);
    let shown = blocks
        .iter()
        .find(|b| b.starts_with("//! # accept-order\n"))
        .expect(
            "README.md shows the generated lib.rs (a ```rust block starting `//! # accept-order`)",
        );
    assert!(
        *shown == lib,
        "README.md's lib.rs differs from what `{README_COMMAND}` generates; replace it with:\n{lib}"
    );
    for text in [
        "KeyPolicy::Required",
        "ActionError::rejected",
        "./tests/run.sh -- -p accept-order -p actiondo-cli",
    ] {
        assert!(readme.contains(text), "README.md must mention {text}");
    }
}

#[test]
fn every_variant_is_formatted_as_generated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let variants = [
        ("accept-order", false, KeyArg::Derived, ModeArg::Claim, None),
        ("a", true, KeyArg::Derived, ModeArg::Claim, None),
        (
            "b-2fa",
            false,
            KeyArg::Required,
            ModeArg::Optimistic,
            Some("x".repeat(60)),
        ),
        (
            "abcdefghijklmnopqrstuvwxyz-abc",
            true,
            KeyArg::Required,
            ModeArg::Optimistic,
            Some("y".repeat(160)),
        ),
        (
            "c-d",
            true,
            KeyArg::Required,
            ModeArg::Claim,
            Some("z".repeat(84)),
        ),
    ];
    let mut files = Vec::new();
    for (name, settings, key, mode, description) in variants {
        let args = NewArgs {
            name: name.to_owned(),
            description,
            settings,
            key,
            mode,
        };
        let scaffold = Scaffold::new(&args).expect("a valid action");
        for (path, text) in scaffold.files().expect("rendered") {
            if path.ends_with(".rs") {
                let file = dir.path().join(name).join(path);
                std::fs::create_dir_all(file.parent().expect("parent")).expect("folder");
                std::fs::write(&file, text).expect("write");
                files.push(file);
            }
        }
    }
    match Command::new("rustfmt").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => {
            assert!(!infra_required(), "rustfmt is not installed");
            eprintln!("\n*** NOT RUN: rustfmt --check of the scaffold — no rustfmt. ***\n");
            return;
        }
    }
    if let Err(diff) = rustfmt_check(&files) {
        panic!("the generated code is not formatted:\n{diff}");
    }
}

#[test]
fn names_must_be_new_kebab_case_crates() {
    let dir = layout();
    for (name, why) in [
        ("AcceptOrder", "kebab-case"),
        ("create-user", "exists already"),
        ("router", "exists already"),
        ("actiondo-catalog", "package named"),
        ("serde-json", "dependency of the workspace"),
        ("type", "Rust keyword"),
    ] {
        let run = actiondo(dir.path(), &["new", name]);
        assert_eq!(run.status.code(), Some(2), "{name}: {run:?}");
        assert!(
            text(&run.stderr).contains(why),
            "{name}: {}",
            text(&run.stderr)
        );
    }
    // Outside the workspace.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let run = actiondo(elsewhere.path(), &["new", "accept-order"]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(text(&run.stderr).contains("not inside"), "{run:?}");
    // Nothing was written.
    assert_eq!(
        read(&dir.path().join("catalog/Cargo.toml")),
        read(&workspace().join("catalog/Cargo.toml"))
    );
}

/// A copy of the workspace's sources (no target/, .git/, .tools/).
fn copy_workspace(to: &Path) {
    fn walk(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).expect("read folder") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name");
            if [".git", "target", ".tools", ".actiondo", ".aws-sam"]
                .iter()
                .any(|skip| name == *skip)
            {
                continue;
            }
            if path.is_dir() {
                walk(&path, &to.join(name));
            } else {
                copy(&path, &to.join(name));
            }
        }
    }
    walk(&workspace(), to);
}

/// POST `body` to `path` of the server at `addr` (HTTP/1.1, no keep-alive); the whole
/// response.
fn post(addr: &str, path: &str, body: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("receive");
    response
}

/// The issue's "done when": in a copy of the workspace, `actiondo new accept-order` and
/// nothing else gives an action that passes fmt, clippy and its tests, is listed by
/// `actiondo actions`, runs with `actiondo execute`, is served by `actiondo serve` and is
/// deployed by `template.yaml` (check_stack.py).
///
/// A full build of the copy (minutes), hence ignored. It builds into its own target
/// folder — `ACTIONDO_SCAFFOLD_TARGET_DIR`, or one inside the copy — never the
/// workspace's: the copy's `actiondo` binary would replace the one other tests run.
#[test]
#[ignore = "a full build of a copy of the workspace (minutes)"]
fn a_scaffolded_action_builds_lints_tests_and_is_served() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    copy_workspace(root);
    let tools = workspace().join(".tools");
    if tools.is_dir() {
        std::os::unix::fs::symlink(&tools, root.join(".tools")).expect("link .tools");
    }
    let run = actiondo(root, &README_ARGS);
    assert!(
        run.status.success(),
        "{}{}",
        text(&run.stdout),
        text(&run.stderr)
    );

    let target = std::env::var_os("ACTIONDO_SCAFFOLD_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from);
    let cargo = |args: &[&str]| -> Output {
        let out = Command::new(env!("CARGO"))
            .current_dir(root)
            .args(args)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUST_LOG")
            .output()
            .expect("cargo");
        assert!(
            out.status.success(),
            "cargo {args:?}:\n{}",
            text(&out.stderr)
        );
        out
    };
    cargo(&["fmt", "--check", "-p", "accept-order"]);
    cargo(&[
        "clippy",
        "-q",
        "-p",
        "accept-order",
        "-p",
        "actiondo-catalog",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    cargo(&["test", "-q", "-p", "accept-order"]);
    cargo(&["build", "-q", "-p", "actiondo-cli"]);
    let cli = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(target.join("debug/actiondo"))
            .current_dir(root)
            .args(["--store", "sqlite::memory:"])
            .args(args)
            .output()
            .expect("actiondo");
        assert!(out.status.success(), "actiondo {args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let listed = cli(&["actions", "--json"]);
    let names: Vec<&str> = listed["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(names.contains(&"accept-order"), "{names:?}");
    let executed = cli(&["execute", "accept-order", "--params", r#"{"id": "o-1"}"#]);
    assert_eq!(executed["result"]["id"], "o-1", "{executed}");

    let mut server = Command::new(target.join("debug/actiondo"))
        .current_dir(root)
        .args([
            "--store",
            "sqlite::memory:",
            "serve",
            "--no-auth",
            "--addr",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("actiondo serve");
    let mut stderr = std::io::BufReader::new(server.stderr.take().expect("stderr"));
    let addr = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).expect("read stderr") == 0 {
            let _ = server.kill();
            panic!("actiondo serve exited before listening");
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            let url = rest.split_whitespace().next().expect("address");
            break url.trim_start_matches("http://").to_owned();
        }
    };
    let served = post(&addr, "/actions/accept-order", r#"{"id": "o-2"}"#);
    let _ = server.kill();
    let _ = server.wait();
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    assert!(served.contains(r#""id":"o-2""#), "{served}");

    if check_stack_runs(root) {
        let python = if root.join(".tools/venv/bin/python").is_file() {
            root.join(".tools/venv/bin/python")
        } else {
            PathBuf::from("python3")
        };
        let check = Command::new(python)
            .arg("tests/check_stack.py")
            .current_dir(root)
            .output()
            .expect("check_stack.py");
        assert!(check.status.success(), "{}", text(&check.stderr));
    }
}
