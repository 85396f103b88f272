//! Configuration: the [`Settings`] a program reads once at its edge, the actions'
//! `from_env()`, and the error of an action built without a usable configuration.
//!
//! Library code never reads the process environment itself: a program's edge (an action's
//! `main` through [`crate::run`], the router's Lambda set-up, the CLI) takes one
//! [`Settings::from_env`] snapshot and hands it to everything it configures (the store,
//! the metrics, the triggers, the API). Tests build [`Settings::from_pairs`] instead of
//! changing the environment of the process they run in.
//!
//! An action's `from_env()` must never fail (the CLI builds every action at start-up,
//! where many settings are unset): it keeps the problem and every execution answers
//! [`not_configured`]. [`FromSettings`] is that mechanism, once: an action says how it
//! reads its settings and what it is without them; `from_env`, `try_from_env`,
//! `from_lookup` and `try_from_lookup` (and the warning) come with it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::action::Action;
use crate::error::ActionError;

/// The settings of a program: environment variables, read once at the program's edge.
///
/// A snapshot, cheap to clone (the values are shared). [`get`](Self::get) treats a blank
/// value as unset, as every setting of action.do does.
///
/// ```
/// use actiondo::config::Settings;
///
/// let settings = Settings::from_pairs([
///     ("ACTIONDO_STORE", "sqlite::memory:"),
///     ("ACTIONDO_WORKFLOW_USER_ONBOARDING", "arn:aws:states:…"),
///     ("ACTIONDO_METRICS", "  "),
/// ]);
/// assert_eq!(settings.get("ACTIONDO_STORE").as_deref(), Some("sqlite::memory:"));
/// assert_eq!(settings.get("ACTIONDO_METRICS"), None); // blank is unset
/// assert!(settings.is_present("ACTIONDO_METRICS"));
/// let workflows: Vec<_> = settings.with_prefix("ACTIONDO_WORKFLOW_").collect();
/// assert_eq!(workflows, [("USER_ONBOARDING", "arn:aws:states:…")]);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: Arc<BTreeMap<String, String>>,
}

impl std::fmt::Debug for Settings {
    /// The names only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Settings {
    /// The process environment, now: the one place action.do reads it. Variables whose
    /// name or value is not UTF-8 are left out (no setting of action.do has one).
    pub fn from_env() -> Self {
        Self::from_pairs(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }))
    }

    /// These settings and no others (tests, and programs that keep settings elsewhere).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            values: Arc::new(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// These settings with `name` set to `value` (a copy; `self` is unchanged).
    #[must_use]
    pub fn with(&self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let mut values = (*self.values).clone();
        values.insert(name.into(), value.into());
        Self {
            values: Arc::new(values),
        }
    }

    /// The value of `name`, when it is set and not blank (as given, untrimmed).
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_str(name).map(str::to_owned)
    }

    /// As [`get`](Self::get), borrowed.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// Whether `name` is set at all, even blank (for switches that only need presence).
    pub fn is_present(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Every non-blank setting whose name starts with `prefix`, as (rest of the name,
    /// value), in name order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.values
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map_while(move |(k, v)| Some((k.strip_prefix(prefix)?, v.as_str())))
            .filter(|(_, v)| !v.trim().is_empty())
    }

    /// The lookup function form, for APIs that take one (as
    /// [`FromSettings::try_from_settings`]).
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let settings = self.clone();
        move |name| settings.get(name)
    }
}

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
        Self::from_settings(&Settings::from_env())
    }

    /// The action configured from the process environment, or why it cannot be.
    fn try_from_env() -> Result<Self, ConfigError> {
        Self::try_from_lookup(Settings::from_env().lookup())
    }

    /// As [`from_env`](Self::from_env), with `settings` (what a program's edge read).
    fn from_settings(settings: &Settings) -> Self {
        Self::from_lookup(settings.lookup())
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
