//! Lambda entry point of the `score-lead` action.
use actiondo::config::FromSettings;

#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(score_lead::ScoreLead::from_env()).await
}
