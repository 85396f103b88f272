//! workflow.do on this machine: the definitions of `workflows/`, the actions in-process,
//! executions in the embedded store.
//!
//! - [`Project`]: `workflows/*.asl.json` and `template.yaml`'s `DefinitionSubstitutions`.
//!   Each `${XFunctionArn}` becomes the ARN of the function that `template.yaml` names
//!   (`!GetAtt CreateUserFunction.Arn` → `CodeUri: functions/create-user` →
//!   `arn:aws:lambda:<region>:<account>:function:create-user`).
//! - [`LocalActions`]: a [`TaskRunner`] that runs `arn:aws:states:::lambda:invoke` (and
//!   plain Lambda ARNs) on the executor, through the very code path of a Lambda direct
//!   invoke ([`actiondo::trigger::direct::invoke`]); the payload is the envelope the
//!   definition builds, so keys and correlation ids are those of Step Functions.
//! - [`LocalWorkflows`]: start (keyed by execution name), run, redrive, describe,
//!   history.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actiondo::trigger::{Handler, Meta, Reply, direct};
use actiondo::{ActionError, Catalog, Executor};
use async_trait::async_trait;
use serde_json::{Value, json};

use crate::clock::Timer;
use crate::definition::StateMachine;
use crate::engine::{Engine, ExecutionInfo, Outcome, TaskCall, TaskRunner};
use crate::error::{StatesError, WorkflowError};
use crate::history::{Event, resume_point, rfc3339_ms};
use crate::store::{Created, ExecutionRecord, Status, StoredHistory, WorkflowStore};

/// The resource of the optimized Lambda integration.
pub const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

/// The region and account of the ARNs a local execution uses (`$$.Execution.Id`, the
/// functions' ARNs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arns {
    /// The region (`local`).
    pub region: String,
    /// The account (`000000000000`).
    pub account: String,
}

impl Default for Arns {
    fn default() -> Self {
        Self {
            region: "local".to_owned(),
            account: "000000000000".to_owned(),
        }
    }
}

impl Arns {
    /// `arn:aws:lambda:…:function:NAME`.
    pub fn function(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.region, self.account
        )
    }

    /// `arn:aws:states:…:stateMachine:NAME`.
    pub fn state_machine(&self, workflow: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{workflow}",
            self.region, self.account
        )
    }

    /// `arn:aws:states:…:execution:WORKFLOW:NAME`.
    pub fn execution(&self, workflow: &str, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:execution:{workflow}:{name}",
            self.region, self.account
        )
    }
}

/// The function (action) name of a Lambda function name or ARN (`…:function:NAME[:qualifier]`).
pub fn function_name(name_or_arn: &str) -> &str {
    match name_or_arn.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => name_or_arn,
    }
}

/// The workflows of a project folder.
#[derive(Debug, Clone)]
pub struct Project {
    root: PathBuf,
    arns: Arns,
}

impl Project {
    /// The project at `root` (the folder with `workflows/` and `template.yaml`).
    pub fn new(root: impl Into<PathBuf>, arns: Arns) -> Self {
        Self {
            root: root.into(),
            arns,
        }
    }

    /// The ARNs used.
    pub fn arns(&self) -> &Arns {
        &self.arns
    }

    /// The workflow names (`workflows/NAME.asl.json`), sorted.
    pub fn names(&self) -> Result<Vec<String>, WorkflowError> {
        let dir = self.root.join("workflows");
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            ActionError::not_found(format!(
                "cannot read {}: {e} (run from the project folder, or give --dir)",
                dir.display()
            ))
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".asl.json"))
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// The definition of `workflow` with its placeholders substituted, parsed.
    pub fn machine(&self, workflow: &str) -> Result<StateMachine, WorkflowError> {
        let names = self.names()?;
        if !names.iter().any(|n| n == workflow) {
            return Err(ActionError::not_found(format!(
                "there is no workflow {workflow:?}; known: {}",
                names.join(", ")
            ))
            .with_details(json!({"workflow": workflow, "known": names}))
            .into());
        }
        let path = self
            .root
            .join("workflows")
            .join(format!("{workflow}.asl.json"));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ActionError::internal(format!("cannot read {}: {e}", path.display())))?;
        let template = std::fs::read_to_string(self.root.join("template.yaml")).unwrap_or_default();
        let subs = substitutions(&template);
        let text = substitute(&text, |placeholder| {
            subs.get(placeholder)
                .map(|package| self.arns.function(package))
                .or_else(|| {
                    // Without template.yaml's mapping: the package named like the
                    // placeholder (CreateUserFunctionArn → create-user).
                    placeholder
                        .strip_suffix("FunctionArn")
                        .map(|base| self.arns.function(&kebab(base)))
                })
        })
        .map_err(|e| crate::DefinitionError::top("", e))?;
        Ok(StateMachine::parse(&text)?)
    }
}

