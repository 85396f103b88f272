//! workflow.do through the router: start and inspect Step Functions executions.
//!
//! - `POST /workflows/{name}`: the body is the execution's input; the execution's name is
//!   the `Idempotency-Key` (else the SHA-256 of the canonical input), so a duplicate start
//!   is the same execution: Step Functions answers a running duplicate with the same
//!   execution, and a finished one with `ExecutionAlreadyExists`, which the router turns
//!   into that execution's description (`Idempotent-Replayed: true`) when the input is the
//!   same, or `ActionDo.PayloadMismatch` when it is not.
//! - `GET /workflows/{name}/executions?status=&limit=&cursor=`: its executions, newest
//!   first (`ListExecutions`), a page at a time ([`list_request`], [`list_body`]).
//! - `GET /workflows/{name}/executions/{id}`: the execution's status, input, output and
//!   error.
//! - `GET /workflows/{name}/executions/{id}/history`: its events (`GetExecutionHistory`).
//! - `POST /workflows/{name}/executions/{id}/redrive`: `RedriveExecution` of a failed
//!   execution, then its description.
//!
//! The routes call a [`WorkflowService`]: [`Workflows`] (Step Functions) here, the local
//! engine in `actiondo serve` (`actiondo-workflow`, which this crate does not link: the
//! router's Lambda binary has no SQLite). Both answer the same bodies.
//!
//! The state machines come from `ACTIONDO_WORKFLOW_<NAME>` (upper snake case; the value
//! is the state machine's ARN), which `template.yaml` sets; the client's endpoint from the
//! standard AWS settings (`AWS_ENDPOINT_URL_SFN` for a local Step Functions).

use std::collections::BTreeMap;

use actiondo::ActionError;
use actiondo::aws::signed::{AwsError, AwsService, SignedClient};
use async_trait::async_trait;
use aws_smithy_types::date_time::Format;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The prefix of the variables naming the state machines.
pub const WORKFLOW_ENV_PREFIX: &str = "ACTIONDO_WORKFLOW_";

/// The longest execution name Step Functions accepts.
pub const MAX_EXECUTION_NAME: usize = 80;

/// What a start did.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// A new execution (or Step Functions' answer to a duplicate of a running one).
    Started(Value),
    /// The execution of that name had already run with the same input: its description.
    Existing(Value),
}

/// What the workflow routes call.
#[async_trait]
pub trait WorkflowService: Send + Sync + std::fmt::Debug + 'static {
    /// Start workflow `name` with `input` as execution `execution` (its idempotency
    /// key): a new execution, the existing one with the same input, or
    /// `ActionDo.PayloadMismatch`.
    async fn start(
        &self,
        name: &str,
        execution: &str,
        input: &Value,
    ) -> Result<Started, ActionError>;
    /// `{workflow, executionName, executionArn, status, startDate, stopDate?, input,
    /// output?, error?: {error, cause}}`.
    async fn describe(&self, name: &str, execution: &str) -> Result<Value, ActionError>;
    /// `{events: [{id, previousEventId, timestamp, type, details}]}`, oldest first.
    async fn history(&self, name: &str, execution: &str) -> Result<Value, ActionError>;
    /// Redrive a failed execution; its description once redriven.
    async fn redrive(&self, name: &str, execution: &str) -> Result<Value, ActionError>;
    /// One page of the executions of workflow `name`, newest first: at most
    /// `query.limit`, of `query.status` only when given, after `query.token` (the
    /// `next_token` of the previous page). An unknown workflow is `ActionDo.NotFound`, a
    /// token this service did not write `ActionDo.Validation`.
    async fn list(&self, name: &str, query: &ListQuery) -> Result<ExecutionPage, ActionError>;
    /// Whether this service runs workflow `name` (what `GET /workflows` calls `deployed`).
    fn runs(&self, name: &str) -> bool;
}

/// The statuses `GET /workflows/{name}/executions?status=` filters on: Step Functions'
/// (the local engine has no `ABORTED`: that filter lists nothing there).
pub const EXECUTION_STATUSES: [&str; 5] =
    ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"];

/// The page size of `GET /workflows/{name}/executions` without `limit`.
pub const DEFAULT_LIST_LIMIT: usize = 20;

