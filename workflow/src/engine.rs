//! The interpreter: runs a [`StateMachine`] from a state with an input.
//!
//! Decisions are pure functions of the state, its input and the context object
//! ([`step`], [`finish`], [`crate::retry::decide`]); the effects stay at the edge: Task
//! calls go through a [`TaskRunner`], waits through a [`Timer`], events to a
//! [`HistorySink`].

use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use serde_json::{Value, json};

use crate::clock::Timer;
use crate::definition::{Kind, Results, Seconds, State, StateMachine, Text, WaitFor};
use crate::error::{StatesError, WorkflowError, names, within_payload_limit};
use crate::history::{EventType, HistorySink};
use crate::path::Path;
use crate::retry::{OnError, decide};

/// A Task's call: what the engine asks a [`TaskRunner`] to do.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskCall {
    /// The state's `Resource`.
    pub resource: String,
    /// The effective parameters (after `InputPath` and `Parameters`).
    pub parameters: Value,
    /// The state's name.
    pub state: String,
    /// `$$.Execution.Id`.
    pub execution_id: String,
}

/// Runs Task states' calls: the actions in-process ([`crate::LocalActions`]), or a
/// test's functions.
#[async_trait]
pub trait TaskRunner: Send + Sync + std::fmt::Debug {
    /// Run `call`; an error is the `Error` and `Cause` Retry and Catch see.
    async fn run(&self, call: TaskCall) -> Result<Value, StatesError>;
}

/// What `$$.Execution` and `$$.StateMachine` say.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionInfo {
    /// `$$.Execution.Id`: the execution's ARN.
    pub id: String,
    /// `$$.Execution.Name`.
    pub name: String,
    /// `$$.Execution.StartTime`, RFC 3339.
    pub start_time: String,
    /// `$$.Execution.Input`.
    pub input: Value,
    /// `$$.Execution.RoleArn`.
    pub role_arn: String,
    /// `$$.Execution.RedriveCount`.
    pub redrive_count: u32,
    /// `$$.StateMachine.Id`: the state machine's ARN.
    pub state_machine_id: String,
    /// `$$.StateMachine.Name`.
    pub state_machine_name: String,
}

impl ExecutionInfo {
    fn context(&self, state: &str, entered_ms: i64, retry_count: u64) -> Value {
        json!({
            "Execution": {
                "Id": self.id,
                "Name": self.name,
                "StartTime": self.start_time,
                "Input": self.input,
                "RoleArn": self.role_arn,
                "RedriveCount": self.redrive_count,
            },
            "StateMachine": {"Id": self.state_machine_id, "Name": self.state_machine_name},
            "State": {
                "Name": state,
                "EnteredTime": crate::history::rfc3339_ms(entered_ms),
                "RetryCount": retry_count,
            },
        })
    }
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Succeeded with this output.
    Succeeded(Value),
    /// Failed with this error.
    Failed(StatesError),
    /// Ran past the execution's `TimeoutSeconds`.
    TimedOut(StatesError),
}

/// Why the engine stopped early: a States error (caught or failing the execution), or
/// a failure of the engine's own machinery (the history could not be written).
#[derive(Debug)]
enum Halt {
    States(StatesError),
    Fatal(WorkflowError),
}

impl From<StatesError> for Halt {
    fn from(e: StatesError) -> Self {
        Halt::States(e)
    }
}

impl From<WorkflowError> for Halt {
    fn from(e: WorkflowError) -> Self {
        Halt::Fatal(e)
    }
}

/// What a state does next, decided without effects.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Go to `state` with `output`.
    Next {
        /// The next state.
        state: String,
        /// The output (the next state's input).
        output: Value,
    },
    /// The machine (or branch) ends with `output`.
    End(Value),
    /// Wait `duration`, then go on as `then` says.
    Wait {
        /// How long.
        duration: Duration,
        /// What follows.
        then: Box<Transition>,
    },
}