fn kebab(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Replace every `${NAME}` of `text` with `resolve(NAME)`; an unknown name is an error.
pub fn substitute(text: &str, resolve: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "an unclosed ${ placeholder".to_owned())?;
        let name = &after[..end];
        out.push_str(&resolve(name).ok_or_else(|| {
            format!("the placeholder ${{{name}}} is not in template.yaml's DefinitionSubstitutions")
        })?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `template.yaml`'s `DefinitionSubstitutions` that name functions: placeholder →
/// package (`CreateUserFunctionArn` → `create-user`), through `!GetAtt R.Arn` and the
/// resource `R`'s `CodeUri: functions/<package>`. A line reader for the template's own
/// layout (two-space indents), not a YAML parser.
pub fn substitutions(template: &str) -> BTreeMap<String, String> {
    // Resource name → its CodeUri package.
    let mut packages: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in template.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if indent == 2 && t.ends_with(':') && !t.starts_with('#') {
            current = Some(t.trim_end_matches(':').to_owned());
        } else if let (Some(r), Some(uri)) = (&current, t.strip_prefix("CodeUri:")) {
            let uri = uri.trim().trim_matches(|c| c == '"' || c == '\'');
            if let Some(pkg) = uri.strip_prefix("functions/") {
                packages.insert(r.clone(), pkg.trim_end_matches('/').to_owned());
            }
        }
    }
    let mut out = BTreeMap::new();
    let mut in_subs: Option<usize> = None;
    for line in template.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if t == "DefinitionSubstitutions:" {
            in_subs = Some(indent);
            continue;
        }
        if let Some(base) = in_subs {
            if t.is_empty() {
                continue;
            }
            if indent <= base {
                in_subs = None;
                continue;
            }
            if let Some((key, value)) = t.split_once(':') {
                let resource = value
                    .trim()
                    .strip_prefix("!GetAtt")
                    .map(|r| r.trim().trim_end_matches(".Arn").to_owned());
                if let Some(pkg) = resource.and_then(|r| packages.get(&r)) {
                    out.insert(key.trim().to_owned(), pkg.clone());
                }
            }
        }
    }
    out
}

/// A Lambda function's timeout when nothing says otherwise: `template.yaml`'s
/// `Globals.Function.Timeout`.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The variable that sets [`LocalActions::with_function_timeout`] in seconds.
pub const FUNCTION_TIMEOUT_ENV: &str = "ACTIONDO_WORKFLOW_FUNCTION_TIMEOUT_SECS";

/// Runs Lambda Tasks as the catalog's actions, in-process on an executor.
///
/// Each call gets the deadline a Lambda invocation would have (now + the function
/// timeout), so an action's lease is what it is in AWS: a call interrupted by a killed
/// process is taken over by a redrive once that lease has expired.
#[derive(Debug, Clone)]
pub struct LocalActions {
    executor: Executor,
    catalog: Arc<Catalog>,
    function_timeout: Duration,
}

impl LocalActions {
    /// The actions of `catalog` on `executor`.
    pub fn new(executor: Executor, catalog: Arc<Catalog>) -> Self {
        Self {
            executor,
            catalog,
            function_timeout: FUNCTION_TIMEOUT,
        }
    }

