//! Trigger fuzzing (docs/architecture.md §6, §7): random events of every shape — direct envelopes and
//! bare params, SQS, EventBridge, API Gateway REST v1 / HTTP v2 / function URL / ALB
//! (base64 bodies valid and not), real sample events with a field replaced, and arbitrary
//! bytes — through `Handler::handle` on the embedded store, with a trivial action.
//!
//! Every case must hold:
//! - nothing panics, not even a panic that is caught (a panic hook counts them);
//! - a Lambda function error has an `errorType` of the table of docs/architecture.md §6, and its message
//!   is that error's JSON body;
//! - an HTTP answer has a status of docs/architecture.md §6 (or 200, 405, 413, 415) and every error body
//!   carries a type of the table;
//! - an SQS answer reports only ids of the batch's messages.
//!
//! The case counts keep the whole file to a few seconds in the dev profile; set
//! `PROPTEST_CASES` to run more.
#![cfg(feature = "lambda")]

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actiondo::store::sqlite::SqliteStore;
use actiondo::trigger::{EventShape, RawEvent};
use actiondo::{Action, ActionContext, ActionError, Executor, Handler};
use base64::Engine as _;
use lambda_runtime::{Context, Diagnostic};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

const SQS: &str = include_str!("fixtures/sqs-receive-message.json");
const APIGW_V1: &str = include_str!("fixtures/apigateway-aws-proxy.json");
const APIGW_V2: &str = include_str!("fixtures/apigateway-http-api-proxy.json");
const ALB: &str = include_str!("fixtures/alb-request.json");
const EVENTBRIDGE: &str = include_str!("fixtures/eventbridge-scheduled-event.json");
const S3: &str = include_str!("fixtures/s3-put.json");

/// The wire names of docs/architecture.md §6, written out here so that a change to the code's table
/// cannot make this test agree with it.
const ERROR_TYPES: [&str; 10] = [
    "ActionDo.Validation",
    "ActionDo.Rejected",
    "ActionDo.PayloadMismatch",
    "ActionDo.InProgress",
    "ActionDo.Conflict",
    "ActionDo.Transient",
    "ActionDo.NotFound",
    "ActionDo.Unauthorized",
    "ActionDo.Forbidden",
    "ActionDo.Internal",
];

/// The statuses of docs/architecture.md §6 and of the request checks of the HTTP trigger.
const HTTP_STATUSES: [i64; 12] = [200, 400, 401, 403, 404, 405, 409, 413, 415, 422, 500, 503];

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// The action and the handler.

/// Echoes its params; `{"fail": "reject" | "transient"}` fails that way.
#[derive(Debug)]
struct Echo;

impl Action for Echo {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "echo";
    const DESCRIPTION: &'static str = "Echoes its params.";

    async fn execute(&self, input: Value, _: &mut ActionContext) -> Result<Value, ActionError> {
        match input.get("fail").and_then(Value::as_str) {
            Some("reject") => Err(ActionError::rejected("asked to reject")),
            Some("transient") => Err(ActionError::transient("asked to fail for now")),
            _ => Ok(input),
        }
    }
}

/// Panics anywhere in this test binary, caught or not.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

thread_local! {
    /// One runtime and one store per test thread, kept across cases: keys repeat, so
    /// replays and mismatches are fuzzed too.
    static FUZZ: RefCell<Option<(tokio::runtime::Runtime, Handler)>> = const { RefCell::new(None) };
}

fn with_handler<T>(f: impl FnOnce(&tokio::runtime::Runtime, &Handler) -> T) -> T {
    FUZZ.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (runtime, handler) = cell.get_or_insert_with(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let store = SqliteStore::in_memory().expect("in-memory SQLite");
            (runtime, Handler::new(Executor::new(store), Arc::new(Echo)))
        });
        f(runtime, handler)
    })
}

fn context(deadline_ms: u64) -> Context {
    let mut cx = Context::default();
    cx.request_id = "fuzz".into();
    cx.deadline = deadline_ms;
    cx
}

// ---------------------------------------------------------------------------------------
// The invariants.

