//! # actiondo-api — the HTTP API of action.do
//!
//! The routes README.md lists (`POST /actions/{name}`, `POST /execute`, `GET /actions`,
//! `GET /executions/{name}/{key}`, `GET /audit`, the workflow routes), with API keys, over
//! a catalog of actions: one [`axum::Router`] served in two places:
//!
//! - in Lambda by the router (`functions/router`), which reaches each action's own
//!   function through the Lambda Invoke API;
//! - locally by `actiondo serve`, which runs the actions in this process on the embedded
//!   store ([`InProcess`]).
//!
//! The API takes the [`Catalog`](actiondo::Catalog) as a value ([`Api::new`]) and depends
//! on no action: the programs that run actions build the catalog (`actiondo-catalog`) and
//! pass it in, so this crate links the toolkit and the HTTP stack only.
//!
//! Modules: [`routes`] (the routes), [`dispatch`] (how actions are reached), [`keys`] (API
//! keys), [`view`] (what the read routes show), [`workflows`] (Step Functions executions),
//! [`console`] (the console's pages over those routes) and [`graph`] (a state machine's
//! graph, laid out for the console).

pub mod console;
pub mod dispatch;
pub mod graph;
pub mod keys;
pub mod routes;
pub mod view;
pub mod workflows;

pub use dispatch::{Dispatcher, InProcess};
pub use keys::KeyStore;
pub use routes::{Api, Auth};
pub use workflows::{WorkflowService, Workflows};
