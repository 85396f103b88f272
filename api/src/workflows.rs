//! workflow.do through the router: start and inspect Step Functions executions.
//!
//! - `POST /workflows/{name}`: the body is the execution's input; the execution's name is
//!   the `Idempotency-Key` (else the SHA-256 of the canonical input), so a duplicate start
//!   is the same execution: Step Functions answers a running duplicate with the same
//!   execution, and a finished one with `ExecutionAlreadyExists`, which the router turns
//!   into that execution's description (`Idempotent-Replayed: true`) when the input is the
//!   same, or `ActionDo.PayloadMismatch` when it is not.
//! - `GET /workflows/{name}/executions/{id}`: the execution's status, input, output and
//!   error; `.../history` its events (`GetExecutionHistory`); `POST .../redrive` redrives
//!   it (`RedriveExecution`).
//!
//! The state machines come from `ACTIONDO_WORKFLOW_<NAME>` (upper snake case; the value
//! is the state machine's ARN), which `template.yaml` sets; the client's endpoint from the
//! standard AWS settings (`AWS_ENDPOINT_URL_SFN` for a local Step Functions).

use std::collections::BTreeMap;

use actiondo::ActionError;
use aws_sdk_sfn::config::http::HttpResponse;
use aws_sdk_sfn::error::{DisplayErrorContext, SdkError};
use aws_sdk_sfn::operation::describe_execution::{DescribeExecutionError, DescribeExecutionOutput};
use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryError;
use aws_sdk_sfn::operation::redrive_execution::RedriveExecutionError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_smithy_types::date_time::Format;
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

/// The state machines the router may start, and a Step Functions client.
#[derive(Debug, Clone)]
pub struct Workflows {
    client: aws_sdk_sfn::Client,
    machines: BTreeMap<String, String>,
}

impl Workflows {
    /// `machines` (workflow name → state machine ARN) through `client`.
    pub fn new(client: aws_sdk_sfn::Client, machines: BTreeMap<String, String>) -> Self {
        Self { client, machines }
    }

    /// The state machines named by `ACTIONDO_WORKFLOW_*` (`ACTIONDO_WORKFLOW_USER_ONBOARDING`
    /// → `user-onboarding`).
    pub fn machines_from_env() -> BTreeMap<String, String> {
        std::env::vars()
            .filter_map(|(var, arn)| {
                let name = var.strip_prefix(WORKFLOW_ENV_PREFIX)?;
                let arn = arn.trim();
                (!name.is_empty() && !arn.is_empty())
                    .then(|| (name.to_ascii_lowercase().replace('_', "-"), arn.to_owned()))
            })
            .collect()
    }

    /// The state machines of [`Self::machines_from_env`] with a client built from
    /// `config` (in Lambda, [`actiondo::aws::sdk_config_from_env`]); `None` when no
    /// `ACTIONDO_WORKFLOW_*` is set.
    pub fn from_env(config: &aws_types::SdkConfig) -> Option<Self> {
        let machines = Self::machines_from_env();
        if machines.is_empty() {
            return None;
        }
        Some(Self::new(aws_sdk_sfn::Client::new(config), machines))
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

    /// Start workflow `name` with `input` as execution `execution`.
    pub async fn start(
        &self,
        name: &str,
        execution: &str,
        input: &Value,
    ) -> Result<Started, ActionError> {
        let machine = self.machine(name)?;
        validate_execution_name(execution)?;
        let started = self
            .client
            .start_execution()
            .state_machine_arn(machine)
            .name(execution)
            .input(input.to_string())
            .send()
            .await;
        match started {
            Ok(out) => Ok(Started::Started(json!({
                "workflow": name,
                "executionName": execution,
                "executionArn": out.execution_arn(),
                "startDate": date(out.start_date()),
                "status": "RUNNING",
            }))),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), StartExecutionError::ExecutionAlreadyExists(_)) =>
            {
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
            Err(e) => Err(sdk_error("starting", name, &e)),
        }
    }

    /// The execution `execution` of workflow `name`.
    pub async fn describe(&self, name: &str, execution: &str) -> Result<Value, ActionError> {
        let machine = self.machine(name)?;
        validate_execution_name(execution)?;
        let arn = execution_arn(machine, execution).ok_or_else(|| {
            ActionError::internal(format!(
                "the ARN of workflow {name} is not a state machine ARN: {machine}"
            ))
        })?;
        match self
            .client
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
        {
            Ok(out) => Ok(describe_output(name, execution, &out)),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), DescribeExecutionError::ExecutionDoesNotExist(_)) =>
            {
                Err(ActionError::not_found(format!(
                    "there is no execution {execution:?} of workflow {name}"
                ))
                .with_details(json!({"workflow": name, "executionName": execution})))
            }
            Err(e) => Err(sdk_error("describing", name, &e)),
        }
    }
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

impl Workflows {
    /// The ARN of execution `execution` of workflow `name`.
    fn arn(&self, name: &str, execution: &str) -> Result<String, ActionError> {
        let machine = self.machine(name)?;
        validate_execution_name(execution)?;
        execution_arn(machine, execution).ok_or_else(|| {
            ActionError::internal(format!(
                "the ARN of workflow {name} is not a state machine ARN: {machine}"
            ))
        })
    }

