//! [`MeteredStore`]: the store behind the API server, timed per operation and resource.

use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use kybernetes_store::{KeyValue, ListOptions, ListResult, Result, Store, WatchStream};

use super::ApiMetrics;

/// A [`Store`] that records each call's latency in `etcd_request_duration_seconds`.
pub struct MeteredStore<S> {
    inner: S,
    metrics: ApiMetrics,
}

impl<S> MeteredStore<S> {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: S, metrics: ApiMetrics) -> Self {
        MeteredStore { inner, metrics }
    }

    fn record(&self, operation: &str, key: &str, start: Instant) {
        self.metrics
            .observe_storage(operation, resource_of(key), start.elapsed().as_secs_f64());
    }
}

/// The resource a key belongs to: `/registry/<group>/<plural>/...` gives `<plural>`.
fn resource_of(key: &str) -> &str {
    let mut parts = key.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("registry"), Some(_group), Some(plural)) if !plural.is_empty() => plural,
        _ => "",
    }
}

#[async_trait]
impl<S: Store> Store for MeteredStore<S> {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let start = Instant::now();
        let out = self.inner.get(key).await;
        self.record("get", key, start);
        out
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let start = Instant::now();
        let out = self.inner.list(prefix, opts).await;
        self.record("list", prefix, start);
        out
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let start = Instant::now();
        let out = self.inner.create(key, value).await;
        self.record("create", key, start);
        out
    }
    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<KeyValue> {
        let start = Instant::now();
        let out = self.inner.update(key, value, expected_revision).await;
        self.record("update", key, start);
        out
    }
    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        let start = Instant::now();
        let out = self.inner.delete(key, expected_revision).await;
        self.record("delete", key, start);
        out
    }
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        self.inner.watch(prefix, from_revision).await
    }
    async fn compact(&self, revision: i64) -> Result<()> {
        let start = Instant::now();
        let out = self.inner.compact(revision).await;
        self.record("compact", "", start);
        out
    }
    async fn current_revision(&self) -> Result<i64> {
        self.inner.current_revision().await
    }
    async fn compacted_revision(&self) -> Result<i64> {
        self.inner.compacted_revision().await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::resource_of;

    #[test]
    fn the_type_is_the_plural_of_the_key() {
        assert_eq!(resource_of("/registry/core/pods/default/web"), "pods");
        assert_eq!(resource_of("/registry/apps/deployments/"), "deployments");
        assert_eq!(resource_of("/elsewhere"), "");
    }
}
