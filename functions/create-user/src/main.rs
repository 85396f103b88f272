//! Lambda entry point of the `create-user` action.
#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(create_user::CreateUser::from_env()).await
}
