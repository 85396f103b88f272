//! What a trigger hands the executor: an [`Invocation`] — its [`Params`], its key, its
//! [`Source`] and what the trigger knows about the caller — and the rules that turn it
//! into an execution's address ([`idempotency_key`]).
//!
//! Every front end (the Lambda triggers, the router, `actiondo serve`, the CLI) builds an
//! `Invocation` and lets the executor decide; the key policy is written here once.

use serde::Serialize;
use serde_json::Value;

use crate::action::KeyPolicy;
use crate::error::ActionError;
use crate::hash;

/// Where an invocation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A direct Lambda invoke (or an unknown caller).
    Direct,
    /// A Step Functions task (an envelope with the execution as correlation id).
    StepFunctions,
    /// An SQS message.
    Sqs,
    /// An EventBridge event.
    EventBridge,
    /// An HTTP request (API Gateway, function URL, the router, `actiondo serve`).
    Http,
    /// The `actiondo` command line.
    Cli,
    /// An MCP tool call (`actiondo mcp`, `/mcp` of `actiondo serve`): an agent
    /// (docs/architecture.md §7.6).
    Mcp,
}

impl Source {
    /// The lower-case name stored in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Direct => "direct",
            Source::StepFunctions => "stepfunctions",
            Source::Sqs => "sqs",
            Source::EventBridge => "eventbridge",
            Source::Http => "http",
            Source::Cli => "cli",
            Source::Mcp => "mcp",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parameters of an invocation, parsed or not yet parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    /// Already-parsed JSON.
    Json(Value),
    /// JSON text; a parse error is a rejected request (`ActionDo.Validation` with the
    /// line and column), audited when the invocation carries a valid key.
    Text(String),
}

/// One request to run an action: its parameters and what the trigger knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The parameters.
    pub params: Params,
    /// The idempotency key given by the caller; derived from the input when absent (the
    /// default [`KeyPolicy`]).
    pub key: Option<String>,
    /// Where the invocation came from.
    pub source: Source,
    /// The request id (Lambda request id, SQS message id…); a fresh UUID when absent.
    pub request_id: Option<String>,
    /// Correlates executions (a Step Functions execution, a workflow run).
    pub correlation_id: Option<String>,
    /// Who called.
    pub caller: Option<String>,
    /// The X-Ray trace id.
    pub trace_id: Option<String>,
    /// The invocation's deadline, Unix milliseconds (the Lambda deadline).
    pub deadline_ms: Option<i64>,
}

impl Invocation {
    /// An invocation of `params` from `source` with nothing else known.
    pub fn new(params: Value, source: Source) -> Self {
        Self {
            params: Params::Json(params),
            key: None,
            source,
            request_id: None,
            correlation_id: None,
            caller: None,
            trace_id: None,
            deadline_ms: None,
        }
    }

    /// Set the idempotency key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Set the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Set the request id.
    #[must_use]
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
}

/// Parse params given as JSON text; malformed JSON is `ActionDo.Validation` naming the
/// problem and its position (`details: {"line", "column"}`), as every front end reports it.
pub fn parse_params(text: &str) -> Result<Value, ActionError> {
    serde_json::from_str::<Value>(text).map_err(|e| {
        // serde's text ends with its own "at line L column C"; say it once.
        let text = e.to_string();
        let what = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(w, _)| w);
        ActionError::validation(format!(
            "params are not valid JSON: {what} (line {}, column {})",
            e.line(),
            e.column()
        ))
        .with_details(serde_json::json!({"line": e.line(), "column": e.column()}))
    })
}

/// The idempotency key of an execution of `action`: the `given` key (checked by
/// [`hash::validate_key`]), else — under [`KeyPolicy::Derived`] — the payload hash of
/// `params`. [`KeyPolicy::Required`] without a key is `ActionDo.Validation`.
///
/// The one statement of the key policy: the executor and every front end that must know
/// an execution's address before it runs (the router's `Prefer: respond-async`) call it.
pub fn idempotency_key(
    action: &str,
    policy: KeyPolicy,
    given: Option<&str>,
    params: &Value,
) -> Result<String, ActionError> {
    match (given, policy) {
        (Some(key), _) => hash::validate_key(key).map(|()| key.to_owned()),
        (None, KeyPolicy::Derived) => Ok(hash::payload_hash(params)),
        (None, KeyPolicy::Required) => Err(ActionError::validation(format!(
            "{action} requires an idempotency key (Idempotency-Key header, idempotencyKey field, or --key)"
        ))
        .with_details(serde_json::json!({"reason": "key_required"}))),
    }
}
