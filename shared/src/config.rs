//! Helpers for the actions' `from_env()`: reading settings, and the error of an action
//! built without a usable configuration.
//!
//! An action's `from_env()` must never fail (the CLI builds every action at start-up,
//! where many settings are unset): it keeps the problem and every execution answers
//! [`not_configured`].

use std::time::Duration;

use serde_json::json;

use crate::error::ActionError;

/// The value of environment variable `name`, when it is set and not blank (as given,
/// untrimmed).
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A duration setting in milliseconds: a positive integer (surrounding blanks ignored).
/// The error names the setting: `"<name>=\"<value>\" is not a positive number of
/// milliseconds"`.
///
/// ```
/// use std::time::Duration;
/// use actiondo::config::millis;
///
/// assert_eq!(millis("TIMEOUT_MS", " 1500 "), Ok(Duration::from_millis(1500)));
/// assert!(millis("TIMEOUT_MS", "0").is_err());
/// assert!(millis("TIMEOUT_MS", "soon").is_err());
/// ```
pub fn millis(name: &str, value: &str) -> Result<Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(format!(
            "{name}={value:?} is not a positive number of milliseconds"
        )),
    }
}

/// The error of an action built without a usable configuration: `ActionDo.Internal`
/// `"<action> is not configured: <problem>"` with details
/// `{"reason": "not_configured", "problem": <problem>}` (fix the configuration, then
/// retry: the error is retryable and not stored).
pub fn not_configured(action: &str, problem: &str) -> ActionError {
    ActionError::internal(format!("{action} is not configured: {problem}"))
        .with_details(json!({"reason": "not_configured", "problem": problem}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn millis_are_positive_integers() {
        assert_eq!(millis("T", "10"), Ok(Duration::from_millis(10)));
        assert_eq!(
            millis("T", "-1"),
            Err("T=\"-1\" is not a positive number of milliseconds".to_owned())
        );
        assert!(millis("T", "").is_err());
        assert!(millis("T", "1.5").is_err());
    }

    #[test]
    fn not_configured_is_internal_and_names_the_problem() {
        let err = not_configured("send-email", "EMAIL_FROM is not set");
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(
            err.message(),
            "send-email is not configured: EMAIL_FROM is not set"
        );
        assert_eq!(
            err.details().cloned(),
            Some(json!({"reason": "not_configured", "problem": "EMAIL_FROM is not set"}))
        );
    }
}
