//! The Task functions of the workflow corpus (`workflow/tests/corpus/*.json`) as real
//! Lambda functions, and the same code for an in-process caller.
//!
//! The corpus' Tasks call five functions by their Lambda ARN (`…:function:echo`). Under
//! `cargo lambda watch` a function is the binary of its name, so each has a binary of
//! its own, `corpus-<name>` (`src/bin/corpus-echo.rs`, …), whose `main` is [`serve`]; a
//! test renames the ARNs of a definition (`…:function:corpus-echo`) for both sides.
//!
//! - `echo` returns its payload;
//! - `fail` fails with `errorType` = the payload's `error` and `errorMessage` = its
//!   `cause`;
//! - `flaky` fails `failures` times with `error` (message `failure N`), then returns
//!   `{"attempts": N}`; N counts the calls with the same payload ([`Calls`]: for a
//!   process, its lifetime; in-process, one execution);
//! - `slow` returns its payload after `seconds` seconds (tokio's clock);
//! - `big` returns `{"bytes": N, "data": "xx…"}` whose JSON text is exactly `bytes`
//!   bytes (for `bytes` of at least 22).
//!
//! A failure is a function error, as Lambda reports it: lambda_runtime's [`Diagnostic`]
//! `{"errorType", "errorMessage"}`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::{Value, json};

/// The functions, by the name the corpus gives them.
pub const FUNCTIONS: [&str; 5] = ["echo", "fail", "flaky", "slow", "big"];

/// The prefix of the binaries: `echo` is served by `corpus-echo`.
pub const BINARY_PREFIX: &str = "corpus-";

/// How many times each payload was received (for `flaky`).
#[derive(Debug, Default)]
pub struct Calls(Mutex<HashMap<String, u64>>);

impl Calls {
    /// Count one more call with `payload`; the count so far, this one included.
    pub fn count(&self, payload: &Value) -> u64 {
        let mut calls = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = calls.entry(payload.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

fn error(error_type: impl Into<String>, error_message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        error_type: error_type.into(),
        error_message: error_message.into(),
    }
}

/// `{"bytes": n, "data": "xx…"}` with a JSON text of exactly `n` bytes (for `n` of at
/// least 22).
pub fn big(n: u64) -> Value {
    let overhead = r#"{"bytes":,"data":""}"#.len() + n.to_string().len();
    let data = "x".repeat(usize::try_from(n).unwrap_or(0).saturating_sub(overhead));
    json!({"bytes": n, "data": data})
}

/// What the function `function` (`echo`, …) answers to `payload`.
///
/// # Errors
///
/// The function's error (`fail`, `flaky` before it works, an unknown function).
pub async fn respond(function: &str, payload: &Value, calls: &Calls) -> Result<Value, Diagnostic> {
    let text = |k: &str| {
        payload
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let number = |k: &str| payload.get(k).and_then(Value::as_u64).unwrap_or(0);
    match function {
        "echo" => Ok(payload.clone()),
        "fail" => Err(error(text("error"), text("cause"))),
        "flaky" => {
            let n = calls.count(payload);
            if n <= number("failures") {
                Err(error(text("error"), format!("failure {n}")))
            } else {
                Ok(json!({"attempts": n}))
            }
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(number("seconds"))).await;
            Ok(payload.clone())
        }
        "big" => Ok(big(number("bytes"))),
        other => Err(error(
            "Corpus.UnknownFunction",
            format!("no corpus function {other:?}"),
        )),
    }
}

/// Serve `function` on the Lambda Runtime API (the `main` of `corpus-<function>`).
///
/// # Errors
///
/// When the Runtime API cannot be reached.
pub async fn serve(function: &'static str) -> Result<(), lambda_runtime::Error> {
    let calls = std::sync::Arc::new(Calls::default());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let calls = std::sync::Arc::clone(&calls);
        async move { respond(function, &event.payload, &calls).await }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_functions_answer_as_the_corpus_says() {
        let calls = Calls::default();
        let p = json!({"v": 1});
        assert_eq!(respond("echo", &p, &calls).await.ok(), Some(p.clone()));
        let e = respond(
            "fail",
            &json!({"error": "Custom.Bad", "cause": "nope"}),
            &calls,
        )
        .await
        .expect_err("fails");
        assert_eq!(
            (e.error_type.as_str(), e.error_message.as_str()),
            ("Custom.Bad", "nope")
        );
        let flaky = json!({"failures": 1, "error": "Custom.T"});
        let first = respond("flaky", &flaky, &calls).await.expect_err("first");
        assert_eq!(first.error_message, "failure 1");
        assert_eq!(
            respond("flaky", &flaky, &calls).await.ok(),
            Some(json!({"attempts": 2}))
        );
        for n in [22, 100, 262_144] {
            let v = respond("big", &json!({"bytes": n}), &calls)
                .await
                .expect("big");
            assert_eq!(v.to_string().len() as u64, n);
        }
        assert!(respond("nope", &p, &calls).await.is_err());
    }
}
