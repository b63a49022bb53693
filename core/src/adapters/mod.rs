//! Adapters: the ports implemented on a technology. `embedded` runs on one machine with nothing
//! installed; the AWS adapters (DynamoDB, SQS, S3) sit beside it. Nothing outside this module knows
//! which set a deployment uses.

#[cfg(feature = "embedded")]
pub mod embedded;

#[cfg(feature = "aws")]
pub mod aws;
