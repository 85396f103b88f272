//! Differential fidelity of the local workflow engine (issue 12; docs/architecture.md
//! §10.4): every scenario of the seed workflows that `workflows.rs` runs — a qualified
//! lead, a nurtured lead, a happy onboarding, a declined payment (compensated), a
//! payment provider outage then success, a new CRM lead — runs twice:
//!
//! - under moto's Step Functions interpreter, each Lambda Task invoking the real action
//!   binary under `cargo lambda watch`, on DynamoDB Local (`actiondo_e2e::states`);
//! - under the local engine, `actiondo workflow run` (the CLI binary of this workspace):
//!   the same actions in-process on the embedded store, as a developer runs them.
//!
//! Both sides get the same settings and each its own instance of the same stand-in
//! outside services (payment provider, webhook receiver, email outbox), driven the same
//! way; the scenarios run in the same order on both sides (the owners' round robin is
//! shared state), under the same execution names. Asserted equal, per scenario: the
//! status, the output, the error and the cause, the sequence of Task calls (state,
//! function, idempotency key) from each side's execution history, and the audit records
//! of the execution's correlation id (action, execution, status) in the order written;
//! at the end, what the outside services received.
//!
//! What legitimately differs is normalized first: the execution ARN (region and account:
//! `us-east-1`/`123456789012` under moto, `local`/`000000000000` locally) becomes
//! `<execution>`; generated ids (UUIDs) become `<id N>`, numbered by first appearance in
//! the document compared, so an id repeated in two places must be repeated on both sides;
//! RFC 3339 timestamps become `<time>`. A cause that is JSON text is compared as JSON.
//!
//! Where moto departs from the Step Functions documentation, [`MOTO_DEVIATIONS`] says
//! how and the engine follows AWS. Found with moto 5.2.5: none in these scenarios.
//!
//! One stack (one `cargo lambda watch` with every function of the three workflows) and
//! one moto serve all the scenarios. The local engine runs with `--time-scale 20` (the
//! outage's retry waits 0–2 s under moto, a twentieth of that locally).
//!
//! Run: `./tests/run.sh --servers-only -- cargo test --offline -p actiondo-e2e --test differential`.

mod scenarios;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use actiondo::{AuditFilter, AuditPage, AuditRecord};
use actiondo_e2e::states::{StepFunctions, bare_function_name};
use actiondo_e2e::{Stack, workspace_root};
use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType};
use scenarios::{
    Behaviour, CRM_FUNCTIONS, LEAD_FUNCTIONS, ONBOARDING_FUNCTIONS, Provider, crm_contact,
    eml_files, function_env, json_body, nurture_lead, onboarding_input, qualified_lead,
    webhook_receiver,
};
use serde_json::{Value, json};
use wiremock::MockServer;

/// Scenarios where moto departs from the Step Functions documentation, and how (the
/// engine follows AWS; such a scenario is compared on everything but what is named).
/// Empty: moto 5.2.5 ends every scenario as the engine does.
const MOTO_DEVIATIONS: &[(&str, &str)] = &[];

/// How fast the local engine's time runs (Retry intervals).
const TIME_SCALE: &str = "20";

/// One scenario: a workflow, its input, and how the payment provider behaves.
struct Scenario {
    name: &'static str,
    workflow: &'static str,
    input: Value,
    /// (behaviour, outages before it works).
    provider: (Behaviour, u32),
}

fn scenarios() -> Vec<Scenario> {
    let s = |name, workflow, input, provider| Scenario {
        name,
        workflow,
        input,
        provider,
    };
    vec![
        s(
            "qualified",
            "lead-qualification",
            qualified_lead(),
            (Behaviour::Charge, 0),
        ),
        s(
            "nurture",
            "lead-qualification",
            nurture_lead(),
            (Behaviour::Charge, 0),
        ),
        s(
            "happy onboarding",
            "user-onboarding",
            onboarding_input("ada@example.com"),
            (Behaviour::Charge, 0),
        ),
        s(
            "declined payment",
            "user-onboarding",
            onboarding_input("grace@example.com"),
            (Behaviour::Decline, 0),
        ),
        s(
            "transient then success",
            "user-onboarding",
            onboarding_input("linus@example.com"),
            (Behaviour::Charge, 1),
        ),
        s("crm", "crm-new-lead", crm_contact(), (Behaviour::Charge, 0)),
    ]
}

/// The outside services of one side, and its outbox.
struct Services {
    provider: Provider,
    provider_server: MockServer,
    webhook: MockServer,
    outbox: tempfile::TempDir,
}

