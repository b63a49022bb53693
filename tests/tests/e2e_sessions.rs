//! The end-to-end session suite (`e2e/sessions.rs`, and `e2e/liveness.rs` for dead sockets) on the
//! embedded adapters, and `ryze serve` itself killed with `kill -9` (`e2e/crash.rs`).

const BACKEND: ryze_tests::Backend = ryze_tests::Backend::Embedded;

#[path = "e2e/sessions.rs"]
mod sessions;

#[path = "e2e/liveness.rs"]
mod liveness;

#[path = "e2e/crash.rs"]
mod crash;
