//! The AWS side of the fixtures: each test provisions its own table, queues and bucket (under a
//! random prefix) in the moto server that `scripts/test` starts, and whose address it passes in
//! `RYZE_TEST_AWS_ENDPOINT`.

use aws_credential_types::Credentials;
use ryze_core::adapters::aws::{self, AwsResources};

pub const ENDPOINT_VARIABLE: &str = "RYZE_TEST_AWS_ENDPOINT";

/// The emulator's address. Without it an AWS test cannot run, and says how to get one.
pub fn endpoint() -> String {
    std::env::var(ENDPOINT_VARIABLE).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VARIABLE} is not set: run ./scripts/test, which starts moto_server, or start \
             one yourself (.venv/bin/moto_server -H 127.0.0.1 -p 5000) and set it to http://127.0.0.1:5000"
        )
    })
}

/// An SDK configuration for the emulator: a fixed region and dummy credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws::sdk_defaults()
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// A deployment of its own: fresh resources nobody else uses.
pub async fn provision() -> (aws_config::SdkConfig, AwsResources) {
    let config = sdk_config().await;
    let prefix = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let resources = aws::provision::provision(&config, &prefix).await.expect("moto provisions");
    (config, resources)
}
