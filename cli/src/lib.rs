//! # actiondo-cli — the `actiondo` command line
//!
//! Runs any action of the catalog in-process, on the embedded SQLite store by default
//! (no AWS account, nothing to start) or on DynamoDB with `--store dynamodb`, and reads
//! the audit trail.
//!
//! ```text
//! actiondo execute create-user --params '{"email": "ada@example.com", "name": "Ada"}'
//! actiondo actions [NAME] [--json]
//! actiondo audit [--type NAME [--key K]] [--correlation ID] [--since RFC3339] [--limit N] [--json]
//! actiondo serve [--addr 127.0.0.1:8080] [--no-auth]
//! actiondo mcp [--scope PATTERN]...
//! actiondo keys create --scope 'send-*' [--scope 'workflow:user-*'] | keys list | keys revoke ID
//! actiondo tables create
//! actiondo workflow list | run NAME --input JSON [--name ID] | start | describe | history | redrive
//! actiondo new NAME [--description TEXT] [--settings] [--key required] [--mode optimistic]
//! ```
//!
//! Exit status: [`EXIT_OK`] (0) on success, [`EXIT_ACTION_ERROR`] (1) when the action
//! (or the store) answered with an error, [`EXIT_USAGE`] (2) when the command cannot run
//! as given (bad flags, unreadable `@file`, unknown action, missing configuration).
//!
//! The binary's `main` only parses the arguments, sets up logging and calls [`run`]; the
//! commands live in the modules below, so that they can be tested.

pub mod actions;
pub mod audit;
pub mod error;
pub mod execute;
pub mod json;
pub mod keys;
pub mod mcp;
pub mod new;
pub mod serve;
pub mod tables;
pub mod workflow;

use std::io::Write as _;
use std::sync::Arc;

use actiondo::{Store, StoreConfig};
use clap::{Parser, Subcommand};

pub use error::CliError;

/// The command succeeded (the action returned a result).
pub const EXIT_OK: u8 = 0;
/// The action returned an error (`ActionDo.*`, including a validation of its params), the
/// store failed, or the command stopped on the way (`actiondo new`).
pub const EXIT_ACTION_ERROR: u8 = 1;
/// The command cannot run as given: bad flags, unreadable `@file`, unknown action name,
/// missing or invalid configuration. (clap's own usage errors exit with 2 as well.)
pub const EXIT_USAGE: u8 = 2;

/// The AWS configuration of the CLI: the whole chain of the AWS SDKs (environment,
/// shared config and credentials files, SSO, `credential_process`, IMDS), over HTTPS with
/// [`actiondo::aws::http_client`]. (The Lambda functions read their environment only.)
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(actiondo::aws::http_client())
        .load()
        .await
}

/// Open `store`; DynamoDB with [`aws_config`].
pub async fn open_store(store: &StoreConfig) -> Result<Arc<dyn Store>, CliError> {
    Ok(match store {
        StoreConfig::DynamoDb => Arc::new(actiondo::store::dynamodb::DynamoStore::from_sdk_config(
            &aws_config().await,
        )?),
        other => other.open().await?,
    })
}

/// The store used when neither `--store` nor `ACTIONDO_STORE` says otherwise.
pub const DEFAULT_STORE: &str = "sqlite:.actiondo/actiondo.db";

/// `actiondo`: run atomic, idempotent, audited actions locally.
#[derive(Debug, Parser)]
#[command(name = "actiondo", version, about, long_about = None)]
pub struct Cli {
    /// The store: sqlite, sqlite:PATH, sqlite::memory: or dynamodb.
    ///
    /// Where idempotency records, audit records and entities live: `sqlite` (the default
    /// file, `.actiondo/actiondo.db` under the current folder), `sqlite:PATH`,
    /// `sqlite::memory:` (private to this run) or `dynamodb` (endpoint, region and
    /// credentials from the standard AWS settings: environment, profiles, SSO; e.g.
    /// AWS_ENDPOINT_URL_DYNAMODB for DynamoDB Local; table
    /// names from ACTIONDO_IDEMPOTENCY_TABLE, ACTIONDO_AUDIT_TABLE and
    /// ACTIONDO_ENTITIES_TABLE).
    #[arg(
        long,
        global = true,
        env = actiondo::store::STORE_ENV,
        default_value = DEFAULT_STORE,
        value_name = "STORE"
    )]
    pub store: StoreConfig,

    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one action in-process and print `{"result": ..., "error": ...}`.
    Execute(execute::ExecuteArgs),
    /// List the catalog of actions (name, description, input).
    Actions(actions::ActionsArgs),
    /// Show the audit trail, newest first.
    Audit(audit::AuditArgs),
    /// Serve the router's HTTP API locally, running actions in-process.
    Serve(serve::ServeArgs),
    /// Serve the actions as MCP tools for an agent, over stdio.
    Mcp(mcp::McpArgs),
    /// Create, list and revoke API keys.
    Keys {
        /// What to do with the keys.
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Manage the DynamoDB tables (for local stacks).
    Tables {
        /// What to do with the tables.
        #[command(subcommand)]
        command: tables::TablesCommand,
    },
    /// Add an action: functions/NAME/ and its wiring (catalog, template.yaml).
    New(new::NewArgs),
    /// Run the workflows of workflows/*.asl.json locally: list, run, start, describe,
    /// history, redrive.
    Workflow {
        /// The project folder and the time scale.
        #[command(flatten)]
        common: workflow::Common,
        /// What to do.
        #[command(subcommand)]
        command: workflow::WorkflowCommand,
    },
}

