//! The `connect` Lambda function: `GET /api/instance/connect/{instance}`, which waits for the
//! session host's QR or pairing code, with the long timeout that needs.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ryze_functions::lambda::run(ryze_functions::lambda::Function::Connect).await
}
