//! A state machine definition (Amazon States Language, JSONPath mode), parsed once into
//! typed states.
//!
//! Parsing has two steps: serde reads each state into the struct of its `Type` (unknown
//! and missing fields are refused by name), then every path, template, intrinsic
//! function and choice rule is compiled and every transition checked. Each error is a
//! [`DefinitionError`] naming the state and the field.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::choice::Rule;
use crate::error::{DefinitionError, names};
use crate::path::{Path, ReferencePath, Template};

/// The largest `MaxAttempts` Step Functions accepts.
pub const MAX_ATTEMPTS_LIMIT: u64 = 99_999_999;
/// The largest `TimeoutSeconds` / `IntervalSeconds` / `MaxDelaySeconds` Step Functions
/// accepts (one year, in seconds).
pub const MAX_SECONDS: u64 = 31_622_400;
/// A Task's `TimeoutSeconds` when it has none (the States language's default); its
/// `HeartbeatSeconds` must be smaller.
pub const DEFAULT_TASK_TIMEOUT_SECONDS: u64 = 99_999_999;

/// A parsed state machine (or a branch of a Parallel state, or a Map's processor).
#[derive(Debug, Clone)]
pub struct StateMachine {
    /// The first state.
    pub start_at: String,
    /// The states by name.
    pub states: BTreeMap<String, State>,
    /// The execution's `TimeoutSeconds`.
    pub timeout_seconds: Option<u64>,
}

/// One state.
#[derive(Debug, Clone)]
pub struct State {
    /// Its name.
    pub name: String,
    /// `InputPath`: `None` when `null` (the state sees `{}`).
    pub input_path: Option<Path>,
    /// `OutputPath`: `None` when `null` (the state outputs `{}`).
    pub output_path: Option<Path>,
    /// `Next`, or `None` for `End` (and the terminal Succeed, Fail and Choice).
    pub next: Option<String>,
    /// What the state does.
    pub kind: Kind,
}

/// The state types.
#[derive(Debug, Clone)]
pub enum Kind {
    /// `Task`.
    Task(Task),
    /// `Pass`.
    Pass(Pass),
    /// `Choice`.
    Choice(Choice),
    /// `Wait`.
    Wait(Wait),
    /// `Succeed`.
    Succeed,
    /// `Fail`.
    Fail(Fail),
    /// `Parallel`.
    Parallel(Parallel),
    /// `Map` (inline).
    Map(Map),
}

impl Kind {
    /// The `Type` as written.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Task(_) => "Task",
            Kind::Pass(_) => "Pass",
            Kind::Choice(_) => "Choice",
            Kind::Wait(_) => "Wait",
            Kind::Succeed => "Succeed",
            Kind::Fail(_) => "Fail",
            Kind::Parallel(_) => "Parallel",
            Kind::Map(_) => "Map",
        }
    }
}

/// `ResultPath` and the fields every state with a result has.
#[derive(Debug, Clone)]
pub struct Results {
    /// `ResultSelector`.
    pub selector: Option<Template>,
    /// `ResultPath`: `None` when `null` (the result is discarded).
    pub path: Option<ReferencePath>,
}

/// A `Retry` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `IntervalSeconds` (1).
    pub interval_seconds: u64,
    /// `MaxAttempts` (3).
    pub max_attempts: u64,
    /// `BackoffRate` (2.0).
    pub backoff_rate: f64,
    /// `MaxDelaySeconds`.
    pub max_delay_seconds: Option<u64>,
    /// `JitterStrategy` `FULL` (else `NONE`).
    pub full_jitter: bool,
}

/// A `Catch` entry.
#[derive(Debug, Clone)]
pub struct Catcher {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `Next`.
    pub next: String,
    /// `ResultPath` (`$`); `None` when `null`.
    pub result_path: Option<ReferencePath>,
}

/// A number of seconds, given or read from the input.
#[derive(Debug, Clone)]
pub enum Seconds {
    /// A literal.
    Fixed(u64),
    /// A `…SecondsPath`.
    Path(Path),
}

