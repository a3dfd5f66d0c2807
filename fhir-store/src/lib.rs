//! Storage of FHIR resources behind the `ResourceStore` trait: versions, history, search over
//! extracted index values, atomic multi-resource writes and the ordered change feed.
//! Knows nothing of HTTP.

mod bounds;
mod components;
mod error;
mod model;
mod paging;
#[cfg(feature = "mongodb")]
mod mongodb;
mod sqlite;
mod store;
pub mod test_suite;
mod versioning;

pub use error::{StoreError, StoreErrorKind};
pub use model::{
    Change, ChangeKind, HistoryEntry, HistoryPage, HistoryRequest, HistoryScope, SearchPage,
    StoredResource, WriteOp, WriteOutcome,
};
#[cfg(feature = "mongodb")]
pub use mongodb::{
    Deployment, MongoStore, MongoStoreOptions, ScratchDatabase, DEFAULT_DATABASE as DEFAULT_MONGODB_DATABASE,
    TEST_MONGODB_URI_VARIABLE,
};
pub use sqlite::{SqliteStore, SqliteStoreOptions};
pub use store::ResourceStore;