impl Services {
    async fn start() -> Self {
        let provider = Provider::new(Behaviour::Charge, 0);
        let provider_server = provider.serve().await;
        Self {
            provider,
            provider_server,
            webhook: webhook_receiver().await,
            outbox: tempfile::tempdir().expect("a temporary folder"),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        function_env(
            self.outbox.path(),
            &self.webhook,
            Some(&self.provider_server),
        )
    }

    /// What the services received, normalized: the charges' forms, the webhook bodies,
    /// the emails' headers that matter.
    async fn received(&self) -> Value {
        let charges: Vec<Value> = self
            .provider
            .charges()
            .iter()
            .map(|c| json!({"key": c.idempotency_key, "form": c.form, "intent": c.intent}))
            .collect();
        let webhook: Vec<Value> = self
            .webhook
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| {
                json!({
                    "key": r.headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
                    "body": json_body(r),
                })
            })
            .collect();
        // Sorted by recipient and subject: a file's name holds a hash of the Task's key,
        // which holds the execution ARN.
        let mut emails: Vec<(String, String)> = eml_files(self.outbox.path())
            .iter()
            .map(|(_, eml)| {
                let header = |name| scenarios::header(eml, name).unwrap_or_default().to_owned();
                (header("To"), header("Subject"))
            })
            .collect();
        emails.sort();
        let emails: Vec<Value> = emails
            .into_iter()
            .map(|(to, subject)| json!({"to": to, "subject": subject}))
            .collect();
        json!({"charges": charges, "webhook": webhook, "emails": emails})
    }
}

/// How one side ended one scenario, normalized.
#[derive(Debug, PartialEq)]
struct Ending {
    status: String,
    output: Option<Value>,
    error: Option<String>,
    cause: Option<Value>,
    /// (state, function, idempotency key) of every Task call, in order.
    calls: Vec<(String, String, Option<String>)>,
    /// (action, execution, status) of the audit records of the execution, oldest first.
    audit: Vec<(String, String, String)>,
}

// ---------------------------------------------------------------- normalization

