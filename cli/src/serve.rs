//! `actiondo serve [--addr 127.0.0.1:8080] [--no-auth] [--key-cache-ttl 30s]`: the router's
//! HTTP API, locally.
//!
//! The very routes of the deployed router (`actiondo_api::Api`, docs/architecture.md §8), dispatching
//! in-process on the selected store (the embedded file by default): `POST
//! /actions/{name}`, `POST /execute`, `GET /actions`, `GET /executions/{name}/{key}`,
//! `GET /audit`, `/mcp` (the actions as MCP tools, streamable HTTP, behind the same keys),
//! the console, and the workflow routes (`POST /workflows/{name}`, `GET
//! /workflows/{name}/executions/{id}`, `…/history`, `POST …/redrive`): on the local engine
//! (`actiondo-workflow`, the executions in the same SQLite file), or on Step Functions for
//! the workflows `ACTIONDO_WORKFLOW_<NAME>` names (with `AWS_ENDPOINT_URL_SFN` for a local
//! one). `--time-scale F` runs the local engine's time F times faster. API keys are required as in AWS (`actiondo keys create`); `--no-auth`
//! turns them off for local play, on a loopback address only. Verified keys are cached for
//! `--key-cache-ttl` (30 s; `ACTIONDO_KEY_CACHE_TTL`): a key revoked by `actiondo keys
//! revoke` in another process still works that long here. The address it listens on
//! is printed on stderr (`--addr 127.0.0.1:0` picks a free port). Ctrl-C or SIGTERM stop
//! it after the requests in flight.
//!
//! It also serves the console at `/` (`actiondo_api::console`), behind the same keys, and
//! `GET /workflows` from the definitions of `--workflows` (default `workflows/`).
//! `ACTIONDO_METRICS=emf` prints one metrics line per execution on standard output.

use std::net::SocketAddr;
use std::sync::Arc;

use actiondo::{Executor, StoreConfig};
use actiondo_api::{Api, Auth, Dispatcher, InProcess, KeyStore, Workflows};
use actiondo_mcp::McpServer;
use clap::Args;

use crate::{CliError, EXIT_OK};

/// The default address of `actiondo serve`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// The arguments of `actiondo serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port).
    #[arg(long, default_value = DEFAULT_ADDR, value_name = "IP:PORT")]
    pub addr: SocketAddr,

    /// Accept calls without an API key (local play only; refused on a non-loopback
    /// address).
    #[arg(long)]
    pub no_auth: bool,

    /// The project folder whose `workflows/*.asl.json` the local engine runs.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: std::path::PathBuf,

    /// Run the local workflows' Wait, Retry and TimeoutSeconds F times faster.
    #[arg(long, env = actiondo_workflow::clock::TIME_SCALE_ENV, value_name = "F")]
    pub time_scale: Option<f64>,

    /// How long a verified API key is trusted before its record is read again: the
    /// longest a key revoked by another process (`actiondo keys revoke`) still works.
    /// A whole number and s, m, h or d; `0` reads the key on every request.
    #[arg(long, value_name = "DURATION", env = actiondo_api::keys::CACHE_TTL_ENV,
          default_value = "30s", value_parser = actiondo_api::keys::parse_duration)]
    pub key_cache_ttl: std::time::Duration,
}

/// Run `actiondo serve` until Ctrl-C or SIGTERM.
pub async fn run(
    store_config: &StoreConfig,
    args: &ServeArgs,
    settings: &actiondo::config::Settings,
) -> Result<u8, CliError> {
    if args.no_auth && !args.addr.ip().is_loopback() {
        return Err(CliError::Usage(format!(
            "--no-auth serves every action to anyone who can reach {}; it is only allowed on a loopback address (127.0.0.1)",
            args.addr
        )));
    }
    let store = crate::open_store(store_config).await?;
    let auth = if args.no_auth {
        Auth::Disabled
    } else {
        let keys = KeyStore::new(Arc::clone(&store)).with_cache_ttl(args.key_cache_ttl);
        if keys
            .list()
            .await
            .map_err(CliError::from_action)?
            .iter()
            .all(|k| k.revoked_at.is_some())
        {
            eprintln!(
                "no API keys yet: every call will be refused (401). Create one with `actiondo keys create --scope '*'`, or start with --no-auth for local play"
            );
        }
        Auth::ApiKeys(keys)
    };
    let catalog = actiondo_catalog::catalog();
    let actions = catalog.len();
    let executor = Executor::from_arc(Arc::clone(&store))
        .with_metrics(actiondo::metrics::Metrics::from_settings(settings));
    let dispatcher: Arc<dyn Dispatcher> = Arc::new(InProcess::new(catalog.clone(), executor));
    // /mcp: the same actions as MCP tools, through the same dispatcher and behind the
    // same keys and scopes (docs/architecture.md §7.6).
    let mcp = McpServer::new(
        catalog.clone(),
        Arc::clone(&dispatcher),
        Arc::clone(&store),
        None,
    );
    let mut api = Api::new(catalog, dispatcher, store, auth.clone());
    // The workflow routes: Step Functions for the workflows ACTIONDO_WORKFLOW_<NAME>
    // names (AWS_ENDPOINT_URL_SFN for a local one), the local engine for the others.
    let step_functions = if Workflows::machines(settings).is_empty() {
        None
    } else {
        Workflows::from_settings(settings, &crate::aws_config().await)
    };
    if let Some(sfn) = &step_functions {
        eprintln!(
            "actiondo serve: on Step Functions: {}",
            sfn.names().collect::<Vec<_>>().join(", ")
        );
    }
    let common = crate::workflow::Common {
        dir: args.dir.clone(),
        time_scale: args.time_scale,
    };
    match crate::workflow::local(store_config, &common, settings).await {
        Ok(local) => {
            if let Ok(names) = local.project().names() {
                eprintln!("actiondo serve: local workflows: {}", names.join(", "));
            }
            api = api.with_workflow_service(Arc::new(crate::workflow::ServeWorkflows::new(
                local,
                step_functions,
            )));
        }
        Err(e) => {
            eprintln!("actiondo serve: no local workflows ({})", e.report());
            if let Some(sfn) = step_functions {
                api = api.with_workflows(sfn);
            }
        }
    }
    // `GET /workflows` and the console's graphs: the definitions of the same folder.
    let definitions_dir = args.dir.join("workflows");
    if definitions_dir.is_dir() {
        let definitions = actiondo_api::workflows::definitions_from_dir(&definitions_dir)
            .map_err(CliError::Usage)?;
        api = api.with_workflow_definitions(definitions);
    }
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on {}: {e}", args.addr)))?;
    let local = listener.local_addr()?;
    eprintln!(
        "actiondo serve: listening on http://{local} ({actions} actions, {}; console at /)",
        if args.no_auth {
            "no auth"
        } else {
            "API keys required"
        }
    );
    let mut hosts = actiondo_mcp::http::HttpOptions::default().allowed_hosts;
    hosts.push(local.to_string());
    let mcp = actiondo_mcp::http::router(
        mcp,
        auth,
        actiondo_mcp::http::HttpOptions {
            allowed_hosts: hosts,
            sessions: true,
        },
    );
    // The console (`/`, `/console/…`) reads through the same routes.
    axum::serve(
        listener,
        actiondo_api::console::with_console(api.into_router()).merge(mcp),
    )
    .with_graceful_shutdown(shutdown())
    .await?;
    eprintln!("actiondo serve: stopped");
    Ok(EXIT_OK)
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
