//! The values that cross the `ResourceStore` boundary.

use fhir_model::SearchQuery;
use serde_json::Value;
use time::OffsetDateTime;

/// One version of one resource as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    /// 1 for the first version, +1 for every update or delete.
    pub version: u64,
    pub last_updated: OffsetDateTime,
    /// True for a delete tombstone; `body` is then None.
    pub deleted: bool,
    /// The resource as FHIR JSON bytes, with `id`, `meta.versionId` and `meta.lastUpdated`
    /// set by the store. None for tombstones.
    pub body: Option<Vec<u8>>,
    /// Position of this version in the change feed.
    pub seq: u64,
}

/// One write inside an atomic `ResourceStore::write`.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Creates a new resource with this id (the caller assigns ids). With `if_none_exist`,
    /// and a match for it inside the same atomic write, nothing is created and the outcome is
    /// `Existing` (one match) or `MultipleMatches` (several).
    Create { resource_type: String, id: String, body: Value, if_none_exist: Option<SearchQuery> },
    /// Updates (or creates, if absent or deleted) the resource. With `expected_version`, the
    /// current version must be exactly that one or the whole write fails with `VersionConflict`.
    Update { resource_type: String, id: String, body: Value, expected_version: Option<u64> },
    /// Writes a tombstone version. Deleting an absent or already deleted resource succeeds
    /// with `Deleted { version: None }`. `expected_version` as for `Update`.
    Delete { resource_type: String, id: String, expected_version: Option<u64> },
}

/// What one `WriteOp` did, in the same order as the ops.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    Created(StoredResource),
    Updated(StoredResource),
    /// The tombstone written, or None when there was nothing to delete.
    Deleted(Option<StoredResource>),
    /// A conditional create found this existing resource and created nothing.
    Existing(StoredResource),
}

impl WriteOutcome {
    /// The stored version this outcome refers to, if any.
    pub fn resource(&self) -> Option<&StoredResource> {
        match self {
            WriteOutcome::Created(r) | WriteOutcome::Updated(r) | WriteOutcome::Existing(r) => Some(r),
            WriteOutcome::Deleted(r) => r.as_ref(),
        }
    }
}

/// Which history to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryScope {
    Instance { resource_type: String, id: String },
    Type(String),
    System,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRequest {
    pub scope: HistoryScope,
    /// Only versions with `last_updated >= since`.
    pub since: Option<OffsetDateTime>,
    pub count: usize,
    /// Continue below this change-feed position (from a previous page's `next_cursor`).
    pub before_seq: Option<u64>,
}

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub kind: ChangeKind,
    pub resource: StoredResource,
}

/// A page of history, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    /// Pass as `before_seq` for the next (older) page; None on the last page.
    pub next_cursor: Option<u64>,
    /// Total number of versions in scope (ignoring paging).
    pub total: u64,
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    /// The matches of this page, in the query's order.
    pub resources: Vec<StoredResource>,
    /// Resources brought in by `_include` / `_revinclude` for this page (current, not
    /// deleted, none of them also in `resources`, each once).
    pub included: Vec<StoredResource>,
    /// Pass as `SearchQuery::cursor` for the next page; None on the last page.
    pub next_cursor: Option<String>,
    /// Number of matches in total (ignoring paging); None under `_total=none`. Under
    /// `_total=estimate` a backend may return an estimate.
    pub total: Option<u64>,
}

/// One entry of the change feed: every committed version, in commit order, with `seq`
/// strictly increasing and without gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: u64,
    pub kind: ChangeKind,
    pub resource: StoredResource,
}
