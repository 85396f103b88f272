//! How the API reaches an action: the [`Dispatcher`] trait, and [`InProcess`], which runs
//! actions in this process (`actiondo serve`, tests). The deployed router brings its own
//! dispatcher over the Lambda Invoke API (`functions/router`, `LambdaDispatcher`).
//!
//! Every dispatcher takes the same [`Invocation`] (params already parsed, key and
//! correlation id set) and answers the same [`Execution`], so the HTTP routes and the SQS
//! intake are written once over [`Dispatcher`].

use std::fmt;
use std::sync::Arc;

use actiondo::{ActionError, Catalog, Describe, Execution, Executor, Invocation};
use async_trait::async_trait;

/// Runs actions for the routes of [`crate::Api`] (and for the router's SQS intake).
#[async_trait]
pub trait Dispatcher: Send + Sync + fmt::Debug + 'static {
    /// Run `action` and wait for its outcome.
    async fn call(&self, action: &Arc<dyn Describe>, invocation: Invocation) -> Execution;

    /// Start `action` without waiting (`Prefer: respond-async`, the SQS intake of
    /// fire-and-forget messages). The invocation carries its key, so that the caller can
    /// look the execution up at `/executions/{name}/{key}`.
    async fn start(
        &self,
        action: &Arc<dyn Describe>,
        invocation: Invocation,
    ) -> Result<(), ActionError>;

    /// Check `params` for `action` before an asynchronous start, as far as this
    /// dispatcher can: against the input schema (the default, for a dispatcher that
    /// forwards the action to where it runs, which checks the rest); a dispatcher that
    /// runs the action here also runs its business validation ([`Action::validate`]).
    ///
    /// [`Action::validate`]: actiondo::Action::validate
    fn check(&self, action: &dyn Describe, params: &serde_json::Value) -> Result<(), ActionError> {
        action.check_schema(params)
    }
}

/// Runs the actions of a [`Catalog`] in this process with an [`Executor`] (on the
/// embedded store for `actiondo serve`).
#[derive(Debug, Clone)]
pub struct InProcess {
    catalog: Arc<Catalog>,
    executor: Executor,
}

impl InProcess {
    /// Run the actions of `catalog` with `executor`; give the API the same catalog
    /// ([`crate::Api::new`] takes its descriptions).
    pub fn new(catalog: Catalog, executor: Executor) -> Self {
        Self {
            catalog: Arc::new(catalog),
            executor,
        }
    }

    /// The runnable action described by `action`: `ActionDo.NotFound` if this
    /// dispatcher's catalog lacks it (the API was given a different catalog).
    fn runnable(&self, action: &dyn Describe) -> Result<Arc<dyn actiondo::DynAction>, ActionError> {
        self.catalog.get(action.name()).cloned().ok_or_else(|| {
            ActionError::not_found(format!(
                "the action {:?} is described but this process cannot run it",
                action.name()
            ))
        })
    }
}

#[async_trait]
impl Dispatcher for InProcess {
    async fn call(&self, action: &Arc<dyn Describe>, invocation: Invocation) -> Execution {
        match self.runnable(action.as_ref()) {
            Ok(runnable) => self.executor.execute(runnable.as_ref(), invocation).await,
            Err(e) => Execution {
                action: action.name(),
                key: invocation.key,
                attempt: 0,
                replayed: false,
                outcome: Err(e),
            },
        }
    }

    fn check(&self, action: &dyn Describe, params: &serde_json::Value) -> Result<(), ActionError> {
        self.runnable(action)?.check(params)
    }

    async fn start(
        &self,
        action: &Arc<dyn Describe>,
        invocation: Invocation,
    ) -> Result<(), ActionError> {
        let executor = self.executor.clone();
        let action = self.runnable(action.as_ref())?;
        tokio::spawn(async move {
            let execution = executor.execute(action.as_ref(), invocation).await;
            if let Err(e) = execution.outcome {
                tracing::info!(
                    action = execution.action,
                    key = execution.key.as_deref().unwrap_or_default(),
                    error_type = e.kind().wire_name(),
                    "asynchronous execution failed"
                );
            }
        });
        Ok(())
    }
}
