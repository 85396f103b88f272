//! The event history of an execution: the events of Step Functions'
//! `GetExecutionHistory`, appended as the engine makes transitions and never rewritten.
//! A redrive reads it ([`resume_point`]) and continues.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::WorkflowError;

/// The kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The execution started.
    ExecutionStarted,
    /// The execution succeeded.
    ExecutionSucceeded,
    /// The execution failed.
    ExecutionFailed,
    /// The execution ran past its `TimeoutSeconds`.
    ExecutionTimedOut,
    /// A failed (or interrupted) execution was redriven.
    ExecutionRedriven,
    /// A state was entered (`TaskStateEntered`, `PassStateEntered`…).
    StateEntered(&'static str),
    /// A state was left with its output (`TaskStateExited`…).
    StateExited(&'static str),
    /// A Task's call was scheduled.
    TaskScheduled,
    /// A Task's call started.
    TaskStarted,
    /// A Task's call succeeded.
    TaskSucceeded,
    /// A Task's call failed.
    TaskFailed,
    /// A Task's call ran past `TimeoutSeconds`.
    TaskTimedOut,
    /// A Parallel state's branches started.
    ParallelStateStarted,
    /// Every branch succeeded.
    ParallelStateSucceeded,
    /// A branch failed.
    ParallelStateFailed,
    /// A Map state's iterations started.
    MapStateStarted,
    /// Every iteration succeeded.
    MapStateSucceeded,
    /// An iteration failed.
    MapStateFailed,
    /// One iteration started.
    MapIterationStarted,
    /// One iteration succeeded.
    MapIterationSucceeded,
    /// One iteration failed.
    MapIterationFailed,
    /// A Wait state's time is over.
    WaitStateExited,
}

const STATE_TYPES: [&str; 8] = [
    "Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map",
];

impl EventType {
    /// The name Step Functions gives the event.
    pub fn name(self) -> String {
        match self {
            EventType::StateEntered(t) => format!("{t}StateEntered"),
            EventType::StateExited(t) => format!("{t}StateExited"),
            other => format!("{other:?}"),
        }
    }

    /// The event type of a name, the inverse of [`Self::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        if let Some(t) = name.strip_suffix("StateEntered") {
            return STATE_TYPES
                .iter()
                .find(|s| **s == t)
                .map(|s| EventType::StateEntered(s));
        }
        if let Some(t) = name.strip_suffix("StateExited") {
            return STATE_TYPES
                .iter()
                .find(|s| **s == t)
                .map(|s| EventType::StateExited(s));
        }
        Some(match name {
            "ExecutionStarted" => EventType::ExecutionStarted,
            "ExecutionSucceeded" => EventType::ExecutionSucceeded,
            "ExecutionFailed" => EventType::ExecutionFailed,
            "ExecutionTimedOut" => EventType::ExecutionTimedOut,
            "ExecutionRedriven" => EventType::ExecutionRedriven,
            "TaskScheduled" => EventType::TaskScheduled,
            "TaskStarted" => EventType::TaskStarted,
            "TaskSucceeded" => EventType::TaskSucceeded,
            "TaskFailed" => EventType::TaskFailed,
            "TaskTimedOut" => EventType::TaskTimedOut,
            "ParallelStateStarted" => EventType::ParallelStateStarted,
            "ParallelStateSucceeded" => EventType::ParallelStateSucceeded,
            "ParallelStateFailed" => EventType::ParallelStateFailed,
            "MapStateStarted" => EventType::MapStateStarted,
            "MapStateSucceeded" => EventType::MapStateSucceeded,
            "MapStateFailed" => EventType::MapStateFailed,
            "MapIterationStarted" => EventType::MapIterationStarted,
            "MapIterationSucceeded" => EventType::MapIterationSucceeded,
            "MapIterationFailed" => EventType::MapIterationFailed,
            _ => return None,
        })
    }
}

/// One event as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// 1, 2, 3… within the execution.
    pub id: u64,
    /// The event before it (0 for the first).
    pub previous_event_id: u64,
    /// When, RFC 3339 with milliseconds.
    pub timestamp: String,
    /// The event type's name (`TaskStateEntered`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Where in the execution: `""` at the top level, `Name[i]` inside the branch or
    /// iteration `i` of Parallel or Map state `Name` (nested: `A[0]/B[2]`).
    pub scope: String,
    /// The event's details (`name`, `input`, `output`, `error`, `cause`, `resource`…).
    pub details: Value,
}

/// Where events go.
pub trait HistorySink: Send + Sync + std::fmt::Debug {
    /// Append an event; its id is the next one.
    fn append(
        &self,
        kind: EventType,
        scope: &str,
        timestamp_ms: i64,
        details: Value,
    ) -> Result<u64, WorkflowError>;
}

/// The RFC 3339 form of Unix milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A history kept in memory (tests, benchmarks).
#[derive(Debug, Default)]
pub struct MemoryHistory {
    events: Mutex<Vec<Event>>,
}

impl MemoryHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl HistorySink for MemoryHistory {
    fn append(
        &self,
        kind: EventType,
        scope: &str,
        timestamp_ms: i64,
        details: Value,
    ) -> Result<u64, WorkflowError> {
        let mut events = self
            .events
            .lock()
            .map_err(|_| actiondo::ActionError::internal("the history lock is poisoned"))?;
        let id = events.len() as u64 + 1;
        events.push(Event {
            id,
            previous_event_id: id - 1,
            timestamp: rfc3339_ms(timestamp_ms),
            kind: kind.name(),
            scope: scope.to_owned(),
            details,
        });
        Ok(id)
    }
}

/// Where a redrive continues: the state that was entered last at the top level and the
/// input it was entered with. `None` when no state was entered.
pub fn resume_point(events: &[Event]) -> Option<(String, Value)> {
    events
        .iter()
        .rev()
        .filter(|e| e.scope.is_empty())
        .find(|e| e.kind.ends_with("StateEntered"))
        .and_then(|e| {
            let name = e.details.get("name")?.as_str()?.to_owned();
            let input = e.details.get("input").cloned().unwrap_or(Value::Null);
            Some((name, input))
        })
}

/// The sequence of Task calls in `events`: (state, resource, idempotency key of the
/// payload, when there is one), in the order they were scheduled.
pub fn task_calls(events: &[Event]) -> Vec<(String, String, Option<String>)> {
    events
        .iter()
        .filter(|e| e.kind == "TaskScheduled")
        .map(|e| {
            let d = &e.details;
            let function = d
                .pointer("/parameters/FunctionName")
                .and_then(Value::as_str)
                .or_else(|| d.get("resource").and_then(Value::as_str))
                .unwrap_or_default();
            let key = d
                .pointer("/parameters/Payload/idempotencyKey")
                .or_else(|| d.pointer("/parameters/idempotencyKey"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            (
                d.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                function.to_owned(),
                key,
            )
        })
        .collect()
}