    /// The history of execution `execution` of workflow `name`, oldest first, in Step
    /// Functions' shape: `{workflow, executionName, events: [{id, previousEventId,
    /// timestamp, type, stateEnteredEventDetails: {name}?, stateExitedEventDetails:
    /// {name}?, error?, cause?}]}` (at most [`MAX_HISTORY_EVENTS`] events).
    pub async fn history(&self, name: &str, execution: &str) -> Result<Value, ActionError> {
        let arn = self.arn(name, execution)?;
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_execution_history()
                .execution_arn(&arn)
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(SdkError::ServiceError(e))
                    if matches!(e.err(), GetExecutionHistoryError::ExecutionDoesNotExist(_)) =>
                {
                    return Err(ActionError::not_found(format!(
                        "there is no execution {execution:?} of workflow {name}"
                    ))
                    .with_details(json!({"workflow": name, "executionName": execution})));
                }
                Err(e) => return Err(sdk_error("reading the history of", name, &e)),
            };
            events.extend(page.events().iter().map(history_event));
            token = page.next_token().map(str::to_owned);
            if token.is_none() || events.len() >= MAX_HISTORY_EVENTS {
                break;
            }
        }
        events.truncate(MAX_HISTORY_EVENTS);
        Ok(json!({"workflow": name, "executionName": execution, "events": events}))
    }

    /// Redrive execution `execution` of workflow `name` (Step Functions'
    /// `RedriveExecution`: it continues from the states that failed, the same execution).
    pub async fn redrive(&self, name: &str, execution: &str) -> Result<Value, ActionError> {
        let arn = self.arn(name, execution)?;
        match self
            .client
            .redrive_execution()
            .execution_arn(&arn)
            .send()
            .await
        {
            Ok(out) => Ok(json!({
                "workflow": name,
                "executionName": execution,
                "redriveDate": date(out.redrive_date()),
                "status": "RUNNING",
            })),
            Err(SdkError::ServiceError(e)) => match e.err() {
                RedriveExecutionError::ExecutionDoesNotExist(_) => Err(ActionError::not_found(
                    format!("there is no execution {execution:?} of workflow {name}"),
                )
                .with_details(json!({"workflow": name, "executionName": execution}))),
                RedriveExecutionError::ExecutionNotRedrivable(not) => {
                    Err(ActionError::rejected(format!(
                        "the execution {execution:?} of {name} cannot be redriven: {}",
                        not.message().unwrap_or("Step Functions refused")
                    ))
                    .with_details(json!({"workflow": name, "executionName": execution})))
                }
                _ => Err(sdk_error("redriving", name, &SdkError::ServiceError(e))),
            },
            Err(e) => Err(sdk_error("redriving", name, &e)),
        }
    }
}

/// The most events `GET /workflows/{name}/executions/{id}/history` answers.
pub const MAX_HISTORY_EVENTS: usize = 10_000;

fn history_event(event: &aws_sdk_sfn::types::HistoryEvent) -> Value {
    let mut view = json!({
        "id": event.id(),
        "previousEventId": event.previous_event_id(),
        "timestamp": date(event.timestamp()),
        "type": event.r#type().as_str(),
    });
    if let Some(entered) = event.state_entered_event_details() {
        view["stateEnteredEventDetails"] = json!({"name": entered.name()});
    }
    if let Some(exited) = event.state_exited_event_details() {
        view["stateExitedEventDetails"] = json!({"name": exited.name()});
    }
    let failure = event
        .task_failed_event_details()
        .map(|d| (d.error(), d.cause()))
        .or_else(|| {
            event
                .execution_failed_event_details()
                .map(|d| (d.error(), d.cause()))
        });
    if let Some((error, cause)) = failure {
        view["error"] = json!(error);
        view["cause"] = json_text(cause);
    }
    view
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

fn date(d: &aws_smithy_types::DateTime) -> Option<String> {
    d.fmt(Format::DateTime).ok()
}

fn json_text(text: Option<&str>) -> Value {
    text.map_or(Value::Null, |t| {
        serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned()))
    })
}

fn describe_output(name: &str, execution: &str, out: &DescribeExecutionOutput) -> Value {
    let mut view = json!({
        "workflow": name,
        "executionName": execution,
        "executionArn": out.execution_arn(),
        "status": out.status().as_str(),
        "startDate": date(out.start_date()),
        "input": json_text(out.input()),
    });
    if let Some(stop) = out.stop_date() {
        view["stopDate"] = json!(date(stop));
    }
    if out.output().is_some() {
        view["output"] = json_text(out.output());
    }
    if out.error().is_some() || out.cause().is_some() {
        view["error"] = json!({"error": out.error(), "cause": json_text(out.cause())});
    }
    view
}

/// A failed Step Functions call: throttling and an unreachable service are transient, the
/// rest a deployment problem.
fn sdk_error<E>(doing: &str, name: &str, err: &SdkError<E, HttpResponse>) -> ActionError
where
    E: std::error::Error + 'static,
{
    let text = format!(
        "{doing} workflow {name} failed: {}",
        DisplayErrorContext(err)
    );
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ActionError::transient(text)
        }
        SdkError::ServiceError(e)
            if e.raw().status().as_u16() == 429 || e.raw().status().is_server_error() =>
        {
            ActionError::transient(text)
        }
        _ => ActionError::internal(text),
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
    fn execution_names_follow_step_functions_rules() {
        assert!(validate_execution_name("order-42_retry.1").is_ok());
        assert!(validate_execution_name(&"a".repeat(80)).is_ok());
        for bad in ["", "a b", "a#b", "a/b", "a:b", &"a".repeat(81)] {
            assert!(validate_execution_name(bad).is_err(), "{bad:?}");
        }
    }
}
