//! [`FieldErrors`]: every problem of an input, collected into one `ActionDo.Validation`.

use actiondo::ActionError;
use serde_json::json;

/// Collects the problems of an input, field by field, and turns them into one
/// `ActionDo.Validation` error that lists every one of them, in the same shape as the
/// executor's schema errors: `details.errors = [{"path": "/email", "message": "…"}]`.
///
/// ```
/// use create_user::FieldErrors;
/// let mut errors = FieldErrors::new();
/// errors.add("/email", "must not be empty");
/// errors.add("/name", "must not be blank");
/// let err = errors.into_result("create-user").unwrap_err();
/// assert_eq!(err.kind(), actiondo::ErrorKind::Validation);
/// assert_eq!(err.details().unwrap()["errors"].as_array().unwrap().len(), 2);
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(Vec<(String, String)>);

impl FieldErrors {
    /// No problem yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a problem of the field at JSON pointer `path` (e.g. `/lines/0/quantity`).
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((path.into(), message.into()));
    }

    /// Whether no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when empty, else `ActionDo.Validation` naming `action` and every problem.
    pub fn into_result(self, action: &str) -> Result<(), ActionError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let summary = self
            .0
            .iter()
            .map(|(path, message)| format!("{path}: {message}"))
            .collect::<Vec<_>>()
            .join("; ");
        let errors: Vec<_> = self
            .0
            .into_iter()
            .map(|(path, message)| json!({"path": path, "message": message}))
            .collect();
        Err(
            ActionError::validation(format!("invalid params for {action}: {summary}"))
                .with_details(json!({ "errors": errors })),
        )
    }
}