/// The largest `limit` of `GET /workflows/{name}/executions`.
pub const MAX_LIST_LIMIT: usize = 100;

/// One page of executions asked of a [`WorkflowService`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only the executions of this status (one of [`EXECUTION_STATUSES`]).
    pub status: Option<String>,
    /// At most this many (1 to [`MAX_LIST_LIMIT`]).
    pub limit: usize,
    /// Where the page starts: the service's [`ExecutionPage::next_token`] of the page
    /// before (`None`: the newest).
    pub token: Option<String>,
}

/// One execution in a list: the fields of Step Functions' `ListExecutions` items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummary {
    /// The execution's name (its idempotency key).
    pub execution_name: String,
    /// Its status (Step Functions' names).
    pub status: String,
    /// When it started, RFC 3339.
    pub start_date: String,
    /// When it ended, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_date: Option<String>,
    /// How many times it was redriven, when the service says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_count: Option<u32>,
}

/// One page of a workflow's executions, as a [`WorkflowService`] answers it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecutionPage {
    /// The executions, newest first.
    pub executions: Vec<ExecutionSummary>,
    /// The service's token of the next page, when there may be one.
    pub next_token: Option<String>,
}

/// What the API's cursor holds: the query it pages (workflow and status, so that a cursor
/// is never used for another query) and the service's token.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    w: String,
    s: Option<String>,
    t: String,
}

/// The API's opaque cursor after `page` of `query` on workflow `name`: URL-safe base64
/// of the query and the service's token.
pub fn encode_cursor(name: &str, query: &ListQuery, token: &str) -> String {
    let cursor = Cursor {
        w: name.to_owned(),
        s: query.status.clone(),
        t: token.to_owned(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&cursor).unwrap_or_default())
}

fn decode_cursor(name: &str, status: Option<&str>, cursor: &str) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| "is not a cursor this API wrote".to_owned())?;
    let cursor: Cursor =
        serde_json::from_slice(&bytes).map_err(|_| "is not a cursor this API wrote".to_owned())?;
    if cursor.w != name || cursor.s.as_deref() != status {
        return Err(
            "belongs to another query (another workflow or status); page from the newest again"
                .to_owned(),
        );
    }
    Ok(cursor.t)
}

/// Read `status`, `limit` and `cursor` of `GET /workflows/{name}/executions`' query
/// string: `status` one of [`EXECUTION_STATUSES`], `limit` 1 to [`MAX_LIST_LIMIT`]
/// ([`DEFAULT_LIST_LIMIT`] without), `cursor` one this API wrote for the same workflow
/// and status; any other parameter, or one given twice, is refused, every problem named
/// (`ActionDo.Validation`).
pub fn list_request(name: &str, query: &str) -> Result<ListQuery, ActionError> {
    let mut errors = actiondo::FieldErrors::new();
    let (mut status, mut limit, mut cursor) = (None, None, None);
    for (field, value) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match field.as_ref() {
            "status" => &mut status,
            "limit" => &mut limit,
            "cursor" => &mut cursor,
            other => {
                errors.add(
                    other.to_owned(),
                    "unknown parameter; use status, limit, cursor",
                );
                continue;
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            errors.add(field.into_owned(), "given twice");
        }
    }
    list_fields(name, status, limit, cursor, errors)
}

/// [`list_request`] with its three parameters given apart (`actiondo workflow
/// executions`).
pub fn list_query(
    name: &str,
    status: Option<&str>,
    limit: usize,
    cursor: Option<&str>,
) -> Result<ListQuery, ActionError> {
    list_fields(
        name,
        status.map(str::to_owned),
        Some(limit.to_string()),
        cursor.map(str::to_owned),
        actiondo::FieldErrors::new(),
    )
}

fn list_fields(
    name: &str,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    mut errors: actiondo::FieldErrors,
) -> Result<ListQuery, ActionError> {
    let status = status.filter(|s| !s.is_empty());
    if let Some(s) = &status
        && !EXECUTION_STATUSES.contains(&s.as_str())
    {
        errors.add(
            "status",
            format!(
                "must be one of {}, got {s:?}",
                EXECUTION_STATUSES.join(", ")
            ),
        );
    }
    let limit = match limit {
        None => DEFAULT_LIST_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
            _ => {
                errors.add(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIST_LIMIT}, got {text:?}"),
                );
                DEFAULT_LIST_LIMIT
            }
        },
    };
    let token = match cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match decode_cursor(name, status.as_deref(), &c) {
            Ok(token) => Some(token),
            Err(why) => {
                errors.add("cursor", why);
                None
            }
        },
    };
    errors.into_result_with("the executions query is invalid")?;
    Ok(ListQuery {
        status,
        limit,
        token,
    })
}

