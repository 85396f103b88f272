//! # actiondo — atomic actions for AWS Lambda
//!
//! Every unit of business work is an **atomic action**: it completes entirely or fails
//! entirely, can be retried safely with the same idempotency key, and leaves an audit
//! record of every attempt.
//!
//! - [`Action`]: what you implement — typed input and output with JSON Schemas, a name,
//!   [`ActionOptions`], and an `execute` that stages its entity writes on the
//!   [`ActionContext`].
//! - [`Executor`]: the protocol (docs/architecture.md §4), once — claim a lease with one conditional
//!   write, run the handler, commit the outcome, the audit record and the staged writes in
//!   one transaction; replay stored outcomes; refuse mismatched payloads.
//! - [`store`]: the [`Store`](store::Store) primitives and their backends — DynamoDB
//!   (feature `dynamodb`) and embedded SQLite (feature `sqlite`) — with the same semantics.
//! - [`ActionError`]: one error type whose [`ErrorKind`] has a stable wire name, an HTTP
//!   status and a retry class (docs/architecture.md §6).
//!
//! # Example
//!
//! ```
//! use actiondo::{Action, ActionContext, ActionError, EntityKey, Executor, Expect, Invocation, Source};
//! use actiondo::store::sqlite::SqliteStore;
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(rename_all = "camelCase")]
//! struct Input { user_id: String }
//!
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! struct Output { created: bool }
//!
//! struct CreateUser;
//!
//! impl Action for CreateUser {
//!     type Input = Input;
//!     type Output = Output;
//!     const NAME: &'static str = "create-user";
//!     const DESCRIPTION: &'static str = "Creates a user.";
//!
//!     async fn execute(&self, input: Input, cx: &mut ActionContext) -> Result<Output, ActionError> {
//!         cx.put(EntityKey::new(format!("user#{}", input.user_id), "profile"),
//!                &serde_json::json!({"id": input.user_id}), Expect::Absent)?;
//!         Ok(Output { created: true })
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let executor = Executor::new(SqliteStore::in_memory()?);
//! let params = serde_json::json!({"userId": "u1"});
//! let first = executor.execute(&CreateUser, Invocation::new(params.clone(), Source::Cli).with_key("k1")).await;
//! let replay = executor.execute(&CreateUser, Invocation::new(params, Source::Cli).with_key("k1")).await;
//! assert!(!first.replayed && replay.replayed);
//! assert_eq!(first.outcome?.get(), replay.outcome?.get());
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
#![warn(missing_docs, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod action;
pub mod audit;
#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
pub mod config;
pub mod context;
pub mod error;
pub mod executor;
pub mod hash;
#[cfg(feature = "http-client")]
pub mod http_client;
pub mod invocation;
pub mod limits;
pub mod metrics;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "lambda")]
pub mod trigger;
pub mod validation;

pub use action::{
    Action, ActionOptions, ActionSet, Catalog, Describe, Descriptors, DynAction, Effects,
    KeyPolicy, Lease, Mode,
};
pub use audit::{AuditFilter, AuditPage, AuditQuery, AuditRecord, AuditStatus};
pub use clock::{Clock, SystemClock};
pub use context::ActionContext;
pub use error::{ActionError, ErrorBody, ErrorKind, StoreError};
pub use executor::{AuditBatch, Execution, Executor, Response};
pub use invocation::{Invocation, Params, Source};
pub use store::{Entity, EntityKey, Expect, Store, StoreConfig};
#[cfg(feature = "lambda")]
pub use trigger::{BoxError, Handler, run};
pub use validation::FieldErrors;