fn apply_in(path: Option<&Path>, input: &Value, ctx: &Value) -> Result<Value, StatesError> {
    match path {
        Some(p) => p.select(input, ctx),
        None => Ok(json!({})),
    }
}

fn go(state: &State, output: Value) -> Transition {
    match &state.next {
        Some(n) => Transition::Next {
            state: n.clone(),
            output,
        },
        None => Transition::End(output),
    }
}

/// A state's output from its raw input and its result: `ResultSelector`,
/// `ResultPath`, then `OutputPath`.
pub fn finish(
    state: &State,
    results: &Results,
    input: Value,
    result: Value,
    ctx: &Value,
) -> Result<Value, StatesError> {
    let selected = match &results.selector {
        Some(t) => t.render(&result, ctx)?,
        None => result,
    };
    let combined = match &results.path {
        Some(p) => p.apply(input, selected)?,
        None => input,
    };
    apply_in(state.output_path.as_ref(), &combined, ctx)
}

fn seconds_of(s: &Seconds, input: &Value, ctx: &Value, field: &str) -> Result<u64, StatesError> {
    match s {
        Seconds::Fixed(n) => Ok(*n),
        Seconds::Path(p) => {
            let v = p.select(input, ctx)?;
            v.as_u64().ok_or_else(|| {
                StatesError::runtime(format!(
                    "{field} '{}' must select a non-negative integer, not {v}",
                    p.as_str()
                ))
            })
        }
    }
}

fn text_of(t: Option<&Text>, input: &Value, ctx: &Value) -> Result<Option<String>, StatesError> {
    match t {
        None => Ok(None),
        Some(Text::Literal(s)) => Ok(Some(s.clone())),
        Some(Text::Computed(tpl)) => match tpl.render(input, ctx)? {
            Value::String(s) => Ok(Some(s)),
            other => Err(StatesError::runtime(format!(
                "the ErrorPath/CausePath of a Fail state must select a string, not {other}"
            ))),
        },
    }
}

/// The pure step of the states without effects (Pass, Choice, Wait, Succeed, Fail):
/// the transition, or the error the state ends in. `now_ms` is the time of entry (for a
/// Wait until a timestamp). Task, Parallel and Map are not decided here (`None`).
pub fn step(
    state: &State,
    input: &Value,
    ctx: &Value,
    now_ms: i64,
) -> Option<Result<Transition, StatesError>> {
    let run = || -> Result<Transition, StatesError> {
        match &state.kind {
            Kind::Pass(p) => {
                let effective = apply_in(state.input_path.as_ref(), input, ctx)?;
                let result = match (&p.result, &p.parameters) {
                    (Some(r), _) => r.clone(),
                    (None, Some(t)) => t.render(&effective, ctx)?,
                    (None, None) => effective,
                };
                let results = Results {
                    selector: None,
                    path: p.result_path.clone(),
                };
                Ok(go(
                    state,
                    finish(state, &results, input.clone(), result, ctx)?,
                ))
            }
            Kind::Choice(c) => {
                let effective = apply_in(state.input_path.as_ref(), input, ctx)?;
                let output = apply_in(state.output_path.as_ref(), &effective, ctx)?;
                for (rule, next) in &c.choices {
                    if rule.eval(&effective, ctx)? {
                        return Ok(Transition::Next {
                            state: next.clone(),
                            output,
                        });
                    }
                }
                match &c.default {
                    Some(d) => Ok(Transition::Next {
                        state: d.clone(),
                        output,
                    }),
                    None => Err(StatesError::new(
                        names::NO_CHOICE_MATCHED,
                        format!("No Matches! (state {:?}, input {effective})", state.name),
                    )),
                }
            }
            Kind::Wait(w) => {
                let effective = apply_in(state.input_path.as_ref(), input, ctx)?;
                let until_ms = |text: &str| -> Result<i64, StatesError> {
                    chrono::DateTime::parse_from_rfc3339(text)
                        .map(|t| t.timestamp_millis())
                        .map_err(|_| {
                            StatesError::runtime(format!(
                                "{text:?} is not an RFC 3339 timestamp (Wait state {:?})",
                                state.name
                            ))
                        })
                };
                let duration = match &w.until {
                    WaitFor::Seconds(s) => {
                        Duration::from_secs(seconds_of(s, &effective, ctx, "SecondsPath")?)
                    }
                    WaitFor::Timestamp(t) => {
                        Duration::from_millis(u64::try_from(until_ms(t)? - now_ms).unwrap_or(0))
                    }
                    WaitFor::TimestampPath(p) => {
                        let v = p.select(&effective, ctx)?;
                        let t = v.as_str().ok_or_else(|| {
                            StatesError::runtime(format!(
                                "TimestampPath '{}' must select a string, not {v}",
                                p.as_str()
                            ))
                        })?;
                        Duration::from_millis(u64::try_from(until_ms(t)? - now_ms).unwrap_or(0))
                    }
                };
                let output = apply_in(state.output_path.as_ref(), &effective, ctx)?;
                Ok(Transition::Wait {
                    duration,
                    then: Box::new(go(state, output)),
                })
            }
            Kind::Succeed => {
                let effective = apply_in(state.input_path.as_ref(), input, ctx)?;
                Ok(Transition::End(apply_in(
                    state.output_path.as_ref(),
                    &effective,
                    ctx,
                )?))
            }
            Kind::Fail(f) => {
                let error = text_of(f.error.as_ref(), input, ctx)?;
                let cause = text_of(f.cause.as_ref(), input, ctx)?;
                Err(StatesError::new(
                    error.unwrap_or_default(),
                    cause.unwrap_or_default(),
                ))
            }
            Kind::Task(_) | Kind::Parallel(_) | Kind::Map(_) => {
                Err(StatesError::runtime("not a pure state"))
            }
        }
    };
    match &state.kind {
        Kind::Task(_) | Kind::Parallel(_) | Kind::Map(_) => None,
        _ => Some(run()),
    }
}