/// The body of `GET /workflows/{name}/executions`: `{workflow, executions, cursor?}`
/// (`cursor`: pass it back for the next page; absent on the last one).
pub fn list_body(name: &str, query: &ListQuery, page: &ExecutionPage) -> Value {
    let mut body = json!({"workflow": name, "executions": page.executions});
    if let Some(token) = &page.next_token {
        body["cursor"] = json!(encode_cursor(name, query, token));
    }
    body
}

/// The state machines the router may start, and a Step Functions client: five operations
/// of its JSON protocol (`StartExecution`, `DescribeExecution`, `GetExecutionHistory`,
/// `ListExecutions`, `RedriveExecution`) as requests signed by
/// [`SignedClient`] (`actiondo::aws::signed`), not `aws-sdk-sfn`, which would add its
/// size to the router's Lambda binary (BENCHMARKS.md, "The router").
#[derive(Debug, Clone)]
pub struct Workflows {
    /// The client, or why there is none (a configuration without a region): each call
    /// then fails with that reason, as an SDK client without a region would.
    client: Result<SignedClient, String>,
    machines: BTreeMap<String, String>,
}

/// The `X-Amz-Target` of each operation.
mod target {
    pub(super) const START: &str = "AWSStepFunctions.StartExecution";
    pub(super) const DESCRIBE: &str = "AWSStepFunctions.DescribeExecution";
    pub(super) const HISTORY: &str = "AWSStepFunctions.GetExecutionHistory";
    pub(super) const LIST: &str = "AWSStepFunctions.ListExecutions";
    pub(super) const REDRIVE: &str = "AWSStepFunctions.RedriveExecution";
}

impl Workflows {
    /// `machines` (workflow name → state machine ARN) through `client` (a [`SignedClient`]
    /// of [`AwsService::STEP_FUNCTIONS`]).
    pub fn new(client: SignedClient, machines: BTreeMap<String, String>) -> Self {
        Self {
            client: Ok(client),
            machines,
        }
    }