/// `text` with the execution ARN `arn` replaced by `<execution>`, UUIDs (32 hex digits,
/// or 8-4-4-4-12) by `<id N>` (N from `ids`, by first appearance) and RFC 3339
/// timestamps by `<time>`.
fn normalize_text(text: &str, arn: &str, ids: &mut BTreeMap<String, usize>) -> String {
    let text = if arn.is_empty() {
        text.to_owned()
    } else {
        text.replace(arn, "<execution>")
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(len) = uuid_at(bytes, i) {
            let id = &text[i..i + len];
            let next = ids.len() + 1;
            let n = *ids.entry(id.to_owned()).or_insert(next);
            out.push_str(&format!("<id {n}>"));
            i += len;
        } else if let Some(len) = timestamp_at(bytes, i) {
            out.push_str("<time>");
            i += len;
        } else {
            let c = text[i..].chars().next().unwrap_or('?');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn hex_run(bytes: &[u8], at: usize) -> usize {
    bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        .count()
}

/// The length of a UUID starting at `at` (not inside a longer hex run).
fn uuid_at(bytes: &[u8], at: usize) -> Option<usize> {
    if at > 0 && hex_run(bytes, at - 1) > 0 {
        return None;
    }
    if hex_run(bytes, at) == 32 {
        return Some(32);
    }
    let mut i = at;
    for (n, group) in [8, 4, 4, 4, 12].iter().enumerate() {
        if hex_run(bytes, i) != *group {
            return None;
        }
        i += group;
        if n < 4 {
            if bytes.get(i) != Some(&b'-') {
                return None;
            }
            i += 1;
        }
    }
    Some(i - at)
}

/// The length of an RFC 3339 timestamp starting at `at`
/// (`YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`).
fn timestamp_at(bytes: &[u8], at: usize) -> Option<usize> {
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if bytes.len() < at + shape.len() {
        return None;
    }
    for (k, want) in shape.iter().enumerate() {
        let b = bytes[at + k];
        let ok = if *want == b'd' {
            b.is_ascii_digit()
        } else {
            b == *want
        };
        if !ok {
            return None;
        }
    }
    let mut i = at + shape.len();
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    match bytes.get(i) {
        Some(b'Z') => Some(i + 1 - at),
        Some(b'+' | b'-') if bytes.len() >= i + 6 => Some(i + 6 - at),
        _ => Some(i - at),
    }
}

/// What differs by side and is replaced: the execution ARN, and the outbox folder (a
/// file of it is named after the Task's key, which holds the ARN).
#[derive(Debug, Clone, Copy)]
struct Side<'a> {
    arn: &'a str,
    outbox: &'a str,
}

/// `value` normalized: every string as [`normalize_text`], a string holding a JSON
/// object or array parsed and normalized in place, a path in the outbox folder
/// `<outbox file>`.
fn normalize(value: &Value, side: Side<'_>, ids: &mut BTreeMap<String, usize>) -> Value {
    let arn = side.arn;
    match value {
        Value::String(s) if !side.outbox.is_empty() && s.starts_with(side.outbox) => {
            Value::String("<outbox file>".to_owned())
        }
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner @ (Value::Object(_) | Value::Array(_))) => {
                json!({"<json>": normalize(&inner, side, ids)})
            }
            _ => Value::String(normalize_text(s, arn, ids)),
        },
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| normalize(v, side, ids)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalize(v, side, ids)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn normalize_value(value: &Value, side: Side<'_>) -> Value {
    normalize(value, side, &mut BTreeMap::new())
}

fn normalize_audit(records: &mut [AuditRecord], arn: &str) -> Vec<(String, String, String)> {
    records.sort_by(|a, b| a.seq.cmp(&b.seq));
    records
        .iter()
        .map(|r| {
            (
                r.action.clone(),
                r.execution.replace(arn, "<execution>"),
                r.status.as_str().to_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- moto's side

/// The Task calls in moto's history: each `TaskScheduled` with the state entered last
/// (in its scope: the seed workflows have no Parallel or Map), its `FunctionName` and the
/// payload's idempotency key.
fn moto_calls(history: &[HistoryEvent], arn: &str) -> Vec<(String, String, Option<String>)> {
    let mut state = String::new();
    let mut calls = Vec::new();
    for event in history {
        if let Some(d) = event.state_entered_event_details() {
            d.name().clone_into(&mut state);
        }
        if *event.r#type() == HistoryEventType::TaskScheduled {
            let parameters: Value = event
                .task_scheduled_event_details()
                .and_then(|d| serde_json::from_str(d.parameters()).ok())
                .unwrap_or_default();
            calls.push(call_of(&state, &parameters, arn));
        }
    }
    calls
}

fn call_of(state: &str, parameters: &Value, arn: &str) -> (String, String, Option<String>) {
    let function = parameters["FunctionName"].as_str().unwrap_or_default();
    let key = parameters
        .pointer("/Payload/idempotencyKey")
        .and_then(Value::as_str)
        .map(|k| k.replace(arn, "<execution>"));
    (
        state.to_owned(),
        bare_function_name(function).to_owned(),
        key,
    )
}

async fn under_moto(
    sfn: &mut StepFunctions,
    stack: &Stack,
    s: &Scenario,
    name: &str,
    outbox: &str,
) -> Ending {
    let execution = sfn.run(s.workflow, name, &s.input).await;
    let arn = execution.arn.clone();
    let side = Side { arn: &arn, outbox };
    let history = sfn.history(&arn).await;
    let mut records = stack
        .audit_records(AuditFilter::Correlation(arn.clone()))
        .await;
    Ending {
        status: execution.status.as_str().to_owned(),
        output: execution.output.as_ref().map(|o| normalize_value(o, side)),
        error: execution.error.clone(),
        cause: execution
            .cause
            .as_ref()
            .map(|c| normalize_value(&Value::String(c.clone()), side)),
        calls: moto_calls(&history, &arn),
        audit: normalize_audit(&mut records, &arn),
    }
}

// ---------------------------------------------------------------- the local engine's side

/// The `actiondo` binary of this workspace, built (or found fresh) with cargo, next to
/// this test binary (`target/<profile>/actiondo`).
fn actiondo_binary() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args([
            "build",
            "--offline",
            "--quiet",
            "-p",
            "actiondo-cli",
            "--bin",
            "actiondo",
        ])
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(built.success(), "cargo build -p actiondo-cli failed");
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("actiondo");
    assert!(binary.is_file(), "no {}", binary.display());
    binary
}

/// The local side: the `actiondo` binary, one store for every scenario, the services'
/// settings.
struct Local {
    binary: PathBuf,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    outbox: String,
}

impl Local {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.current_dir(self.dir.path())
            .env(
                "ACTIONDO_STORE",
                format!("sqlite:{}", self.dir.path().join("actiondo.db").display()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args);
        cmd
    }

    /// Run `args`; its stdout as JSON (any exit status: a failed execution exits 1).
    fn json(&self, args: &[&str]) -> Value {
        let out = self.command(args).output().expect("actiondo runs");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "actiondo {args:?}: stdout is not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    fn run(&self, workflow: &str, input: &Value, name: &str) -> Ending {
        let root = workspace_root().display().to_string();
        let input = input.to_string();
        let view = self.json(&[
            "workflow",
            "run",
            workflow,
            "--input",
            &input,
            "--name",
            name,
            "--dir",
            &root,
            "--time-scale",
            TIME_SCALE,
        ]);
        let arn = view["executionArn"]
            .as_str()
            .unwrap_or_else(|| panic!("no executionArn in {view}"))
            .to_owned();
        let events = self.json(&[
            "workflow", "history", workflow, name, "--json", "--dir", &root,
        ]);
        let events = events.as_array().cloned().unwrap_or_default();
        let calls = events
            .iter()
            .filter(|e| e["type"] == "TaskScheduled")
            .map(|e| {
                call_of(
                    e["details"]["name"].as_str().unwrap_or_default(),
                    &e["details"]["parameters"],
                    &arn,
                )
            })
            .collect();
        // The raw cause, as recorded in the ExecutionFailed event.
        let failed = events
            .iter()
            .rev()
            .find(|e| e["type"] == "ExecutionFailed" || e["type"] == "ExecutionTimedOut");
        let side = Side {
            arn: &arn,
            outbox: &self.outbox,
        };
        let page = self.json(&["audit", "--correlation", &arn, "--limit", "100", "--json"]);
        let mut page: AuditPage = serde_json::from_value(page).expect("an audit page");
        assert!(page.next_cursor.is_none(), "more than 100 audit records");
        Ending {
            status: view["status"].as_str().unwrap_or_default().to_owned(),
            output: view.get("output").map(|o| normalize_value(o, side)),
            error: failed
                .and_then(|e| e["details"]["error"].as_str())
                .map(str::to_owned),
            cause: failed.map(|e| normalize_value(&e["details"]["cause"], side)),
            calls,
            audit: normalize_audit(&mut page.records, &arn),
        }
    }
}

// ---------------------------------------------------------------- the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workflows_end_alike_under_moto_and_the_local_engine() {
    let moto_services = Services::start().await;
    let local_services = Services::start().await;
    let mut functions: Vec<&str> = Vec::new();
    for f in LEAD_FUNCTIONS
        .iter()
        .chain(ONBOARDING_FUNCTIONS)
        .chain(CRM_FUNCTIONS)
    {
        if !functions.contains(f) {
            functions.push(f);
        }
    }
    let mut builder = Stack::builder();
    for (key, value) in moto_services.env() {
        builder = builder.env(key, value);
    }
    for f in &functions {
        builder = builder.function(*f);
    }
    let Some(stack) = builder.start().await else {
        return;
    };
    let Some(mut sfn) = StepFunctions::start(&stack).await else {
        return;
    };
    let local = Local {
        binary: tokio::task::spawn_blocking(actiondo_binary)
            .await
            .expect("the build"),
        dir: tempfile::tempdir().expect("a temporary folder"),
        env: local_services.env(),
        outbox: local_services.outbox.path().display().to_string(),
    };
    let moto_outbox = moto_services.outbox.path().display().to_string();
    let local = std::sync::Arc::new(local);

    let mut problems = Vec::new();
    let mut table = Vec::new();
    for s in scenarios() {
        let name = format!("diff-{}", uuid::Uuid::new_v4().simple());
        for services in [&moto_services, &local_services] {
            services.provider.set(s.provider.0, s.provider.1);
        }
        let ours = {
            let (local, name, input) =
                (std::sync::Arc::clone(&local), name.clone(), s.input.clone());
            let workflow = s.workflow;
            tokio::task::spawn_blocking(move || local.run(workflow, &input, &name))
        };
        let theirs = under_moto(&mut sfn, &stack, &s, &name, &moto_outbox).await;
        let ours = ours.await.expect("the local run");
        let deviation = MOTO_DEVIATIONS.iter().find(|(n, _)| *n == s.name);
        if ours == theirs {
            table.push(format!("{}: equal ({})", s.name, ours.status));
        } else if let Some((_, why)) = deviation {
            table.push(format!("{}: moto deviates from AWS: {why}", s.name));
        } else {
            problems.push(format!(
                "{} ({}, execution {name}):\n  engine: {ours:#?}\n  moto:   {theirs:#?}",
                s.name, s.workflow
            ));
        }
        assert!(
            !theirs.calls.is_empty() && !theirs.audit.is_empty(),
            "{}: no Task ran under moto: {theirs:?}",
            s.name
        );
    }
    eprintln!("differential outcomes:\n  {}", table.join("\n  "));
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // What the outside services received, over all the scenarios.
    let (moto_seen, local_seen) = (
        moto_services.received().await,
        local_services.received().await,
    );
    let strip = |v: &Value| {
        normalize_value(
            v,
            Side {
                arn: "",
                outbox: "",
            },
        )
    };
    assert_eq!(
        strip(&local_seen)
            .to_string()
            .replace("arn:aws:states:local:000000000000", "<arn>"),
        strip(&moto_seen)
            .to_string()
            .replace("arn:aws:states:us-east-1:123456789012", "<arn>"),
        "the outside services received different requests"
    );
    assert!(
        !moto_seen["charges"].as_array().is_some_and(Vec::is_empty),
        "the provider charged nothing: {moto_seen}"
    );
}
