//! The errors of the engine: a definition that cannot run ([`DefinitionError`]), a
//! failure inside an execution as Step Functions names it ([`StatesError`]), and what the
//! engine's callers are told ([`WorkflowError`]).

use actiondo::{ActionError, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A definition that cannot run: which state, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", state.as_deref().map(|s| format!("state {s:?}")).unwrap_or_else(|| "the definition".to_owned()), field.as_deref().map(|f| format!(", field {f}")).unwrap_or_default())]
pub struct DefinitionError {
    /// The state, when the problem is in one.
    pub state: Option<String>,
    /// The field (`Parameters.Payload.params.$`, `Retry[0].BackoffRate`…).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl DefinitionError {
    /// A problem of the whole definition (`StartAt`, `States`).
    pub fn top(field: &str, message: impl Into<String>) -> Self {
        Self {
            state: None,
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// A problem of `state`'s `field`.
    pub fn at(state: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            state: Some(state.to_owned()),
            field: (!field.is_empty()).then(|| field.to_owned()),
            message: message.into(),
        }
    }

    /// The same problem under a field prefix (`Parameters` + `a.$`).
    pub(crate) fn within(mut self, prefix: &str) -> Self {
        self.field = Some(match self.field {
            Some(f) if !f.is_empty() => format!("{prefix}.{f}"),
            _ => prefix.to_owned(),
        });
        self
    }
}

impl From<DefinitionError> for ActionError {
    fn from(e: DefinitionError) -> Self {
        ActionError::validation(format!("the workflow definition is invalid: {e}"))
            .with_details(json!({"state": e.state, "field": e.field, "problem": e.message}))
    }
}

/// The names of the errors the States language defines.
pub mod names {
    /// Matches every error but [`RUNTIME`] and [`DATA_LIMIT_EXCEEDED`].
    pub const ALL: &str = "States.ALL";
    /// Matches every error but [`TIMEOUT`] (and those [`ALL`] leaves out).
    pub const TASK_FAILED: &str = "States.TaskFailed";
    /// A Task ran past its `TimeoutSeconds`, or an execution past its own.
    pub const TIMEOUT: &str = "States.Timeout";
    /// A path, a template or a state's input could not be processed; never caught by
    /// [`ALL`].
    pub const RUNTIME: &str = "States.Runtime";
    /// `ResultPath` could not be applied to the state's input.
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    /// A `.$` field of `Parameters` named a path that is not in the input.
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    /// Reserved by AWS for intrinsic functions; their failures are `States.Runtime`.
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    /// No Choice rule matched and there is no `Default`.
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    /// A branch of a Parallel state or an iteration of a Map failed.
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    /// An output or a payload over the size limit; never caught by [`ALL`].
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
}

/// Step Functions' payload quota: 256 KiB, the UTF-8 bytes of the JSON text of an
/// execution's input, a state's input after `Parameters`, a Task's result and a state's
/// output (docs/architecture.md §10.1).
pub const PAYLOAD_LIMIT_BYTES: usize = 262_144;

/// The size of `value`'s JSON text in bytes.
pub fn payload_bytes(value: &serde_json::Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// `States.DataLimitExceeded` when `value` is over [`PAYLOAD_LIMIT_BYTES`]; `what` says
/// which payload it is (`the output of state "A"`).
pub fn within_payload_limit(what: &str, value: &serde_json::Value) -> Result<(), StatesError> {
    let bytes = payload_bytes(value);
    if bytes > PAYLOAD_LIMIT_BYTES {
        return Err(StatesError::new(
            names::DATA_LIMIT_EXCEEDED,
            format!(
                "{what} is {bytes} bytes, over the payload limit of {PAYLOAD_LIMIT_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}

/// An error inside an execution, as Step Functions names it: `Error` and `Cause`, what
/// `Retry` and `Catch` match and what a Catch puts at its `ResultPath`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct StatesError {
    /// The error name (`ActionDo.Rejected`, `States.Timeout`).
    #[serde(rename = "Error")]
    pub error: String,
    /// The cause (for an action, Lambda's error document as JSON text).
    #[serde(rename = "Cause")]
    pub cause: String,
}

impl StatesError {
    /// `error` with `cause`.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }

    /// `States.Runtime` with `cause`.
    pub fn runtime(cause: impl Into<String>) -> Self {
        Self::new(names::RUNTIME, cause)
    }

    /// An intrinsic function's failure. The AWS documentation reserves
    /// `States.IntrinsicFailure` "for future use" and reports these errors as
    /// `States.Runtime`, and so does this engine.
    pub fn intrinsic(cause: impl Into<String>) -> Self {
        Self::new(names::RUNTIME, cause)
    }

    /// The error of a failed action, as Lambda reports a function error to Step
    /// Functions: `Error` is the `errorType` (the wire name), `Cause` the function's
    /// error document `{"errorType", "errorMessage"}`, whose message is the action's
    /// JSON error body (docs/architecture.md §6.2, §7.2).
    pub fn from_action(err: &ActionError) -> Self {
        #[derive(Serialize)]
        struct FunctionError<'a> {
            #[serde(rename = "errorType")]
            error_type: &'a str,
            #[serde(rename = "errorMessage")]
            error_message: String,
        }
        let error_type = err.kind().wire_name();
        let error_message =
            serde_json::to_string(&err.to_body()).unwrap_or_else(|_| err.message().to_owned());
        let cause = serde_json::to_string(&FunctionError {
            error_type,
            error_message,
        })
        .unwrap_or_default();
        Self::new(error_type, cause)
    }

    /// `{"Error", "Cause"}`, what a Catch writes at its `ResultPath`.
    pub fn to_value(&self) -> serde_json::Value {
        json!({"Error": self.error, "Cause": self.cause})
    }
}

/// What a caller of the engine (the CLI, `actiondo serve`) is told.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The definition cannot run.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// A request the engine refuses (unknown workflow or execution, another input under
    /// the same name, an execution that cannot be redriven).
    #[error(transparent)]
    Action(#[from] ActionError),
    /// The executions' tables failed.
    #[error("the workflow store failed: {0}")]
    Store(#[source] StoreError),
}

impl From<rusqlite::Error> for WorkflowError {
    fn from(e: rusqlite::Error) -> Self {
        WorkflowError::Store(StoreError::unavailable("SQLite (workflow executions)", e))
    }
}

impl From<WorkflowError> for ActionError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::Definition(d) => d.into(),
            WorkflowError::Action(a) => a,
            WorkflowError::Store(s) => s.into(),
        }
    }
}