    /// The state machines named by `ACTIONDO_WORKFLOW_*` in `settings`
    /// (`ACTIONDO_WORKFLOW_USER_ONBOARDING` → `user-onboarding`).
    pub fn machines(settings: &actiondo::config::Settings) -> BTreeMap<String, String> {
        settings
            .with_prefix(WORKFLOW_ENV_PREFIX)
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, arn)| {
                (
                    name.to_ascii_lowercase().replace('_', "-"),
                    arn.trim().to_owned(),
                )
            })
            .collect()
    }

    /// The state machines of [`Self::machines`] with a client built from `config` (in
    /// Lambda, [`actiondo::aws::sdk_config_from_settings`]; its endpoint
    /// `AWS_ENDPOINT_URL_SFN`, else `AWS_ENDPOINT_URL`, else the regional one); `None`
    /// when no `ACTIONDO_WORKFLOW_*` is set.
    pub fn from_settings(
        settings: &actiondo::config::Settings,
        config: &aws_types::SdkConfig,
    ) -> Option<Self> {
        let machines = Self::machines(settings);
        if machines.is_empty() {
            return None;
        }
        Some(Self {
            client: SignedClient::new(config, AwsService::STEP_FUNCTIONS)
                .map_err(|e| e.to_string()),
            machines,
        })
    }

    /// The workflow names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.machines.keys().map(String::as_str)
    }

    fn machine(&self, name: &str) -> Result<&str, ActionError> {
        self.machines.get(name).map(String::as_str).ok_or_else(|| {
            let known: Vec<&str> = self.names().collect();
            ActionError::not_found(format!(
                "there is no workflow {name:?}; known: {}",
                if known.is_empty() {
                    "none (set ACTIONDO_WORKFLOW_<NAME> to a state machine ARN)".to_owned()
                } else {
                    known.join(", ")
                }
            ))
            .with_details(json!({"workflow": name, "known": known}))
        })
    }

    /// Whether `name` is one of the state machines.
    pub fn has(&self, name: &str) -> bool {
        self.machines.contains_key(name)
    }

    /// The execution ARN of `execution` of workflow `name`.
    fn arn(&self, name: &str, execution: &str) -> Result<String, ActionError> {
        let machine = self.machine(name)?;
        validate_execution_name(execution)?;
        execution_arn(machine, execution).ok_or_else(|| {
            ActionError::internal(format!(
                "the ARN of workflow {name} is not a state machine ARN: {machine}"
            ))
        })
    }

    fn not_found(name: &str, execution: &str) -> ActionError {
        ActionError::not_found(format!(
            "there is no execution {execution:?} of workflow {name}"
        ))
        .with_details(json!({"workflow": name, "executionName": execution}))
    }

    /// Call operation `target` with `input`: the answer read as `T`, or the service's
    /// error (`Err(Ok(_))`, for the caller to map its codes), or the action error of a
    /// failure no operation maps (`Err(Err(_))`: see [`sfn_error`]).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        doing: &str,
        name: &str,
        target: &'static str,
        input: &Value,
    ) -> Result<T, Failure> {
        let client = self.client.as_ref().map_err(|why| {
            Failure::Other(ActionError::internal(format!(
                "{doing} workflow {name} failed: Step Functions is not configured: {why}"
            )))
        })?;
        let output = client
            .call_json(target, input)
            .await
            .map_err(Failure::Service)?;
        serde_json::from_value(output).map_err(|e| {
            tracing::warn!(operation = target, error = %e, "an unreadable Step Functions answer");
            Failure::Other(ActionError::transient(format!(
                "{doing} workflow {name} failed: Step Functions answered something unreadable; try again {LOGGED}"
            )))
        })
    }

    /// The events of execution `execution` of workflow `name` (`GetExecutionHistory`,
    /// every page).
    pub async fn history(&self, name: &str, execution: &str) -> Result<Value, ActionError> {
        const DOING: &str = "reading the history of";
        let arn = self.arn(name, execution)?;
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut input = json!({"executionArn": arn, "maxResults": 1000});
            if let Some(t) = token.take() {
                input["nextToken"] = json!(t);
            }
            let page: HistoryPage = match self.call(DOING, name, target::HISTORY, &input).await {
                Ok(p) => p,
                Err(Failure::Service(e)) if e.code() == Some("ExecutionDoesNotExist") => {
                    return Err(Self::not_found(name, execution));
                }
                Err(e) => return Err(e.into_action_error(DOING, name)),
            };
            for e in &page.events {
                events.push(json!({
                    "id": e.id,
                    "previousEventId": e.previous_event_id,
                    "timestamp": date(e.timestamp.unwrap_or_default()),
                    "type": e.kind,
                    "details": event_details(e),
                }));
            }
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(json!({"workflow": name, "executionName": execution, "events": events}))
    }

    /// `RedriveExecution` of execution `execution` of workflow `name`, then its
    /// description.
    pub async fn redrive(&self, name: &str, execution: &str) -> Result<Value, ActionError> {
        const DOING: &str = "redriving";
        let arn = self.arn(name, execution)?;
        // The operation's idempotency token, which the SDKs fill in: one per redrive asked,
        // the same across the client's retries of it.
        let input = json!({"executionArn": arn, "clientToken": client_token()});
        match self
            .call::<Value>(DOING, name, target::REDRIVE, &input)
            .await
        {
            Ok(_) => self.describe(name, execution).await,
            Err(Failure::Service(e)) => match e.code() {
                Some("ExecutionDoesNotExist") => Err(Self::not_found(name, execution)),
                Some("ExecutionNotRedrivable") => {
                    let why = match &e {
                        AwsError::Service { message, .. } if !message.is_empty() => {
                            message.as_str()
                        }
                        _ => "not redrivable",
                    };
                    Err(ActionError::conflict(format!(
                        "the execution {execution:?} of {name} cannot be redriven: {why}"
                    )))
                }
                _ => Err(sfn_error(DOING, name, &e)),
            },
            Err(e) => Err(e.into_action_error(DOING, name)),
        }
    }

    /// One page of the executions of workflow `name` (`ListExecutions`, newest first,
    /// with `statusFilter`, `maxResults` and `nextToken`).
    pub async fn list(&self, name: &str, query: &ListQuery) -> Result<ExecutionPage, ActionError> {
        const DOING: &str = "listing the executions of";
        let machine = self.machine(name)?;
        let mut input = json!({
            "stateMachineArn": machine,
            "maxResults": i32::try_from(query.limit).unwrap_or(i32::MAX),
        });
        if let Some(status) = &query.status {
            input["statusFilter"] = json!(status);
        }
        if let Some(token) = &query.token {
            input["nextToken"] = json!(token);
        }
        let out: ListPage = match self.call(DOING, name, target::LIST, &input).await {
            Ok(out) => out,
            Err(Failure::Service(e)) => match e.code() {
                Some("InvalidToken") => {
                    return Err(ActionError::validation(
                        "the cursor is not valid any more (Step Functions' page tokens last 24 hours); page from the newest again",
                    ));
                }
                Some("StateMachineDoesNotExist") => {
                    return Err(ActionError::not_found(format!(
                        "the state machine of workflow {name} does not exist"
                    ))
                    .with_details(json!({"workflow": name})));
                }
                _ => return Err(sfn_error(DOING, name, &e)),
            },
            Err(e) => return Err(e.into_action_error(DOING, name)),
        };
        let executions = out
            .executions
            .into_iter()
            .map(|x| ExecutionSummary {
                execution_name: x.name,
                status: x.status,
                start_date: date(x.start_date.unwrap_or_default()).unwrap_or_default(),
                stop_date: x.stop_date.and_then(date),
                redrive_count: x.redrive_count.and_then(|n| u32::try_from(n).ok()),
            })
            .collect();
        Ok(ExecutionPage {
            executions,
            next_token: out.next_token,
        })
    }

    /// Start workflow `name` with `input` as execution `execution`.
    pub async fn start(
        &self,
        name: &str,
        execution: &str,
        input: &Value,
    ) -> Result<Started, ActionError> {
        const DOING: &str = "starting";
        let machine = self.machine(name)?;
        validate_execution_name(execution)?;
        let request = json!({
            "stateMachineArn": machine,
            "name": execution,
            "input": input.to_string(),
        });
        match self
            .call::<StartOutput>(DOING, name, target::START, &request)
            .await
        {
            Ok(out) => Ok(Started::Started(json!({
                "workflow": name,
                "executionName": execution,
                "executionArn": out.execution_arn,
                "startDate": date(out.start_date.unwrap_or_default()),
                "status": "RUNNING",
            }))),
            Err(Failure::Service(e)) if e.code() == Some("ExecutionAlreadyExists") => {
                let existing = self.describe(name, execution).await?;
                if existing.get("input") == Some(input) {
                    Ok(Started::Existing(existing))
                } else {
                    Err(ActionError::payload_mismatch(format!(
                        "the execution {execution:?} of {name} already exists with another input; use another Idempotency-Key"
                    ))
                    .with_details(json!({"workflow": name, "executionName": execution})))
                }
            }
            Err(e) => Err(e.into_action_error(DOING, name)),
        }
    }

    /// The execution `execution` of workflow `name`.
    pub async fn describe(&self, name: &str, execution: &str) -> Result<Value, ActionError> {
        const DOING: &str = "describing";
        let machine = self.machine(name)?;
        validate_execution_name(execution)?;
        let arn = execution_arn(machine, execution).ok_or_else(|| {
            ActionError::internal(format!(
                "the ARN of workflow {name} is not a state machine ARN: {machine}"
            ))
        })?;
        match self
            .call::<DescribeOutput>(DOING, name, target::DESCRIBE, &json!({"executionArn": arn}))
            .await
        {
            Ok(out) => Ok(describe_output(name, execution, &out)),
            Err(Failure::Service(e)) if e.code() == Some("ExecutionDoesNotExist") => {
                Err(Self::not_found(name, execution))
            }
            Err(e) => Err(e.into_action_error(DOING, name)),
        }
    }
}

