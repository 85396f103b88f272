//! The executor's own overhead: a 1 KB input through the whole protocol on the embedded
//! in-memory store (no network), for first executions and replays.
//!
//! `cargo bench -p actiondo --bench executor` prints p50, p90 and p99 per scenario
//! (each iteration is timed alone, so the percentiles are real, not derived from a mean),
//! on two stores: `SqliteStore::in_memory()`, and `MemoryStore`, a map behind a mutex that
//! serializes nothing, so that its scenarios measure the executor's own work apart from
//! any store.

use std::time::{Duration, Instant};

use std::collections::HashMap;
use std::sync::Mutex;

use actiondo::store::sqlite::SqliteStore;
use actiondo::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, IdempotencyRecord, RecordWrite, StagedWrite,
};
use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, AuditPage, AuditQuery, AuditRecord, Entity,
    EntityKey, Executor, Expect, Invocation, Mode, Source, Store, StoreError,
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

/// A store without I/O or serialization, for the benchmark only: the records and entities
/// in maps behind one mutex, audit records counted. It keeps the protocol's conditions
/// (claimable, lease owner, existing record, entity versions) so that every scenario takes
/// the path it takes on a real store.
#[derive(Debug, Default)]
struct MemoryStore(Mutex<Memory>);

#[derive(Debug, Default)]
struct Memory {
    records: HashMap<String, IdempotencyRecord>,
    versions: HashMap<EntityKey, u64>,
    audits: usize,
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        let mut m = self.0.lock().expect("memory");
        let attempt = match m.records.get(&claim.id) {
            None => 1,
            Some(old) if old.is_claimable(&claim.payload_hash, claim.now_ms) => {
                old.attempt.saturating_add(1)
            }
            Some(old) => return Ok(ClaimOutcome::Existing(old.clone())),
        };
        m.records
            .insert(claim.id.clone(), claim.in_progress(attempt));
        Ok(ClaimOutcome::Claimed {
            attempt,
            taken_over: false,
        })
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, StoreError> {
        let mut m = self.0.lock().expect("memory");
        match &commit.record {
            RecordWrite::Finish {
                id,
                lease_owner,
                status,
                result,
                error,
                completed_at_ms,
                expires_at_s,
            } => match m.records.get_mut(id) {
                Some(r) if &r.lease_owner == lease_owner => {
                    r.status = *status;
                    r.result = result.clone();
                    r.error = error.clone();
                    r.completed_at_ms = Some(*completed_at_ms);
                    r.expires_at_s = *expires_at_s;
                }
                _ => return Ok(CommitOutcome::LeaseLost),
            },
            RecordWrite::Insert { record, now_ms } => match m.records.get(&record.id) {
                Some(old) if !old.is_expired(*now_ms) => {
                    return Ok(CommitOutcome::Exists(old.clone()));
                }
                _ => {
                    m.records.insert(record.id.clone(), record.clone());
                }
            },
            RecordWrite::Release { .. } | RecordWrite::None => {}
        }
        for write in &commit.writes {
            match write {
                StagedWrite::Put { key, .. } => *m.versions.entry(key.clone()).or_default() += 1,
                StagedWrite::Delete { key, .. } => {
                    m.versions.remove(key);
                }
            }
        }
        m.audits += 1;
        Ok(CommitOutcome::Committed)
    }

    async fn put_audit(&self, _record: &AuditRecord) -> Result<(), StoreError> {
        self.0.lock().expect("memory").audits += 1;
        Ok(())
    }

    async fn get_record(&self, id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self.0.lock().expect("memory").records.get(id).cloned())
    }

    async fn get_entity(&self, _key: &EntityKey) -> Result<Option<Entity>, StoreError> {
        Ok(None)
    }

    async fn query_audit(&self, _query: &AuditQuery) -> Result<AuditPage, StoreError> {
        Ok(AuditPage {
            records: Vec::new(),
            next_cursor: None,
        })
    }

    async fn put_entity(
        &self,
        key: &EntityKey,
        _doc: &Value,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        let mut m = self.0.lock().expect("memory");
        let current = m.versions.get(key).copied();
        if !expect.holds(current) {
            return Ok(false);
        }
        *m.versions.entry(key.clone()).or_default() += 1;
        Ok(true)
    }
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

async fn scenario(store: &str, name: &str, executor: Executor, mode: Mode, replay: bool, n: usize) {
    // ACTIONDO_BENCH_ONLY: run only the scenarios whose "store: scenario" name contains it
    // (one scenario under a profiler), e.g. "SQLite in memory: claim mode, first".
    if let Ok(only) = std::env::var("ACTIONDO_BENCH_ONLY")
        && !format!("{store}: {name}").contains(only.as_str())
    {
        return;
    }
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
        let sqlite = || Executor::new(SqliteStore::in_memory().expect("store"));
        let memory = || Executor::new(MemoryStore::default());
        for (store, executor) in [
            ("SQLite in memory", &sqlite as &dyn Fn() -> Executor),
            ("no-I/O memory store", &memory),
        ] {
            println!("{store}:");
            scenario(
                store,
                "claim mode, first execution",
                executor(),
                Mode::Claim,
                false,
                n,
            )
            .await;
            scenario(
                store,
                "claim mode, replay",
                executor(),
                Mode::Claim,
                true,
                n,
            )
            .await;
            scenario(
                store,
                "optimistic mode, first execution",
                executor(),
                Mode::Optimistic,
                false,
                n,
            )
            .await;
            scenario(
                store,
                "optimistic mode, replay",
                executor(),
                Mode::Optimistic,
                true,
                n,
            )
            .await;
        }
    });
}
