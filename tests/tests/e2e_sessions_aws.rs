//! The end-to-end session suite (`e2e/sessions.rs`, and `e2e/hostless.rs` for a time with no host)
//! on the AWS adapters: DynamoDB, SQS and S3 on
//! the moto server `scripts/test` starts.

const BACKEND: ryze_tests::Backend = ryze_tests::Backend::Aws;

#[path = "e2e/sessions.rs"]
mod sessions;

#[path = "e2e/hostless.rs"]
mod hostless;
