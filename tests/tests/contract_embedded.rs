//! The port contracts on the embedded adapters.

use std::sync::Arc;

use ryze_core::adapters::embedded::{DirBlobStore, EventsDb, FileRegistry, InProcessQueue};
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

#[tokio::test]
async fn the_durable_queue_keeps_the_queue_contracts() {
    let dir = tempfile::tempdir().unwrap();
    let db = EventsDb::open(&dir.path().join("events.db")).unwrap();
    contract::queue_contract(Arc::new(db.queue::<String>("plain"))).await;
    contract::grouped_queue_contract(Arc::new(db.queue::<String>("grouped"))).await;
}

#[tokio::test]
async fn the_file_registry_keeps_the_leases_contract() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(FileRegistry::open(&dir.path().join("ryze.db")).unwrap());
    contract::leases_contract(registry.clone(), registry).await;
}
