//! `actiondo workflow`: run the state machines of `workflows/*.asl.json` locally, with
//! the actions in-process on the embedded store (docs/architecture.md §10).
//!
//! ```text
//! actiondo workflow list
//! actiondo workflow executions NAME [--status S] [--limit N] [--cursor C] [--json]
//! actiondo workflow run NAME --input JSON|@FILE [--name ID] [--time-scale F]
//! actiondo workflow start NAME --input JSON|@FILE [--name ID] [--time-scale F]
//! actiondo workflow describe NAME ID
//! actiondo workflow history NAME ID [--json]
//! actiondo workflow redrive NAME ID [--time-scale F]
//! ```
//!
//! `run` and `redrive` wait for the end and print the per-state timeline on stderr and
//! the execution (status, output, error) on stdout; exit status 0 when it succeeded, 1
//! otherwise. `start` returns at once: the execution runs in a background `actiondo`
//! process. The execution name is the idempotency key: the same name and input is the
//! same execution, another input `ActionDo.PayloadMismatch`.

use actiondo::config::Settings;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use actiondo::{Executor, StoreConfig};
use actiondo_workflow::local::{Arns, LocalActions, LocalWorkflows, Project, store_path};
use actiondo_workflow::store::{Created, ExecutionRecord, Status, WorkflowStore};
use actiondo_workflow::{Event, ScaledTimer, Timer};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::{CliError, EXIT_ACTION_ERROR, EXIT_OK};

/// Where the workflows are and how fast time runs.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// The project folder (with `workflows/` and `template.yaml`).
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,

    /// Run Wait, Retry intervals and TimeoutSeconds F times faster than real time.
    #[arg(long, global = true, env = actiondo_workflow::clock::TIME_SCALE_ENV, value_name = "F")]
    pub time_scale: Option<f64>,
}

/// `actiondo workflow …`.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// List the workflows and their latest executions.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List one workflow's executions, newest first (a page; `--cursor` for the next).
    Executions {
        /// The workflow.
        workflow: String,
        /// Only the executions of this status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT).
        #[arg(long, value_name = "S")]
        status: Option<String>,
        /// At most N executions (1 to 100).
        #[arg(long, value_name = "N", default_value_t = actiondo_api::workflows::DEFAULT_LIST_LIMIT)]
        limit: usize,
        /// The cursor a previous page printed (its next page).
        #[arg(long, value_name = "C")]
        cursor: Option<String>,
        /// Print `{workflow, executions, cursor?}` as JSON (the body of `GET
        /// /workflows/NAME/executions`).
        #[arg(long)]
        json: bool,
    },
    /// Start an execution and wait for its end.
    Run(StartArgs),
    /// Start an execution in the background and return at once.
    Start(StartArgs),
    /// Show an execution: status, input, output, error.
    Describe {
        /// The workflow.
        workflow: String,
        /// The execution name.
        execution: String,
    },
    /// Show an execution's event history.
    History {
        /// The workflow.
        workflow: String,
        /// The execution name.
        execution: String,
        /// Print the events as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Redrive a failed, timed-out or interrupted execution from the state that failed.
    Redrive {
        /// The workflow.
        workflow: String,
        /// The execution name.
        execution: String,
    },
    /// Drive an execution created by `start` (run by `start` itself).
    #[command(hide = true)]
    Drive {
        /// The workflow.
        workflow: String,
        /// The execution name.
        execution: String,
        /// The owner id `start` created it with.
        #[arg(long)]
        owner: String,
    },
}

/// The arguments of `run` and `start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The workflow (`workflows/NAME.asl.json`).
    pub workflow: String,
    /// The input: JSON text, `@FILE`, or `@-` for stdin.
    #[arg(long, short = 'i', value_name = "JSON|@FILE", default_value = "{}")]
    pub input: String,
    /// The execution name, its idempotency key (a new UUID when absent).
    #[arg(long, value_name = "ID")]
    pub name: Option<String>,
}