    /// Deadlines `timeout` after each call (instead of [`FUNCTION_TIMEOUT`]).
    #[must_use]
    pub fn with_function_timeout(mut self, timeout: Duration) -> Self {
        self.function_timeout = timeout;
        self
    }

    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, StatesError> {
        let name = function_name(function);
        let action = self.catalog.get(name).cloned().ok_or_else(|| {
            StatesError::new(
                "Lambda.ResourceNotFoundException",
                format!("Function not found: {function} (no action {name:?} in the catalog)"),
            )
        })?;
        let handler = Handler::new(self.executor.clone(), action);
        let meta = Meta {
            request_id: uuid::Uuid::new_v4().to_string(),
            deadline_ms: Some(
                chrono::Utc::now().timestamp_millis()
                    + i64::try_from(self.function_timeout.as_millis()).unwrap_or(i64::MAX / 2),
            ),
            trace_id: None,
        };
        match direct::invoke(&handler, payload, &meta).await {
            Ok(Reply::Raw(raw)) => serde_json::from_str(raw.get()).map_err(|e| {
                StatesError::new("Lambda.Unknown", format!("an unreadable answer: {e}"))
            }),
            Ok(Reply::Json(v)) => Ok(v),
            Err(e) => Err(StatesError::from_action(&e)),
        }
    }
}

#[async_trait]
impl TaskRunner for LocalActions {
    async fn run(&self, call: TaskCall) -> Result<Value, StatesError> {
        if call.resource == LAMBDA_INVOKE {
            let function = call
                .parameters
                .get("FunctionName")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    StatesError::runtime(format!(
                        "the Task {:?} calls lambda:invoke without a FunctionName string",
                        call.state
                    ))
                })?
                .to_owned();
            let payload = call.parameters.get("Payload").cloned().unwrap_or(json!({}));
            let output = self.invoke(&function, payload).await?;
            // What the optimized integration returns; workflows select `$.Payload`.
            Ok(json!({"ExecutedVersion": "$LATEST", "Payload": output, "StatusCode": 200}))
        } else if call.resource.starts_with("arn:aws:lambda:") {
            self.invoke(&call.resource, call.parameters).await
        } else {
            Err(StatesError::runtime(format!(
                "the resource {} of Task {:?} is not available locally (Lambda functions only: {LAMBDA_INVOKE} or a function ARN)",
                call.resource, call.state
            )))
        }
    }
}

/// The local workflow service: the CLI's `actiondo workflow` and `actiondo serve`.
#[derive(Debug, Clone)]
pub struct LocalWorkflows {
    project: Project,
    store: Arc<WorkflowStore>,
    tasks: Arc<dyn TaskRunner>,
    timer: Arc<dyn Timer>,
    owner: String,
}

impl LocalWorkflows {
    /// Workflows of `project`, executions in `store`, Tasks run by `tasks`, time from
    /// `timer`.
    pub fn new(
        project: Project,
        store: Arc<WorkflowStore>,
        tasks: Arc<dyn TaskRunner>,
        timer: Arc<dyn Timer>,
    ) -> Self {
        Self {
            project,
            store,
            tasks,
            timer,
            owner: format!("pid:{}:{}", std::process::id(), uuid::Uuid::new_v4()),
        }
    }

    /// The same service acting as `owner` (the process that created an execution hands
    /// it to a background process: `actiondo workflow start`).
    #[must_use]
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The owner id of this process's executions.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// The store.
    pub fn store(&self) -> &Arc<WorkflowStore> {
        &self.store
    }

    fn now(&self) -> i64 {
        self.timer.now_ms()
    }

    /// Create execution `name` of `workflow` (or find it: same name and input). The
    /// definition is checked first, so a broken one starts nothing.
    pub fn create(
        &self,
        workflow: &str,
        name: &str,
        input: &Value,
    ) -> Result<Created, WorkflowError> {
        validate_name(name)?;
        self.project.machine(workflow)?;
        validate_input(input)?;
        let arn = self.project.arns.execution(workflow, name);
        self.store
            .create(workflow, name, &arn, input, &self.owner, self.now())
    }

