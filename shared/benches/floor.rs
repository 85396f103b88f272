//! The executor at the wire's floor (issue 13, item 2): `actiondo::Executor` on
//! `DynamoStore` against DynamoDB Local, paired in one run with the raw SDK sending the
//! same requests without the executor.
//!
//! ```sh
//! benches/floor.sh            # builds, then runs this under ./tests/run.sh --servers-only
//! ```
//!
//! - One `aws_sdk_dynamodb::Client`, built as the store builds its own
//!   (`DynamoStore::client_config`, `actiondo::aws::http_client`), serves both sides: the
//!   same configuration, HTTP connector and connection pool.
//! - The executor side runs `floor`, an action whose handler returns a fixed result of
//!   about 1 KB of JSON, in claim mode and in optimistic mode, first executions (a new
//!   key each) and replays (one key, completed before the timing).
//! - The raw side builds the same requests with the SDK's builders: the same operations,
//!   expressions, attributes and stored bytes (the gzip of the result, the audit details),
//!   with its own ids, lease owner, request id, times and `ClientRequestToken`. It does
//!   none of the executor's work: no key check, hash, schema check, handler, result
//!   serialization or compression, audit record building or limit checks (what it needs
//!   of those is computed once, before the timing). So the ratio is the executor's whole
//!   cost above the requests themselves.
//! - Before each round's timing, an interceptor records one execution of each side per
//!   scenario and the bench **aborts** unless the requests are the same: the same
//!   operations in the same order, and bodies equal byte for byte once the values that
//!   vary per execution (ids, lease owner, request id, times, the commit's token, the
//!   audit record's sort key) are masked with their length, apart from the order of JSON
//!   object members, which the SDK serializes from hash maps (in a random order on both
//!   sides). Their lengths must be equal too, apart from the digits of `duration_ms`.
//! - Executor and raw executions alternate (executor first on even iterations, raw first
//!   on odd ones), after a warm-up, for several rounds; each execution is timed alone
//!   (wall clock) and its thread CPU time is read too (the bench runs on a current-thread
//!   runtime, so that is the client side's whole work: SDK, HTTP and executor).
//! - The same interceptor adds up, for both sides alike, the wall and CPU time inside the
//!   SDK's operations (from a `send`'s first interceptor hook to its last); the rest of an
//!   execution, "outside", is the executor's own work on one side, and the raw side's few
//!   lines plus the SDK's set-up before the first hook on the other.
//!
//! Settings (environment):
//! - `ACTIONDO_FLOOR_N`: timed pairs per scenario and round (500);
//! - `ACTIONDO_FLOOR_ROUNDS`: rounds (3);
//! - `ACTIONDO_FLOOR_WARMUP`: untimed pairs per scenario and round, first (300; three
//!   times as many in the first round, for DynamoDB Local's JIT);
//! - `ACTIONDO_FLOOR_ITEMS`: entries in the result (12: 1,075 bytes of JSON; about 80 bytes
//!   each, so that 5 or fewer stay under the 512 bytes above which the store compresses);
//! - `ACTIONDO_FLOOR_SCENARIOS`: a comma-separated subset of `claim-first`,
//!   `claim-replay`, `optimistic-first`, `optimistic-replay` (all of them).
//!
//! It needs `ACTIONDO_TEST_DYNAMODB_LOCAL_URL` (set by `./tests/run.sh`) and exits with
//! status 2 without it. Never run by `cargo test`; figures go to BENCHMARKS.md.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actiondo::store::dynamodb::{DynamoStore, Tables};
use actiondo::store::{RecordStatus, StoredResult};
use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, AuditStatus, Executor, Invocation, Mode,
    Source,
};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use aws_smithy_runtime_api::box_error::BoxError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const URL_ENV: &str = "ACTIONDO_TEST_DYNAMODB_LOCAL_URL";

// ---------------------------------------------------------------------------------------
// The action

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Input {
    user_id: String,
    plan: String,
    seats: u32,
}

#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Output {
    user_id: String,
    plan: String,
    seats: u32,
    entitlements: Vec<Entitlement>,
}

#[derive(Clone, Serialize, Deserialize, JsonSchema)]
struct Entitlement {
    feature: String,
    limit: u64,
    note: String,
}