/// Run one event (JSON, or bytes as the runtime reads them) and check every invariant.
fn check(event: RawEvent, deadline_ms: u64) -> Result<(), TestCaseError> {
    count_panics();
    let before = PANICS.load(Ordering::SeqCst);
    let shape = match &event {
        RawEvent::Json(value) => EventShape::of(value).ok(),
        RawEvent::Unreadable(_) => None,
    };
    let message_ids = match &event {
        RawEvent::Json(value) => message_ids(value),
        RawEvent::Unreadable(_) => Vec::new(),
    };
    let outcome = with_handler(|runtime, handler| {
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(handler.handle_raw(event, &context(deadline_ms)))
        }));
        handled.map(|r| r.map(|reply| serde_json::to_value(reply).expect("a reply serializes")))
    });
    prop_assert_eq!(
        PANICS.load(Ordering::SeqCst),
        before,
        "something panicked (caught or not)"
    );
    let outcome = outcome.map_err(|_| TestCaseError::fail("the handler panicked"))?;
    match outcome {
        Err(error) => check_function_error(error),
        Ok(reply) => match shape {
            Some(EventShape::Http) => check_http(&reply),
            Some(EventShape::Sqs) => check_sqs(&reply, &message_ids),
            _ => check_direct(&reply),
        },
    }
}

fn check_error_type(error_type: &str, message: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        ERROR_TYPES.contains(&error_type),
        "errorType {error_type:?} is not in docs/architecture.md §6 ({message})"
    );
    Ok(())
}

fn check_function_error(error: ActionError) -> Result<(), TestCaseError> {
    let diagnostic = Diagnostic::from(error);
    check_error_type(&diagnostic.error_type, &diagnostic.error_message)?;
    let body: Value = serde_json::from_str(&diagnostic.error_message)
        .map_err(|e| TestCaseError::fail(format!("errorMessage is not JSON: {e}")))?;
    prop_assert_eq!(
        body["error"]["type"].as_str(),
        Some(diagnostic.error_type.as_str())
    );
    Ok(())
}

fn check_http(reply: &Value) -> Result<(), TestCaseError> {
    let status = reply["statusCode"]
        .as_i64()
        .ok_or_else(|| TestCaseError::fail(format!("no statusCode: {reply}")))?;
    prop_assert!(HTTP_STATUSES.contains(&status), "status {status}: {reply}");
    if status >= 400 {
        let body: Value = reply["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .ok_or_else(|| TestCaseError::fail(format!("no JSON error body: {reply}")))?;
        let error_type = body["error"]["type"].as_str().unwrap_or_default();
        check_error_type(error_type, &body.to_string())?;
    }
    Ok(())
}

fn check_sqs(reply: &Value, message_ids: &[String]) -> Result<(), TestCaseError> {
    let failures = reply["batchItemFailures"]
        .as_array()
        .ok_or_else(|| TestCaseError::fail(format!("no batchItemFailures: {reply}")))?;
    for failure in failures {
        let id = failure["itemIdentifier"].as_str().unwrap_or_default();
        prop_assert!(
            message_ids.iter().any(|m| m == id),
            "{id:?} is not a message of the batch"
        );
    }
    Ok(())
}

fn check_direct(reply: &Value) -> Result<(), TestCaseError> {
    // The envelope form carries terminal errors as values: they too are of the table.
    if let Some(error) = reply.get("error").filter(|e| !e.is_null())
        && reply.get("execution").is_some()
    {
        check_error_type(
            error["type"].as_str().unwrap_or_default(),
            &error.to_string(),
        )?;
    }
    Ok(())
}

fn message_ids(event: &Value) -> Vec<String> {
    event["Records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .filter_map(|r| r["messageId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The generators.

/// Strings that mean something to some trigger, and arbitrary ones.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", "params", "idempotencyKey", "correlationId", "respond", "envelope", "result",
            "value", "fail", "reject", "transient", "Records", "aws:sqs", "aws:s3",
            "eventSource", "detail", "detail-type", "source", "requestContext", "http", "elb",
            "httpMethod", "routeKey", "body", "isBase64Encoded", "k-1", "k-2",
            "arn:aws:states:us-east-1:1:execution:sm:run", "{}", "[1,", "null", "1e400",
            "not base64!", "eyJ2YWx1ZSI6MX0=", "\u{0}", "\u{7f}", "é", "a b", "%zz",
        ])
        .prop_map(str::to_owned),
        2 => any::<String>(),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "1e126",
            "1e127",
            "1e-131",
            "-0.0",
            "1.0",
            "1e2",
            "123456789012345678901234567890123456789"
        ])
        .prop_map(|n| serde_json::from_str(n).unwrap_or(Value::Null)),
    ]
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..5)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A key: valid, or anything.
fn key() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["k-1", "k-2", "k-3"]).prop_map(Value::from),
        word().prop_map(Value::String),
        json_value(),
    ]
}

/// Params the action takes, or fails on, or anything.
fn params() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!({"value": 1}),
            json!({"value": "x"}),
            json!({"fail": "reject"}),
            json!({"fail": "transient"}),
            json!({}),
        ]),
        json_value(),
    ]
}