/// The engine for one execution.
#[derive(Debug, Clone, Copy)]
pub struct Engine<'a> {
    /// Runs the Task states.
    pub tasks: &'a dyn TaskRunner,
    /// Time.
    pub timer: &'a dyn Timer,
    /// Where the events go.
    pub history: &'a dyn HistorySink,
    /// The execution.
    pub info: &'a ExecutionInfo,
}

impl<'a> Engine<'a> {
    /// Run `machine` from state `from` with `input` (the start: `StartAt` and the
    /// execution's input; a redrive: the state that failed and the input it had), under
    /// the machine's `TimeoutSeconds` counted from `started_ms`. The terminal event
    /// (`ExecutionSucceeded`, `ExecutionFailed`, `ExecutionTimedOut`) is appended here.
    pub async fn run(
        &self,
        machine: &StateMachine,
        from: &str,
        input: Value,
        started_ms: i64,
    ) -> Result<Outcome, WorkflowError> {
        let body = self.run_machine(machine, from.to_owned(), input, String::new());
        let result = match machine.timeout_seconds {
            Some(secs) => {
                let elapsed_ms = u64::try_from(self.timer.now_ms() - started_ms).unwrap_or(0);
                let left =
                    Duration::from_secs(secs).saturating_sub(Duration::from_millis(elapsed_ms));
                tokio::select! {
                    r = body => r,
                    () = self.timer.sleep(left) => Err(Halt::States(StatesError::new(
                        names::TIMEOUT,
                        format!("the execution ran past its TimeoutSeconds ({secs})"),
                    ))),
                }
            }
            None => body.await,
        };
        let now = self.timer.now_ms();
        match result {
            Ok(output) => {
                self.history.append(
                    EventType::ExecutionSucceeded,
                    "",
                    now,
                    json!({"output": output}),
                )?;
                Ok(Outcome::Succeeded(output))
            }
            Err(Halt::States(e))
                if e.error == names::TIMEOUT
                    && machine.timeout_seconds.is_some()
                    && e.cause.starts_with("the execution ran past") =>
            {
                self.history.append(
                    EventType::ExecutionTimedOut,
                    "",
                    now,
                    json!({"error": e.error, "cause": e.cause}),
                )?;
                Ok(Outcome::TimedOut(e))
            }
            Err(Halt::States(e)) => {
                self.history.append(
                    EventType::ExecutionFailed,
                    "",
                    now,
                    json!({"error": e.error, "cause": e.cause}),
                )?;
                Ok(Outcome::Failed(e))
            }
            Err(Halt::Fatal(e)) => Err(e),
        }
    }

