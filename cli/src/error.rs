//! [`CliError`]: why a command could not produce its output, and its exit status.

use actiondo::StoreError;

use crate::{EXIT_ACTION_ERROR, EXIT_USAGE};

/// A command that could not run to the end. (An action that ran and returned an error
/// is not a `CliError`: its `{"result", "error"}` is the command's output.)
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command cannot run as given: unknown action, unreadable `@file`, bad value.
    #[error("{0}")]
    Usage(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An action of the command (e.g. creating a key) answered with an error.
    #[error("{0}")]
    Action(actiondo::ActionError),
    /// Writing the output failed.
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    /// The command stopped on the way (`actiondo new`: a file it could not write, a
    /// check it could not run); the message says what is done and what is left.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// An action's error: a validation of what the command was given is a usage error,
    /// anything else an action error.
    pub fn from_action(e: actiondo::ActionError) -> Self {
        if e.kind() == actiondo::ErrorKind::Validation {
            let details = e.details().map(|d| format!(" {d}")).unwrap_or_default();
            CliError::Usage(format!("{}{details}", e.message()))
        } else {
            CliError::Action(e)
        }
    }

    /// The exit status: [`EXIT_USAGE`] for usage and configuration errors (including a
    /// request the store cannot serve, such as an unfiltered DynamoDB audit listing or
    /// missing table names), [`EXIT_ACTION_ERROR`] otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Store(StoreError::InvalidRequest(_)) => EXIT_USAGE,
            CliError::Store(_)
            | CliError::Action(_)
            | CliError::Output(_)
            | CliError::Failed(_) => EXIT_ACTION_ERROR,
        }
    }

    /// The message and its chain of causes, one `caused by:` line each.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        // `Store` is transparent: its source is the store error's cause.
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(&format!("\n  caused by: {cause}"));
            source = cause.source();
        }
        text
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Output(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_kind_of_failure() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(
            CliError::Store(StoreError::InvalidRequest("needs a filter".into())).exit_code(),
            EXIT_USAGE
        );
        assert_eq!(
            CliError::Store(StoreError::Corrupt("bad".into())).exit_code(),
            EXIT_ACTION_ERROR
        );
    }

    #[test]
    fn report_lists_the_causes() {
        let io = std::io::Error::other("disk on fire");
        let e = CliError::Store(StoreError::unavailable("SQLite", io));
        let report = e.report();
        assert!(report.starts_with("store unavailable: SQLite"), "{report}");
        assert!(report.contains("caused by: disk on fire"), "{report}");
    }
}