/// Run a parsed command line and return the process exit status. Errors are printed on
/// stderr (with their causes); results on stdout.
pub async fn run(cli: Cli) -> u8 {
    // The one read of the environment for what clap's flags do not cover (the router's
    // variables, workflow leases, metrics).
    let settings = actiondo::config::Settings::from_env();
    let result = match cli.command {
        Command::Execute(args) => execute::run(&cli.store, &args).await,
        Command::Actions(args) => actions::run(&args),
        Command::Audit(args) => audit::run(&cli.store, &args).await,
        Command::Serve(args) => serve::run(&cli.store, &args, &settings).await,
        Command::Mcp(args) => mcp::run(&cli.store, &args).await,
        Command::Keys { command } => keys::run(&cli.store, &command).await,
        Command::Tables { command } => tables::run(&command).await,
        Command::New(args) => new::run(&args),
        Command::Workflow { common, command } => {
            workflow::run(&cli.store, &common, &command, &settings).await
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {}", e.report());
            e.exit_code()
        }
    }
}

/// Write `text` and a newline to stdout. A closed pipe (`actiondo audit | head`) is not
/// an error: the reader has seen what it wanted.
pub fn print_stdout(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Output(e)),
        _ => Ok(()),
    }
}

/// Send `tracing` output to stderr: off unless `-v` is given (`-v` info, `-vv` debug,
/// `-vvv` trace) or `RUST_LOG` sets a filter.
pub fn init_tracing(verbose: u8) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = match verbose {
        0 => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("off")),
        1 => EnvFilter::new("info"),
        2 => EnvFilter::new("debug"),
        _ => EnvFilter::new("trace"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_default_store_is_the_embedded_file() {
        let cli = Cli::try_parse_from(["actiondo", "actions"]);
        // ACTIONDO_STORE may be set in the environment of the test run; only check the
        // default when it is not.
        if std::env::var_os(actiondo::store::STORE_ENV).is_none() {
            assert_eq!(
                cli.map(|c| c.store).ok(),
                Some(StoreConfig::Sqlite(".actiondo/actiondo.db".into()))
            );
        }
    }

    #[test]
    fn store_flag_parses_every_documented_form() {
        for (flag, expected) in [
            ("dynamodb", StoreConfig::DynamoDb),
            ("sqlite::memory:", StoreConfig::SqliteMemory),
            ("sqlite:/tmp/a.db", StoreConfig::Sqlite("/tmp/a.db".into())),
        ] {
            let cli = Cli::try_parse_from(["actiondo", "--store", flag, "actions"]);
            assert_eq!(cli.map(|c| c.store).ok(), Some(expected), "{flag}");
        }
        let bad = Cli::try_parse_from(["actiondo", "--store", "postgres://x", "actions"]);
        assert!(bad.is_err());
    }

    #[test]
    fn key_needs_type_and_correlation_excludes_type() {
        assert!(Cli::try_parse_from(["actiondo", "audit", "--key", "k"]).is_err());
        assert!(Cli::try_parse_from(["actiondo", "audit", "--type", "t", "--key", "k"]).is_ok());
        assert!(
            Cli::try_parse_from(["actiondo", "audit", "--type", "t", "--correlation", "c"])
                .is_err()
        );
    }

    #[test]
    fn limit_is_bounded() {
        assert!(Cli::try_parse_from(["actiondo", "audit", "--limit", "0"]).is_err());
        assert!(Cli::try_parse_from(["actiondo", "audit", "--limit", "101"]).is_err());
        assert!(Cli::try_parse_from(["actiondo", "audit", "--limit", "100"]).is_ok());
    }
}
