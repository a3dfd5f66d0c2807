//! The MongoDB backend, the production store: every `ResourceStore` operation on a replica set
//! or sharded cluster, with multi-document transactions for writes.
//!
//! `layout.rs` is the document layout and the indexes, `deployment.rs` the start-up check of
//! the deployment, `errors.rs` the mapping of driver errors, `writer.rs` the transactional
//! writes and the change-feed counter, `search.rs` the translation of a `SearchQuery` into
//! aggregation stages and `execute.rs` running it (paging, snapshots, totals, includes).
//!
//! Everything Tessera acknowledges is written with write concern `majority` and `j: true`;
//! everything it reads uses read concern `majority` (transactions: `snapshot`), so nothing a
//! client saw can be rolled back by a failover.

mod deployment;
mod errors;
mod execute;
pub(crate) mod layout;
mod search;
mod testing;
mod writer;

use std::time::Duration;

use async_trait::async_trait;
use fhir_model::SearchQuery;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::{
    Acknowledgment, ClientOptions, CollectionOptions, IndexOptions, ReadConcern, ReadPreference, SelectionCriteria,
    WriteConcern,
};
use mongodb::{Client, ClientSession, Collection, Database, IndexModel};

use crate::{
    Change, ChangeKind, HistoryEntry, HistoryPage, HistoryRequest, HistoryScope, ResourceStore, SearchPage, StoreError,
    StoredResource, WriteOp, WriteOutcome,
};
pub use deployment::Deployment;
pub use testing::{ScratchDatabase, TEST_MONGODB_URI_VARIABLE};
use crate::paging::{history_page_end, since_ms};
use crate::versioning::instant_from_ms;
use errors::store_error;
use layout::{IndexSpec, CHECKPOINTS, COUNTERS, RESOURCES, SNAPSHOTS, VERSIONS};

/// Database used when neither the options nor the URI name one.
pub const DEFAULT_DATABASE: &str = "tessera";

/// How to reach the MongoDB deployment.
#[derive(Debug, Clone)]
pub struct MongoStoreOptions {
    /// A MongoDB connection string (`mongodb://…` or `mongodb+srv://…`).
    pub uri: String,
    /// The database; None: the one in the URI's path, else `DEFAULT_DATABASE`.
    pub database: Option<String>,
    /// How long an operation waits for a suitable server (primary) before failing.
    pub server_selection_timeout: Duration,
}

impl MongoStoreOptions {
    /// Defaults: database from the URI (or `tessera`), 10 s server selection timeout (unless
    /// the URI sets `serverSelectionTimeoutMS`).
    pub fn new(uri: impl Into<String>) -> Self {
        MongoStoreOptions { uri: uri.into(), database: None, server_selection_timeout: Duration::from_secs(10) }
    }
}

/// The collections of one Tessera database, with the concerns every access uses.
#[derive(Clone)]
pub(crate) struct Collections {
    pub(crate) resources: Collection<Document>,
    pub(crate) versions: Collection<Document>,
    pub(crate) counters: Collection<Document>,
    pub(crate) checkpoints: Collection<Document>,
    pub(crate) snapshots: Collection<Document>,
}

impl Collections {
    fn new(db: &Database) -> Self {
        let options = CollectionOptions::builder()
            .read_concern(ReadConcern::majority())
            .write_concern(durable())
            .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
            .build();
        let collection = |name: &str| db.collection_with_options::<Document>(name, options.clone());
        Collections {
            resources: collection(RESOURCES),
            versions: collection(VERSIONS),
            counters: collection(COUNTERS),
            checkpoints: collection(CHECKPOINTS),
            snapshots: collection(SNAPSHOTS),
        }
    }
}

/// Write concern of everything Tessera acknowledges: a majority of the replica set, journaled.
pub(crate) fn durable() -> WriteConcern {
    WriteConcern::builder().w(Acknowledgment::Majority).journal(true).build()
}

