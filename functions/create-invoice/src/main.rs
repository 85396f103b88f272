//! Lambda entry point of the `create-invoice` action.
#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(create_invoice::CreateInvoice::from_env()).await
}