/// A Task state.
#[derive(Debug, Clone)]
pub struct Task {
    /// `Resource`.
    pub resource: String,
    /// `Parameters`.
    pub parameters: Option<Template>,
    /// `ResultSelector`, `ResultPath`.
    pub results: Results,
    /// `Retry`.
    pub retry: Vec<Retrier>,
    /// `Catch`.
    pub catch: Vec<Catcher>,
    /// `TimeoutSeconds` / `TimeoutSecondsPath`.
    pub timeout: Option<Seconds>,
    /// `HeartbeatSeconds` / `HeartbeatSecondsPath`: checked (a positive integer smaller
    /// than the timeout) and recorded in `TaskScheduled`; a Lambda Task sends no
    /// heartbeats, so it is not enforced (docs/architecture.md §10.1).
    pub heartbeat: Option<Seconds>,
}

/// A Pass state.
#[derive(Debug, Clone)]
pub struct Pass {
    /// `Result`.
    pub result: Option<Value>,
    /// `Parameters`.
    pub parameters: Option<Template>,
    /// `ResultPath`.
    pub result_path: Option<ReferencePath>,
}

/// A Choice state.
#[derive(Debug, Clone)]
pub struct Choice {
    /// `Choices`: each a rule and its `Next`.
    pub choices: Vec<(Rule, String)>,
    /// `Default`.
    pub default: Option<String>,
}

/// What a Wait state waits for.
#[derive(Debug, Clone)]
pub enum WaitFor {
    /// `Seconds` / `SecondsPath`.
    Seconds(Seconds),
    /// `Timestamp` (RFC 3339).
    Timestamp(String),
    /// `TimestampPath`.
    TimestampPath(Path),
}

/// A Wait state.
#[derive(Debug, Clone)]
pub struct Wait {
    /// What it waits for.
    pub until: WaitFor,
}

/// A Fail state.
#[derive(Debug, Clone)]
pub struct Fail {
    /// `Error` or `ErrorPath`.
    pub error: Option<Text>,
    /// `Cause` or `CausePath`.
    pub cause: Option<Text>,
}

/// A text given literally or by a path (or an intrinsic function, for `…Path`).
#[derive(Debug, Clone)]
pub enum Text {
    /// A literal.
    Literal(String),
    /// A path or an intrinsic function.
    Computed(Template),
}

/// A Parallel state.
#[derive(Debug, Clone)]
pub struct Parallel {
    /// `Branches`.
    pub branches: Vec<StateMachine>,
    /// `Parameters`.
    pub parameters: Option<Template>,
    /// `ResultSelector`, `ResultPath`.
    pub results: Results,
    /// `Retry`.
    pub retry: Vec<Retrier>,
    /// `Catch`.
    pub catch: Vec<Catcher>,
}

/// An inline Map state.
#[derive(Debug, Clone)]
pub struct Map {
    /// `ItemProcessor` (or the older `Iterator`).
    pub processor: StateMachine,
    /// `ItemsPath` (`$`).
    pub items_path: Path,
    /// `ItemSelector` (or the older `Parameters`).
    pub item_selector: Option<Template>,
    /// `MaxConcurrency` (0: no limit).
    pub max_concurrency: usize,
    /// `ResultSelector`, `ResultPath`.
    pub results: Results,
    /// `Retry`.
    pub retry: Vec<Retrier>,
    /// `Catch`.
    pub catch: Vec<Catcher>,
}

// ---- what serde reads --------------------------------------------------------------

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawMachine {
    #[serde(rename = "StartAt")]
    start_at: String,
    states: serde_json::Map<String, Value>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    query_language: Option<String>,
    #[serde(default)]
    processor_config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(tag = "Type")]
