//! Lambda entry point of the `enrich-lead` action.
use actiondo::config::FromSettings;

#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(enrich_lead::EnrichLead::from_env()).await
}
