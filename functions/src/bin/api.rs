//! The `api` Lambda function: every route of the contract behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ryze_functions::lambda::run(ryze_functions::lambda::Function::Api).await
}
