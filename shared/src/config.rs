//! Helpers for the actions' `from_env()`: reading settings, and the error of an action
//! built without a usable configuration.
//!
//! An action's `from_env()` must never fail (the CLI builds every action at start-up,
//! where many settings are unset): it keeps the problem and every execution answers
//! [`not_configured`]. [`FromSettings`] is that mechanism, once: an action says how it
//! reads its settings and what it is without them; `from_env`, `try_from_env`,
//! `from_lookup` and `try_from_lookup` (and the warning) come with it.

use std::time::Duration;

use serde_json::json;

use crate::action::Action;
use crate::error::ActionError;

/// A setting that cannot work. Its text (the problem) names the setting.
///
/// ```
/// use actiondo::config::ConfigError;
///
/// let e = ConfigError::new("TIMEOUT_MS is not set");
/// assert_eq!(e.to_string(), "TIMEOUT_MS is not set");
/// assert_eq!(e.problem(), "TIMEOUT_MS is not set");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct ConfigError {
    problem: String,
}

impl ConfigError {
    /// The error with this problem text (name the setting in it).
    pub fn new(problem: impl Into<String>) -> Self {
        Self {
            problem: problem.into(),
        }
    }

    /// The problem text.
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// The problem text, owned: what an unconfigured action keeps.
    pub fn into_problem(self) -> String {
        self.problem
    }
}

/// An action built from its settings (environment variables), which never fails to be
/// built: when the settings are unusable, [`from_env`](Self::from_env) logs the problem
/// once and returns the [`unconfigured`](Self::unconfigured) action, whose every
/// execution answers [`not_configured`]. [`try_from_env`](Self::try_from_env) fails at
/// once instead.
///
/// Implement [`try_from_settings`](Self::try_from_settings) and
/// [`unconfigured`](Self::unconfigured); the rest is provided. Blank values count as
/// unset: `try_from_settings` never sees one.
///
/// # Example
///
/// ```
/// use actiondo::config::{ConfigError, FromSettings, not_configured};
/// use actiondo::{Action, ActionContext, ActionError};
///
/// struct Greet {
///     greeting: Result<String, String>,
/// }
///
/// impl Action for Greet {
///     type Input = String;
///     type Output = String;
///     const NAME: &'static str = "greet";
///     const DESCRIPTION: &'static str = "Greets someone.";
///
///     async fn execute(&self, name: String, _cx: &mut ActionContext) -> Result<String, ActionError> {
///         let greeting = self.greeting.as_ref().map_err(|p| not_configured(Self::NAME, p))?;
///         Ok(format!("{greeting}, {name}!"))
///     }
/// }
///
/// impl FromSettings for Greet {
///     fn try_from_settings(
///         settings: &dyn Fn(&str) -> Option<String>,
///     ) -> Result<Self, ConfigError> {
///         let greeting = settings("GREETING").ok_or_else(|| ConfigError::new("GREETING is not set"))?;
///         Ok(Self { greeting: Ok(greeting) })
///     }
///
///     fn unconfigured(problem: ConfigError) -> Self {
///         Self { greeting: Err(problem.into_problem()) }
///     }
/// }
///
/// let hello = Greet::from_lookup(|name| (name == "GREETING").then(|| "Hello".to_owned()));
/// assert_eq!(hello.greeting.as_deref(), Ok("Hello"));
/// let blank = Greet::try_from_lookup(|_| Some("  ".to_owned()));
/// assert_eq!(blank.err(), Some(ConfigError::new("GREETING is not set")));
/// assert!(Greet::from_lookup(|_| None).greeting.is_err());
/// ```
pub trait FromSettings: Action + Sized {
    /// The action built from the settings `settings` returns (by variable name; never a
    /// blank value), or which one is wrong.
    fn try_from_settings(settings: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError>;

    /// The action to run with when the settings are unusable: every execution then fails
    /// with [`not_configured`] naming `problem`.
    fn unconfigured(problem: ConfigError) -> Self;

    /// The action configured from the process environment.
    ///
    /// Never fails: when a setting is unusable the problem is logged (a warning) and
    /// every execution fails with `ActionDo.Internal` naming it. Use
    /// [`try_from_env`](Self::try_from_env) to fail at once instead.
    fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The action configured from the process environment, or why it cannot be.
    fn try_from_env() -> Result<Self, ConfigError> {
        Self::try_from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), with the settings `lookup` returns (by
    /// environment variable name) instead of the process environment. Blank values
    /// count as unset.
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self::try_from_lookup(lookup).unwrap_or_else(|e| {
            tracing::warn!(
                action = Self::NAME,
                problem = %e,
                "the action is not configured; every execution will fail"
            );
            Self::unconfigured(e)
        })
    }

    /// As [`try_from_env`](Self::try_from_env), with the settings `lookup` returns.
    /// Blank values count as unset.
    fn try_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::try_from_settings(&|name| lookup(name).filter(|v| !v.trim().is_empty()))
    }
}

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

/// `Ok` when an action has no configuration problem, else its [`not_configured`] error:
/// the first line of an action's `execute` when its settings may be unusable.
pub fn ensure_configured(action: &str, problem: Option<&str>) -> Result<(), ActionError> {
    match problem {
        None => Ok(()),
        Some(problem) => Err(not_configured(action, problem)),
    }
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
