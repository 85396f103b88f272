//! The `actiondo` binary: parse the arguments, set up logging, run the command.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = actiondo_cli::Cli::parse();
    actiondo_cli::init_tracing(cli.verbose);
    std::process::ExitCode::from(actiondo_cli::run(cli).await)
}
