//! How the API reaches an action: the [`Dispatcher`] trait, and [`InProcess`], which runs
//! actions in this process (`actiondo serve`, tests). The deployed router brings its own
//! dispatcher over the Lambda Invoke API (`functions/router`, `LambdaDispatcher`).
//!
//! Every dispatcher takes the same [`Invocation`] (params already parsed, key and
//! correlation id set) and answers the same [`Execution`], so the HTTP routes and the SQS
//! intake are written once over [`Dispatcher`].

use std::fmt;
use std::sync::Arc;

use actiondo::{ActionError, DynAction, Execution, Executor, Invocation};
use async_trait::async_trait;

/// Runs actions for the routes of [`crate::Api`] (and for the router's SQS intake).
#[async_trait]
pub trait Dispatcher: Send + Sync + fmt::Debug + 'static {
    /// Run `action` and wait for its outcome.
    async fn call(&self, action: &Arc<dyn DynAction>, invocation: Invocation) -> Execution;

    /// Start `action` without waiting (`Prefer: respond-async`, the SQS intake of
    /// fire-and-forget messages). The invocation carries its key, so that the caller can
    /// look the execution up at `/executions/{name}/{key}`.
    async fn start(
        &self,
        action: &Arc<dyn DynAction>,
        invocation: Invocation,
    ) -> Result<(), ActionError>;
}

/// Runs actions in this process with an [`Executor`] (on the embedded store for
/// `actiondo serve`).
#[derive(Debug, Clone)]
pub struct InProcess {
    executor: Executor,
}

impl InProcess {
    /// Dispatch to `executor`.
    pub fn new(executor: Executor) -> Self {
        Self { executor }
    }
}

#[async_trait]
impl Dispatcher for InProcess {
    async fn call(&self, action: &Arc<dyn DynAction>, invocation: Invocation) -> Execution {
        self.executor.execute(action.as_ref(), invocation).await
    }

    async fn start(
        &self,
        action: &Arc<dyn DynAction>,
        invocation: Invocation,
    ) -> Result<(), ActionError> {
        let executor = self.executor.clone();
        let action = Arc::clone(action);
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