#[async_trait]
impl WorkflowService for Workflows {
    async fn start(
        &self,
        name: &str,
        execution: &str,
        input: &Value,
    ) -> Result<Started, ActionError> {
        Workflows::start(self, name, execution, input).await
    }
    async fn describe(&self, name: &str, execution: &str) -> Result<Value, ActionError> {
        Workflows::describe(self, name, execution).await
    }
    async fn history(&self, name: &str, execution: &str) -> Result<Value, ActionError> {
        Workflows::history(self, name, execution).await
    }
    async fn redrive(&self, name: &str, execution: &str) -> Result<Value, ActionError> {
        Workflows::redrive(self, name, execution).await
    }
    async fn list(&self, name: &str, query: &ListQuery) -> Result<ExecutionPage, ActionError> {
        Workflows::list(self, name, query).await
    }
    fn runs(&self, name: &str) -> bool {
        self.has(name)
    }
}

/// What the five operations answer, read leniently as the SDK reads them: a missing
/// member is its default, unknown members are ignored. Timestamps are epoch seconds
/// (JSON numbers, fractions allowed: the `awsJson1.0` protocol's timestamp format).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartOutput {
    #[serde(default)]
    execution_arn: String,
    #[serde(default)]
    start_date: Option<f64>,
}

/// `DescribeExecution`'s answer, the members the routes show.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeOutput {
    #[serde(default)]
    execution_arn: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    start_date: Option<f64>,
    #[serde(default)]
    stop_date: Option<f64>,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

