//! The executor's own overhead: a 1 KB input through the whole protocol on the embedded
//! in-memory store (no network), for first executions and replays.
//!
//! `cargo bench -p actiondo --bench executor` prints p50, p90 and p99 per scenario
//! (each iteration is timed alone, so the percentiles are real, not derived from a mean).

use std::time::{Duration, Instant};

use actiondo::store::sqlite::SqliteStore;
use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, EntityKey, Executor, Expect, Invocation,
    Mode, Source,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Input {
    user_id: String,
    template: String,
    data: Vec<Field>,
}

#[derive(Deserialize, JsonSchema)]
struct Field {
    name: String,
    value: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Output {
    user_id: String,
    fields: usize,
}

struct Bench(Mode);

impl Action for Bench {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "bench";
    const DESCRIPTION: &'static str = "A 1 KB input, one staged write.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: self.0,
            ..ActionOptions::default()
        }
    }

    async fn execute(&self, input: Input, cx: &mut ActionContext) -> Result<Output, ActionError> {
        cx.put(
            EntityKey::new(format!("user#{}", input.user_id), "last"),
            &json!({"template": input.template}),
            Expect::Any,
        )?;
        let fields = input
            .data
            .iter()
            .filter(|f| !f.name.is_empty() && !f.value.is_empty())
            .count();
        Ok(Output {
            user_id: input.user_id,
            fields,
        })
    }
}

/// About 1 KB of JSON.
fn params() -> Value {
    let data: Vec<Value> = (0..16)
        .map(|i| json!({"name": format!("field-{i:02}"), "value": "x".repeat(40)}))
        .collect();
    let p = json!({"userId": "u_1234567890", "template": "new-user-welcome-v2", "data": data});
    assert!(
        (1000..1300).contains(&p.to_string().len()),
        "{}",
        p.to_string().len()
    );
    p
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<34} n={:<6} p50={:>8.1} µs  p90={:>8.1} µs  p99={:>8.1} µs",
        samples.len(),
        at(0.50).as_secs_f64() * 1e6,
        at(0.90).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
    );
}

async fn scenario(name: &str, mode: Mode, replay: bool, n: usize) {
    let executor = Executor::new(SqliteStore::in_memory().expect("store"));
    let action = Bench(mode);
    let params = params();
    if replay {
        let first = executor
            .execute(
                &action,
                Invocation::new(params.clone(), Source::Cli).with_key("k"),
            )
            .await;
        assert!(first.outcome.is_ok());
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..(n + n / 10) {
        let key = if replay {
            "k".to_owned()
        } else {
            format!("k{i}")
        };
        let inv = Invocation::new(params.clone(), Source::Cli).with_key(key);
        let start = Instant::now();
        let ex = executor.execute(&action, inv).await;
        let elapsed = start.elapsed();
        assert!(ex.outcome.is_ok() && ex.replayed == replay);
        if i >= n / 10 {
            samples.push(elapsed); // the first tenth warms up
        }
    }
    report(name, samples);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // ACTIONDO_BENCH_N: iterations per scenario (default 20000; smaller under a profiler).
    let n = std::env::var("ACTIONDO_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    runtime.block_on(async {
        scenario("claim mode, first execution", Mode::Claim, false, n).await;
        scenario("claim mode, replay", Mode::Claim, true, n).await;
        scenario(
            "optimistic mode, first execution",
            Mode::Optimistic,
            false,
            20_000,
        )
        .await;
        scenario("optimistic mode, replay", Mode::Optimistic, true, n).await;
    });
}