pub struct MongoStore {
    client: Client,
    database: String,
    deployment: Deployment,
    collections: Collections,
}

impl MongoStore {
    /// Connects, checks that the deployment supports transactions (a standalone server is
    /// refused with instructions), creates the indexes and the change-feed counter if missing.
    /// Several processes may open the same database at once.
    pub async fn open(options: MongoStoreOptions) -> Result<MongoStore, StoreError> {
        let mut client_options = ClientOptions::parse(&options.uri).await.map_err(|e| {
            StoreError::Backend { message: format!("invalid MongoDB connection string: {e}"), source: None }
        })?;
        client_options.app_name.get_or_insert_with(|| "tessera".to_string());
        client_options.server_selection_timeout.get_or_insert(options.server_selection_timeout);
        client_options.read_concern = Some(ReadConcern::majority());
        client_options.write_concern = Some(durable());
        let database = options
            .database
            .clone()
            .or_else(|| client_options.default_database.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let client = Client::with_options(client_options).map_err(store_error("configure the MongoDB client"))?;
        let db = client.database(&database);
        let hello = db.run_command(doc! { "hello": 1 }).await.map_err(store_error("contact MongoDB"))?;
        let deployment = deployment::check(&hello)?;
        let collections = Collections::new(&db);
        create_indexes(&db).await?;
        let store = MongoStore { client, database, deployment, collections };
        // The counter never falls below the feed (a restored or hand-edited database cannot
        // make seqs repeat); `$max` creates missing fields and never moves them backwards, so
        // processes opening at once, or writing meanwhile, are harmless.
        let last = to_i64(store.last_seq().await?);
        store
            .collections
            .counters
            .update_one(
                doc! { "_id": layout::CHANGE_COUNTER },
                doc! { "$max": { "seq": last, "lastUpdated": 0_i64 } },
            )
            .upsert(true)
            .await
            .map_err(store_error("create the change-feed counter"))?;
        tracing::info!(database = %store.database, deployment = ?store.deployment, "mongodb store open");
        Ok(store)
    }

    /// A session whose reads all see one point in time (read concern `snapshot`), so a page
    /// and its total, or a history page and its count, agree.
    async fn snapshot_session(&self) -> Result<ClientSession, StoreError> {
        self.client.start_session().snapshot(true).await.map_err(store_error("start a snapshot session"))
    }

    /// The database this store uses.
    pub fn database_name(&self) -> &str {
        &self.database
    }

    /// What kind of deployment the store found at start-up.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// Drops the whole database (every collection of this store). For tests and tear-down.
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        self.client.database(&self.database).drop().await.map_err(store_error("drop the database"))
    }
}

async fn create_indexes(db: &Database) -> Result<(), StoreError> {
    let specs = layout::index_specs();
    for collection in [RESOURCES, VERSIONS, SNAPSHOTS] {
        let models: Vec<IndexModel> = specs.iter().filter(|s| s.collection == collection).map(index_model).collect();
        // Same names and definitions every time: creating an existing index is a no-op.
        db.collection::<Document>(collection)
            .create_indexes(models)
            .await
            .map_err(store_error("create indexes"))?;
    }
    Ok(())
}

fn index_model(spec: &IndexSpec) -> IndexModel {
    let options = IndexOptions::builder()
        .name(spec.name.to_string())
        .unique(spec.unique.then_some(true))
        .expire_after(spec.expire_after_secs.map(Duration::from_secs))
        .build();
    IndexModel::builder().keys(spec.keys.clone()).options(options).build()
}

// ----- decoding --------------------------------------------------------------------------------

pub(crate) fn corrupt(message: String) -> StoreError {
    StoreError::Backend { message, source: None }
}

fn field_i64(doc: &Document, field: &str) -> Result<i64, StoreError> {
    match doc.get(field) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        Some(Bson::DateTime(v)) => Ok(v.timestamp_millis()),
        other => Err(corrupt(format!("field {field} is {other:?}, expected an integer"))),
    }
}

