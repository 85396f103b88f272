//! `actiondo mcp [--scope PATTERN]...`: the catalog's actions as tools for an agent, over
//! stdio (docs/architecture.md §7.6).
//!
//! An MCP client (an agent, an IDE) starts this command and talks JSON-RPC on its stdin
//! and stdout; nothing else is written to stdout. Every action in the scope (default
//! `*`: every action of the catalog) is a tool, run in-process on the selected store —
//! the same executor, records and audit trail as `actiondo execute` and `actiondo
//! serve`, with source `mcp` and caller `mcp:<client name>`. The scope takes the
//! patterns of API keys (`--scope 'create-*' --scope score-lead`). The server stops when
//! the client closes stdin.

use std::sync::Arc;

use actiondo::{Executor, StoreConfig};
use actiondo_api::InProcess;
use actiondo_api::keys::Scope;
use actiondo_mcp::{McpServer, Principal};
use clap::Args;

use crate::{CliError, EXIT_OK};

/// The arguments of `actiondo mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// The actions offered as tools: patterns as in API keys' scopes (`send-*`,
    /// `create-user`); repeat for more. Default: every action.
    #[arg(long = "scope", value_name = "PATTERN", default_value = "*")]
    pub scope: Vec<String>,
}

/// Serve the tools on stdin/stdout until the client closes stdin.
pub async fn run(store: &StoreConfig, args: &McpArgs) -> Result<u8, CliError> {
    let scope = Scope::parse(&args.scope)
        .map_err(|errors| CliError::from_action(errors.into_error("--scope is invalid")))?;
    let store = crate::open_store(store).await?;
    let catalog = actiondo_catalog::catalog();
    let dispatcher = InProcess::new(catalog.clone(), Executor::from_arc(Arc::clone(&store)));
    let server = McpServer::new(
        catalog,
        Arc::new(dispatcher),
        store,
        Some(Principal::local(scope)),
    );
    actiondo_mcp::serve_stdio(server)
        .await
        .map_err(|e| CliError::Failed(format!("the MCP connection failed: {e}")))?;
    Ok(EXIT_OK)
}
