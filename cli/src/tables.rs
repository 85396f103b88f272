//! `actiondo tables create`: the three DynamoDB tables of docs/architecture.md §5, for local stacks.
//!
//! The endpoint, region and credentials come from the standard AWS settings
//! ([`crate::aws_config`]; e.g.
//! `AWS_ENDPOINT_URL_DYNAMODB=http://localhost:8000`), the table names from
//! `ACTIONDO_IDEMPOTENCY_TABLE`, `ACTIONDO_AUDIT_TABLE` and `ACTIONDO_ENTITIES_TABLE`.
//! Tables that exist already are left as they are.

use actiondo::store::dynamodb::DynamoStore;
use clap::Subcommand;

use crate::{CliError, EXIT_OK};

/// The subcommands of `actiondo tables`.
#[derive(Debug, Subcommand)]
pub enum TablesCommand {
    /// Create the idempotency, audit and entity tables (with their GSIs and TTL) on the
    /// configured DynamoDB endpoint; existing tables are kept.
    Create,
}

/// Run `actiondo tables ...`.
pub async fn run(command: &TablesCommand) -> Result<u8, CliError> {
    match command {
        TablesCommand::Create => {
            let store = DynamoStore::from_sdk_config(&crate::aws_config().await)?;
            store.create_tables().await?;
            let tables = store.tables();
            crate::print_stdout(&format!(
                "tables ready: {} (idempotency), {} (audit), {} (entities)",
                tables.idempotency, tables.audit, tables.entities
            ))?;
            Ok(EXIT_OK)
        }
    }
}
