//! The shared conformance suite against [`MemoryStore`].

use std::sync::Arc;

use kybernetes_store::{MemoryStore, Store, conformance};

#[tokio::test]
async fn memory_store_conforms() {
    let store = MemoryStore::new();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn memory_store_conforms_behind_dyn_arc() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_parallel_writers() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    conformance::run_all_arc(store).await;
}
