//! The HTTP contract of API.md, driven through the router on the embedded adapters. `api_aws` runs
//! the same modules on the AWS adapters.

const BACKEND: ryze_tests::Backend = ryze_tests::Backend::Embedded;

mod auth;
mod chatwoot;
mod config;
mod connection;
mod errors;
mod events;
mod failures;
mod instances;
mod parsing;
mod rate_limits;
mod secrets;
mod service;
mod websocket;