/// A direct invocation or Step Functions task: an envelope (well formed or not) or bare
/// params.
fn direct_event() -> impl Strategy<Value = Value> {
    let envelope = (
        params(),
        prop::option::of(key()),
        prop::option::of(key()),
        prop::option::of(prop_oneof![
            Just(json!("envelope")),
            Just(json!("result")),
            json_value()
        ]),
    )
        .prop_map(|(params, key, correlation, respond)| {
            let mut envelope = Map::new();
            envelope.insert("params".into(), params);
            if let Some(key) = key {
                envelope.insert("idempotencyKey".into(), key);
            }
            if let Some(correlation) = correlation {
                envelope.insert("correlationId".into(), correlation);
            }
            if let Some(respond) = respond {
                envelope.insert("respond".into(), respond);
            }
            Value::Object(envelope)
        });
    prop_oneof![envelope, params()]
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

/// An SQS batch of up to 4 records built from the sample record: bodies that are
/// envelopes, params, anything or not JSON; FIFO attributes or not; ids present or not.
fn sqs_event() -> impl Strategy<Value = Value> {
    let body = prop_oneof![direct_event().prop_map(|v| v.to_string()), word(),];
    let record = (
        prop::option::of(prop_oneof![
            prop::sample::select(vec!["m-1", "m-2", "m-3"]).prop_map(str::to_owned),
            word()
        ]),
        prop::option::of(body),
        prop::option::of(prop::sample::select(vec!["G1", "G2"])),
        prop::option::of(word()),
    )
        .prop_map(|(id, body, group, dedup)| {
            let mut record = fixture(SQS)["Records"][0].clone();
            match id {
                Some(id) => record["messageId"] = json!(id),
                None => {
                    record.as_object_mut().map(|r| r.remove("messageId"));
                }
            }
            record["body"] = body.map_or(Value::Null, Value::String);
            if let Some(group) = group {
                record["attributes"]["MessageGroupId"] = json!(group);
            }
            if let Some(dedup) = dedup {
                record["attributes"]["MessageDeduplicationId"] = json!(dedup);
            }
            record
        });
    prop::collection::vec(record, 0..5).prop_map(|records| json!({"Records": records}))
}

fn eventbridge_event() -> impl Strategy<Value = Value> {
    (direct_event(), prop::option::of(word())).prop_map(|(detail, id)| {
        let mut event = fixture(EVENTBRIDGE);
        event["detail"] = detail;
        event["id"] = id.map_or(Value::Null, Value::String);
        event
    })
}

/// A request body: JSON params, base64 (of JSON or of anything), not base64, anything.
fn http_body() -> impl Strategy<Value = (Option<String>, bool)> {
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    prop_oneof![
        (params(), any::<bool>()).prop_map(|(p, marked)| (Some(p.to_string()), marked)),
        params().prop_map(move |p| (Some(b64(p.to_string().into_bytes())), true)),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(move |b| (Some(b64(b)), true)),
        (word(), any::<bool>()).prop_map(|(w, marked)| (Some(w), marked)),
        any::<bool>().prop_map(|marked| (None, marked)),
    ]
}

/// An API Gateway REST v1, HTTP v2 (function URL) or ALB request built from the samples:
/// method, path, host, query, headers and body drawn at random.
fn http_event() -> impl Strategy<Value = Value> {
    let headers = prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(vec![
                    "content-type",
                    "idempotency-key",
                    "x-correlation-id",
                    "host",
                    "x-forwarded-proto",
                    "cookie",
                ])
                .prop_map(str::to_owned),
                word(),
            ],
            prop_oneof![
                prop::sample::select(vec![
                    "application/json",
                    "application/problem+json; charset=utf-8",
                    "text/plain",
                    "k-1",
                    "example.com",
                    "http",
                ])
                .prop_map(str::to_owned),
                word(),
            ],
        ),
        0..5,
    );
    (
        prop::sample::select(vec![APIGW_V1, APIGW_V2, ALB]),
        prop_oneof![
            3 => Just("POST".to_owned()),
            1 => prop::sample::select(vec!["GET", "PUT", "BREW", "post", ""]).prop_map(str::to_owned),
            1 => word(),
        ],
        word(),
        word(),
        headers,
        http_body(),
        prop::option::of(prop::sample::select(vec!["prod", "$default"])),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(template, method, path, query, headers, (body, marked), stage, multi_query)| {
                let mut event = fixture(template);
                let headers: Map<String, Value> =
                    headers.into_iter().map(|(k, v)| (k, json!(v))).collect();
                let multi: Map<String, Value> = headers
                    .iter()
                    .map(|(k, v)| (k.clone(), json!([v])))
                    .collect();
                event["headers"] = Value::Object(headers);
                if event.get("multiValueHeaders").is_some() {
                    event["multiValueHeaders"] = Value::Object(multi);
                }
                if event["requestContext"].get("http").is_some() {
                    event["requestContext"]["http"]["method"] = json!(method);
                    event["rawPath"] = json!(path);
                    event["rawQueryString"] = json!(query);
                } else {
                    event["httpMethod"] = json!(method);
                    event["path"] = json!(path);
                    let mut single = Map::new();
                    single.insert(query.clone(), json!(query));
                    event["queryStringParameters"] = Value::Object(single);
                    // Multi-valued parameters with values, without (which made
                    // lambda_http's query map index out of bounds), or none.
                    let mut multi = Map::new();
                    match multi_query {
                        Some(true) => multi.insert(query.clone(), json!([query])),
                        Some(false) => multi.insert(query, json!([])),
                        None => None,
                    };
                    event["multiValueQueryStringParameters"] = Value::Object(multi);
                }
                if let Some(stage) = stage {
                    event["requestContext"]["stage"] = json!(stage);
                }
                event["body"] = body.map_or(Value::Null, Value::String);
                event["isBase64Encoded"] = json!(marked);
                event
            },
        )
}

