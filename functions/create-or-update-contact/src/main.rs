//! Lambda entry point of the `create-or-update-contact` action.
#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(create_or_update_contact::CreateOrUpdateContact::from_env()).await
}
