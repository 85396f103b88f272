//! # router — how applications call actions, in Lambda
//!
//! The router maps action names to executions (docs/architecture.md §8). Its HTTP API is the crate
//! `actiondo-api` (the same routes `actiondo serve` serves locally) and its actions are
//! the catalog of `actiondo-catalog`; this package holds what only the Lambda function
//! needs:
//!
//! - [`lambda`]: the entry point ([`lambda::run`], the `router` binary), serving the HTTP
//!   API through `lambda_http` and the SQS intake from one function;
//! - [`dispatch`]: [`LambdaDispatcher`], which invokes each action's own function through
//!   the Lambda Invoke API, signed requests of `actiondo::aws::signed` (no SDK crate);
//! - [`intake`]: the SQS intake queue's messages, run through the same dispatcher.
//!
//! With the cargo feature `mcp` and `ACTIONDO_MCP=on`, [`lambda::run`] also serves `/mcp`,
//! the actions as MCP tools (`actiondo_mcp::http::mount`, docs/architecture.md §7.6); with
//! the feature `console` and `ACTIONDO_CONSOLE=on`, the console's pages
//! (docs/architecture.md §11). Both are off by default, which keeps the binary under 8 MB
//! (BENCHMARKS.md, "The router").
//!
//! The binary links no action's code: it serves the actions' descriptions
//! ([`actiondo_catalog::descriptors`], `Arc<dyn Describe>`: names, schemas, key
//! policies, the check against the input schema) and each action's own function runs it,
//! business validation included.

pub mod dispatch;
pub mod intake;
pub mod lambda;

pub use dispatch::LambdaDispatcher;

// What the deployed function is set up with, under the paths the end-to-end tests
// (tests/e2e) use: `router::catalog()`, `router::descriptors()` and `router::KeyStore`.
pub use actiondo_api::KeyStore;
pub use actiondo_catalog::{catalog, descriptors};
