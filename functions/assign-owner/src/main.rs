//! Lambda entry point of the `assign-owner` action.
#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(assign_owner::AssignOwner::from_env()).await
}