fn field_u64(doc: &Document, field: &str) -> Result<u64, StoreError> {
    let value = field_i64(doc, field)?;
    u64::try_from(value).map_err(|_| corrupt(format!("negative {field} {value} in database")))
}

fn field_str<'a>(doc: &'a Document, field: &str) -> Result<&'a str, StoreError> {
    doc.get_str(field).map_err(|_| corrupt(format!("field {field} is missing or not a string")))
}

fn field_body(doc: &Document) -> Result<Option<Vec<u8>>, StoreError> {
    match doc.get("body") {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Binary(binary)) => Ok(Some(binary.bytes.clone())),
        Some(other) => Err(corrupt(format!("body is {:?}, expected binary", other.element_type()))),
    }
}

/// A `resources` document (the current version).
pub(crate) fn current_from_doc(doc: &Document) -> Result<StoredResource, StoreError> {
    Ok(StoredResource {
        resource_type: field_str(doc, "type")?.to_string(),
        id: field_str(doc, "id")?.to_string(),
        version: field_u64(doc, "version")?,
        last_updated: instant_from_ms(field_i64(doc, "lastUpdated")?)?,
        deleted: doc.get_bool("deleted").map_err(|_| corrupt("field deleted is missing".into()))?,
        body: field_body(doc)?,
        seq: field_u64(doc, "seq")?,
    })
}

/// A `versions` document.
fn version_from_doc(doc: &Document) -> Result<(ChangeKind, StoredResource), StoreError> {
    let kind = match field_str(doc, "method")? {
        "create" => ChangeKind::Create,
        "update" => ChangeKind::Update,
        "delete" => ChangeKind::Delete,
        other => return Err(corrupt(format!("unknown method {other:?} in database"))),
    };
    let resource = StoredResource {
        resource_type: field_str(doc, "type")?.to_string(),
        id: field_str(doc, "id")?.to_string(),
        version: field_u64(doc, "version")?,
        last_updated: instant_from_ms(field_i64(doc, "lastUpdated")?)?,
        deleted: kind == ChangeKind::Delete,
        body: field_body(doc)?,
        seq: field_u64(doc, "_id")?,
    };
    Ok((kind, resource))
}

/// Clamps a caller's position to BSON's Int64; no stored seq is that large anyway.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The projection of a `resources` read: everything but the search fields.
pub(crate) fn resource_projection() -> Document {
    doc! { "type": 1, "id": 1, "version": 1, "lastUpdated": 1, "deleted": 1, "body": 1, "seq": 1 }
}

