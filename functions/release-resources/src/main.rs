//! Lambda entry point of the `release-resources` action.
#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(release_resources::ReleaseResources::from_env()).await
}
