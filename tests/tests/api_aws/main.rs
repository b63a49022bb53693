//! The HTTP contract suite of `api/` on the AWS adapters: DynamoDB, SQS and S3 on the moto server
//! `scripts/test` starts.

const BACKEND: ryze_tests::Backend = ryze_tests::Backend::Aws;

#[path = "../api/auth.rs"]
mod auth;

#[path = "../api/chatwoot.rs"]
mod chatwoot;

#[path = "../api/config.rs"]
mod config;

#[path = "../api/connection.rs"]
mod connection;

#[path = "../api/errors.rs"]
mod errors;

#[path = "../api/events.rs"]
mod events;

#[path = "../api/failures.rs"]
mod failures;

#[path = "../api/instances.rs"]
mod instances;

#[path = "../api/parsing.rs"]
mod parsing;

#[path = "../api/rate_limits.rs"]
mod rate_limits;

#[path = "../api/secrets.rs"]
mod secrets;

#[path = "../api/service.rs"]
mod service;

#[path = "../api/websocket.rs"]
mod websocket;
