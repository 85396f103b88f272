//! The one error type of action.do: [`ActionError`] with its [`ErrorKind`].
//!
//! Every kind has a stable wire name (the Lambda `errorType` that Step Functions
//! `Retry`/`Catch` match), an HTTP status and a retry class (docs/architecture.md §6). The wire
//! format of an error is [`ErrorBody`]:
//! `{"error": {"type": "...", "message": "...", "retryable": bool, "details": {...}}}`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What went wrong, as the caller needs to know it: the wire name, the HTTP status and
/// whether a retry may succeed all follow from the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input: malformed JSON, schema violation, bad idempotency key, oversized result.
    Validation,
    /// A business rule refused the request (a declined payment, a duplicate email).
    Rejected,
    /// The idempotency key was used before with a different payload.
    PayloadMismatch,
    /// Another execution of the same key holds a live lease.
    InProgress,
    /// An entity condition failed or the lease was lost before the commit.
    Conflict,
    /// A dependency is down, slow or throttling; the store could not be reached.
    Transient,
    /// No action (or route) of that name.
    NotFound,
    /// No valid credentials.
    Unauthorized,
    /// Valid credentials, but outside their scope.
    Forbidden,
    /// A bug: a panic in a handler, an unserializable output, a broken invariant.
    Internal,
}

impl ErrorKind {
    /// Every kind, in the order of the table in docs/architecture.md §6.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Validation,
        ErrorKind::Rejected,
        ErrorKind::PayloadMismatch,
        ErrorKind::InProgress,
        ErrorKind::Conflict,
        ErrorKind::Transient,
        ErrorKind::NotFound,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::Internal,
    ];

    /// The stable wire name: the Lambda `errorType` and the `error.type` of HTTP bodies.
    pub const fn wire_name(self) -> &'static str {
        match self {
            ErrorKind::Validation => "ActionDo.Validation",
            ErrorKind::Rejected => "ActionDo.Rejected",
            ErrorKind::PayloadMismatch => "ActionDo.PayloadMismatch",
            ErrorKind::InProgress => "ActionDo.InProgress",
            ErrorKind::Conflict => "ActionDo.Conflict",
            ErrorKind::Transient => "ActionDo.Transient",
            ErrorKind::NotFound => "ActionDo.NotFound",
            ErrorKind::Unauthorized => "ActionDo.Unauthorized",
            ErrorKind::Forbidden => "ActionDo.Forbidden",
            ErrorKind::Internal => "ActionDo.Internal",
        }
    }

    /// The kind of a wire name, if it is one of ours.
    pub fn from_wire_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.wire_name() == name)
    }

    /// The HTTP status code of this kind.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorKind::Validation => 400,
            ErrorKind::Rejected | ErrorKind::PayloadMismatch => 422,
            ErrorKind::InProgress | ErrorKind::Conflict => 409,
            ErrorKind::Transient => 503,
            ErrorKind::NotFound => 404,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::Internal => 500,
        }
    }

    /// Whether the same request may succeed when retried.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::InProgress
                | ErrorKind::Conflict
                | ErrorKind::Transient
                | ErrorKind::Internal
        )
    }

    /// Terminal failures are recorded (`FAILED`) and replayed like a result; retryable ones
    /// release the idempotency record so that a retry runs again.
    pub const fn is_terminal(self) -> bool {
        !self.is_retryable()
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// The error of an action execution.
///
/// Build one with the constructor named after its kind, add structured `details`
/// with [`ActionError::with_details`]:
///
/// ```
/// use actiondo::{ActionError, ErrorKind};
/// let err = ActionError::rejected("card declined").with_details(serde_json::json!({"code": "card_declined"}));
/// assert_eq!(err.kind(), ErrorKind::Rejected);
/// assert_eq!(err.kind().wire_name(), "ActionDo.Rejected");
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ActionError {
    kind: ErrorKind,
    message: String,
    details: Option<Value>,
    retry_after_ms: Option<u64>,
    http_status: Option<u16>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $kind:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl Into<String>) -> Self {
                Self::new(ErrorKind::$kind, message)
            }
        )*
    };
}

