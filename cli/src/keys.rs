//! `actiondo keys create|list|revoke`: the API keys of the router and `actiondo serve`.
//!
//! Keys live in the selected store (the embedded file for `actiondo serve`, DynamoDB with
//! `--store dynamodb` for the deployed router). Only their SHA-256 is stored: `create`
//! prints the key once, on stdout alone (so that `KEY=$(actiondo keys create ...)` works),
//! and it cannot be shown again.

use actiondo::StoreConfig;
use actiondo_api::KeyStore;
use clap::Subcommand;
use serde_json::json;

use crate::{CliError, EXIT_OK};

/// The subcommands of `actiondo keys`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; print it once.
    Create {
        /// A pattern the key may call: an action name (`send-*`, `create-user`, `*`) or a
        /// workflow (`workflow:user-*`, `workflow:*`; `*` alone opens no workflow);
        /// repeat for more.
        #[arg(long, required = true, value_name = "PATTERN")]
        scope: Vec<String>,
        /// What the key is for (shown by `keys list`).
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Make the key expire after this long: a whole number and s, m, h or d (`30d`,
        /// `12h`; at most 3650d). An expired key answers 401. Without it the key lives
        /// until revoked.
        #[arg(long, value_name = "DURATION", value_parser = actiondo_api::keys::parse_expires_in)]
        expires_in: Option<std::time::Duration>,
        /// Print `{"key", "id", "scope", ...}` instead of the key alone.
        #[arg(long)]
        json: bool,
    },
    /// List the keys (ids, scopes, expiry, last use to the minute; never the keys).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id (revoking twice changes nothing).
    Revoke {
        /// The key's id (`keys list` shows it; it is the part after `ado_`).
        id: String,
    },
}

/// Run `actiondo keys ...`.
pub async fn run(store: &StoreConfig, command: &KeysCommand) -> Result<u8, CliError> {
    let keys = KeyStore::new(crate::open_store(store).await?);
    match command {
        KeysCommand::Create {
            scope,
            description,
            expires_in,
            json,
        } => {
            let new = keys
                .create_expiring(scope.clone(), description.clone(), *expires_in)
                .await
                .map_err(CliError::from_action)?;
            if *json {
                let mut value = serde_json::to_value(&new.info)
                    .map_err(|e| CliError::Output(std::io::Error::other(e)))?;
                value["key"] = json!(new.key);
                crate::print_stdout(&value.to_string())?;
            } else {
                crate::print_stdout(&new.key)?;
            }
            let expiry = new
                .info
                .expires_at
                .as_deref()
                .map(|at| format!(", expires {at}"))
                .unwrap_or_default();
            eprintln!(
                "created key {} (scope {}{expiry}); keep it now: it is not shown again",
                new.info.id,
                new.info.scope.join(", ")
            );
        }
        KeysCommand::List { json } => {
            let list = keys.list().await.map_err(CliError::from_action)?;
            if *json {
                crate::print_stdout(&json!({"keys": list}).to_string())?;
            } else if list.is_empty() {
                crate::print_stdout(
                    "no API keys; create one with: actiondo keys create --scope '*'",
                )?;
            } else {
                let mut table = crate::audit::new_table([
                    "ID",
                    "SCOPE",
                    "DESCRIPTION",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                    "REVOKED",
                ]);
                for key in list {
                    let expires = match (key.expires_at, key.expired) {
                        (Some(at), true) => format!("{at} (expired)"),
                        (Some(at), false) => at,
                        (None, _) => "never".to_owned(),
                    };
                    table.add_row([
                        key.id,
                        key.scope.join(", "),
                        key.description.unwrap_or_default(),
                        key.created_at,
                        expires,
                        key.last_used_at.unwrap_or_else(|| "never".to_owned()),
                        key.revoked_at.unwrap_or_default(),
                    ]);
                }
                crate::print_stdout(&table.to_string())?;
            }
        }
        KeysCommand::Revoke { id } => {
            let info = keys.revoke(id).await.map_err(CliError::from_action)?;
            crate::print_stdout(&format!(
                "revoked key {} at {}",
                info.id,
                info.revoked_at.unwrap_or_default()
            ))?;
        }
    }
    Ok(EXIT_OK)
}
