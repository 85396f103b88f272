//! # actiondo-workflow — workflow.do locally
//!
//! An engine for the Amazon States Language definitions of `workflows/*.asl.json`
//! (JSONPath mode), used by the `actiondo` CLI and `actiondo serve`
//! (docs/architecture.md §10). It is never linked into an action function
//! (tests/check_deps.py).
//!
//! - [`definition`]: a definition parsed once into typed states; errors name the state
//!   and the field.
//! - [`path`], [`intrinsics`], [`choice`], [`retry`]: the pure parts — paths and
//!   templates, intrinsic functions, choice rules, the decision after an error.
//! - [`engine`]: the interpreter; Task calls through a [`TaskRunner`], time through a
//!   [`Timer`], events to a [`HistorySink`].
//! - [`local`]: the actions in-process through the executor, with the envelope Step
//!   Functions sends; `${XFunctionArn}` resolved from `template.yaml`.
//! - [`store`]: executions and their event history in the embedded store's SQLite file;
//!   starts keyed by the execution name, redrive, interrupted runs.
//!
//! # Example
//!
//! ```
//! use actiondo_workflow::{Engine, ExecutionInfo, MemoryHistory, Outcome, ScaledTimer, StateMachine, TaskCall, TaskRunner, StatesError};
//! use serde_json::{json, Value};
//!
//! #[derive(Debug)]
//! struct Echo;
//! #[async_trait::async_trait]
//! impl TaskRunner for Echo {
//!     async fn run(&self, call: TaskCall) -> Result<Value, StatesError> { Ok(call.parameters) }
//! }
//!
//! # tokio_test();
//! # fn tokio_test() { tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let machine = StateMachine::parse(r#"{"StartAt": "T", "States": {"T": {
//!     "Type": "Task", "Resource": "echo", "Parameters": {"n.$": "States.MathAdd($.n, 1)"},
//!     "ResultPath": "$.t", "End": true}}}"#).unwrap();
//! let info = ExecutionInfo { id: "arn:aws:states:local:000000000000:execution:m:e".into(), name: "e".into(),
//!     start_time: "2026-01-01T00:00:00.000Z".into(), input: json!({"n": 1}), role_arn: String::new(),
//!     redrive_count: 0, state_machine_id: String::new(), state_machine_name: "m".into() };
//! let history = MemoryHistory::new();
//! let engine = Engine { tasks: &Echo, timer: &ScaledTimer::real_time(), history: &history, info: &info };
//! let outcome = engine.run(&machine, "T", json!({"n": 1}), 0).await.unwrap();
//! assert_eq!(outcome, Outcome::Succeeded(json!({"n": 1, "t": {"n": 2}})));
//! # }) }
//! ```

pub mod choice;
pub mod clock;
pub mod definition;
pub mod engine;
pub mod error;
pub mod history;
pub mod intrinsics;
pub mod local;
pub mod path;
pub mod retry;
pub mod store;

pub use clock::{ScaledTimer, Timer};
pub use definition::StateMachine;
pub use engine::{Engine, ExecutionInfo, Outcome, TaskCall, TaskRunner};
pub use error::{DefinitionError, StatesError, WorkflowError};
pub use history::{Event, EventType, HistorySink, MemoryHistory};
pub use local::{Arns, LocalActions, LocalWorkflows, Project};
pub use store::{Created, ExecutionRecord, Status, WorkflowStore};