impl ActionError {
    /// An error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            details: None,
            retry_after_ms: None,
            http_status: None,
            source: None,
        }
    }

    constructors! {
        /// `ActionDo.Validation`: bad input (HTTP 400, never retried).
        validation => Validation;
        /// `ActionDo.Rejected`: a business rule said no (HTTP 422, never retried).
        rejected => Rejected;
        /// `ActionDo.PayloadMismatch`: the key was used with another payload (HTTP 422).
        payload_mismatch => PayloadMismatch;
        /// `ActionDo.InProgress`: another execution holds the lease (HTTP 409, retryable).
        in_progress => InProgress;
        /// `ActionDo.Conflict`: an entity condition failed or the lease was lost (HTTP 409, retryable).
        conflict => Conflict;
        /// `ActionDo.Transient`: a dependency is down or throttling (HTTP 503, retryable).
        transient => Transient;
        /// `ActionDo.NotFound`: unknown action or route (HTTP 404).
        not_found => NotFound;
        /// `ActionDo.Unauthorized`: no valid credentials (HTTP 401).
        unauthorized => Unauthorized;
        /// `ActionDo.Forbidden`: credentials outside their scope (HTTP 403).
        forbidden => Forbidden;
        /// `ActionDo.Internal`: a bug (HTTP 500, retryable).
        internal => Internal;
    }

    /// Attach structured details (shown in the `details` field of the wire form).
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Keep the underlying cause (reachable through [`std::error::Error::source`]).
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Tell the caller when a retry makes sense (HTTP `Retry-After`).
    #[must_use]
    pub fn with_retry_after_ms(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }

    /// Answer with this HTTP status instead of the kind's (e.g. 413 or 415 for a
    /// `Validation` of the request itself); the wire name stays the kind's.
    #[must_use]
    pub fn with_http_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    /// The HTTP status: the override if set, else the kind's.
    pub fn http_status(&self) -> u16 {
        self.http_status.unwrap_or(self.kind.http_status())
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Structured details, if any.
    pub fn details(&self) -> Option<&Value> {
        self.details.as_ref()
    }

    /// How long to wait before a retry, in milliseconds, when known.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.retry_after_ms
    }

    /// Whether the same request may succeed when retried.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The wire form of this error.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorPayload {
                error_type: self.kind.wire_name().to_owned(),
                message: self.message.clone(),
                retryable: self.is_retryable(),
                details: self.details.clone(),
            },
        }
    }

    /// Rebuild an error from its wire form (used to replay stored terminal errors and to
    /// map a function error back to a status). An unknown type becomes `Internal`.
    pub fn from_body(body: ErrorBody) -> Self {
        let kind = ErrorKind::from_wire_name(&body.error.error_type).unwrap_or(ErrorKind::Internal);
        let mut err = Self::new(kind, body.error.message);
        err.details = body.error.details;
        err
    }
}

/// The wire form of an error: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorPayload,
}

/// The inner object of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorPayload {
    /// The wire name, e.g. `ActionDo.Validation`.
    #[serde(rename = "type")]
    pub error_type: String,
    /// A human-readable message.
    pub message: String,
    /// Whether a retry may succeed.
    pub retryable: bool,
    /// Structured details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// A failure of a [`Store`](crate::store::Store) itself, as opposed to a condition that
/// did not hold (conditions are outcomes, not errors).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached, timed out or throttled: retryable.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The store answered with something this code cannot read: a bug or a schema drift.
    #[error("store data invalid: {0}")]
    Corrupt(String),
    /// The request to the store was not valid (a bad cursor, a query the store cannot serve).
    #[error("{0}")]
    InvalidRequest(String),
    /// The store refused a write it can never accept (a value over one of DynamoDB's
    /// limits, [`crate::limits`]): retrying it cannot help.
    #[error("store refused the write: {0}")]
    Refused(String),
}

impl StoreError {
    /// An `Unavailable` error with its cause.
    pub fn unavailable(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// A store failure as callers see it: its kind, and a message that names no store
/// internals (table names, ARNs, account ids, the AWS error text), which go to the log
/// instead, inside the span of the request (its request id). A bad cursor or query is the
/// caller's own input and is said as it is.
impl From<StoreError> for ActionError {
    fn from(err: StoreError) -> Self {
        let (kind, message) = match &err {
            StoreError::Unavailable { .. } => (
                ErrorKind::Transient,
                "the store is unavailable; try again (the log of this request has the cause)",
            ),
            StoreError::Corrupt(_) => (
                ErrorKind::Internal,
                "the store holds data this version cannot read (the log of this request has the cause)",
            ),
            StoreError::Refused(_) => (
                ErrorKind::Internal,
                "the store refused a write (the log of this request has the cause)",
            ),
            StoreError::InvalidRequest(m) => {
                return ActionError::new(ErrorKind::Validation, m.clone()).with_source(err);
            }
        };
        tracing::error!(error = %err, cause = %source_chain(&err), "store failure");
        ActionError::new(kind, message).with_source(err)
    }
}

/// The causes below `err`, outermost first, joined by `: ` (empty when it has none): the
/// SDK's own text, for the log only.
fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = Vec::new();
    let mut cause = err.source();
    while let Some(e) = cause {
        chain.push(e.to_string());
        cause = e.source();
    }
    chain.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_the_wire_name_status_and_retry_class_of_the_design() {
        let table = [
            ("ActionDo.Validation", 400, false),
            ("ActionDo.Rejected", 422, false),
            ("ActionDo.PayloadMismatch", 422, false),
            ("ActionDo.InProgress", 409, true),
            ("ActionDo.Conflict", 409, true),
            ("ActionDo.Transient", 503, true),
            ("ActionDo.NotFound", 404, false),
            ("ActionDo.Unauthorized", 401, false),
            ("ActionDo.Forbidden", 403, false),
            ("ActionDo.Internal", 500, true),
        ];
        for (kind, (name, status, retry)) in ErrorKind::ALL.into_iter().zip(table) {
            assert_eq!(kind.wire_name(), name);
            assert_eq!(kind.http_status(), status, "{name}");
            assert_eq!(kind.is_retryable(), retry, "{name}");
            assert_eq!(ErrorKind::from_wire_name(name), Some(kind));
        }
    }

    #[test]
    fn wire_form_round_trips() {
        let err = ActionError::rejected("no").with_details(serde_json::json!({"a": 1}));
        let json = serde_json::to_string(&err.to_body()).expect("serializes");
        assert_eq!(
            json,
            r#"{"error":{"type":"ActionDo.Rejected","message":"no","retryable":false,"details":{"a":1}}}"#
        );
        let back = ActionError::from_body(serde_json::from_str(&json).expect("parses"));
        assert_eq!(back.kind(), ErrorKind::Rejected);
        assert_eq!(back.to_body(), err.to_body());
    }
}