    /// Start execution `name` of `workflow` and wait for its end.
    pub async fn run(
        &self,
        workflow: &str,
        name: &str,
        input: &Value,
    ) -> Result<ExecutionRecord, WorkflowError> {
        match self.create(workflow, name, input)? {
            Created::New(rec) => self.drive(rec).await,
            Created::Existing(rec) => Ok(rec),
        }
    }

    /// Start execution `name` of `workflow` in the background (a tokio task of this
    /// process) and return at once.
    pub fn start(
        &self,
        workflow: &str,
        name: &str,
        input: &Value,
    ) -> Result<Created, WorkflowError> {
        let created = self.create(workflow, name, input)?;
        if let Created::New(rec) = &created {
            self.spawn(rec.clone());
        }
        Ok(created)
    }

    fn spawn(&self, rec: ExecutionRecord) {
        let this = self.clone();
        tokio::spawn(async move {
            let (w, n) = (rec.workflow.clone(), rec.name.clone());
            if let Err(e) = this.drive(rec).await {
                tracing::error!(workflow = w, execution = n, error = %e, "the workflow execution stopped");
            }
        });
    }

    /// Redrive a failed, timed-out or interrupted execution and wait for its end.
    pub async fn redrive(
        &self,
        workflow: &str,
        name: &str,
    ) -> Result<ExecutionRecord, WorkflowError> {
        self.project.machine(workflow)?;
        let rec = self
            .store
            .claim_redrive(workflow, name, &self.owner, self.now())?;
        self.drive(rec).await
    }

    /// Redrive in the background; returns the execution as claimed.
    pub fn start_redrive(
        &self,
        workflow: &str,
        name: &str,
    ) -> Result<ExecutionRecord, WorkflowError> {
        self.project.machine(workflow)?;
        let rec = self
            .store
            .claim_redrive(workflow, name, &self.owner, self.now())?;
        self.spawn(rec.clone());
        Ok(rec)
    }

    /// Continue an execution this process created but has not run (`actiondo workflow
    /// start` creates, then a background process drives).
    pub async fn resume_owned(
        &self,
        rec: ExecutionRecord,
    ) -> Result<ExecutionRecord, WorkflowError> {
        self.drive(rec).await
    }

    /// The execution `name` of `workflow`.
    pub fn describe(&self, workflow: &str, name: &str) -> Result<ExecutionRecord, WorkflowError> {
        self.store.get(workflow, name)?.ok_or_else(|| {
            ActionError::not_found(format!(
                "there is no execution {name:?} of workflow {workflow}"
            ))
            .with_details(json!({"workflow": workflow, "executionName": name}))
            .into()
        })
    }

    /// The events of execution `name` of `workflow`.
    pub fn history(&self, workflow: &str, name: &str) -> Result<Vec<Event>, WorkflowError> {
        self.describe(workflow, name)?;
        self.store.events(workflow, name)
    }

