//! `corpus-big`: the corpus' `big` function as a Lambda function (`actiondo_e2e::corpus`),
//! for `cargo lambda watch`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    actiondo_e2e::corpus::serve("big").await
}
