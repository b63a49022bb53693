//! The port contracts on the embedded adapters.

use std::sync::Arc;

use ryze_core::adapters::embedded::{DirBlobStore, FileRegistry, InProcessQueue};
use ryze_tests::contract;

#[tokio::test]
async fn the_file_registry_keeps_the_registry_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract::registry_contract(Arc::new(FileRegistry::open(&dir.path().join("ryze.db")).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_registry_keeps_the_contract_under_parallel_writers() {
    let dir = tempfile::tempdir().unwrap();
    contract::registry_contract(Arc::new(FileRegistry::open(&dir.path().join("ryze.db")).unwrap())).await;
}

#[tokio::test]
async fn the_directory_keeps_the_blob_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract::blob_store_contract(Arc::new(DirBlobStore::new(dir.path().to_owned()))).await;
}

#[tokio::test]
async fn the_in_process_queue_keeps_the_queue_contract() {
    contract::queue_contract(Arc::new(InProcessQueue::new(100))).await;
}