/// What the handler returns, the same for every execution: with the default 12
/// entitlements (`ACTIONDO_FLOOR_ITEMS`), 1,075 bytes of JSON; each one more or less is
/// about 80 bytes.
fn output() -> &'static Output {
    static OUTPUT: OnceLock<Output> = OnceLock::new();
    OUTPUT.get_or_init(|| Output {
        user_id: "u_1234567890".into(),
        plan: "team-annual".into(),
        seats: 25,
        entitlements: (0..setting("ACTIONDO_FLOOR_ITEMS", 12).unwrap_or(12) as u64)
            .map(|i| Entitlement {
                feature: format!("feature-{i:02}"),
                limit: 1000 * (i + 1),
                note: format!("granted by plan team-annual, tier {i}"),
            })
            .collect(),
    })
}

fn params() -> Value {
    json!({"userId": "u_1234567890", "plan": "team-annual", "seats": 25})
}

/// The action under test: the handler's own work is a copy of a ready result.
struct Floor(Mode);

impl Action for Floor {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "floor";
    const DESCRIPTION: &'static str = "Returns a fixed result of about 1 KB.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: self.0,
            ..ActionOptions::default()
        }
    }

    async fn execute(&self, input: Input, _cx: &mut ActionContext) -> Result<Output, ActionError> {
        Ok(Output {
            user_id: input.user_id,
            plan: input.plan,
            seats: input.seats,
            entitlements: output().entitlements.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Recording the requests

/// One request as sent: method, URI and operation, and the body.
#[derive(Debug)]
struct Sent {
    operation: String,
    body: Vec<u8>,
}

/// Records every request the client transmits while switched on (the check); while off
/// (the timing) it costs both sides the same atomic load. Always, for both sides alike,
/// it adds up the wall and thread CPU time spent inside the SDK's operations (from the
/// first interceptor hook of a `send` to the last: serialization, signing, the request,
/// the response, deserialization), so that the rest of an execution is its own code's:
/// the executor's, or the raw side's few lines. Requests are sent one at a time here.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<RecorderState>);

#[derive(Debug, Default)]
struct RecorderState {
    on: AtomicBool,
    sent: Mutex<Vec<Sent>>,
    /// When the current operation started (wall, thread CPU).
    started: Mutex<Option<(Instant, Duration)>>,
    /// Nanoseconds inside operations so far: wall, thread CPU.
    inside_wall: AtomicU64,
    inside_cpu: AtomicU64,
}

/// Time inside the SDK's operations so far.
#[derive(Debug, Clone, Copy)]
struct Inside {
    wall: Duration,
    cpu: Duration,
}

impl Recorder {
    fn start(&self) {
        self.take();
        self.0.on.store(true, Ordering::SeqCst);
    }

    fn stop(&self) {
        self.0.on.store(false, Ordering::SeqCst);
    }

    fn take(&self) -> Vec<Sent> {
        std::mem::take(&mut *self.0.sent.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn inside(&self) -> Inside {
        Inside {
            wall: Duration::from_nanos(self.0.inside_wall.load(Ordering::Relaxed)),
            cpu: Duration::from_nanos(self.0.inside_cpu.load(Ordering::Relaxed)),
        }
    }
}

impl Inside {
    fn since(self, before: Inside) -> Inside {
        Inside {
            wall: self.wall.saturating_sub(before.wall),
            cpu: self.cpu.saturating_sub(before.cpu),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "floor.Recorder"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self.0.started.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), thread_cpu()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let cpu = thread_cpu();
        if let Some((wall, started_cpu)) = self
            .0
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            self.0
                .inside_wall
                .fetch_add(nanos(wall.elapsed()), Ordering::Relaxed);
            self.0
                .inside_cpu
                .fetch_add(nanos(cpu.saturating_sub(started_cpu)), Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !self.0.on.load(Ordering::Relaxed) {
            return Ok(());
        }
        let request = context.request();
        let header = |name: &str| request.headers().get(name).unwrap_or("-").to_owned();
        let sent = Sent {
            operation: format!(
                "{} {} {} {}",
                request.method(),
                request.uri(),
                header("x-amz-target"),
                header("content-type")
            ),
            body: request
                .body()
                .bytes()
                .ok_or("a streaming request body")?
                .to_vec(),
        };
        self.0
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sent);
        Ok(())
    }
}

/// Attribute names (and expression values) whose values change with every execution:
/// masked with their length before the comparison.
const VARYING: &[&str] = &[
    "ClientRequestToken",
    "id",
    "execution",
    "seq",
    "timestamp",
    "duration_ms",
    "request_id",
    "lease_owner",
    "lease_expires_at_ms",
    "expires_at_s",
    "created_at_ms",
    "completed_at_ms",
    ":owner",
    ":lease",
    ":expires",
    ":now_ms",
    ":now_s",
    ":completed",
];

/// The varying values of one body, each with the names it was found under.
type Seen = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// A request body with its varying values masked by name and length (and, where they
/// recur inside other values, such as the lease owner in the audit details' text,
/// replaced there by the names they were found under), its objects' members sorted; and
/// the body's length without the digits of `duration_ms`.
fn normalize(body: &[u8]) -> Result<(String, usize), String> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| format!("a request body is not JSON: {e}"))?;
    let mut seen = Seen::new();
    let mut duration_len = 0;
    mask(&mut value, &mut seen, &mut duration_len);
    // The longest first, so that a value inside another is replaced after it.
    let mut seen: Vec<(String, String)> = seen
        .into_iter()
        .map(|(value, names)| {
            let names = names.into_iter().collect::<Vec<_>>().join("|");
            let label = format!("<{names}:{}>", value.len());
            (value, label)
        })
        .collect();
    seen.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
    replace_within(&mut value, &seen);
    value.sort_all_objects();
    Ok((value.to_string(), body.len() - duration_len))
}

fn mask(value: &mut Value, seen: &mut Seen, duration_len: &mut usize) {
    match value {
        Value::Object(map) => {
            for (name, child) in map.iter_mut() {
                if VARYING.contains(&name.as_str()) {
                    mask_leaves(name, child, seen, duration_len);
                } else {
                    mask(child, seen, duration_len);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| mask(v, seen, duration_len)),
        _ => {}
    }
}

fn mask_leaves(name: &str, value: &mut Value, seen: &mut Seen, duration_len: &mut usize) {
    match value {
        Value::String(text) if name == "duration_ms" => {
            *duration_len += text.len();
            *text = "<duration_ms>".into();
        }
        Value::String(text) => {
            // Ids, owners, request ids and times: long enough not to be found by chance.
            if text.len() >= 8 {
                seen.entry(text.clone())
                    .or_default()
                    .insert(name.to_owned());
            }
            *text = format!("<{name}:{}>", text.len());
        }
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| mask_leaves(name, v, seen, duration_len)),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| mask_leaves(name, v, seen, duration_len)),
        _ => {}
    }
}

fn replace_within(value: &mut Value, seen: &[(String, String)]) {
    match value {
        Value::String(text) => {
            for (varying, label) in seen {
                if text.contains(varying.as_str()) {
                    *text = text.replace(varying.as_str(), label);
                }
            }
        }
        Value::Object(map) => map.values_mut().for_each(|v| replace_within(v, seen)),
        Value::Array(items) => items.iter_mut().for_each(|v| replace_within(v, seen)),
        _ => {}
    }
}

/// The executor's requests and the raw side's, for one scenario: `Ok` with a line that
/// describes them when they are the same, else what differs.
fn compare(scenario: Scenario, executor: &[Sent], raw: &[Sent]) -> Result<String, String> {
    let ops = |sent: &[Sent]| sent.iter().map(|s| s.operation.clone()).collect::<Vec<_>>();
    if ops(executor) != ops(raw) {
        return Err(format!(
            "{}: different requests\n  executor: {:#?}\n  raw:      {:#?}",
            scenario.name(),
            ops(executor),
            ops(raw)
        ));
    }
    let mut line = Vec::new();
    for (e, r) in executor.iter().zip(raw) {
        let (e_text, e_len) = normalize(&e.body)?;
        let (r_text, r_len) = normalize(&r.body)?;
        if e_text != r_text || e_len != r_len {
            let at = e_text
                .bytes()
                .zip(r_text.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(e_text.len().min(r_text.len()));
            return Err(format!(
                "{}: {} bodies differ (lengths without duration_ms: executor {e_len}, raw {r_len}; \
                 masked text differs at byte {at})\n  executor: {e_text}\n  raw:      {r_text}",
                scenario.name(),
                e.operation
            ));
        }
        let target = e.operation.split(' ').nth(2).unwrap_or("?");
        let target = target.rsplit('.').next().unwrap_or(target);
        line.push(format!("{target} {} B", e.body.len()));
    }
    Ok(line.join(" + "))
}

// ---------------------------------------------------------------------------------------
// The raw side

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The raw SDK program: the store's requests, written out with the SDK's builders.
struct Raw {
    client: Client,
    tables: Tables,
    /// The payload hash of the params (the same for every execution).
    payload_hash: String,
    /// The stored result, as the record holds it (the gzip of the output's JSON).
    result: AttributeValue,
    /// The params' JSON text, as the audit details hold them.
    input: String,
    lease_ms: i64,
    retention_s: i64,
}

type Item = HashMap<String, AttributeValue>;

impl Raw {
    fn new(client: Client, tables: Tables) -> Self {
        let options = ActionOptions::default();
        // As the record stores it: gzip above 512 bytes, else the text.
        let result = match StoredResult::compress(
            serde_json::to_string(output()).expect("the output serializes"),
        ) {
            StoredResult::Gzip(bytes) => AttributeValue::B(Blob::new(bytes)),
            StoredResult::Json(text) => AttributeValue::S(text),
            StoredResult::Object(_) => panic!("a result this small is not an object"),
        };
        let actiondo::Lease::RemainingTime { cap } = options.lease else {
            panic!("the default lease is the remaining time, capped");
        };
        Self {
            client,
            tables,
            payload_hash: actiondo::hash::payload_hash(&params()),
            result,
            input: params().to_string(),
            lease_ms: i64::try_from(cap.as_millis()).expect("lease"),
            retention_s: i64::try_from(options.retention.as_secs()).expect("retention"),
        }
    }

    fn audit_item(
        &self,
        id: &str,
        status: AuditStatus,
        details: String,
        started: Instant,
        request_id: &str,
    ) -> Item {
        let ts = now_ms();
        Item::from([
            ("execution".into(), s(id)),
            (
                "seq".into(),
                s(actiondo::audit::seq(ts, 1, status, request_id)),
            ),
            ("type".into(), s(Floor::NAME)),
            ("status".into(), s(status.as_str())),
            ("details".into(), s(details)),
            ("timestamp".into(), s(actiondo::audit::timestamp(ts))),
            ("duration_ms".into(), n(started.elapsed().as_millis())),
            ("attempt".into(), n(1)),
            ("request_id".into(), s(request_id)),
            ("source".into(), s(Source::Direct.as_str())),
        ])
    }

    fn audit_put(&self, item: Item) -> Put {
        Put::builder()
            .table_name(&self.tables.audit)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(execution)")
            .build()
            .expect("audit put")
    }

    fn completion_details(&self, owner: &str) -> String {
        format!(r#"{{"input":{},"outputInRecord":"{owner}"}}"#, self.input)
    }

    fn replay_details(&self) -> String {
        format!(
            r#"{{"input":{},"replayOf":"{}"}}"#,
            self.input,
            RecordStatus::Completed.as_str()
        )
    }

    /// The claim: `Ok(true)` claimed, `Ok(false)` a live record stopped it.
    async fn claim(&self, id: &str, owner: &str) -> Result<bool, String> {
        let now = now_ms();
        let lease = now + self.lease_ms;
        let sent = self
            .client
            .update_item()
            .table_name(&self.tables.idempotency)
            .key("id", s(id))
            .update_expression(
                "SET #status = :in_progress, payload_hash = :hash, lease_owner = :owner, \
                 lease_expires_at_ms = :lease, expires_at_s = :expires, created_at_ms = :now_ms, \
                 attempt = if_not_exists(attempt, :zero) + :one \
                 REMOVE #result, #error, completed_at_ms",
            )
            .condition_expression(
                "attribute_not_exists(id) OR expires_at_s < :now_s OR \
                 (#status = :in_progress AND lease_expires_at_ms < :now_ms AND payload_hash = :hash)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#result", "result")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":in_progress", s(RecordStatus::InProgress.as_str()))
            .expression_attribute_values(":hash", s(&self.payload_hash))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":lease", n(lease))
            .expression_attribute_values(":expires", n(lease.div_euclid(1000) + self.retention_s))
            .expression_attribute_values(":now_ms", n(now))
            .expression_attribute_values(":now_s", n(now.div_euclid(1000)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(f) if f.item().is_some()) => {
                Ok(false)
            }
            Err(e) => Err(format!("raw claim: {e:?}")),
        }
    }

    /// Claim mode, a first execution: the claim, then the record's completion and the
    /// audit record in one transaction.
    async fn claim_first(&self, key: &str) -> Result<(), String> {
        let started = Instant::now();
        let id = format!("{}#{key}", Floor::NAME);
        let owner = uuid::Uuid::new_v4().to_string();
        let request_id = uuid::Uuid::new_v4().to_string();
        if !self.claim(&id, &owner).await? {
            return Err(format!("raw: {id} was claimed already"));
        }
        let now = now_ms();
        let update = Update::builder()
            .table_name(&self.tables.idempotency)
            .key("id", s(&id))
            .condition_expression("#status = :in_progress AND lease_owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s(RecordStatus::InProgress.as_str()))
            .expression_attribute_values(":owner", s(&owner))
            .expression_attribute_values(":status", s(RecordStatus::Completed.as_str()))
            .expression_attribute_values(":completed", n(now))
            .expression_attribute_values(":expires", n(now.div_euclid(1000) + self.retention_s))
            .expression_attribute_names("#result", "result")
            .expression_attribute_values(":result", self.result.clone())
            .update_expression(
                "SET #status = :status, completed_at_ms = :completed, expires_at_s = :expires, \
                 #result = :result",
            )
            .build()
            .expect("update");
        let audit = self.audit_item(
            &id,
            AuditStatus::Completed,
            self.completion_details(&owner),
            started,
            &request_id,
        );
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(
                TransactWriteItem::builder()
                    .put(self.audit_put(audit))
                    .build(),
            )
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .send()
            .await
            .map_err(|e| format!("raw commit: {e:?}"))?;
        Ok(())
    }

    /// The `replayed` audit record, on its own.
    async fn put_replayed(
        &self,
        id: &str,
        started: Instant,
        request_id: &str,
    ) -> Result<(), String> {
        let item = self.audit_item(
            id,
            AuditStatus::Replayed,
            self.replay_details(),
            started,
            request_id,
        );
        self.client
            .put_item()
            .table_name(&self.tables.audit)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(execution)")
            .send()
            .await
            .map_err(|e| format!("raw audit put: {e:?}"))?;
        Ok(())
    }

    /// Claim mode, a replay: the claim that finds the completed record, then the
    /// `replayed` audit record.
    async fn claim_replay(&self, key: &str) -> Result<(), String> {
        let started = Instant::now();
        let id = format!("{}#{key}", Floor::NAME);
        let owner = uuid::Uuid::new_v4().to_string();
        let request_id = uuid::Uuid::new_v4().to_string();
        if self.claim(&id, &owner).await? {
            return Err(format!("raw: {id} was claimed, not replayed"));
        }
        self.put_replayed(&id, started, &request_id).await
    }

    /// Optimistic mode: the transaction that inserts the completed record and its audit
    /// record; `Ok(false)` when a live record stopped it.
    async fn insert(&self, id: &str, started: Instant, request_id: &str) -> Result<bool, String> {
        let owner = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let record = Item::from([
            ("id".into(), s(id)),
            ("status".into(), s(RecordStatus::Completed.as_str())),
            ("payload_hash".into(), s(&self.payload_hash)),
            ("attempt".into(), n(1)),
            ("lease_owner".into(), s(&owner)),
            ("lease_expires_at_ms".into(), n(now)),
            (
                "expires_at_s".into(),
                n(now.div_euclid(1000) + self.retention_s),
            ),
            ("created_at_ms".into(), n(now)),
            ("result".into(), self.result.clone()),
            ("completed_at_ms".into(), n(now)),
        ]);
        let put = Put::builder()
            .table_name(&self.tables.idempotency)
            .set_item(Some(record))
            .condition_expression("attribute_not_exists(id) OR expires_at_s < :now_s")
            .expression_attribute_values(":now_s", n(now.div_euclid(1000)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .expect("put");
        let audit = self.audit_item(
            id,
            AuditStatus::Completed,
            self.completion_details(&owner),
            started,
            request_id,
        );
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(
                TransactWriteItem::builder()
                    .put(self.audit_put(audit))
                    .build(),
            )
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(format!("raw insert: {e:?}")),
        }
    }

    async fn optimistic_first(&self, key: &str) -> Result<(), String> {
        let started = Instant::now();
        let id = format!("{}#{key}", Floor::NAME);
        let request_id = uuid::Uuid::new_v4().to_string();
        if !self.insert(&id, started, &request_id).await? {
            return Err(format!("raw: {id} exists already"));
        }
        Ok(())
    }

    async fn optimistic_replay(&self, key: &str) -> Result<(), String> {
        let started = Instant::now();
        let id = format!("{}#{key}", Floor::NAME);
        let request_id = uuid::Uuid::new_v4().to_string();
        if self.insert(&id, started, &request_id).await? {
            return Err(format!("raw: {id} was inserted, not replayed"));
        }
        self.put_replayed(&id, started, &request_id).await
    }
}

// ---------------------------------------------------------------------------------------
// The scenarios and their timing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    ClaimFirst,
    ClaimReplay,
    OptimisticFirst,
    OptimisticReplay,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::ClaimFirst,
        Scenario::ClaimReplay,
        Scenario::OptimisticFirst,
        Scenario::OptimisticReplay,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::ClaimFirst => "claim mode, first execution",
            Scenario::ClaimReplay => "claim mode, replay",
            Scenario::OptimisticFirst => "optimistic mode, first execution",
            Scenario::OptimisticReplay => "optimistic mode, replay",
        }
    }

    /// Its name in `ACTIONDO_FLOOR_SCENARIOS`.
    fn slug(self) -> &'static str {
        match self {
            Scenario::ClaimFirst => "claim-first",
            Scenario::ClaimReplay => "claim-replay",
            Scenario::OptimisticFirst => "optimistic-first",
            Scenario::OptimisticReplay => "optimistic-replay",
        }
    }

    /// The scenarios `ACTIONDO_FLOOR_SCENARIOS` names (comma-separated slugs), else all.
    fn chosen() -> Result<Vec<Scenario>, String> {
        let Ok(list) = std::env::var("ACTIONDO_FLOOR_SCENARIOS") else {
            return Ok(Self::ALL.to_vec());
        };
        list.split(',')
            .map(|slug| {
                Self::ALL
                    .into_iter()
                    .find(|s| s.slug() == slug.trim())
                    .ok_or_else(|| {
                        let known: Vec<_> = Self::ALL.iter().map(|s| s.slug()).collect();
                        format!(
                            "ACTIONDO_FLOOR_SCENARIOS: unknown scenario {slug:?} (known: {})",
                            known.join(", ")
                        )
                    })
            })
            .collect()
    }

    fn mode(self) -> Mode {
        match self {
            Scenario::ClaimFirst | Scenario::ClaimReplay => Mode::Claim,
            Scenario::OptimisticFirst | Scenario::OptimisticReplay => Mode::Optimistic,
        }
    }

    fn replay(self) -> bool {
        matches!(self, Scenario::ClaimReplay | Scenario::OptimisticReplay)
    }

    /// The key of an execution of `side` ('e' executor, 'r' raw): the same length on both
    /// sides (the check compares the masked ids' lengths).
    fn key(self, side: char, counter: &AtomicU64) -> String {
        match self {
            Scenario::ClaimReplay => format!("{side}-replay-claim"),
            Scenario::OptimisticReplay => format!("{side}-replay-optim"),
            _ => format!("{side}{:09}", counter.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

/// One execution's wall time and thread CPU time, in all and inside the SDK's operations.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    inside: Inside,
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

struct Bench {
    executor: Executor,
    claim: Floor,
    optimistic: Floor,
    raw: Raw,
    recorder: Recorder,
    counter: AtomicU64,
    expected: String,
}

impl Bench {
    async fn run_executor(&self, scenario: Scenario, key: String) -> Result<Sample, String> {
        let action = match scenario.mode() {
            Mode::Claim => &self.claim,
            Mode::Optimistic => &self.optimistic,
        };
        let inv = Invocation::new(params(), Source::Direct).with_key(key);
        let inside = self.recorder.inside();
        let cpu = thread_cpu();
        let started = Instant::now();
        let ex = self.executor.execute(action, inv).await;
        let wall = started.elapsed();
        let cpu = thread_cpu().saturating_sub(cpu);
        let inside = self.recorder.inside().since(inside);
        match &ex.outcome {
            Ok(raw) if raw.get() == self.expected && ex.replayed == scenario.replay() => {
                Ok(Sample { wall, cpu, inside })
            }
            other => Err(format!(
                "executor, {}: replayed {} and {other:?}",
                scenario.name(),
                ex.replayed
            )),
        }
    }

    async fn run_raw(&self, scenario: Scenario, key: String) -> Result<Sample, String> {
        let inside = self.recorder.inside();
        let cpu = thread_cpu();
        let started = Instant::now();
        match scenario {
            Scenario::ClaimFirst => self.raw.claim_first(&key).await,
            Scenario::ClaimReplay => self.raw.claim_replay(&key).await,
            Scenario::OptimisticFirst => self.raw.optimistic_first(&key).await,
            Scenario::OptimisticReplay => self.raw.optimistic_replay(&key).await,
        }?;
        let wall = started.elapsed();
        let cpu = thread_cpu().saturating_sub(cpu);
        let inside = self.recorder.inside().since(inside);
        Ok(Sample { wall, cpu, inside })
    }

    /// One executor execution and one raw, in the order `i` says.
    async fn pair(&self, scenario: Scenario, i: usize) -> Result<(Sample, Sample), String> {
        let e_key = scenario.key('e', &self.counter);
        let r_key = scenario.key('r', &self.counter);
        if i.is_multiple_of(2) {
            let e = self.run_executor(scenario, e_key).await?;
            let r = self.run_raw(scenario, r_key).await?;
            Ok((e, r))
        } else {
            let r = self.run_raw(scenario, r_key).await?;
            let e = self.run_executor(scenario, e_key).await?;
            Ok((e, r))
        }
    }

    /// Both sides once, recorded: their requests must be the same.
    async fn check(&self, scenario: Scenario) -> Result<String, String> {
        self.recorder.start();
        let e = self
            .run_executor(scenario, scenario.key('e', &self.counter))
            .await;
        let e_sent = self.recorder.take();
        let r = self
            .run_raw(scenario, scenario.key('r', &self.counter))
            .await;
        let r_sent = self.recorder.take();
        self.recorder.stop();
        e?;
        r?;
        compare(scenario, &e_sent, &r_sent)
    }
}

fn setting(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name}={v:?}: expected a positive integer")),
    }
}

struct Stats {
    mean: f64,
    p50: f64,
    p99: f64,
}

/// Mean, p50 and p99 of `values` (any unit).
fn stats(mut values: Vec<f64>) -> Stats {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        mean: values.iter().sum::<f64>() / values.len() as f64,
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One table row: the scenario's pairs.
fn row(label: &str, pairs: &[(Sample, Sample)]) -> String {
    let e = stats(pairs.iter().map(|(e, _)| ms(e.wall)).collect());
    let r = stats(pairs.iter().map(|(_, r)| ms(r.wall)).collect());
    let diff = stats(
        pairs
            .iter()
            .map(|(e, r)| (e.wall.as_secs_f64() - r.wall.as_secs_f64()) * 1e6)
            .collect(),
    );
    let e_cpu = stats(pairs.iter().map(|(e, _)| us(e.cpu)).collect());
    let r_cpu = stats(pairs.iter().map(|(_, r)| us(r.cpu)).collect());
    format!(
        "| {label} | {:.3} / {:.3} / {:.3} | {:.3} / {:.3} / {:.3} | **{:.3}×** | {:.3}× | {:+.0} µs | {:.0} / {:.0} µs |",
        e.mean,
        e.p50,
        e.p99,
        r.mean,
        r.p50,
        r.p99,
        e.mean / r.mean,
        e.p50 / r.p50,
        diff.p50,
        e_cpu.p50,
        r_cpu.p50,
    )
}

/// Where one scenario's difference goes: inside the SDK's operations (the requests,
/// which should cost the same on both sides) and outside them (each side's own code).
fn split_row(label: &str, pairs: &[(Sample, Sample)]) -> String {
    let p50 = |f: &dyn Fn(&Sample) -> Duration, side: usize| {
        stats(
            pairs
                .iter()
                .map(|pair| us(f(if side == 0 { &pair.0 } else { &pair.1 })))
                .collect(),
        )
        .p50
    };
    let wall_in = |s: &Sample| s.inside.wall;
    let wall_out = |s: &Sample| s.wall.saturating_sub(s.inside.wall);
    let cpu_in = |s: &Sample| s.inside.cpu;
    let cpu_out = |s: &Sample| s.cpu.saturating_sub(s.inside.cpu);
    format!(
        "| {label} | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {:.0} / {:.0} µs |",
        p50(&wall_in, 0),
        p50(&wall_in, 1),
        p50(&wall_out, 0),
        p50(&wall_out, 1),
        p50(&cpu_in, 0),
        p50(&cpu_in, 1),
        p50(&cpu_out, 0),
        p50(&cpu_out, 1),
    )
}

const SPLIT_HEADER: &str = "| scenario (p50, executor / raw) | wall inside the SDK's operations | wall outside them | CPU inside | CPU outside |\n|---|---|---|---|---|";

const HEADER: &str = "| scenario | executor mean / p50 / p99 (ms) | raw mean / p50 / p99 (ms) | executor / raw, mean | p50 | paired difference, median | thread CPU p50, executor / raw |\n|---|---|---|---|---|---|---|";

async fn run() -> Result<(), String> {
    let Ok(url) = std::env::var(URL_ENV) else {
        return Err(format!(
            "{URL_ENV} is not set: this benchmark needs DynamoDB Local. Run it with \
             benches/floor.sh (./tests/run.sh --servers-only -- cargo bench --offline -p actiondo --bench floor)"
        ));
    };
    let n = setting("ACTIONDO_FLOOR_N", 500)?;
    let rounds = setting("ACTIONDO_FLOOR_ROUNDS", 3)?;
    let warmup = setting("ACTIONDO_FLOOR_WARMUP", 300)?;
    let scenarios = Scenario::chosen()?;
    setting("ACTIONDO_FLOOR_ITEMS", 12)?;

    // The store's client: the environment's SDK configuration, the store's timeouts,
    // actiondo's HTTP client; one client for both sides.
    let vars: HashMap<&str, String> = HashMap::from([
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "floor".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "floor".to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB", url.clone()),
    ]);
    let sdk = actiondo::aws::sdk_config_from(move |name| vars.get(name).cloned())
        .map_err(|e| e.to_string())?;
    let recorder = Recorder::default();
    let config = DynamoStore::client_config(&sdk)
        .to_builder()
        .interceptor(recorder.clone())
        .build();
    let client = Client::from_conf(config);
    let tables = Tables::with_prefix(&format!("floor{}", uuid::Uuid::new_v4().simple()));
    let store = DynamoStore::new(client.clone(), tables.clone());
    store
        .create_tables()
        .await
        .map_err(|e| format!("creating the tables: {e}"))?;

    let bench = Bench {
        executor: Executor::new(store),
        claim: Floor(Mode::Claim),
        optimistic: Floor(Mode::Optimistic),
        raw: Raw::new(client, tables),
        recorder,
        counter: AtomicU64::new(0),
        expected: serde_json::to_string(output()).map_err(|e| e.to_string())?,
    };
    println!(
        "floor: DynamoDB Local at {url}; result {} bytes of JSON; {n} timed pairs per scenario \
         and round after {warmup} untimed (three times as many before the first), {rounds} rounds",
        bench.expected.len()
    );

    // The records the replays find.
    for scenario in [Scenario::ClaimReplay, Scenario::OptimisticReplay] {
        let first = match scenario.mode() {
            Mode::Claim => Scenario::ClaimFirst,
            Mode::Optimistic => Scenario::OptimisticFirst,
        };
        bench
            .run_executor(first, scenario.key('e', &bench.counter))
            .await?;
        bench
            .run_raw(first, scenario.key('r', &bench.counter))
            .await?;
    }

    let mut all: HashMap<&str, Vec<(Sample, Sample)>> = HashMap::new();
    for round in 1..=rounds {
        let mut lines = Vec::new();
        for &scenario in &scenarios {
            let requests = bench.check(scenario).await.map_err(|e| {
                format!("ABORTED: the raw side's requests are not the executor's: {e}")
            })?;
            if round == 1 {
                println!(
                    "same requests, {}: {requests} (executor's sizes)",
                    scenario.name()
                );
            }
            // DynamoDB Local's JIT: a longer warm-up before the first round.
            let untimed = if round == 1 { 3 * warmup } else { warmup };
            for i in 0..untimed {
                bench.pair(scenario, i).await?;
            }
            let mut pairs = Vec::with_capacity(n);
            for i in 0..n {
                pairs.push(bench.pair(scenario, i).await?);
            }
            lines.push(row(scenario.name(), &pairs));
            all.entry(scenario.name()).or_default().extend(pairs);
        }
        println!("\nround {round}:\n{HEADER}");
        for line in &lines {
            println!("{line}");
        }
    }
    println!(
        "\nall {rounds} rounds ({} pairs per scenario):\n{HEADER}",
        n * rounds
    );
    for scenario in &scenarios {
        println!("{}", row(scenario.name(), &all[scenario.name()]));
    }
    println!("\nwhere the time goes, all rounds:\n{SPLIT_HEADER}");
    for scenario in &scenarios {
        println!("{}", split_row(scenario.name(), &all[scenario.name()]));
    }
    Ok(())
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::from(2)
        }
    }
}