/// `ListExecutions`' answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    #[serde(default)]
    executions: Vec<ListItem>,
    #[serde(default)]
    next_token: Option<String>,
}

/// One `ExecutionListItem`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListItem {
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    start_date: Option<f64>,
    #[serde(default)]
    stop_date: Option<f64>,
    #[serde(default)]
    redrive_count: Option<i64>,
}

/// `GetExecutionHistory`'s answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryPage {
    #[serde(default)]
    events: Vec<HistoryEvent>,
    #[serde(default)]
    next_token: Option<String>,
}

/// One `HistoryEvent`: its number, the one before (0 for the first), when, its type, and
/// the `*EventDetails` member of its type (only those the routes show are read).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryEvent {
    #[serde(default)]
    id: i64,
    #[serde(default)]
    previous_event_id: i64,
    #[serde(default)]
    timestamp: Option<f64>,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    state_entered_event_details: Option<EventDetails>,
    #[serde(default)]
    state_exited_event_details: Option<EventDetails>,
    #[serde(default)]
    task_scheduled_event_details: Option<EventDetails>,
    #[serde(default)]
    task_succeeded_event_details: Option<EventDetails>,
    #[serde(default)]
    task_failed_event_details: Option<EventDetails>,
    #[serde(default)]
    execution_failed_event_details: Option<EventDetails>,
    #[serde(default)]
    execution_succeeded_event_details: Option<EventDetails>,
    #[serde(default)]
    execution_started_event_details: Option<EventDetails>,
}

/// The members of the `*EventDetails` the routes show (each type has some of them).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventDetails {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    parameters: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

/// A required member: empty when missing, as the SDK reads it.
fn required(member: &Option<String>) -> &str {
    member.as_deref().unwrap_or_default()
}

/// The details of a history event that the routes show: the state's name, input and
/// output, a Task's resource and parameters, an error and its cause. (A state's `name`
/// and a Task's `resource` and `parameters` are required members: empty when missing,
/// as the SDK reads them.)
fn event_details(e: &HistoryEvent) -> Value {
    let mut d = serde_json::Map::new();
    let mut put = |k: &str, v: Option<&str>, parse: bool| {
        if let Some(v) = v {
            d.insert(
                k.to_owned(),
                if parse { json_text(Some(v)) } else { json!(v) },
            );
        }
    };
    if let Some(x) = &e.state_entered_event_details {
        put("name", Some(required(&x.name)), false);
        put("input", x.input.as_deref(), true);
    }
    if let Some(x) = &e.state_exited_event_details {
        put("name", Some(required(&x.name)), false);
        put("output", x.output.as_deref(), true);
    }
    if let Some(x) = &e.task_scheduled_event_details {
        put("resource", Some(required(&x.resource)), false);
        put("parameters", Some(required(&x.parameters)), true);
    }
    if let Some(x) = &e.task_succeeded_event_details {
        put("output", x.output.as_deref(), true);
    }
    if let Some(x) = &e.task_failed_event_details {
        put("error", x.error.as_deref(), false);
        put("cause", x.cause.as_deref(), false);
    }
    if let Some(x) = &e.execution_failed_event_details {
        put("error", x.error.as_deref(), false);
        put("cause", x.cause.as_deref(), false);
    }
    if let Some(x) = &e.execution_succeeded_event_details {
        put("output", x.output.as_deref(), true);
    }
    if let Some(x) = &e.execution_started_event_details {
        put("input", x.input.as_deref(), true);
    }
    Value::Object(d)
}

