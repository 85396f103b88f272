//! Lambda entry point of the `mark-user` action.
#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(mark_user::MarkUser::from_env()).await
}
