//! # router — how applications call actions
//!
//! The router maps action names to executions (DESIGN §8). One core serves two places:
//!
//! - in Lambda ([`lambda::run`], the `router` binary): the HTTP API through `lambda_http`
//!   and the SQS intake, invoking each action's own function with `aws-sdk-lambda`
//!   ([`dispatch::LambdaDispatcher`]);
//! - locally (`actiondo serve`): the same [`axum::Router`] on a local socket, running the
//!   actions in-process on the embedded store ([`dispatch::InProcess`]).
//!
//! Modules: [`catalog`] (every action: the crate `actiondo-catalog`), [`api`] (the routes), [`dispatch`] (how actions
//! are reached), [`keys`] (API keys), [`intake`] (the SQS intake), [`view`] (what the read
//! routes show), [`workflows`] (Step Functions executions), [`lambda`] (the Lambda entry
//! point).

pub mod api;
pub mod dispatch;
pub mod intake;
pub mod keys;
pub mod lambda;
pub mod view;
pub mod workflows;

pub use actiondo_catalog as catalog;
pub use actiondo_catalog::catalog;
pub use api::{Api, Auth};
pub use dispatch::{Dispatcher, InProcess, LambdaDispatcher};
pub use keys::KeyStore;
pub use workflows::Workflows;