/// The workflow definitions of `dir`: every `NAME.asl.json`, parsed, by `NAME` (what
/// `GET /workflows` serves). A file that is not JSON is an error naming it.
pub fn definitions_from_dir(dir: &std::path::Path) -> Result<BTreeMap<String, Value>, String> {
    let mut definitions = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".asl.json"))
        else {
            continue;
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let definition: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        definitions.insert(name.to_owned(), definition);
    }
    Ok(definitions)
}

/// `arn:…:stateMachine:M` → `arn:…:execution:M:NAME`.
pub fn execution_arn(machine_arn: &str, execution: &str) -> Option<String> {
    let (head, machine) = machine_arn.split_once(":stateMachine:")?;
    Some(format!("{head}:execution:{machine}:{execution}"))
}

/// Step Functions' rule for execution names: 1 to 80 characters, none of whitespace,
/// `< > { } [ ] ? * " # % \ ^ | ~ ` $ & , ; : /` or control characters.
pub fn validate_execution_name(name: &str) -> Result<(), ActionError> {
    let bad =
        |c: char| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c);
    if name.is_empty() || name.chars().count() > MAX_EXECUTION_NAME || name.chars().any(bad) {
        return Err(ActionError::validation(format!(
            "{name:?} cannot name a workflow execution: 1 to {MAX_EXECUTION_NAME} characters, no whitespace and none of < > {{ }} [ ] ? * \" # % \\ ^ | ~ ` $ & , ; : /"
        )));
    }
    Ok(())
}

/// Epoch seconds as the routes show times: RFC 3339 in UTC, as the SDK formats its
/// `DateTime` (`2026-03-01T12:00:00.123Z`).
fn date(epoch_seconds: f64) -> Option<String> {
    aws_smithy_types::DateTime::from_secs_f64(epoch_seconds)
        .fmt(Format::DateTime)
        .ok()
}

fn json_text(text: Option<&str>) -> Value {
    text.map_or(Value::Null, |t| {
        serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned()))
    })
}

fn describe_output(name: &str, execution: &str, out: &DescribeOutput) -> Value {
    let mut view = json!({
        "workflow": name,
        "executionName": execution,
        "executionArn": out.execution_arn,
        "status": out.status,
        "startDate": date(out.start_date.unwrap_or_default()),
        "input": json_text(out.input.as_deref()),
    });
    if let Some(stop) = out.stop_date {
        view["stopDate"] = json!(date(stop));
    }
    if out.output.is_some() {
        view["output"] = json_text(out.output.as_deref());
    }
    if out.error.is_some() || out.cause.is_some() {
        view["error"] = json!({"error": out.error, "cause": json_text(out.cause.as_deref())});
    }
    view
}

