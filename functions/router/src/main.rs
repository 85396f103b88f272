//! The router's Lambda function: only set-up (see [`router::lambda::run`]).

#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    router::lambda::run().await
}
