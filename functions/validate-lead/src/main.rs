//! Lambda entry point of the `validate-lead` action.
use actiondo::config::FromSettings;

#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(validate_lead::ValidateLead::from_env()).await
}
