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

/// An SDK configuration for the emulator: a fixed region and dummy credentials. Everything goes to
/// [`endpoint`], unless `AWS_ENDPOINT_URL` is set: then the SDK's own variables decide, so that a
/// bench running one emulator per service (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_SQS`) has its
/// own calls go where its hosts' go.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let mut loader = aws::sdk_defaults()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"));
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        loader = loader.endpoint_url(endpoint());
    }
    loader.load().await
}

/// A deployment of its own: fresh resources nobody else uses.
pub async fn provision() -> (aws_config::SdkConfig, AwsResources) {
    let config = sdk_config().await;
    let prefix = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let resources = aws::provision::provision(&config, &prefix).await.expect("moto provisions");
    (config, resources)
}