    fn event(&self, kind: EventType, scope: &str, details: Value) -> Result<(), Halt> {
        self.history
            .append(kind, scope, self.timer.now_ms(), details)
            .map(|_| ())
            .map_err(Halt::Fatal)
    }

    fn run_machine(
        &'a self,
        machine: &'a StateMachine,
        from: String,
        input: Value,
        scope: String,
    ) -> BoxFuture<'a, Result<Value, Halt>> {
        async move {
            let mut current = from;
            let mut input = input;
            loop {
                let state = machine.states.get(&current).ok_or_else(|| {
                    StatesError::runtime(format!("there is no state {current:?}"))
                })?;
                let entered_ms = self.timer.now_ms();
                let type_name = state.kind.type_name();
                self.event(
                    EventType::StateEntered(type_name),
                    &scope,
                    json!({"name": state.name, "input": input}),
                )?;
                let ctx = self.info.context(&state.name, entered_ms, 0);
                let transition = match step(state, &input, &ctx, entered_ms) {
                    Some(t) => t?,
                    None => self.effectful(state, input, entered_ms, &scope).await?,
                };
                let transition = match transition {
                    Transition::Wait { duration, then } => {
                        self.timer.sleep(duration).await;
                        *then
                    }
                    t => t,
                };
                let output = match &transition {
                    Transition::Next { output, .. } | Transition::End(output) => output.clone(),
                    Transition::Wait { .. } => Value::Null,
                };
                // Terminal: not caught, the state fails (AWS: "DataLimitExceeded is a
                // terminal error").
                within_payload_limit(&format!("the output of state {:?}", state.name), &output)?;
                self.event(
                    EventType::StateExited(type_name),
                    &scope,
                    json!({"name": state.name, "output": output}),
                )?;
                match transition {
                    Transition::Next { state, output } => {
                        current = state;
                        input = output;
                    }
                    Transition::End(output) => return Ok(output),
                    Transition::Wait { .. } => {
                        return Err(StatesError::runtime("a Wait after a Wait").into());
                    }
                }
            }
        }
        .boxed()
    }

    /// Task, Parallel and Map: the work (with Retry), then the pure [`finish`] or the
    /// Catch.
    async fn effectful(
        &'a self,
        state: &'a State,
        input: Value,
        entered_ms: i64,
        scope: &str,
    ) -> Result<Transition, Halt> {
        let (retry, catch, results) = match &state.kind {
            Kind::Task(t) => (&t.retry, &t.catch, &t.results),
            Kind::Parallel(p) => (&p.retry, &p.catch, &p.results),
            Kind::Map(m) => (&m.retry, &m.catch, &m.results),
            _ => return Err(StatesError::runtime("not an effectful state").into()),
        };
        let mut attempts = vec![0u64; retry.len()];
        let mut retry_count = 0u64;
        loop {
            let ctx = self.info.context(&state.name, entered_ms, retry_count);
            let attempt = async {
                let effective = apply_in(state.input_path.as_ref(), &input, &ctx)?;
                let result = self.work(state, &effective, &ctx, scope).await?;
                Ok::<_, Halt>(finish(state, results, input.clone(), result, &ctx)?)
            };
            let error = match attempt.await {
                Ok(output) => return Ok(go(state, output)),
                Err(Halt::Fatal(e)) => return Err(Halt::Fatal(e)),
                Err(Halt::States(e)) => e,
            };
            match decide(retry, catch, &attempts, &error, random_unit()) {
                OnError::Retry { retrier, delay } => {
                    attempts[retrier] += 1;
                    retry_count += 1;
                    self.timer.sleep(delay).await;
                }
                OnError::Catch(i) => {
                    let c = &catch[i];
                    let output = match &c.result_path {
                        Some(p) => p.apply(input, error.to_value())?,
                        None => input,
                    };
                    return Ok(Transition::Next {
                        state: c.next.clone(),
                        output,
                    });
                }
                OnError::Fail => return Err(Halt::States(error)),
            }
        }
    }

    /// One attempt of a Task, Parallel or Map state on its effective input: the raw
    /// result.
    async fn work(
        &'a self,
        state: &'a State,
        effective: &Value,
        ctx: &Value,
        scope: &str,
    ) -> Result<Value, Halt> {
        match &state.kind {
            Kind::Task(t) => {
                let parameters = match &t.parameters {
                    Some(tpl) => tpl.render(effective, ctx)?,
                    None => effective.clone(),
                };
                within_payload_limit(
                    &format!("the input of Task {:?} after Parameters", state.name),
                    &parameters,
                )?;
                let timeout = t
                    .timeout
                    .as_ref()
                    .map(|s| seconds_of(s, effective, ctx, "TimeoutSecondsPath"))
                    .transpose()?;
                let heartbeat = t
                    .heartbeat
                    .as_ref()
                    .map(|s| seconds_of(s, effective, ctx, "HeartbeatSecondsPath"))
                    .transpose()?;
                if let Some(beat) = heartbeat {
                    let limit = timeout.unwrap_or(crate::definition::DEFAULT_TASK_TIMEOUT_SECONDS);
                    if beat == 0 || beat >= limit {
                        return Err(StatesError::runtime(format!(
                            "HeartbeatSeconds of Task {:?} must be a positive integer smaller than its TimeoutSeconds ({limit}), not {beat}",
                            state.name
                        ))
                        .into());
                    }
                }
                self.event(
                    EventType::TaskScheduled,
                    scope,
                    json!({"name": state.name, "resource": t.resource, "parameters": parameters, "timeoutInSeconds": timeout, "heartbeatInSeconds": heartbeat}),
                )?;
                self.event(
                    EventType::TaskStarted,
                    scope,
                    json!({"name": state.name, "resource": t.resource}),
                )?;
                let call = TaskCall {
                    resource: t.resource.clone(),
                    parameters,
                    state: state.name.clone(),
                    execution_id: self.info.id.clone(),
                };
                let result = match timeout {
                    Some(secs) => tokio::select! {
                        r = self.tasks.run(call) => r,
                        () = self.timer.sleep(Duration::from_secs(secs)) => {
                            let e = StatesError::new(names::TIMEOUT, format!("the Task ran past its TimeoutSeconds ({secs})"));
                            self.event(EventType::TaskTimedOut, scope, json!({"name": state.name, "resource": t.resource, "error": e.error, "cause": e.cause}))?;
                            return Err(e.into());
                        }
                    },
                    None => self.tasks.run(call).await,
                };
                // The connector's output counts against the payload limit too.
                let result = result.and_then(|output| {
                    within_payload_limit(&format!("the result of Task {:?}", state.name), &output)
                        .map(|()| output)
                });
                match result {
                    Ok(output) => {
                        self.event(
                            EventType::TaskSucceeded,
                            scope,
                            json!({"name": state.name, "resource": t.resource, "output": output}),
                        )?;
                        Ok(output)
                    }
                    Err(e) => {
                        self.event(
                            EventType::TaskFailed,
                            scope,
                            json!({"name": state.name, "resource": t.resource, "error": e.error, "cause": e.cause}),
                        )?;
                        Err(e.into())
                    }
                }
            }
            Kind::Parallel(p) => {
                let branch_input = match &p.parameters {
                    Some(tpl) => tpl.render(effective, ctx)?,
                    None => effective.clone(),
                };
                within_payload_limit(
                    &format!("the input of Parallel {:?} after Parameters", state.name),
                    &branch_input,
                )?;
                self.event(
                    EventType::ParallelStateStarted,
                    scope,
                    json!({"name": state.name}),
                )?;
                let runs = p.branches.iter().enumerate().map(|(i, b)| {
                    let sub = child_scope(scope, &state.name, i);
                    self.run_machine(b, b.start_at.clone(), branch_input.clone(), sub)
                });
                match futures::future::try_join_all(runs).await {
                    Ok(outputs) => {
                        self.event(
                            EventType::ParallelStateSucceeded,
                            scope,
                            json!({"name": state.name}),
                        )?;
                        Ok(Value::Array(outputs))
                    }
                    Err(Halt::States(e)) => {
                        self.event(
                            EventType::ParallelStateFailed,
                            scope,
                            json!({"name": state.name, "error": e.error, "cause": e.cause}),
                        )?;
                        Err(e.into())
                    }
                    Err(fatal) => Err(fatal),
                }
            }
            Kind::Map(m) => {
                let items = m.items_path.select(effective, ctx)?;
                let Value::Array(items) = items else {
                    return Err(StatesError::runtime(format!(
                        "Map state {:?}: ItemsPath '{}' must select an array, not {items}",
                        state.name,
                        m.items_path.as_str()
                    ))
                    .into());
                };
                self.event(
                    EventType::MapStateStarted,
                    scope,
                    json!({"name": state.name, "length": items.len()}),
                )?;
                let mut inputs = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let item_input = match &m.item_selector {
                        Some(tpl) => {
                            let mut item_ctx = ctx.clone();
                            item_ctx["Map"] = json!({"Item": {"Index": i, "Value": item}});
                            tpl.render(effective, &item_ctx)?
                        }
                        None => item,
                    };
                    inputs.push(item_input);
                }
                let limit = if m.max_concurrency == 0 {
                    inputs.len().max(1)
                } else {
                    m.max_concurrency
                };
                let name = state.name.clone();
                let runs = inputs.into_iter().enumerate().map(|(i, item_input)| {
                    let sub = child_scope(scope, &name, i);
                    let name = name.clone();
                    async move {
                        self.event(
                            EventType::MapIterationStarted,
                            scope,
                            json!({"name": name, "index": i}),
                        )?;
                        match self
                            .run_machine(&m.processor, m.processor.start_at.clone(), item_input, sub)
                            .await
                        {
                            Ok(v) => {
                                self.event(
                                    EventType::MapIterationSucceeded,
                                    scope,
                                    json!({"name": name, "index": i}),
                                )?;
                                Ok(v)
                            }
                            Err(Halt::States(e)) => {
                                self.event(
                                    EventType::MapIterationFailed,
                                    scope,
                                    json!({"name": name, "index": i, "error": e.error, "cause": e.cause}),
                                )?;
                                Err(Halt::States(e))
                            }
                            Err(f) => Err(f),
                        }
                    }
                });
                let mut stream = futures::stream::iter(runs).buffered(limit);
                let mut outputs = Vec::new();
                while let Some(r) = stream.next().await {
                    match r {
                        Ok(v) => outputs.push(v),
                        Err(Halt::States(e)) => {
                            self.event(
                                EventType::MapStateFailed,
                                scope,
                                json!({"name": state.name, "error": e.error, "cause": e.cause}),
                            )?;
                            return Err(e.into());
                        }
                        Err(fatal) => return Err(fatal),
                    }
                }
                self.event(
                    EventType::MapStateSucceeded,
                    scope,
                    json!({"name": state.name}),
                )?;
                Ok(Value::Array(outputs))
            }
            _ => Err(StatesError::runtime("not an effectful state").into()),
        }
    }
}

fn child_scope(scope: &str, name: &str, i: usize) -> String {
    if scope.is_empty() {
        format!("{name}[{i}]")
    } else {
        format!("{scope}/{name}[{i}]")
    }
}

fn random_unit() -> f64 {
    (crate::clock::random_u64() >> 11) as f64 / (1u64 << 53) as f64
}
