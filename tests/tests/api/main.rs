//! The HTTP contract of API.md, driven through the router on the embedded adapters.

mod auth;
mod config;
mod connection;
mod errors;
mod failures;
mod instances;
mod parsing;
mod rate_limits;
mod secrets;
mod service;
