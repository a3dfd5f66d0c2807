//! The `ResourceStore` trait: the whole storage contract every backend implements.

use async_trait::async_trait;
use fhir_model::SearchQuery;
use serde_json::Value;

use crate::{Change, HistoryPage, HistoryRequest, SearchPage, StoreError, StoredResource, WriteOp, WriteOutcome};

/// A FHIR resource store. Every method is safe to call concurrently. A successful write is
/// durable (on disk, or acknowledged by a majority) before it returns.
#[async_trait]
pub trait ResourceStore: Send + Sync + 'static {
    /// Applies all `ops` atomically: either every op succeeds and they are committed together
    /// (each version gets its own change-feed `seq`, in op order), or none is. The store sets
    /// `id`, `meta.versionId` and `meta.lastUpdated` in each body and indexes it with
    /// `fhir_model::extract_index`.
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, StoreError>;

    /// The current version, including a delete tombstone (`deleted = true`); None if the
    /// resource never existed.
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError>;

    /// One version; tombstones included.
    async fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<StoredResource>, StoreError>;

    /// History newest first, paged by change-feed position.
    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage, StoreError>;

    /// Current, non-deleted resources matching `query`, using only indexed lookups.
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError>;

    /// Changes with `seq > after_seq`, oldest first, at most `limit`.
    async fn changes(&self, after_seq: u64, limit: usize) -> Result<Vec<Change>, StoreError>;

    /// The highest committed `seq` (0 when empty).
    async fn last_seq(&self) -> Result<u64, StoreError>;

    /// A consumer's saved change-feed position.
    async fn checkpoint(&self, consumer: &str) -> Result<Option<u64>, StoreError>;

    /// Saves a consumer's change-feed position durably.
    async fn save_checkpoint(&self, consumer: &str, seq: u64) -> Result<(), StoreError>;

    /// Checks the store is reachable (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates one resource. Convenience over `write`.
    async fn create(&self, resource_type: &str, id: &str, body: Value) -> Result<StoredResource, StoreError> {
        let op = WriteOp::Create { resource_type: resource_type.into(), id: id.into(), body, if_none_exist: None };
        single(self.write(vec![op]).await?)
    }

    /// Updates one resource, optionally only if its current version is `expected_version`.
    async fn update(
        &self,
        resource_type: &str,
        id: &str,
        body: Value,
        expected_version: Option<u64>,
    ) -> Result<StoredResource, StoreError> {
        let op = WriteOp::Update { resource_type: resource_type.into(), id: id.into(), body, expected_version };
        single(self.write(vec![op]).await?)
    }

    /// Deletes one resource; returns the tombstone, or None if there was nothing to delete.
    async fn delete(
        &self,
        resource_type: &str,
        id: &str,
        expected_version: Option<u64>,
    ) -> Result<Option<StoredResource>, StoreError> {
        let op = WriteOp::Delete { resource_type: resource_type.into(), id: id.into(), expected_version };
        let outcome = self.write(vec![op]).await?.pop();
        Ok(outcome.and_then(|o| o.resource().cloned()))
    }
}

fn single(mut outcomes: Vec<WriteOutcome>) -> Result<StoredResource, StoreError> {
    outcomes
        .pop()
        .and_then(|o| o.resource().cloned())
        .ok_or_else(|| StoreError::Backend { message: "write returned no outcome".into(), source: None })
}