/// A random version 4 UUID, the idempotency token of a `RedriveExecution`.
fn client_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the time still makes the token differ from the last one.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Where the cause of a failure is: the log, in the span of the request (its id is in the
/// answer of a 5xx, `X-Request-Id`).
const LOGGED: &str = "(the log of this request has the cause)";

/// Why a call failed: the service's error, for the operation to map its own codes, or an
/// action error already.
enum Failure {
    Service(AwsError),
    Other(ActionError),
}

impl Failure {
    fn into_action_error(self, doing: &str, name: &str) -> ActionError {
        match self {
            Failure::Service(e) => sfn_error(doing, name, &e),
            Failure::Other(e) => e,
        }
    }
}

/// A failed Step Functions call that no operation maps: throttling, a 5xx answer and an
/// unreachable service are transient, the rest a deployment problem. The message says
/// what failed in plain words, with Step Functions' error code when it answered; its own
/// text (which names accounts, roles, ARNs) and the client's go to the log line only.
fn sfn_error(doing: &str, name: &str, err: &AwsError) -> ActionError {
    match err {
        AwsError::Service { code, status, .. } if err.is_retryable() => {
            tracing::warn!(workflow = name, error = %err, "a Step Functions call failed");
            ActionError::transient(format!(
                "{doing} workflow {name} failed: Step Functions answered {code} (HTTP {status}); try again {LOGGED}"
            ))
        }
        AwsError::Service { code, .. } if code == "InvalidResponse" => {
            tracing::warn!(workflow = name, error = %err, "an unreadable Step Functions answer");
            ActionError::transient(format!(
                "{doing} workflow {name} failed: Step Functions answered something unreadable; try again {LOGGED}"
            ))
        }
        AwsError::Service { code, status, .. } => {
            tracing::error!(workflow = name, error = %err, "a Step Functions call failed");
            ActionError::internal(format!(
                "{doing} workflow {name} failed: Step Functions answered {code} (HTTP {status}) {LOGGED}"
            ))
        }
        AwsError::Transport { timeout, .. } => {
            tracing::warn!(workflow = name, error = %err, "Step Functions did not answer");
            let how = if *timeout {
                "did not answer in time"
            } else {
                "could not be reached"
            };
            ActionError::transient(format!(
                "{doing} workflow {name} failed: Step Functions {how}; try again {LOGGED}"
            ))
        }
        AwsError::Credentials { .. } | AwsError::Request { .. } => {
            tracing::error!(workflow = name, error = %err, "a Step Functions request could not be sent");
            ActionError::internal(format!(
                "{doing} workflow {name} failed: the request to Step Functions could not be signed or built {LOGGED}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_arns_follow_the_state_machine() {
        assert_eq!(
            execution_arn(
                "arn:aws:states:eu-west-1:123456789012:stateMachine:user-onboarding-dev",
                "k1"
            )
            .as_deref(),
            Some("arn:aws:states:eu-west-1:123456789012:execution:user-onboarding-dev:k1")
        );
        assert_eq!(execution_arn("arn:aws:lambda:x", "k"), None);
    }

    #[test]
    fn list_requests_are_read_strictly() {
        let q = list_request("demo", "status=FAILED&limit=5").expect("ok");
        assert_eq!(q.status.as_deref(), Some("FAILED"));
        assert_eq!((q.limit, q.token.as_deref()), (5, None));
        assert_eq!(
            list_request("demo", "").expect("ok").limit,
            DEFAULT_LIST_LIMIT
        );
        assert_eq!(list_request("demo", "status=").expect("ok").status, None);

        let page = ExecutionPage {
            executions: Vec::new(),
            next_token: Some("tok/+=".to_owned()),
        };
        let body = list_body("demo", &q, &page);
        let cursor = body["cursor"].as_str().expect("a cursor");
        let again =
            list_request("demo", &format!("status=FAILED&limit=5&cursor={cursor}")).expect("ok");
        assert_eq!(again.token.as_deref(), Some("tok/+="));
        // The cursor of another query is refused: another workflow or status.
        for other in [
            format!("status=FAILED&cursor={cursor}"),
            format!("cursor={cursor}"),
        ] {
            let name = if other.starts_with("status") {
                "other"
            } else {
                "demo"
            };
            let err = list_request(name, &other).expect_err("another query");
            assert_eq!(err.kind(), actiondo::ErrorKind::Validation);
        }
        assert!(
            list_body("demo", &q, &ExecutionPage::default())
                .get("cursor")
                .is_none()
        );

        let err = list_request("demo", "limit=0&status=DONE&cursor=%%%&sort=asc&limit=2")
            .expect_err("bad");
        let details = err.details().expect("details").to_string();
        for field in ["limit", "status", "cursor", "sort"] {
            assert!(details.contains(field), "{field} in {details}");
        }
        for bad in ["limit=101", "limit=x", "limit=-1", "cursor=bm90IGpzb24"] {
            assert!(list_request("demo", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn execution_names_follow_step_functions_rules() {
        assert!(validate_execution_name("order-42_retry.1").is_ok());
        assert!(validate_execution_name(&"a".repeat(80)).is_ok());
        for bad in ["", "a b", "a#b", "a/b", "a:b", &"a".repeat(81)] {
            assert!(validate_execution_name(bad).is_err(), "{bad:?}");
        }
    }
}