#[async_trait]
impl ResourceStore for MongoStore {
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, StoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        writer::write(&self.client, &self.collections, ops).await
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        let doc = self
            .collections
            .resources
            .find_one(doc! { "_id": layout::resource_key(resource_type, id) })
            .projection(resource_projection())
            .await
            .map_err(store_error("read resource"))?;
        doc.as_ref().map(current_from_doc).transpose()
    }

    async fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<StoredResource>, StoreError> {
        let Ok(version) = i64::try_from(version) else { return Ok(None) };
        let doc = self
            .collections
            .versions
            .find_one(doc! { "type": resource_type, "id": id, "version": version })
            .await
            .map_err(store_error("read version"))?;
        Ok(doc.as_ref().map(version_from_doc).transpose()?.map(|(_, resource)| resource))
    }

    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage, StoreError> {
        let mut session = self.snapshot_session().await?;
        // `lastUpdated` never decreases along `seq` (the counter hands out both), so `since`
        // becomes a lower bound on `seq` and every history query stays a range on `_id`.
        let since_seq = match request.since {
            None => 0,
            Some(since) => {
                let since_ms = since_ms(since);
                let first = self
                    .collections
                    .versions
                    .find_one(doc! { "lastUpdated": { "$gte": since_ms } })
                    .sort(doc! { "lastUpdated": 1, "_id": 1 })
                    .projection(doc! { "_id": 1 })
                    .session(&mut session)
                    .await
                    .map_err(store_error("find history start"))?;
                match first {
                    Some(doc) => field_i64(&doc, "_id")?,
                    None => return Ok(HistoryPage { entries: Vec::new(), next_cursor: None, total: 0 }),
                }
            }
        };
        let mut scope = match &request.scope {
            HistoryScope::Instance { resource_type, id } => doc! { "type": resource_type, "id": id },
            HistoryScope::Type(resource_type) => doc! { "type": resource_type },
            HistoryScope::System => Document::new(),
        };
        let mut total_filter = scope.clone();
        total_filter.insert("_id", doc! { "$gte": since_seq });
        let upper = request.before_seq.map_or(i64::MAX, to_i64);
        scope.insert("_id", doc! { "$gte": since_seq, "$lt": upper });

        let mut entries = Vec::new();
        if request.count > 0 {
            let limit = i64::try_from(request.count.saturating_add(1)).unwrap_or(i64::MAX);
            let mut cursor = self
                .collections
                .versions
                .find(scope)
                .sort(doc! { "_id": -1 })
                .limit(limit)
                .session(&mut session)
                .await
                .map_err(store_error("read history"))?;
            let mut docs = Vec::new();
            while let Some(doc) = cursor.next(&mut session).await {
                docs.push(doc.map_err(store_error("read history"))?);
            }
            for doc in &docs {
                let (kind, resource) = version_from_doc(doc)?;
                entries.push(HistoryEntry { kind, resource });
            }
        }
        let next_cursor = history_page_end(&mut entries, request.count);
        let total = self
            .collections
            .versions
            .count_documents(total_filter)
            .session(&mut session)
            .await
            .map_err(store_error("count history"))?;
        Ok(HistoryPage { entries, next_cursor, total })
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError> {
        let mut session = self.snapshot_session().await?;
        execute::search(&self.collections, Some(&mut session), query, true).await
    }

    async fn changes(&self, after_seq: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = to_i64(after_seq);
        let docs: Vec<Document> = self
            .collections
            .versions
            .find(doc! { "_id": { "$gt": after } })
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(store_error("read changes"))?
            .try_collect()
            .await
            .map_err(store_error("read changes"))?;
        let mut changes = Vec::with_capacity(docs.len());
        let mut expected = after_seq.saturating_add(1);
        for doc in &docs {
            let (kind, resource) = version_from_doc(doc)?;
            // Seqs are handed out inside the writing transaction, so a higher one can become
            // visible (on another shard, or before this node applied an earlier commit) while
            // a lower one is not yet: stop at the gap and let the next poll continue.
            if resource.seq != expected {
                break;
            }
            expected = expected.saturating_add(1);
            changes.push(Change { seq: resource.seq, kind, resource });
        }
        Ok(changes)
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        let last = self
            .collections
            .versions
            .find_one(Document::new())
            .sort(doc! { "_id": -1 })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(store_error("read last seq"))?;
        match last {
            Some(doc) => field_u64(&doc, "_id"),
            None => Ok(0),
        }
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        let doc = self
            .collections
            .checkpoints
            .find_one(doc! { "_id": consumer })
            .await
            .map_err(store_error("read checkpoint"))?;
        doc.as_ref().map(|doc| field_u64(doc, "seq")).transpose()
    }

    async fn save_checkpoint(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        let seq = i64::try_from(seq).map_err(|_| corrupt(format!("checkpoint seq {seq} out of range")))?;
        self.collections
            .checkpoints
            .update_one(doc! { "_id": consumer }, doc! { "$set": { "seq": seq } })
            .upsert(true)
            .await
            .map_err(store_error("save checkpoint"))?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .database(&self.database)
            .run_command(doc! { "ping": 1 })
            .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
            .await
            .map_err(store_error("ping"))?;
        Ok(())
    }
}