    /// Run `rec` (owned by this process) from where its history says, to its end.
    async fn drive(&self, rec: ExecutionRecord) -> Result<ExecutionRecord, WorkflowError> {
        let machine = self.project.machine(&rec.workflow)?;
        let events = self.store.events(&rec.workflow, &rec.name)?;
        let (from, input) = match resume_point(&events) {
            Some(point) if rec.redrive_count > 0 => point,
            _ => (machine.start_at.clone(), rec.input.clone()),
        };
        let info = ExecutionInfo {
            id: rec.arn.clone(),
            name: rec.name.clone(),
            start_time: rfc3339_ms(rec.start_ms),
            input: rec.input.clone(),
            role_arn: format!(
                "arn:aws:iam::{}:role/actiondo-local",
                self.project.arns.account
            ),
            redrive_count: rec.redrive_count,
            state_machine_id: self.project.arns.state_machine(&rec.workflow),
            state_machine_name: rec.workflow.clone(),
        };
        let history = StoredHistory {
            store: &self.store,
            workflow: &rec.workflow,
            name: &rec.name,
        };
        let engine = Engine {
            tasks: self.tasks.as_ref(),
            timer: self.timer.as_ref(),
            history: &history,
            info: &info,
        };
        // The lease is renewed in real time while the engine runs.
        let heartbeat = {
            let store = Arc::clone(&self.store);
            let (w, n, o) = (rec.workflow.clone(), rec.name.clone(), self.owner.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(store.lease() / 3);
                loop {
                    tick.tick().await;
                    let now = chrono::Utc::now().timestamp_millis();
                    if !matches!(store.renew(&w, &n, &o, now), Ok(true)) {
                        break;
                    }
                }
            })
        };
        // The execution's TimeoutSeconds counts from its start, or from its redrive.
        let started = if rec.redrive_count > 0 {
            self.now()
        } else {
            rec.start_ms
        };
        let outcome = engine.run(&machine, &from, input, started).await;
        heartbeat.abort();
        let outcome = outcome?;
        let now = self.now();
        let (status, output, error) = match &outcome {
            Outcome::Succeeded(o) => (Status::Succeeded, Some(o), None),
            Outcome::Failed(e) => (
                Status::Failed,
                None,
                Some((e.error.as_str(), e.cause.as_str())),
            ),
            Outcome::TimedOut(e) => (
                Status::TimedOut,
                None,
                Some((e.error.as_str(), e.cause.as_str())),
            ),
        };
        self.store.finish(
            &rec.workflow,
            &rec.name,
            &self.owner,
            status,
            output,
            error,
            now,
        )?;
        self.describe(&rec.workflow, &rec.name)
    }
}

/// Step Functions' rule for execution names: 1 to 80 characters; no whitespace, control
/// character or any of `< > { } [ ] ? * " # % \ ^ | ~ ` $ & , ; : /`.
pub fn validate_name(name: &str) -> Result<(), ActionError> {
    let bad =
        |c: char| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c);
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(bad) {
        return Err(ActionError::validation(format!(
            "{name:?} cannot name a workflow execution: 1 to 80 characters, no whitespace and none of < > {{ }} [ ] ? * \" # % \\ ^ | ~ ` $ & , ; : /"
        )));
    }
    Ok(())
}

/// StartExecution's limit on the execution input: its JSON text at most
/// [`PAYLOAD_LIMIT_BYTES`](crate::error::PAYLOAD_LIMIT_BYTES) bytes. Step Functions refuses
/// a larger input with a validation error, and so does the local service: nothing
/// starts.
pub fn validate_input(input: &Value) -> Result<(), ActionError> {
    let bytes = crate::error::payload_bytes(input);
    let limit = crate::error::PAYLOAD_LIMIT_BYTES;
    if bytes > limit {
        return Err(ActionError::validation(format!(
            "the execution input is {bytes} bytes; Step Functions takes at most {limit} bytes (256 KiB) of JSON"
        ))
        .with_details(json!({"bytes": bytes, "limit": limit})));
    }
    Ok(())
}

/// The folder of the SQLite file of a `sqlite:PATH` store, for [`WorkflowStore::open`].
pub fn store_path(config: &actiondo::StoreConfig) -> Result<Option<&FsPath>, ActionError> {
    match config {
        actiondo::StoreConfig::Sqlite(path) => Ok(Some(path.as_path())),
        actiondo::StoreConfig::SqliteMemory => Ok(None),
        other => Err(ActionError::validation(format!(
            "local workflows keep their executions in the embedded store; --store {} is not supported (use sqlite or sqlite:PATH, or run the workflow on Step Functions)",
            other.kind()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_substitutions_name_packages() {
        let template = "Resources:\n  CreateUserFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: functions/create-user\n  Machine:\n    Properties:\n      DefinitionSubstitutions:\n        CreateUserFunctionArn: !GetAtt CreateUserFunction.Arn\n      Policies:\n        - x\n";
        let subs = substitutions(template);
        assert_eq!(
            subs.get("CreateUserFunctionArn").map(String::as_str),
            Some("create-user")
        );
        assert_eq!(subs.len(), 1);
    }

    #[test]
    fn function_names_come_from_arns() {
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:1:function:send-email"),
            "send-email"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:1:function:send-email:live"),
            "send-email"
        );
        assert_eq!(function_name("send-email"), "send-email");
    }
}
