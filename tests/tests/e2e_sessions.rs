//! The end-to-end session suite (`e2e/sessions.rs`) on the embedded adapters.

const BACKEND: ryze_tests::Backend = ryze_tests::Backend::Embedded;

#[path = "e2e/sessions.rs"]
mod sessions;
