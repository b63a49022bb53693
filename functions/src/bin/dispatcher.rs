//! The `dispatcher` Lambda function: webhook delivery from the event and delivery queues.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ryze_functions::dispatcher::run().await
}
