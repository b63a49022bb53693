//! The `websocket` Lambda function: `$connect` and `$disconnect` of API Gateway's WebSocket API.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ryze_functions::live::aws::run().await
}