enum RawState {
    Task(RawTask),
    Pass(RawPass),
    Choice(RawChoice),
    Wait(RawWait),
    Succeed(RawSucceed),
    Fail(RawFail),
    Parallel(RawParallel),
    Map(RawMap),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawTask {
    comment: Option<String>,
    resource: String,
    #[serde(default, deserialize_with = "present")]
    input_path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    output_path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result_path: Option<Value>,
    parameters: Option<Value>,
    result_selector: Option<Value>,
    #[serde(default)]
    retry: Vec<Value>,
    #[serde(default)]
    catch: Vec<Value>,
    timeout_seconds: Option<Value>,
    timeout_seconds_path: Option<String>,
    heartbeat_seconds: Option<Value>,
    heartbeat_seconds_path: Option<String>,
    credentials: Option<Value>,
    next: Option<String>,
    end: Option<bool>,
    query_language: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawPass {
    comment: Option<String>,
    #[serde(default, deserialize_with = "present")]
    input_path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    output_path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result_path: Option<Value>,
    parameters: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    next: Option<String>,
    end: Option<bool>,
    query_language: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawChoice {
    comment: Option<String>,
    #[serde(default, deserialize_with = "present")]
    input_path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    output_path: Option<Value>,
    choices: Vec<Value>,
    default: Option<String>,
    query_language: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawWait {
    comment: Option<String>,
    #[serde(default, deserialize_with = "present")]
    input_path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    output_path: Option<Value>,
    seconds: Option<Value>,
    seconds_path: Option<String>,
    timestamp: Option<String>,
    timestamp_path: Option<String>,
    next: Option<String>,
    end: Option<bool>,
    query_language: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawSucceed {
    comment: Option<String>,
    #[serde(default, deserialize_with = "present")]
    input_path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    output_path: Option<Value>,
    query_language: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawFail {
    comment: Option<String>,
    error: Option<String>,
    error_path: Option<String>,
    cause: Option<String>,
    cause_path: Option<String>,
    query_language: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawParallel {
    comment: Option<String>,
    branches: Vec<Value>,
    #[serde(default, deserialize_with = "present")]
    input_path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    output_path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result_path: Option<Value>,
    parameters: Option<Value>,
    result_selector: Option<Value>,
    #[serde(default)]
    retry: Vec<Value>,
    #[serde(default)]
    catch: Vec<Value>,
    next: Option<String>,
    end: Option<bool>,
    query_language: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawMap {
    comment: Option<String>,
    item_processor: Option<Value>,
    iterator: Option<Value>,
    items_path: Option<String>,
    item_selector: Option<Value>,
    parameters: Option<Value>,
    max_concurrency: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    input_path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    output_path: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result_path: Option<Value>,
    result_selector: Option<Value>,
    #[serde(default)]
    retry: Vec<Value>,
    #[serde(default)]
    catch: Vec<Value>,
    next: Option<String>,
    end: Option<bool>,
    query_language: Option<String>,
    item_reader: Option<Value>,
    result_writer: Option<Value>,
    item_batcher: Option<Value>,
    label: Option<String>,
    tolerated_failure_count: Option<Value>,
    tolerated_failure_percentage: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawRetrier {
    error_equals: Vec<String>,
    interval_seconds: Option<u64>,
    max_attempts: Option<u64>,
    backoff_rate: Option<f64>,
    max_delay_seconds: Option<u64>,
    jitter_strategy: Option<String>,
    comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawCatcher {
    error_equals: Vec<String>,
    next: String,
    #[serde(default, deserialize_with = "present")]
    result_path: Option<Value>,
    comment: Option<String>,
}

// ---- compilation -------------------------------------------------------------------

impl StateMachine {
    /// Parse a definition's JSON text.
    ///
    /// # Example
    ///
    /// ```
    /// let machine = actiondo_workflow::StateMachine::parse(
    ///     r#"{"StartAt": "Hi", "States": {"Hi": {"Type": "Pass", "Result": "hello", "End": true}}}"#,
    /// )?;
    /// assert_eq!(machine.start_at, "Hi");
    /// # Ok::<(), actiondo_workflow::DefinitionError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, DefinitionError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            DefinitionError::top(
                "",
                format!("not JSON: {e} (line {}, column {})", e.line(), e.column()),
            )
        })?;
        Self::from_value(&value)
    }

    /// Parse a definition already read as JSON.
    pub fn from_value(value: &Value) -> Result<Self, DefinitionError> {
        let machine = compile_machine(value, "")?;
        Ok(machine)
    }
}

fn compile_machine(value: &Value, within: &str) -> Result<StateMachine, DefinitionError> {
    let raw: RawMachine = serde_json::from_value(value.clone()).map_err(|e| DefinitionError {
        state: (!within.is_empty()).then(|| within.to_owned()),
        field: None,
        message: format!("the state machine: {e}"),
    })?;
    let _ = (&raw.comment, &raw.version, &raw.processor_config);
    if let Some(lang) = &raw.query_language
        && lang != "JSONPath"
    {
        return Err(DefinitionError::top(
            "QueryLanguage",
            format!("only JSONPath is supported, not {lang:?}"),
        ));
    }
    if raw.states.is_empty() {
        return Err(DefinitionError::top("States", "there are no states"));
    }
    let mut states = BTreeMap::new();
    for (name, v) in &raw.states {
        if name.is_empty() || name.chars().count() > 80 {
            return Err(DefinitionError::at(
                name,
                "",
                "a state name has 1 to 80 characters",
            ));
        }
        states.insert(name.clone(), compile_state(name, v)?);
    }
    if !states.contains_key(&raw.start_at) {
        return Err(DefinitionError {
            state: (!within.is_empty()).then(|| within.to_owned()),
            field: Some("StartAt".to_owned()),
            message: format!("there is no state {:?}", raw.start_at),
        });
    }
    // Every transition names a state of this machine.
    for state in states.values() {
        let mut targets: Vec<(&str, &str)> = Vec::new();
        if let Some(n) = &state.next {
            targets.push(("Next", n));
        }
        let catchers = match &state.kind {
            Kind::Task(t) => t.catch.as_slice(),
            Kind::Parallel(p) => p.catch.as_slice(),
            Kind::Map(m) => m.catch.as_slice(),
            _ => &[],
        };
        for c in catchers {
            targets.push(("Catch.Next", &c.next));
        }
        if let Kind::Choice(c) = &state.kind {
            for (_, n) in &c.choices {
                targets.push(("Choices.Next", n));
            }
            if let Some(d) = &c.default {
                targets.push(("Default", d));
            }
        }
        for (field, target) in targets {
            if !states.contains_key(target) {
                return Err(DefinitionError::at(
                    &state.name,
                    field,
                    format!("there is no state {target:?}"),
                ));
            }
        }
    }
    Ok(StateMachine {
        start_at: raw.start_at,
        states,
        timeout_seconds: raw.timeout_seconds,
    })
}

fn in_out(state: &str, field: &str, v: Option<&Value>) -> Result<Option<Path>, DefinitionError> {
    match v {
        None => Path::parse("$")
            .map(Some)
            .map_err(|e| DefinitionError::at(state, field, e)),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Path::parse(s)
            .map(Some)
            .map_err(|e| DefinitionError::at(state, field, e)),
        Some(other) => Err(DefinitionError::at(
            state,
            field,
            format!("a path or null, not {other}"),
        )),
    }
}

fn result_path(
    state: &str,
    field: &str,
    v: Option<&Value>,
) -> Result<Option<ReferencePath>, DefinitionError> {
    match v {
        None => Ok(ReferencePath::parse("$").ok()),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => ReferencePath::parse(s)
            .map(Some)
            .map_err(|e| DefinitionError::at(state, field, e)),
        Some(other) => Err(DefinitionError::at(
            state,
            field,
            format!("a reference path or null, not {other}"),
        )),
    }
}

fn template(
    state: &str,
    field: &str,
    v: Option<&Value>,
) -> Result<Option<Template>, DefinitionError> {
    v.map(|v| {
        if !v.is_object() && field != "Parameters" {
            return Err(DefinitionError::at(state, field, "must be an object"));
        }
        Template::parse(v).map_err(|(f, e)| DefinitionError::at(state, &format!("{field}.{f}"), e))
    })
    .transpose()
}

fn path(state: &str, field: &str, v: &str) -> Result<Path, DefinitionError> {
    Path::parse(v).map_err(|e| DefinitionError::at(state, field, e))
}

fn transition(
    state: &str,
    next: Option<String>,
    end: Option<bool>,
) -> Result<Option<String>, DefinitionError> {
    match (next, end) {
        (Some(n), None | Some(false)) => Ok(Some(n)),
        (None, Some(true)) => Ok(None),
        (Some(_), Some(true)) => Err(DefinitionError::at(
            state,
            "End",
            "a state has either Next or End: true, not both",
        )),
        (None, _) => Err(DefinitionError::at(
            state,
            "Next",
            "a state needs Next or End: true",
        )),
    }
}

fn seconds(
    state: &str,
    field: &str,
    literal: Option<&Value>,
    path_field: &str,
    path_text: Option<&str>,
) -> Result<Option<Seconds>, DefinitionError> {
    match (literal, path_text) {
        (Some(_), Some(_)) => Err(DefinitionError::at(
            state,
            field,
            format!("give {field} or {path_field}, not both"),
        )),
        (Some(v), None) => {
            let n = v
                .as_u64()
                .filter(|n| (1..=MAX_SECONDS).contains(n))
                .ok_or_else(|| {
                    DefinitionError::at(
                        state,
                        field,
                        format!("a whole number of seconds from 1 to {MAX_SECONDS}, not {v}"),
                    )
                })?;
            Ok(Some(Seconds::Fixed(n)))
        }
        (None, Some(p)) => Ok(Some(Seconds::Path(path(state, path_field, p)?))),
        (None, None) => Ok(None),
    }
}

fn error_equals(state: &str, field: &str, names_: &[String]) -> Result<(), DefinitionError> {
    if names_.is_empty() {
        return Err(DefinitionError::at(state, field, "ErrorEquals is empty"));
    }
    if names_.iter().any(|n| n == names::ALL) && names_.len() > 1 {
        return Err(DefinitionError::at(
            state,
            field,
            "States.ALL must appear alone in ErrorEquals",
        ));
    }
    Ok(())
}

fn retriers(state: &str, raw: &[Value]) -> Result<Vec<Retrier>, DefinitionError> {
    let count = raw.len();
    raw.iter()
        .enumerate()
        .map(|(i, v)| {
            let field = format!("Retry[{i}]");
            let r: RawRetrier = serde_json::from_value(v.clone())
                .map_err(|e| DefinitionError::at(state, &field, e.to_string()))?;
            let _ = &r.comment;
            error_equals(state, &field, &r.error_equals)?;
            if r.error_equals.iter().any(|n| n == names::ALL) && i + 1 != count {
                return Err(DefinitionError::at(
                    state,
                    &field,
                    "a retrier with States.ALL must be the last",
                ));
            }
            let backoff_rate = r.backoff_rate.unwrap_or(2.0);
            if !(backoff_rate >= 1.0 && backoff_rate.is_finite()) {
                return Err(DefinitionError::at(
                    state,
                    &format!("{field}.BackoffRate"),
                    format!("at least 1.0, not {backoff_rate}"),
                ));
            }
            let interval_seconds = r.interval_seconds.unwrap_or(1);
            if !(1..=MAX_SECONDS).contains(&interval_seconds) {
                return Err(DefinitionError::at(
                    state,
                    &format!("{field}.IntervalSeconds"),
                    format!("from 1 to {MAX_SECONDS}, not {interval_seconds}"),
                ));
            }
            let max_attempts = r.max_attempts.unwrap_or(3);
            if max_attempts > MAX_ATTEMPTS_LIMIT {
                return Err(DefinitionError::at(
                    state,
                    &format!("{field}.MaxAttempts"),
                    format!("at most {MAX_ATTEMPTS_LIMIT}, not {max_attempts}"),
                ));
            }
            if let Some(d) = r.max_delay_seconds
                && !(1..=MAX_SECONDS).contains(&d)
            {
                return Err(DefinitionError::at(
                    state,
                    &format!("{field}.MaxDelaySeconds"),
                    format!("from 1 to {MAX_SECONDS}, not {d}"),
                ));
            }
            let full_jitter = match r.jitter_strategy.as_deref() {
                None | Some("NONE") => false,
                Some("FULL") => true,
                Some(other) => {
                    return Err(DefinitionError::at(
                        state,
                        &format!("{field}.JitterStrategy"),
                        format!("FULL or NONE, not {other:?}"),
                    ));
                }
            };
            Ok(Retrier {
                error_equals: r.error_equals,
                interval_seconds,
                max_attempts,
                backoff_rate,
                max_delay_seconds: r.max_delay_seconds,
                full_jitter,
            })
        })
        .collect()
}

fn catchers(state: &str, raw: &[Value]) -> Result<Vec<Catcher>, DefinitionError> {
    let count = raw.len();
    raw.iter()
        .enumerate()
        .map(|(i, v)| {
            let field = format!("Catch[{i}]");
            let c: RawCatcher = serde_json::from_value(v.clone())
                .map_err(|e| DefinitionError::at(state, &field, e.to_string()))?;
            let _ = &c.comment;
            error_equals(state, &field, &c.error_equals)?;
            if c.error_equals.iter().any(|n| n == names::ALL) && i + 1 != count {
                return Err(DefinitionError::at(
                    state,
                    &field,
                    "a catcher with States.ALL must be the last",
                ));
            }
            Ok(Catcher {
                error_equals: c.error_equals,
                next: c.next,
                result_path: result_path(
                    state,
                    &format!("{field}.ResultPath"),
                    c.result_path.as_ref(),
                )?,
            })
        })
        .collect()
}

fn jsonpath_only(state: &str, lang: Option<&String>) -> Result<(), DefinitionError> {
    match lang {
        Some(l) if l != "JSONPath" => Err(DefinitionError::at(
            state,
            "QueryLanguage",
            format!("only JSONPath is supported, not {l:?}"),
        )),
        _ => Ok(()),
    }
}

fn fail_text(
    state: &str,
    field: &str,
    literal: Option<String>,
    path_field: &str,
    computed: Option<String>,
) -> Result<Option<Text>, DefinitionError> {
    match (literal, computed) {
        (Some(_), Some(_)) => Err(DefinitionError::at(
            state,
            field,
            format!("give {field} or {path_field}, not both"),
        )),
        (Some(l), None) => Ok(Some(Text::Literal(l))),
        (None, Some(c)) => {
            let mut obj = serde_json::Map::new();
            obj.insert("v.$".to_owned(), Value::String(c));
            match Template::parse(&Value::Object(obj)) {
                Ok(Template::Object(mut members)) if members.len() == 1 => {
                    Ok(members.pop().map(|(_, t)| Text::Computed(t)))
                }
                Ok(_) => Err(DefinitionError::at(state, path_field, "not a path")),
                Err((_, e)) => Err(DefinitionError::at(state, path_field, e)),
            }
        }
        (None, None) => Ok(None),
    }
}

fn compile_state(name: &str, value: &Value) -> Result<State, DefinitionError> {
    let type_name = value.get("Type").and_then(Value::as_str);
    match type_name {
        Some("Task" | "Pass" | "Choice" | "Wait" | "Succeed" | "Fail" | "Parallel" | "Map") => {}
        Some(other) => {
            return Err(DefinitionError::at(
                name,
                "Type",
                format!(
                    "{other:?} is not a state type (Task, Pass, Choice, Wait, Succeed, Fail, Parallel, Map)"
                ),
            ));
        }
        None => return Err(DefinitionError::at(name, "Type", "missing or not a string")),
    }
    let raw: RawState = serde_json::from_value(value.clone())
        .map_err(|e| DefinitionError::at(name, "", e.to_string()))?;
    let state = match raw {
        RawState::Task(t) => {
            let _ = (&t.comment, &t.credentials);
            jsonpath_only(name, t.query_language.as_ref())?;
            let timeout = seconds(
                name,
                "TimeoutSeconds",
                t.timeout_seconds.as_ref(),
                "TimeoutSecondsPath",
                t.timeout_seconds_path.as_deref(),
            )?;
            let heartbeat = seconds(
                name,
                "HeartbeatSeconds",
                t.heartbeat_seconds.as_ref(),
                "HeartbeatSecondsPath",
                t.heartbeat_seconds_path.as_deref(),
            )?;
            if let Some(Seconds::Fixed(beat)) = heartbeat {
                let (limit, of) = match timeout {
                    Some(Seconds::Fixed(secs)) => (secs, "TimeoutSeconds"),
                    Some(Seconds::Path(_)) => (u64::MAX, ""),
                    None => (DEFAULT_TASK_TIMEOUT_SECONDS, "the default TimeoutSeconds"),
                };
                if beat >= limit {
                    return Err(DefinitionError::at(
                        name,
                        "HeartbeatSeconds",
                        format!("{beat} must be smaller than {of} ({limit})"),
                    ));
                }
            }
            State {
                name: name.to_owned(),
                input_path: in_out(name, "InputPath", t.input_path.as_ref())?,
                output_path: in_out(name, "OutputPath", t.output_path.as_ref())?,
                next: transition(name, t.next, t.end)?,
                kind: Kind::Task(Task {
                    resource: t.resource,
                    parameters: template(name, "Parameters", t.parameters.as_ref())?,
                    results: Results {
                        selector: template(name, "ResultSelector", t.result_selector.as_ref())?,
                        path: result_path(name, "ResultPath", t.result_path.as_ref())?,
                    },
                    retry: retriers(name, &t.retry)?,
                    catch: catchers(name, &t.catch)?,
                    timeout,
                    heartbeat,
                }),
            }
        }
        RawState::Pass(p) => {
            let _ = &p.comment;
            jsonpath_only(name, p.query_language.as_ref())?;
            State {
                name: name.to_owned(),
                input_path: in_out(name, "InputPath", p.input_path.as_ref())?,
                output_path: in_out(name, "OutputPath", p.output_path.as_ref())?,
                next: transition(name, p.next, p.end)?,
                kind: Kind::Pass(Pass {
                    result: p.result,
                    parameters: template(name, "Parameters", p.parameters.as_ref())?,
                    result_path: result_path(name, "ResultPath", p.result_path.as_ref())?,
                }),
            }
        }
        RawState::Choice(c) => {
            let _ = &c.comment;
            jsonpath_only(name, c.query_language.as_ref())?;
            if c.choices.is_empty() {
                return Err(DefinitionError::at(name, "Choices", "there are no choices"));
            }
            let choices = c
                .choices
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let field = format!("Choices[{i}]");
                    let next = v
                        .get("Next")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            DefinitionError::at(name, &field, "a top-level rule needs Next")
                        })?
                        .to_owned();
                    let rule = Rule::parse(v, true)
                        .map_err(|(f, e)| DefinitionError::at(name, &format!("{field}{f}"), e))?;
                    Ok((rule, next))
                })
                .collect::<Result<_, DefinitionError>>()?;
            State {
                name: name.to_owned(),
                input_path: in_out(name, "InputPath", c.input_path.as_ref())?,
                output_path: in_out(name, "OutputPath", c.output_path.as_ref())?,
                next: None,
                kind: Kind::Choice(Choice {
                    choices,
                    default: c.default,
                }),
            }
        }
        RawState::Wait(w) => {
            let _ = &w.comment;
            jsonpath_only(name, w.query_language.as_ref())?;
            let given = [
                w.seconds.is_some(),
                w.seconds_path.is_some(),
                w.timestamp.is_some(),
                w.timestamp_path.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if given != 1 {
                return Err(DefinitionError::at(
                    name,
                    "Seconds",
                    "exactly one of Seconds, SecondsPath, Timestamp, TimestampPath",
                ));
            }
            let until = if let Some(ts) = w.timestamp {
                if chrono::DateTime::parse_from_rfc3339(&ts).is_err() {
                    return Err(DefinitionError::at(
                        name,
                        "Timestamp",
                        format!("{ts:?} is not an RFC 3339 timestamp"),
                    ));
                }
                WaitFor::Timestamp(ts)
            } else if let Some(p) = w.timestamp_path {
                WaitFor::TimestampPath(path(name, "TimestampPath", &p)?)
            } else {
                let s = match (&w.seconds, &w.seconds_path) {
                    (Some(Value::Number(n)), None) if n.as_u64().is_some() => {
                        Seconds::Fixed(n.as_u64().unwrap_or(0))
                    }
                    (Some(other), None) => {
                        return Err(DefinitionError::at(
                            name,
                            "Seconds",
                            format!("a whole number of seconds, not {other}"),
                        ));
                    }
                    (_, Some(p)) => Seconds::Path(path(name, "SecondsPath", p)?),
                    (None, None) => Seconds::Fixed(0),
                };
                WaitFor::Seconds(s)
            };
            State {
                name: name.to_owned(),
                input_path: in_out(name, "InputPath", w.input_path.as_ref())?,
                output_path: in_out(name, "OutputPath", w.output_path.as_ref())?,
                next: transition(name, w.next, w.end)?,
                kind: Kind::Wait(Wait { until }),
            }
        }
        RawState::Succeed(s) => {
            let _ = &s.comment;
            jsonpath_only(name, s.query_language.as_ref())?;
            State {
                name: name.to_owned(),
                input_path: in_out(name, "InputPath", s.input_path.as_ref())?,
                output_path: in_out(name, "OutputPath", s.output_path.as_ref())?,
                next: None,
                kind: Kind::Succeed,
            }
        }
        RawState::Fail(f) => {
            let _ = &f.comment;
            jsonpath_only(name, f.query_language.as_ref())?;
            State {
                name: name.to_owned(),
                input_path: None,
                output_path: None,
                next: None,
                kind: Kind::Fail(Fail {
                    error: fail_text(name, "Error", f.error, "ErrorPath", f.error_path)?,
                    cause: fail_text(name, "Cause", f.cause, "CausePath", f.cause_path)?,
                }),
            }
        }
        RawState::Parallel(p) => {
            let _ = &p.comment;
            jsonpath_only(name, p.query_language.as_ref())?;
            if p.branches.is_empty() {
                return Err(DefinitionError::at(
                    name,
                    "Branches",
                    "there are no branches",
                ));
            }
            let branches = p
                .branches
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    compile_machine(b, name).map_err(|e| e.within(&format!("Branches[{i}]")))
                })
                .collect::<Result<_, _>>()?;
            State {
                name: name.to_owned(),
                input_path: in_out(name, "InputPath", p.input_path.as_ref())?,
                output_path: in_out(name, "OutputPath", p.output_path.as_ref())?,
                next: transition(name, p.next, p.end)?,
                kind: Kind::Parallel(Parallel {
                    branches,
                    parameters: template(name, "Parameters", p.parameters.as_ref())?,
                    results: Results {
                        selector: template(name, "ResultSelector", p.result_selector.as_ref())?,
                        path: result_path(name, "ResultPath", p.result_path.as_ref())?,
                    },
                    retry: retriers(name, &p.retry)?,
                    catch: catchers(name, &p.catch)?,
                }),
            }
        }
        RawState::Map(m) => {
            let _ = (&m.comment, &m.label);
            jsonpath_only(name, m.query_language.as_ref())?;
            if m.item_reader.is_some()
                || m.result_writer.is_some()
                || m.item_batcher.is_some()
                || m.tolerated_failure_count.is_some()
                || m.tolerated_failure_percentage.is_some()
            {
                return Err(DefinitionError::at(
                    name,
                    "ItemReader",
                    "distributed Map (ItemReader, ResultWriter, ItemBatcher, ToleratedFailure…) is not supported locally; use an inline Map",
                ));
            }
            let (field, processor) = match (&m.item_processor, &m.iterator) {
                (Some(p), None) => ("ItemProcessor", p),
                (None, Some(p)) => ("Iterator", p),
                _ => {
                    return Err(DefinitionError::at(
                        name,
                        "ItemProcessor",
                        "give ItemProcessor (or the older Iterator), exactly one",
                    ));
                }
            };
            if let Some(mode) = processor
                .get("ProcessorConfig")
                .and_then(|c| c.get("Mode"))
                .and_then(Value::as_str)
                && mode != "INLINE"
            {
                return Err(DefinitionError::at(
                    name,
                    "ItemProcessor.ProcessorConfig.Mode",
                    format!("only INLINE is supported locally, not {mode:?}"),
                ));
            }
            let processor = compile_machine(processor, name).map_err(|e| e.within(field))?;
            let selector = match (&m.item_selector, &m.parameters) {
                (Some(_), Some(_)) => {
                    return Err(DefinitionError::at(
                        name,
                        "ItemSelector",
                        "give ItemSelector or Parameters, not both",
                    ));
                }
                (Some(s), None) => template(name, "ItemSelector", Some(s))?,
                (None, Some(p)) => template(name, "Parameters", Some(p))?,
                (None, None) => None,
            };
            State {
                name: name.to_owned(),
                input_path: in_out(name, "InputPath", m.input_path.as_ref())?,
                output_path: in_out(name, "OutputPath", m.output_path.as_ref())?,
                next: transition(name, m.next, m.end)?,
                kind: Kind::Map(Map {
                    processor,
                    items_path: path(name, "ItemsPath", m.items_path.as_deref().unwrap_or("$"))?,
                    item_selector: selector,
                    max_concurrency: usize::try_from(m.max_concurrency.unwrap_or(0))
                        .unwrap_or(usize::MAX),
                    results: Results {
                        selector: template(name, "ResultSelector", m.result_selector.as_ref())?,
                        path: result_path(name, "ResultPath", m.result_path.as_ref())?,
                    },
                    retry: retriers(name, &m.retry)?,
                    catch: catchers(name, &m.catch)?,
                }),
            }
        }
    };
    Ok(state)
}
