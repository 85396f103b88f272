//! Lambda entry point of the `provision-resources` action.
#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(provision_resources::ProvisionResources::from_env()).await
}