/// The local workflow service on `store`, with the lease settings of `settings`.
pub async fn local(
    store: &StoreConfig,
    common: &Common,
    settings: &Settings,
) -> Result<LocalWorkflows, CliError> {
    // `--time-scale` reads ACTIONDO_WORKFLOW_TIME_SCALE itself (clap's `env`).
    let timer = match common.time_scale {
        Some(f) => ScaledTimer::new(f).map_err(CliError::Usage)?,
        None => ScaledTimer::real_time(),
    };
    let path = store_path(store).map_err(|e| CliError::Usage(e.message().to_owned()))?;
    let workflow_store = match path {
        Some(p) => WorkflowStore::open(p),
        None => WorkflowStore::in_memory(),
    }
    .map_err(|e| CliError::from_action(e.into()))?;
    let secs = |var: &str| -> Result<Option<Duration>, CliError> {
        settings
            .get(var)
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        CliError::Usage(format!("{var}={v:?} is not a positive number of seconds"))
                    })
            })
            .transpose()
    };
    let workflow_store = match secs(actiondo_workflow::store::LEASE_ENV)? {
        Some(lease) => workflow_store.with_lease(lease),
        None => workflow_store,
    };
    let executor = Executor::from_arc(crate::open_store(store).await?);
    let mut tasks = LocalActions::new(executor, Arc::new(actiondo_catalog::catalog()));
    if let Some(t) = secs(actiondo_workflow::local::FUNCTION_TIMEOUT_ENV)? {
        tasks = tasks.with_function_timeout(t);
    }
    Ok(LocalWorkflows::new(
        Project::new(&common.dir, Arns::default()),
        Arc::new(workflow_store),
        Arc::new(tasks),
        Arc::new(timer),
    ))
}

fn fail(e: actiondo_workflow::WorkflowError) -> CliError {
    CliError::from_action(e.into())
}

fn read_input(arg: &str) -> Result<Value, CliError> {
    let text = crate::execute::read_params(arg)?;
    actiondo::invocation::parse_params(&text)
        .map_err(|e| CliError::Usage(format!("--input: {}", e.message())))
}

