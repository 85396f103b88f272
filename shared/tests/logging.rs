//! Every log line written during an execution carries the action, the key, the attempt
//! and the request id (issue 3), whatever writes it: the executor or the handler itself.

use std::io::Write;
use std::sync::{Arc, Mutex};

use actiondo::store::sqlite::SqliteStore;
use actiondo::{Action, ActionContext, ActionError, Executor, Invocation, Source};
use serde_json::{Value, json};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct In {
    n: u32,
}

struct Chatty;

impl Action for Chatty {
    type Input = In;
    type Output = u32;
    const NAME: &'static str = "chatty";
    const DESCRIPTION: &'static str = "logs a line from its handler";

    async fn execute(&self, input: In, _cx: &mut ActionContext) -> Result<u32, ActionError> {
        tracing::info!(n = input.n, "handler says hello");
        Ok(input.n)
    }
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn log_lines_carry_action_key_attempt_and_request_id() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    // The JSON shape of the Lambda log format (lambda_runtime's subscriber is also a JSON
    // fmt subscriber; the span's fields are what matter here).
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let executor = Executor::new(SqliteStore::in_memory().expect("store"));
    let execution = executor
        .execute(
            &Chatty,
            Invocation::new(json!({"n": 7}), Source::Direct)
                .with_key("order-7")
                .with_request_id("req-1"),
        )
        .await;
    assert_eq!(execution.outcome.expect("ok").get(), "7");

    let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    let hello = lines
        .iter()
        .find(|l| l["fields"]["message"] == "handler says hello")
        .unwrap_or_else(|| panic!("the handler's line is missing: {text}"));
    let span = &hello["span"];
    assert_eq!(span["action"], "chatty", "{hello}");
    assert_eq!(span["key"], "order-7", "{hello}");
    assert_eq!(span["request_id"], "req-1", "{hello}");
    assert_eq!(span["attempt"], 1, "{hello}");
}
