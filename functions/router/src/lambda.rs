//! The router's Lambda entry point: one function serves the HTTP API (API Gateway HTTP
//! API, REST API, function URL, through `lambda_http`) and the SQS intake.

use std::sync::Arc;

use actiondo::aws::signed::{AwsService, SignedClient};
use actiondo::config::{ConfigError, Settings};
use actiondo::trigger::{EventShape, Meta, RawEvent, TriggerSettings, catch_panic};
use actiondo::{ActionError, BoxError, StoreConfig};
use actiondo_api::{Api, Auth, KeyStore, Workflows};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

use crate::dispatch::LambdaDispatcher;

/// Set up once (tracing, the store, the Lambda client (signed requests,
/// `actiondo::aws::signed`), the function of every action from
/// `ACTIONDO_FUNCTION_*`, the state machines from `ACTIONDO_WORKFLOW_*`, the key cache's
/// TTL from `ACTIONDO_KEY_CACHE_TTL`, all read once from the environment) and serve
/// invocations. Every HTTP route needs an API key.
pub async fn run() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    // The one read of the environment: everything below is configured from it.
    let settings = Settings::from_env();
    // Descriptions only: this binary invokes each action's own function and links none
    // of their code.
    let catalog = actiondo_catalog::descriptors();
    let functions = LambdaDispatcher::functions(&catalog, &settings)?;
    let config = actiondo::aws::sdk_config_from_settings(&settings)?;
    let lambda = SignedClient::with_settings(
        &config,
        AwsService::LAMBDA,
        LambdaDispatcher::client_settings(),
    )?;
    let dispatcher = LambdaDispatcher::new(lambda, functions);
    let store = StoreConfig::from_settings_or(&settings, StoreConfig::DynamoDb)?
        .open_with(&settings)
        .await?;
    // Each instance caches verified keys (ACTIONDO_KEY_CACHE_TTL, 30 s by default): a
    // revoked key still works on an instance that verified it within that time.
    let auth = Auth::ApiKeys(
        KeyStore::new(Arc::clone(&store)).with_cache_ttl(actiondo_api::keys::cache_ttl(&settings)?),
    );
    let mut api = Api::new(
        catalog,
        Arc::new(dispatcher),
        Arc::clone(&store),
        auth.clone(),
    );
    if let Some(workflows) = Workflows::from_settings(&settings, &config) {
        api = api.with_workflows(workflows);
    }
    let router = with_console(api.clone().into_router(), &settings)?;
    // `/mcp` when built with the feature `mcp` and ACTIONDO_MCP=on (docs/architecture.md §7.6).
    #[cfg(feature = "mcp")]
    let router = actiondo_mcp::http::mount(router, &api, store, auth, &settings)?;
    #[cfg(not(feature = "mcp"))]
    drop((store, auth));
    let triggers = TriggerSettings::from_settings(&settings);
    tracing::info!(actions = api.catalog().len(), "router ready");
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<RawEvent>| {
        let (api, router) = (api.clone(), router.clone());
        async move {
            let LambdaEvent { payload, context } = event;
            // A payload that is not JSON is ActionDo.Validation, and a panic is
            // ActionDo.Internal: never a Rust type name as the errorType.
            let handled = async {
                handle(
                    &api,
                    router,
                    LambdaEvent::new(payload.into_value()?, context),
                    &triggers,
                )
                .await
            };
            catch_panic(handled).await.map_err(Diagnostic::from)
        }
    }))
    .await
}

/// The routes plus the console's pages when `ACTIONDO_CONSOLE=on` (docs/architecture.md
/// §11), in a router built with the feature `console`: without it the binary links no
/// console (its templates and minijinja, about 0.5 MB), and `ACTIONDO_CONSOLE=on` is a
/// configuration error at start-up rather than a console that silently is not there.
pub fn with_console(
    router: axum::Router,
    settings: &Settings,
) -> Result<axum::Router, ConfigError> {
    if !actiondo_api::console::enabled(settings) {
        return Ok(router);
    }
    #[cfg(feature = "console")]
    return Ok(actiondo_api::console::with_console(router));
    #[cfg(not(feature = "console"))]
    Err(ConfigError::new(format!(
        "{}=on, but this router was built without the console: build it with `cargo lambda build --features console` (docs/architecture.md §11)",
        actiondo_api::console::CONSOLE_ENV
    )))
}

/// One invocation: an SQS batch goes to the intake, an HTTP request to the routes.
pub async fn handle(
    api: &Api,
    router: axum::Router,
    event: LambdaEvent<Value>,
    triggers: &TriggerSettings,
) -> Result<Value, ActionError> {
    let LambdaEvent { payload, context } = event;
    match EventShape::of(&payload)? {
        EventShape::Sqs => {
            let batch = actiondo::trigger::sqs::parse_event(payload)?;
            let meta = Meta::from(&context);
            let response =
                crate::intake::handle_batch_within(api, batch, &meta, triggers.sqs_concurrency)
                    .await;
            serde_json::to_value(response).map_err(|e| {
                ActionError::internal(format!("the batch response does not serialize: {e}"))
            })
        }
        EventShape::Http => {
            actiondo::trigger::http::serve_event(router, payload, context, triggers).await
        }
        EventShape::EventBridge | EventShape::Direct => Err(ActionError::validation(
            "the router accepts API Gateway / function URL requests and SQS intake batches; invoke an action's own function for anything else",
        )),
    }
}