/// Run `actiondo workflow …`.
pub async fn run(
    store: &StoreConfig,
    common: &Common,
    command: &WorkflowCommand,
    settings: &Settings,
) -> Result<u8, CliError> {
    let local = local(store, common, settings).await?;
    match command {
        WorkflowCommand::List { json } => {
            let names = local.project().names().map_err(fail)?;
            let mut out = Vec::new();
            for name in &names {
                let latest = local
                    .store()
                    .list(Some(name), 5)
                    .map_err(fail)?
                    .iter()
                    .map(|r| {
                        serde_json::json!({"executionName": r.name, "status": r.status.as_str(), "startDate": actiondo_workflow::history::rfc3339_ms(r.start_ms)})
                    })
                    .collect::<Vec<_>>();
                out.push(serde_json::json!({"workflow": name, "latestExecutions": latest}));
            }
            if *json {
                crate::print_stdout(&pretty(&Value::Array(out))?)?;
            } else {
                for w in &out {
                    let latest = w["latestExecutions"]
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .map(|e| {
                                    format!(
                                        "{} {}",
                                        e["executionName"].as_str().unwrap_or_default(),
                                        e["status"].as_str().unwrap_or_default()
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    crate::print_stdout(&format!(
                        "{}{}",
                        w["workflow"].as_str().unwrap_or_default(),
                        if latest.is_empty() {
                            String::new()
                        } else {
                            format!("  (latest: {latest})")
                        }
                    ))?;
                }
            }
            Ok(EXIT_OK)
        }
        WorkflowCommand::Executions {
            workflow,
            status,
            limit,
            cursor,
            json,
        } => {
            // The API's own reading of the query: the same checks and cursor.
            let query = actiondo_api::workflows::list_query(
                workflow,
                status.as_deref(),
                *limit,
                cursor.as_deref(),
            )
            .map_err(|e| CliError::Usage(e.message().to_owned()))?;
            let page = list(&local, workflow, &query).map_err(CliError::from_action)?;
            let body = actiondo_api::workflows::list_body(workflow, &query, &page);
            if *json {
                crate::print_stdout(&pretty(&body)?)?;
                return Ok(EXIT_OK);
            }
            if page.executions.is_empty() {
                crate::print_stdout(&format!("no executions of {workflow}"))?;
            } else {
                let mut table = crate::audit::new_table([
                    "execution",
                    "status",
                    "started (UTC)",
                    "stopped (UTC)",
                    "redrives",
                ]);
                for e in &page.executions {
                    table.add_row(vec![
                        e.execution_name.clone(),
                        e.status.clone(),
                        e.start_date.clone(),
                        e.stop_date.clone().unwrap_or_default(),
                        e.redrive_count.unwrap_or(0).to_string(),
                    ]);
                }
                crate::print_stdout(&table.to_string())?;
            }
            if let Some(next) = body["cursor"].as_str() {
                eprintln!("more executions: add --cursor {next}");
            }
            Ok(EXIT_OK)
        }
        WorkflowCommand::Run(args) => {
            let input = read_input(&args.input)?;
            let name = args
                .name
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            eprintln!("execution: {name}");
            let rec = local
                .run(&args.workflow, &name, &input)
                .await
                .map_err(fail)?;
            finish(&local, &rec)
        }
        WorkflowCommand::Start(args) => {
            let input = read_input(&args.input)?;
            let name = args
                .name
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            if matches!(store, StoreConfig::SqliteMemory) {
                return Err(CliError::Usage(
                    "workflow start runs the execution in another process, which cannot see a sqlite::memory: store; use workflow run".to_owned(),
                ));
            }
            let created = local.create(&args.workflow, &name, &input).map_err(fail)?;
            let rec = match created {
                Created::New(rec) => {
                    spawn_driver(store, common, &rec, local.owner())?;
                    rec
                }
                Created::Existing(rec) => {
                    eprintln!("the execution {name} already exists with this input");
                    rec
                }
            };
            crate::print_stdout(&pretty(&rec.view(local_now()))?)?;
            Ok(EXIT_OK)
        }
        WorkflowCommand::Describe {
            workflow,
            execution,
        } => {
            let rec = local.describe(workflow, execution).map_err(fail)?;
            crate::print_stdout(&pretty(&rec.view(local_now()))?)?;
            Ok(EXIT_OK)
        }
        WorkflowCommand::History {
            workflow,
            execution,
            json,
        } => {
            let events = local.history(workflow, execution).map_err(fail)?;
            if *json {
                crate::print_stdout(&pretty(&serde_json::to_value(&events).unwrap_or_default())?)?;
            } else {
                for e in &events {
                    crate::print_stdout(&format!(
                        "{:>4}  {}  {:<24} {}{}",
                        e.id,
                        e.timestamp,
                        e.kind,
                        if e.scope.is_empty() {
                            String::new()
                        } else {
                            format!("[{}] ", e.scope)
                        },
                        summary(e)
                    ))?;
                }
            }
            Ok(EXIT_OK)
        }
        WorkflowCommand::Redrive {
            workflow,
            execution,
        } => {
            let rec = local.redrive(workflow, execution).await.map_err(fail)?;
            finish(&local, &rec)
        }
        WorkflowCommand::Drive {
            workflow,
            execution,
            owner,
        } => {
            let local = local.with_owner(owner.clone());
            let rec = local.describe(workflow, execution).map_err(fail)?;
            if rec.owner.as_deref() != Some(owner.as_str()) {
                return Err(CliError::Usage(format!(
                    "the execution {execution} is not owned by {owner}"
                )));
            }
            local.resume_owned(rec).await.map_err(fail)?;
            Ok(EXIT_OK)
        }
    }
}

/// One page of the executions of workflow `name` on the local engine (what `GET
/// /workflows/{name}/executions` answers in `actiondo serve` and `actiondo workflow
/// executions` prints): 404 for a workflow the project does not define, 400 for a
/// token the store did not write.
pub fn list(
    local: &LocalWorkflows,
    name: &str,
    query: &actiondo_api::workflows::ListQuery,
) -> Result<actiondo_api::workflows::ExecutionPage, actiondo::ActionError> {
    use actiondo_api::workflows::{ExecutionPage, ExecutionSummary};
    use actiondo_workflow::store::PagePosition;
    let names = local.project().names()?;
    if !names.iter().any(|n| n == name) {
        return Err(actiondo::ActionError::not_found(format!(
            "there is no workflow {name:?} (no workflows/{name}.asl.json)"
        ))
        .with_details(serde_json::json!({"workflow": name})));
    }
    let after = query
        .token
        .as_deref()
        .map(|t| {
            PagePosition::from_token(t).ok_or_else(|| {
                actiondo::ActionError::validation(
                    "the cursor is not one this engine wrote; page from the newest again",
                )
            })
        })
        .transpose()?;
    // A status the local engine never has (ABORTED) lists nothing.
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => match Status::named(s) {
            Some(status) => Some(status),
            None => return Ok(ExecutionPage::default()),
        },
    };
    let (records, next) = local
        .store()
        .page(name, status, query.limit, after.as_ref())?;
    let rfc3339 = actiondo_workflow::history::rfc3339_ms;
    Ok(ExecutionPage {
        executions: records
            .iter()
            .map(|r| ExecutionSummary {
                execution_name: r.name.clone(),
                status: r.status.as_str().to_owned(),
                start_date: rfc3339(r.start_ms),
                stop_date: r.stop_ms.map(rfc3339),
                redrive_count: Some(r.redrive_count),
            })
            .collect(),
        next_token: next.map(|n| n.to_token()),
    })
}

fn local_now() -> i64 {
    ScaledTimer::real_time().now_ms()
}

fn pretty(v: &Value) -> Result<String, CliError> {
    crate::json::pretty(v).map_err(|e| CliError::Output(std::io::Error::other(e)))
}

/// Print the timeline (stderr) and the execution (stdout); the exit status says whether
/// it succeeded.
fn finish(local: &LocalWorkflows, rec: &ExecutionRecord) -> Result<u8, CliError> {
    let events = local.history(&rec.workflow, &rec.name).map_err(fail)?;
    for line in timeline(&events) {
        eprintln!("{line}");
    }
    crate::print_stdout(&pretty(&rec.view(local_now()))?)?;
    Ok(if rec.status == Status::Succeeded {
        EXIT_OK
    } else {
        EXIT_ACTION_ERROR
    })
}

fn summary(e: &Event) -> String {
    let d = &e.details;
    let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
    match (d.get("error"), d.get("output"), d.get("input")) {
        (Some(err), _, _) => format!("{name} {}", err.as_str().unwrap_or_default()),
        _ if e.kind == "TaskScheduled" => format!(
            "{name} {}",
            d.pointer("/parameters/Payload/idempotencyKey")
                .and_then(Value::as_str)
                .map(|k| format!("key={k}"))
                .unwrap_or_default()
        ),
        _ => name.to_owned(),
    }
}

fn millis(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

/// One line per top-level state: when it was entered (from the start), how long it
/// took, the Task calls it made and how it ended.
pub fn timeline(events: &[Event]) -> Vec<String> {
    let start = events.first().map(|e| millis(&e.timestamp)).unwrap_or(0);
    let mut lines = Vec::new();
    let mut open: Option<(String, String, i64, usize)> = None;
    let mut calls = 0usize;
    let close = |open: &mut Option<(String, String, i64, usize)>,
                 end_ms: i64,
                 how: &str,
                 lines: &mut Vec<String>,
                 calls: usize| {
        if let Some((name, kind, at, _)) = open.take() {
            lines.push(format!(
                "  +{:>8.3}s  {:<28} {:<9} {:>8.3}s  {}{}",
                (at - start) as f64 / 1000.0,
                name,
                kind,
                (end_ms - at) as f64 / 1000.0,
                how,
                if calls > 1 {
                    format!(" ({calls} attempts)")
                } else {
                    String::new()
                }
            ));
        }
    };
    for e in events {
        let at = millis(&e.timestamp);
        if !e.scope.is_empty() {
            continue;
        }
        if let Some(kind) = e.kind.strip_suffix("StateEntered") {
            let name = e
                .details
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            open = Some((name.to_owned(), kind.to_owned(), at, 0));
            calls = 0;
        } else if e.kind == "TaskScheduled" {
            calls += 1;
        } else if e.kind.ends_with("StateExited") {
            close(&mut open, at, "ok", &mut lines, calls);
        } else if e.kind == "ExecutionFailed" || e.kind == "ExecutionTimedOut" {
            let err = e
                .details
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or_default();
            close(&mut open, at, &format!("failed: {err}"), &mut lines, calls);
            lines.push(format!("  {}: {err}", e.kind));
        } else if e.kind == "ExecutionRedriven" {
            close(&mut open, at, "interrupted", &mut lines, calls);
            lines.push("  ExecutionRedriven".to_owned());
        } else if e.kind == "ExecutionSucceeded" {
            lines.push("  ExecutionSucceeded".to_owned());
        }
    }
    close(&mut open, local_now(), "running", &mut lines, calls);
    lines
}

/// Start `actiondo workflow drive` in the background for `rec`, detached from this
/// process (its output goes to `.actiondo/workflows/<workflow>.<execution>.log`).
fn spawn_driver(
    store: &StoreConfig,
    common: &Common,
    rec: &ExecutionRecord,
    owner: &str,
) -> Result<(), CliError> {
    let exe = std::env::current_exe()?;
    let log_dir = common.dir.join(".actiondo").join("workflows");
    std::fs::create_dir_all(&log_dir)?;
    let log = std::fs::File::create(log_dir.join(format!("{}.{}.log", rec.workflow, rec.name)))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--store")
        .arg(store_arg(store))
        .arg("workflow")
        .arg("--dir")
        .arg(&common.dir)
        .arg("drive")
        .arg(&rec.workflow)
        .arg(&rec.name)
        .arg("--owner")
        .arg(owner)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    if let Some(f) = common.time_scale {
        cmd.arg("--time-scale").arg(f.to_string());
    }
    cmd.spawn()?;
    Ok(())
}

fn store_arg(store: &StoreConfig) -> String {
    match store {
        StoreConfig::Sqlite(p) => format!("sqlite:{}", p.display()),
        StoreConfig::SqliteMemory => "sqlite::memory:".to_owned(),
        StoreConfig::DynamoDb => "dynamodb".to_owned(),
    }
}

/// The workflow routes of `actiondo serve`: Step Functions for the workflows that
/// `ACTIONDO_WORKFLOW_<NAME>` names, the local engine for the others.
#[derive(Debug)]
pub struct ServeWorkflows {
    local: LocalWorkflows,
    step_functions: Option<actiondo_api::Workflows>,
}

impl ServeWorkflows {
    /// `local`, and `step_functions` for the workflows it has.
    pub fn new(local: LocalWorkflows, step_functions: Option<actiondo_api::Workflows>) -> Self {
        Self {
            local,
            step_functions,
        }
    }

    fn remote(&self, name: &str) -> Option<&actiondo_api::Workflows> {
        self.step_functions.as_ref().filter(|w| w.has(name))
    }
}

#[async_trait::async_trait]
impl actiondo_api::WorkflowService for ServeWorkflows {
    fn runs(&self, name: &str) -> bool {
        self.remote(name).is_some()
            || self
                .local
                .project()
                .names()
                .is_ok_and(|names| names.iter().any(|n| n == name))
    }

    async fn start(
        &self,
        name: &str,
        execution: &str,
        input: &Value,
    ) -> Result<actiondo_api::workflows::Started, actiondo::ActionError> {
        use actiondo_api::workflows::Started;
        if let Some(sfn) = self.remote(name) {
            return sfn.start(name, execution, input).await;
        }
        match self.local.start(name, execution, input)? {
            Created::New(rec) => Ok(Started::Started(serde_json::json!({
                "workflow": name,
                "executionName": execution,
                "executionArn": rec.arn,
                "startDate": actiondo_workflow::history::rfc3339_ms(rec.start_ms),
                "status": "RUNNING",
            }))),
            Created::Existing(rec) => Ok(Started::Existing(rec.view(local_now()))),
        }
    }

    async fn describe(&self, name: &str, execution: &str) -> Result<Value, actiondo::ActionError> {
        if let Some(sfn) = self.remote(name) {
            return sfn.describe(name, execution).await;
        }
        Ok(self.local.describe(name, execution)?.view(local_now()))
    }

    async fn history(&self, name: &str, execution: &str) -> Result<Value, actiondo::ActionError> {
        if let Some(sfn) = self.remote(name) {
            return sfn.history(name, execution).await;
        }
        let events = self.local.history(name, execution)?;
        Ok(serde_json::json!({"workflow": name, "executionName": execution, "events": events}))
    }

    async fn list(
        &self,
        name: &str,
        query: &actiondo_api::workflows::ListQuery,
    ) -> Result<actiondo_api::workflows::ExecutionPage, actiondo::ActionError> {
        if let Some(sfn) = self.remote(name) {
            return sfn.list(name, query).await;
        }
        list(&self.local, name, query)
    }

    async fn redrive(&self, name: &str, execution: &str) -> Result<Value, actiondo::ActionError> {
        if let Some(sfn) = self.remote(name) {
            return sfn.redrive(name, execution).await;
        }
        Ok(self.local.start_redrive(name, execution)?.view(local_now()))
    }
}
