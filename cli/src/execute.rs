//! `actiondo execute <name> --params JSON|@FILE [--key K] [--correlation-id ID]`.
//!
//! Runs the action in-process through [`actiondo::Executor`] on the selected store and
//! prints the seed SDK's `{"result": ..., "error": ...}` on stdout. The key used, and
//! whether the outcome is a replay, go to stderr, so that stdout stays pure JSON.

use std::io::{Read as _, Write as _};

use actiondo::{Execution, Executor, Invocation, Params, Source, StoreConfig};
use clap::Args;

use crate::{CliError, EXIT_ACTION_ERROR, EXIT_OK};

/// The arguments of `actiondo execute`.
#[derive(Debug, Args)]
pub struct ExecuteArgs {
    /// The action's name (`actiondo actions` lists them).
    pub name: String,

    /// The params: JSON text, `@FILE` to read them from a file, or `@-` for stdin.
    #[arg(long, short = 'p', value_name = "JSON|@FILE")]
    pub params: String,

    /// The idempotency key; derived from the params (SHA-256) when absent. The same key
    /// with the same params replays the stored outcome.
    #[arg(long, short = 'k', value_name = "KEY")]
    pub key: Option<String>,

    /// A correlation id recorded in the audit trail (e.g. a workflow run).
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
}

/// Run `actiondo execute`: [`EXIT_OK`] on a result, [`EXIT_ACTION_ERROR`] on an action
/// error; an unknown action or unreadable params are a [`CliError::Usage`].
pub async fn run(store: &StoreConfig, args: &ExecuteArgs) -> Result<u8, CliError> {
    let catalog = actiondo_catalog::catalog();
    let action = catalog
        .resolve(&args.name)
        .map_err(|e| CliError::Usage(e.message().to_owned()))?
        .clone();
    let text = read_params(&args.params)?;
    let executor = Executor::from_arc(crate::open_store(store).await?);
    let mut invocation = Invocation::new(serde_json::Value::Null, Source::Cli);
    invocation.params = Params::Text(text);
    invocation.key = args.key.clone();
    invocation.correlation_id = args.correlation_id.clone();
    let execution = executor.execute(action.as_ref(), invocation).await;

    let mut stderr = std::io::stderr().lock();
    for line in status_lines(&execution) {
        writeln!(stderr, "{line}")?;
    }
    crate::print_stdout(&render(&execution)?)?;
    Ok(if execution.outcome.is_ok() {
        EXIT_OK
    } else {
        EXIT_ACTION_ERROR
    })
}

/// The params text: the argument itself, or the content of `@FILE` (`@-`: stdin).
pub fn read_params(arg: &str) -> Result<String, CliError> {
    match arg.strip_prefix('@') {
        None => Ok(arg.to_owned()),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Usage(format!("cannot read the params from stdin: {e}")))?;
            Ok(text)
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read the params from {path}: {e}"))),
    }
}

/// The `{"result": ..., "error": ...}` of an execution, indented; the result's text keeps
/// the stored key order.
pub fn render(execution: &Execution) -> Result<String, CliError> {
    crate::json::pretty(&execution.to_response())
        .map_err(|e| CliError::Output(std::io::Error::other(e)))
}

/// What stderr says about an execution: the key used, and the replay when there is one.
pub fn status_lines(execution: &Execution) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(key) = &execution.key {
        lines.push(format!("key: {key}"));
    }
    if execution.replayed {
        let what = if execution.outcome.is_ok() {
            "stored outcome"
        } else {
            "stored error"
        };
        lines.push(format!(
            "replayed: {what} of attempt {} (key {})",
            execution.attempt,
            execution.key.as_deref().unwrap_or("?")
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use actiondo::ActionError;
    use serde_json::value::RawValue;

    fn execution(replayed: bool, outcome: Result<Box<RawValue>, ActionError>) -> Execution {
        Execution {
            action: "demo",
            key: Some("k1".into()),
            attempt: 1,
            replayed,
            outcome,
        }
    }

    #[test]
    fn renders_the_sdk_shape_keeping_the_result_order() {
        let raw = RawValue::from_string(r#"{"z":1,"a":2}"#.into());
        let Ok(raw) = raw else { panic!("raw JSON") };
        let text = render(&execution(false, Ok(raw))).unwrap_or_default();
        assert_eq!(
            text,
            "{\n  \"result\": {\n    \"z\": 1,\n    \"a\": 2\n  },\n  \"error\": null\n}"
        );
    }

    #[test]
    fn renders_errors_with_type_and_details() {
        let e = ActionError::validation("bad").with_details(serde_json::json!({"errors": []}));
        let text = render(&execution(false, Err(e))).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(value["result"], serde_json::Value::Null);
        assert_eq!(value["error"]["type"], "ActionDo.Validation");
        assert_eq!(value["error"]["retryable"], false);
        assert_eq!(value["error"]["details"]["errors"], serde_json::json!([]));
    }

    #[test]
    fn stderr_names_the_key_and_marks_replays() {
        let raw = RawValue::from_string("1".into());
        let Ok(raw) = raw else { panic!("raw JSON") };
        assert_eq!(
            status_lines(&execution(false, Ok(raw.clone()))),
            ["key: k1"]
        );
        assert_eq!(
            status_lines(&execution(true, Ok(raw))),
            ["key: k1", "replayed: stored outcome of attempt 1 (key k1)"]
        );
    }

    #[test]
    fn params_come_from_the_argument_or_a_file() {
        assert_eq!(
            read_params(r#"{"a":1}"#).ok().as_deref(),
            Some(r#"{"a":1}"#)
        );
        let dir = tempfile::tempdir();
        let Ok(dir) = dir else { panic!("temp dir") };
        let path = dir.path().join("p.json");
        assert!(std::fs::write(&path, "{\"b\":2}").is_ok());
        assert_eq!(
            read_params(&format!("@{}", path.display())).ok().as_deref(),
            Some("{\"b\":2}")
        );
        let missing = read_params(&format!("@{}", dir.path().join("no.json").display()));
        assert!(matches!(missing, Err(CliError::Usage(m)) if m.contains("no.json")));
    }
}