/// A sample event (of every trigger, and one this function does not take) with one field,
/// at any depth, replaced by arbitrary JSON.
fn mutated_fixture() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![SQS, APIGW_V1, APIGW_V2, ALB, EVENTBRIDGE, S3]),
        prop::collection::vec(any::<prop::sample::Index>(), 1..5),
        json_value(),
    )
        .prop_map(|(text, path, replacement)| {
            let mut event = fixture(text);
            replace_at(&mut event, &path, replacement);
            event
        })
}

/// Replace the value found by following `path` (an index into each level's fields or
/// items) with `replacement`, stopping where the structure ends.
fn replace_at(value: &mut Value, path: &[prop::sample::Index], replacement: Value) {
    let Some((first, rest)) = path.split_first() else {
        *value = replacement;
        return;
    };
    let child = match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(first.index(map.len())).cloned();
            key.and_then(|k| map.get_mut(&k))
        }
        Value::Array(items) if !items.is_empty() => {
            let i = first.index(items.len());
            items.get_mut(i)
        }
        _ => None,
    };
    match child {
        Some(child) => replace_at(child, rest, replacement),
        None => *value = replacement,
    }
}

/// A context deadline: none (0), a duration (an emulator's), past, or ahead.
fn deadline() -> impl Strategy<Value = u64> {
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    prop_oneof![
        Just(0),
        Just(600_000),
        Just(now.saturating_sub(5_000)),
        Just(now + 30_000),
    ]
}

// ---------------------------------------------------------------------------------------
// The properties.

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn direct_invocations(event in direct_event(), deadline in deadline()) {
        check(RawEvent::Json(event), deadline)?;
    }

    #[test]
    fn sqs_batches(event in sqs_event(), deadline in deadline()) {
        check(RawEvent::Json(event), deadline)?;
    }

    #[test]
    fn eventbridge_events(event in eventbridge_event(), deadline in deadline()) {
        check(RawEvent::Json(event), deadline)?;
    }

    #[test]
    fn http_requests(event in http_event(), deadline in deadline()) {
        check(RawEvent::Json(event), deadline)?;
    }

    #[test]
    fn sample_events_with_a_field_replaced(event in mutated_fixture(), deadline in deadline()) {
        check(RawEvent::Json(event), deadline)?;
    }

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(RawEvent::from_slice(&bytes), 0)?;
    }

    #[test]
    fn sample_events_with_bytes_changed(
        text in prop::sample::select(vec![SQS, APIGW_V1, APIGW_V2, ALB, EVENTBRIDGE]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = text.as_bytes().to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1).max(bytes.len() / 2));
        check(RawEvent::from_slice(&bytes), 0)?;
    }
}

/// The generators reach every trigger (a fuzzer that only produced refusals would pass
/// without testing anything).
#[test]
fn the_generators_reach_every_trigger() {
    use proptest::strategy::ValueTree as _;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut shapes = std::collections::HashSet::new();
    let strategies: [(BoxedStrategy<Value>, EventShape); 4] = [
        (direct_event().boxed(), EventShape::Direct),
        (sqs_event().boxed(), EventShape::Sqs),
        (eventbridge_event().boxed(), EventShape::EventBridge),
        (http_event().boxed(), EventShape::Http),
    ];
    for (strategy, expected) in strategies {
        for _ in 0..16 {
            let event = strategy.new_tree(&mut runner).expect("a value").current();
            if EventShape::of(&event).ok() == Some(expected) {
                shapes.insert(format!("{expected:?}"));
            }
        }
    }
    assert_eq!(shapes.len(), 4, "{shapes:?}");
}
