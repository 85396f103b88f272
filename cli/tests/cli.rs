//! End-to-end tests of the built `actiondo` binary: each test runs it in a fresh temporary
//! folder (so the default store, `.actiondo/actiondo.db`, is private to the test) and
//! checks its stdout, stderr, exit status and what it left in the store.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// The security table of issue 11 (api/tests/security.rs runs it in process).
#[allow(dead_code)]
#[path = "../../api/tests/cases/mod.rs"]
mod security_cases;

/// What one run of the binary produced.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// stdout as JSON; panics (failing the test) with the whole run when it is not.
    fn json(&self) -> Value {
        match serde_json::from_str(&self.stdout) {
            Ok(v) => v,
            Err(e) => panic!("stdout is not JSON ({e}): {self:#?}"),
        }
    }

    #[track_caller]
    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit status: {self:#?}");
        self
    }
}

/// A temporary working folder and the environment every run in it gets.
struct Sandbox {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Start the child with an empty environment (plus `env`).
    clear_env: bool,
}

impl Sandbox {
    fn new() -> Self {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("temp dir: {e}"),
        };
        Self {
            dir,
            env: Vec::new(),
            clear_env: false,
        }
    }

    /// A sandbox whose runs see no environment variable but those set with [`Self::env`].
    fn with_empty_env() -> Self {
        Self {
            clear_env: true,
            ..Self::new()
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_actiondo"));
        if self.clear_env {
            cmd.env_clear();
        }
        cmd.current_dir(self.path())
            .args(args)
            // Nothing from the developer's shell may choose the store or add log lines.
            .env_remove("ACTIONDO_STORE")
            .env_remove("RUST_LOG")
            .env_remove("EMAIL_OUTBOX_DIR")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let out = match cmd.output() {
            Ok(o) => o,
            Err(e) => panic!("running actiondo: {e}"),
        };
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The packages under `functions/` but the router, in name order: the actions.
fn action_packages() -> Vec<String> {
    let functions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let mut names: Vec<String> = std::fs::read_dir(&functions)
        .expect("functions/")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name != "router")
        .collect();
    names.sort();
    names
}

fn user_params(email: &str) -> String {
    json!({"email": email, "name": "Ada Lovelace"}).to_string()
}

fn audit_statuses(page: &Value) -> Vec<String> {
    page["records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .filter_map(|r| r["status"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn executing_twice_replays_the_stored_result_byte_for_byte() {
    let sb = Sandbox::new();
    let params = user_params("ada@example.com");
    let first = sb.run(&["execute", "create-user", "--params", &params]);
    first.assert_code(0);
    assert!(!first.stderr.contains("replayed"), "{first:#?}");
    let key_line = first
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .map(str::to_owned);
    let Some(key) = key_line else {
        panic!("no key line on stderr: {first:#?}")
    };
    let response = first.json();
    assert_eq!(response["error"], Value::Null);
    let user_id = response["result"]["userId"].as_str().unwrap_or_default();
    assert!(user_id.starts_with("u_"), "{response}");
    assert_eq!(response["result"]["email"], "ada@example.com");

    let second = sb.run(&["execute", "create-user", "--params", &params]);
    second.assert_code(0);
    assert!(
        second.stderr.contains(&format!(
            "replayed: stored outcome of attempt 1 (key {key})"
        )),
        "{second:#?}"
    );
    // The whole output, not only the value: the replay prints the stored bytes.
    assert_eq!(first.stdout, second.stdout);

    // The store is the default file in the working folder.
    assert!(sb.path().join(".actiondo/actiondo.db").is_file());

    let audit = sb.run(&["audit", "--type", "create-user", "--key", &key, "--json"]);
    audit.assert_code(0);
    let page = audit.json();
    assert_eq!(audit_statuses(&page), ["replayed", "completed"]);
    for record in page["records"].as_array().into_iter().flatten() {
        assert_eq!(record["execution"], format!("create-user#{key}"));
        assert_eq!(record["source"], "cli");
        assert_eq!(record["attempt"], 1);
    }
    assert_eq!(page["nextCursor"], Value::Null);

    // The table shows the same two records, newest first.
    let table = sb.run(&["audit"]);
    table.assert_code(0);
    let replayed_at = table.stdout.find("replayed");
    let completed_at = table.stdout.find("completed");
    assert!(
        replayed_at.is_some() && completed_at.is_some() && replayed_at < completed_at,
        "{table:#?}"
    );
    assert!(table.stdout.contains(&key), "{table:#?}");
}

#[test]
fn an_explicit_key_and_correlation_id_are_recorded() {
    let sb = Sandbox::new();
    let params = user_params("grace@example.com");
    sb.run(&[
        "execute",
        "create-user",
        "--params",
        &params,
        "--key",
        "signup-1",
        "--correlation-id",
        "run-42",
    ])
    .assert_code(0);
    let audit = sb.run(&["audit", "--correlation", "run-42", "--json"]);
    audit.assert_code(0);
    let page = audit.json();
    assert_eq!(audit_statuses(&page), ["completed"]);
    assert_eq!(page["records"][0]["execution"], "create-user#signup-1");
    assert_eq!(page["records"][0]["correlationId"], "run-42");

    // The same key with other params is refused, and that refusal is an action error.
    let other = sb.run(&[
        "execute",
        "create-user",
        "--params",
        &user_params("someone-else@example.com"),
        "--key",
        "signup-1",
    ]);
    other.assert_code(1);
    assert_eq!(other.json()["error"]["type"], "ActionDo.PayloadMismatch");
}

#[test]
fn a_schema_violation_is_an_action_error_listing_the_fields() {
    let sb = Sandbox::new();
    let run = sb.run(&[
        "execute",
        "create-user",
        "--params",
        r#"{"email": 5}"#,
        "--key",
        "bad-1",
    ]);
    run.assert_code(1);
    let response = run.json();
    assert_eq!(response["result"], Value::Null);
    assert_eq!(response["error"]["type"], "ActionDo.Validation");
    assert_eq!(response["error"]["retryable"], false);
    let errors = response["error"]["details"]["errors"].to_string();
    assert!(
        errors.contains("/email") && errors.contains("name"),
        "{response}"
    );
    // Rejected before any claim, and audited as such.
    let audit = sb.run(&["audit", "--type", "create-user", "--key", "bad-1", "--json"]);
    assert_eq!(audit_statuses(&audit.json()), ["rejected"]);
}

#[test]
fn malformed_json_is_an_action_error_with_its_position() {
    let sb = Sandbox::new();
    let run = sb.run(&[
        "execute",
        "create-user",
        "--params",
        "{\n  \"email\": \"a@b.c\",\n  \"name\" \"Ada\"\n}",
    ]);
    run.assert_code(1);
    let response = run.json();
    assert_eq!(response["error"]["type"], "ActionDo.Validation");
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("line 3, column"), "{message}");
    assert_eq!(response["error"]["details"]["line"], 3);
}

#[test]
fn an_unknown_action_is_a_usage_error_with_a_suggestion() {
    let sb = Sandbox::new();
    let run = sb.run(&["execute", "create-usr", "--params", "{}"]);
    run.assert_code(2);
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(run.stderr.contains("did you mean create-user"), "{run:#?}");
    // Nothing was opened or written.
    assert!(!sb.path().join(".actiondo").exists());
}

#[test]
fn usage_errors_exit_2() {
    let sb = Sandbox::new();
    let bad_flag = sb.run(&["execute", "create-user", "--params", "{}", "--bogus"]);
    bad_flag.assert_code(2);
    assert!(bad_flag.stderr.contains("--bogus"), "{bad_flag:#?}");

    let missing = sb.run(&["execute", "create-user", "--params", "@missing.json"]);
    missing.assert_code(2);
    assert!(
        missing
            .stderr
            .contains("cannot read the params from missing.json"),
        "{missing:#?}"
    );

    sb.run(&["execute", "create-user"]).assert_code(2);
    sb.run(&["audit", "--key", "k"]).assert_code(2);
    sb.run(&["audit", "--since", "yesterday"]).assert_code(2);
    sb.run(&["--store", "postgres://db", "audit"])
        .assert_code(2);
    sb.run(&["frobnicate"]).assert_code(2);
    assert!(!sb.path().join(".actiondo").exists());
}

#[test]
fn params_can_come_from_a_file() {
    let sb = Sandbox::new();
    let file = sb.path().join("user.json");
    assert!(std::fs::write(&file, user_params("file@example.com")).is_ok());
    let run = sb.run(&["execute", "create-user", "--params", "@user.json"]);
    run.assert_code(0);
    assert_eq!(run.json()["result"]["email"], "file@example.com");
}

#[test]
fn the_store_flag_and_variable_choose_the_database() {
    let sb = Sandbox::new();
    let params = user_params("store@example.com");
    sb.run(&[
        "--store",
        "sqlite:data/a.db",
        "execute",
        "create-user",
        "--params",
        &params,
    ])
    .assert_code(0);
    assert!(sb.path().join("data/a.db").is_file());
    assert!(!sb.path().join(".actiondo").exists());

    // ACTIONDO_STORE names the same file: the second run is a replay.
    let sb = sb.env("ACTIONDO_STORE", "sqlite:data/a.db");
    let again = sb.run(&["execute", "create-user", "--params", &params]);
    again.assert_code(0);
    assert!(again.stderr.contains("replayed:"), "{again:#?}");

    // A private in-memory store has no history.
    let fresh = sb.run(&[
        "--store",
        "sqlite::memory:",
        "execute",
        "create-user",
        "--params",
        &params,
    ]);
    fresh.assert_code(0);
    assert!(!fresh.stderr.contains("replayed"), "{fresh:#?}");
}

#[test]
fn actions_lists_every_wired_action_with_its_input_schema() {
    let sb = Sandbox::new();
    let expected: Vec<&str> = actiondo_catalog::catalog()
        .iter()
        .map(|a| a.name())
        .collect();
    // Every action package, nothing else (catalog/build.rs derives the catalog from them).
    assert_eq!(expected, action_packages());
    assert!(expected.contains(&"create-user") && expected.contains(&"send-welcome-email"));

    let run = sb.run(&["actions", "--json"]);
    run.assert_code(0);
    let listed = run.json();
    let actions = listed["actions"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = actions.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, expected);
    for action in &actions {
        assert!(
            action["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{action}"
        );
        assert!(action["inputSchema"].is_object(), "{action}");
        assert!(action["outputSchema"].is_object(), "{action}");
    }
    let create_user = actions.iter().find(|a| a["name"] == "create-user");
    let required = create_user.map(|a| a["inputSchema"]["required"].clone());
    assert_eq!(required, Some(json!(["email", "name"])));

    let table = sb.run(&["actions"]);
    table.assert_code(0);
    for name in &expected {
        assert!(table.stdout.contains(name), "{name} missing: {table:#?}");
    }
    assert!(table.stdout.contains("email: string"), "{table:#?}");
    assert!(table.stdout.contains("plan?:"), "{table:#?}");

    let one = sb.run(&["actions", "create-user"]);
    one.assert_code(0);
    assert!(one.stdout.contains("input schema:"), "{one:#?}");
    sb.run(&["actions", "create-usr"]).assert_code(2);
}

#[test]
fn audit_pages_with_a_cursor() {
    let sb = Sandbox::new();
    for i in 0..3 {
        sb.run(&[
            "execute",
            "create-user",
            "--params",
            &user_params(&format!("p{i}@example.com")),
        ])
        .assert_code(0);
    }
    let first = sb.run(&["audit", "--limit", "2", "--json"]);
    first.assert_code(0);
    let page = first.json();
    assert_eq!(audit_statuses(&page).len(), 2);
    let Some(cursor) = page["nextCursor"].as_str().map(str::to_owned) else {
        panic!("no cursor: {page}")
    };
    let rest = sb.run(&["audit", "--limit", "2", "--cursor", &cursor, "--json"]);
    rest.assert_code(0);
    let rest = rest.json();
    assert_eq!(audit_statuses(&rest).len(), 1);
    assert_eq!(rest["nextCursor"], Value::Null);

    let table = sb.run(&["audit", "--limit", "2"]);
    assert!(table.stderr.contains("--cursor"), "{table:#?}");
    let future = sb.run(&["audit", "--since", "2999-01-01T00:00:00Z"]);
    future.assert_code(0);
    assert!(future.stdout.contains("no audit records"), "{future:#?}");
}

#[test]
fn dynamodb_settings_problems_are_shown_clearly() {
    // No table names: the store cannot be opened.
    let sb = Sandbox::new();
    let run = sb.run(&["tables", "create"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("ACTIONDO_IDEMPOTENCY_TABLE"),
        "{run:#?}"
    );
    let run = sb.run(&["--store", "dynamodb", "audit"]);
    run.assert_code(2);
    assert!(run.stderr.contains("ACTIONDO_AUDIT_TABLE"), "{run:#?}");

    // With settings, an unfiltered listing is refused by the store itself, before any
    // request is sent (the endpoint here is closed).
    let sb = dynamo_env(Sandbox::new(), "http://127.0.0.1:9", "t-unused");
    let run = sb.run(&["--store", "dynamodb", "audit"]);
    run.assert_code(2);
    assert!(run.stderr.contains("needs a filter"), "{run:#?}");
}

/// The child environment of a DynamoDB run: endpoint, dummy credentials, region and
/// table names `{prefix}-idempotency|audit|entities`, nothing from `~/.aws`.
fn dynamo_env(sb: Sandbox, endpoint: &str, prefix: &str) -> Sandbox {
    let nowhere: PathBuf = sb.path().join("no-aws-config");
    let nowhere = nowhere.display().to_string();
    sb.env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", nowhere.clone())
        .env("AWS_SHARED_CREDENTIALS_FILE", nowhere)
        .env(
            "ACTIONDO_IDEMPOTENCY_TABLE",
            format!("{prefix}-idempotency"),
        )
        .env("ACTIONDO_AUDIT_TABLE", format!("{prefix}-audit"))
        .env("ACTIONDO_ENTITIES_TABLE", format!("{prefix}-entities"))
}

#[test]
fn dynamodb_store_against_dynamodb_local() {
    let Some(url) = actiondo::testing::server_url(
        "ACTIONDO_TEST_DYNAMODB_LOCAL_URL",
        "actiondo --store dynamodb against DynamoDB Local",
    ) else {
        return;
    };
    let prefix = format!("cli{}", uuid::Uuid::new_v4().simple());
    let sb = dynamo_env(Sandbox::new(), &url, &prefix);

    let created = sb.run(&["tables", "create"]);
    created.assert_code(0);
    assert!(
        created.stdout.contains(&format!("{prefix}-audit")),
        "{created:#?}"
    );
    // Creating them again keeps them.
    sb.run(&["tables", "create"]).assert_code(0);

    let params = user_params("dynamo@example.com");
    let args = [
        "--store",
        "dynamodb",
        "execute",
        "create-user",
        "--params",
        &params,
        "--key",
        "ddb-1",
    ];
    let first = sb.run(&args);
    first.assert_code(0);
    assert!(!first.stderr.contains("replayed"), "{first:#?}");
    let second = sb.run(&args);
    second.assert_code(0);
    assert!(
        second
            .stderr
            .contains("replayed: stored outcome of attempt 1 (key ddb-1)"),
        "{second:#?}"
    );
    assert_eq!(first.stdout, second.stdout);
    // Nothing went to the embedded store.
    assert!(!sb.path().join(".actiondo").exists());

    let audit = sb.run(&[
        "--store",
        "dynamodb",
        "audit",
        "--type",
        "create-user",
        "--key",
        "ddb-1",
        "--json",
    ]);
    audit.assert_code(0);
    assert_eq!(audit_statuses(&audit.json()), ["replayed", "completed"]);
    let by_type = sb.run(&["--store", "dynamodb", "audit", "--type", "create-user"]);
    by_type.assert_code(0);
    assert!(by_type.stdout.contains("ddb-1"), "{by_type:#?}");
    let unfiltered = sb.run(&["--store", "dynamodb", "audit"]);
    unfiltered.assert_code(2);
    assert!(
        unfiltered.stderr.contains("needs a filter"),
        "{unfiltered:#?}"
    );
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

/// The README's onboarding story: create a user, send the welcome email, send it again
/// (a replay: no second email), read the audit trail.
#[test]
fn onboarding_story_sends_the_welcome_email_once() {
    let outbox = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("temp dir: {e}"),
    };
    let sb = Sandbox::new().env("EMAIL_OUTBOX_DIR", outbox.path().display().to_string());

    let user = sb.run(&[
        "execute",
        "create-user",
        "--params",
        r#"{"email": "Ada@Example.com", "name": "Ada Lovelace"}"#,
    ]);
    user.assert_code(0);
    let user_id = user.json()["result"]["userId"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(user_id.starts_with("u_"), "{user:#?}");

    let params = json!({"userId": user_id, "template": "new-user-welcome-v2"}).to_string();
    let sent = sb.run(&["execute", "send-welcome-email", "--params", &params]);
    sent.assert_code(0);
    assert!(!sent.stderr.contains("replayed"), "{sent:#?}");
    let response = sent.json();
    assert_eq!(response["error"], Value::Null);
    assert_eq!(response["result"]["userId"], user_id.as_str());
    assert_eq!(response["result"]["to"], "ada@example.com");
    assert_eq!(response["result"]["transport"], "outbox");
    let emails = eml_files(outbox.path());
    assert_eq!(emails.len(), 1, "{emails:?}");
    let message = std::fs::read_to_string(&emails[0]).unwrap_or_default();
    assert!(message.contains("ada@example.com"), "{message}");
    // Nothing went to the default outbox under the working folder.
    assert!(!sb.path().join(".actiondo/outbox").exists());

    let again = sb.run(&["execute", "send-welcome-email", "--params", &params]);
    again.assert_code(0);
    assert!(
        again
            .stderr
            .contains("replayed: stored outcome of attempt 1"),
        "{again:#?}"
    );
    assert_eq!(sent.stdout, again.stdout);
    assert_eq!(
        eml_files(outbox.path()).len(),
        1,
        "the replay sent a second email"
    );

    let audit = sb.run(&["audit", "--type", "send-welcome-email", "--json"]);
    audit.assert_code(0);
    assert_eq!(audit_statuses(&audit.json()), ["replayed", "completed"]);
    let all = sb.run(&["audit", "--json"]);
    assert_eq!(
        audit_statuses(&all.json()),
        ["replayed", "completed", "completed"]
    );

    // An unknown user is a business rejection: exit 1, nothing sent.
    let unknown = sb.run(&[
        "execute",
        "send-welcome-email",
        "--params",
        r#"{"userId": "u_nobody", "template": "new-user-welcome-v2"}"#,
    ]);
    unknown.assert_code(1);
    assert_eq!(unknown.json()["error"]["type"], "ActionDo.Rejected");
    assert_eq!(eml_files(outbox.path()).len(), 1);
}

/// Every action is built at start-up, whatever is (not) configured: with no environment
/// at all, the catalog still lists everything and actions that need nothing still run.
#[test]
fn the_catalog_builds_without_any_configuration() {
    let sb = Sandbox::with_empty_env();
    let expected: Vec<&str> = actiondo_catalog::catalog()
        .iter()
        .map(|a| a.name())
        .collect();
    let run = sb.run(&["actions", "--json"]);
    run.assert_code(0);
    let names: Vec<String> = run.json()["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names, expected, "{run:#?}");
    sb.run(&[
        "execute",
        "create-user",
        "--params",
        &user_params("bare@example.com"),
    ])
    .assert_code(0);
}

/// A broken setting does not break the CLI: only the action that needs it fails, with an
/// action error that names the problem.
#[test]
fn a_misconfigured_action_fails_alone() {
    let sb = Sandbox::new().env("EMAIL_TRANSPORT", "carrier-pigeon");
    sb.run(&["actions"]).assert_code(0);
    let run = sb.run(&[
        "execute",
        "send-email",
        "--params",
        r#"{"to": "ada@example.com", "subject": "Hi", "body": "Hello"}"#,
    ]);
    run.assert_code(1);
    let response = run.json();
    assert_eq!(response["error"]["type"], "ActionDo.Internal", "{run:#?}");
    assert!(
        response["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("EMAIL_TRANSPORT")),
        "{run:#?}"
    );
    sb.run(&[
        "execute",
        "create-user",
        "--params",
        &user_params("other@example.com"),
    ])
    .assert_code(0);
}

/// A running `actiondo serve`, stopped (SIGTERM, then kill) when dropped.
struct Server {
    child: std::process::Child,
    base: String,
    stderr: std::io::BufReader<std::process::ChildStderr>,
}

impl Sandbox {
    /// Start `actiondo serve --addr 127.0.0.1:0 EXTRA...` and wait for its address line.
    fn serve(&self, extra: &[&str]) -> Server {
        use std::io::BufRead as _;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_actiondo"));
        cmd.current_dir(self.path())
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .env_remove("ACTIONDO_STORE")
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn actiondo serve");
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut seen = String::new();
        let base = loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).expect("read stderr");
            seen.push_str(&line);
            if n == 0 {
                let _ = child.kill();
                panic!("actiondo serve exited before listening: {seen}");
            }
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
        };
        Server {
            child,
            base,
            stderr,
        }
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stop with SIGTERM (a graceful shutdown) and return the exit status and the rest of
    /// stderr.
    fn stop(mut self) -> (Option<i32>, String) {
        use std::io::Read as _;
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let code = self.child.wait().expect("wait").code();
        let mut rest = String::new();
        let _ = self.stderr.read_to_string(&mut rest);
        (code, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_the_router_api_with_keys_over_real_http() {
    let sb = Sandbox::new();
    let create = sb.run(&[
        "keys",
        "create",
        "--scope",
        "create-*",
        "--description",
        "tests",
    ]);
    create.assert_code(0);
    let key = create.stdout.trim().to_owned();
    assert!(key.starts_with("ado_"), "{create:#?}");
    assert!(create.stderr.contains("not shown again"), "{create:#?}");

    // No key cache: a revocation by another process (the CLI below) applies at once. The
    // cache's semantics are asserted with a test clock (api/tests/keys.rs).
    let server = sb.serve(&["--key-cache-ttl", "0"]);
    let http = reqwest::Client::new();
    let post = |path: &str, body: &str| {
        http.post(server.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    let params = user_params("serve@example.com");

    // No key: 401 with the challenge; nothing ran.
    let anonymous = post("/actions/create-user", &params)
        .send()
        .await
        .expect("send");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");

    // With the key: 200, then a byte-identical replay.
    let first = post("/actions/create-user", &params)
        .bearer_auth(&key)
        .header("idempotency-key", "serve-1")
        .send()
        .await
        .expect("send");
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.text().await.expect("body");
    let again = post("/actions/create-user", &params)
        .bearer_auth(&key)
        .header("idempotency-key", "serve-1")
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.expect("body"), first_body);

    // The record is readable over HTTP, with its audit trail.
    let record: Value = http
        .get(server.url("/executions/create-user/serve-1"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(record["execution"]["status"], "COMPLETED");
    let audit = audit_statuses(&json!({"records": record["audit"]}));
    assert_eq!(audit, ["replayed", "completed"], "{record:#}");

    // Out of scope: 403; the SDK shape on /execute.
    let forbidden = post("/execute", r#"{"name": "score-lead", "params": {}}"#)
        .bearer_auth(&key)
        .send()
        .await
        .expect("send");
    assert_eq!(forbidden.status(), 403);
    let sdk: Value = post(
        "/execute",
        &json!({"name": "create-user", "params": {"email": "sdk@example.com", "name": "Sdk"}})
            .to_string(),
    )
    .bearer_auth(&key)
    .send()
    .await
    .expect("send")
    .json()
    .await
    .expect("json");
    assert!(sdk["error"].is_null(), "{sdk:#}");
    assert!(sdk["result"]["userId"].is_string(), "{sdk:#}");

    // Issue 11 through `actiondo serve`: internal actions are in no scope, an action
    // pattern opens no workflow, out of scope names nothing, and a malformed body with a
    // valid key leaves its rejected record.
    for (method, path, body, status) in [
        ("GET", "/audit?type=create-api-key", "", 403),
        ("POST", "/actions/create-api-key", "{}", 403),
        ("POST", "/workflows/crm-new-lead", "{}", 403),
        ("POST", "/actions/send-emial", "{}", 403),
    ] {
        let request = match method {
            "GET" => http.get(server.url(path)),
            _ => post(path, body),
        };
        let reply = request.bearer_auth(&key).send().await.expect("send");
        assert_eq!(reply.status(), status, "{method} {path}");
        let text = reply.text().await.expect("body");
        assert!(!text.contains("send-email"), "{path}: {text}");
    }
    let malformed = post("/actions/create-user", r#"{"email": "#)
        .bearer_auth(&key)
        .header("idempotency-key", "serve-bad")
        .send()
        .await
        .expect("send");
    assert_eq!(malformed.status(), 400);
    let audit: Value = http
        .get(server.url("/audit?type=create-user&key=serve-bad"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(audit_statuses(&audit), ["rejected"], "{audit:#}");

    // The use is recorded (at most once a minute) and listed.
    let listed = sb.run(&["keys", "list", "--json"]);
    listed.assert_code(0);
    assert!(
        listed.json()["keys"][0]["lastUsedAt"].is_string(),
        "{listed:#?}"
    );

    // Revoked (by the CLI, while the server runs, without a key cache): 401 at once.
    let id = key.split('_').nth(1).expect("id").to_owned();
    sb.run(&["keys", "revoke", &id]).assert_code(0);
    let revoked = post("/actions/create-user", &params)
        .bearer_auth(&key)
        .send()
        .await
        .expect("send");
    assert_eq!(revoked.status(), 401);

    // An expired key: 401 saying so, with no internals.
    let short = sb.run(&["keys", "create", "--scope", "*", "--expires-in", "1s"]);
    short.assert_code(0);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let expired = http
        .get(server.url("/actions"))
        .bearer_auth(short.stdout.trim())
        .send()
        .await
        .expect("send");
    assert_eq!(expired.status(), 401);
    let body: Value = expired.json().await.expect("json");
    assert_eq!(body["error"]["type"], "ActionDo.Unauthorized", "{body:#}");
    assert_eq!(body["error"]["details"]["reason"], "expired", "{body:#}");

    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
}

/// Issue 11's table through `actiondo serve` over real HTTP: for each (key scope, route,
/// name) the status and error type, no name outside the scope unless the request spelled
/// it, and for every refusal nothing written: the store file (read beside the running
/// server) holds no new audit record and no idempotency record under the requests' key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_the_security_table() {
    use actiondo::store::sqlite::SqliteStore;
    use actiondo::{AuditFilter, AuditQuery, Store as _};
    use security_cases::{CASES, SCOPES};

    let sb = Sandbox::new();
    let mut keys = Vec::new();
    for (label, scope) in SCOPES {
        let mut args = vec!["keys", "create"];
        for pattern in scope {
            args.extend(["--scope", pattern]);
        }
        let created = sb.run(&args);
        created.assert_code(0);
        let scope: Vec<String> = scope.iter().map(|p| (*p).to_owned()).collect();
        let scope = actiondo_api::keys::Scope::parse(&scope).expect("a valid scope");
        keys.push((label, created.stdout.trim().to_owned(), scope));
    }
    let server = sb.serve(&[]);
    let store = SqliteStore::open(sb.path().join(".actiondo/actiondo.db")).expect("opens");
    let audit_count = || async {
        store
            .query_audit(&AuditQuery {
                limit: 100,
                ..AuditQuery::new(AuditFilter::All)
            })
            .await
            .expect("reads")
            .records
            .len()
    };
    let before = audit_count().await;
    let names: Vec<String> = actiondo_catalog::catalog()
        .iter()
        .map(|a| a.name().to_owned())
        .chain(["create-api-key".to_owned(), "revoke-api-key".to_owned()])
        .collect();
    let http = reqwest::Client::new();
    for case in CASES {
        let (_, key, scope) = keys
            .iter()
            .find(|(label, _, _)| *label == case.key)
            .expect("a key of the table");
        let what = format!("{} {} with {}", case.method, case.uri, case.key);
        let request = match case.body {
            Some(body) => http
                .post(server.url(case.uri))
                .header("content-type", "application/json")
                .header("idempotency-key", "sec")
                .body(body.to_owned()),
            None => http.get(server.url(case.uri)),
        };
        let reply = request.bearer_auth(key).send().await.expect("send");
        assert_eq!(reply.status().as_u16(), case.status, "{what}");
        let text = reply.text().await.expect("body");
        let body: Value = serde_json::from_str(&text).expect("a JSON body");
        assert_eq!(body["error"]["type"], case.error_type, "{what}: {text}");
        let asked = format!("{} {}", case.uri, case.body.unwrap_or_default());
        let asked = asked
            .replace("%2D", "-")
            .replace("%23", "#")
            .replace("%2F", "/");
        for name in &names {
            let in_scope = scope.allows(name);
            if !in_scope && !asked.contains(name.as_str()) {
                assert!(!text.contains(name.as_str()), "{what} names {name}: {text}");
            }
        }
        assert_eq!(audit_count().await, before, "{what} wrote an audit record");
        for name in &names {
            assert!(
                store
                    .get_record(&format!("{name}#sec"))
                    .await
                    .expect("reads")
                    .is_none(),
                "{what} ran {name}"
            );
        }
    }
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_auth_is_for_loopback_only() {
    let sb = Sandbox::new();
    let refused = sb.run(&["serve", "--no-auth", "--addr", "0.0.0.0:0"]);
    refused.assert_code(2);
    assert!(refused.stderr.contains("loopback"), "{refused:#?}");

    let server = sb.serve(&["--no-auth"]);
    let actions: Value = reqwest::get(server.url("/actions"))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = actions["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect();
    let expected: Vec<&str> = actiondo_catalog::catalog()
        .iter()
        .map(|a| a.name())
        .collect();
    assert_eq!(names, expected);
    let (code, _) = server.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn keys_are_listed_without_their_secret_and_revoked_once() {
    let sb = Sandbox::new();
    let created = sb.run(&[
        "keys",
        "create",
        "--scope",
        "send-*",
        "--scope",
        "score-lead",
        "--json",
    ]);
    created.assert_code(0);
    let info = created.json();
    let key = info["key"].as_str().expect("key").to_owned();
    let id = info["id"].as_str().expect("id").to_owned();
    assert_eq!(info["scope"], json!(["send-*", "score-lead"]));

    let list = sb.run(&["keys", "list", "--json"]);
    list.assert_code(0);
    assert_eq!(list.json()["keys"][0]["id"], json!(id));
    assert!(
        !list.stdout.contains(&key[20..]),
        "the secret is never listed: {list:#?}"
    );
    // Not even the stored entities or audit rows hold it.
    let db = std::fs::read(sb.path().join(".actiondo/actiondo.db")).unwrap_or_default();
    let wal = std::fs::read(sb.path().join(".actiondo/actiondo.db-wal")).unwrap_or_default();
    let secret = &key[21..];
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the key's secret is stored"
        );
    }

    let revoke = sb.run(&["keys", "revoke", &id]);
    revoke.assert_code(0);
    let again = sb.run(&["keys", "revoke", &id]);
    again.assert_code(0);
    assert_eq!(
        revoke.stdout, again.stdout,
        "revoking twice changes nothing"
    );
    sb.run(&["keys", "revoke", "0000000000000000"])
        .assert_code(1);
    let flows = sb.run(&["keys", "create", "--scope", "workflow:user-*", "--json"]);
    flows.assert_code(0);
    assert_eq!(flows.json()["scope"], json!(["workflow:user-*"]));
    let bad = sb.run(&["keys", "create", "--scope", "Send_*"]);
    bad.assert_code(2);
    assert!(bad.stderr.contains("/scope/0"), "{bad:#?}");

    // Expiry: a humane duration, validated; listed with the key.
    let expiring = sb.run(&[
        "keys",
        "create",
        "--scope",
        "*",
        "--expires-in",
        "30d",
        "--json",
    ]);
    expiring.assert_code(0);
    let expires_at = expiring.json()["expiresAt"]
        .as_str()
        .expect("an expiry")
        .to_owned();
    assert!(expiring.stderr.contains(&expires_at), "{expiring:#?}");
    let list = sb.run(&["keys", "list"]);
    list.assert_code(0);
    assert!(list.stdout.contains(&expires_at), "{list:#?}");
    assert!(list.stdout.contains("EXPIRES") && list.stdout.contains("LAST USED"));
    for bad in ["30", "0s", "1w", "-1d", "3651d"] {
        let arg = format!("--expires-in={bad}");
        let refused = sb.run(&["keys", "create", "--scope", "*", &arg]);
        refused.assert_code(2);
        assert!(
            refused.stderr.contains("--expires-in"),
            "{bad}: {refused:#?}"
        );
    }
    let keys = sb.run(&["keys", "list", "--json"]).json()["keys"]
        .as_array()
        .map(Vec::len);
    assert_eq!(keys, Some(3), "no key was made by a refused command");
}
