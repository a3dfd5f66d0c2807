//! Runs the shared storage test suite against `MongoStore` when `TESSERA_TEST_MONGODB_URI` names
//! a replica set or sharded cluster, each case on a fresh database dropped afterwards, plus what
//! only a shared database server has: reopening an existing database, and several Tessera
//! processes (separate clients) writing to one database at once.
//!
//! Without the variable every test prints `skipped: TESSERA_TEST_MONGODB_URI not set` and passes,
//! also under `TESSERA_REQUIRE_PEERS=1`: a MongoDB server is not something CI can install.
#![cfg(feature = "mongodb")]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use fhir_model::{Filter, Predicate, SearchQuery, TokenSystem};
use fhir_store::{
    Change, ChangeKind, HistoryPage, HistoryRequest, MongoStore, ResourceStore, ScratchDatabase, SearchPage,
    StoreError, StoreErrorKind, StoredResource, WriteOp, WriteOutcome,
};
use mongodb::bson::doc;
use serde_json::{json, Value};

/// Opens a store on `database`, as one Tessera process would (its own client).
async fn open(database: &ScratchDatabase) -> MongoStore {
    match MongoStore::open(database.options()).await {
        Ok(store) => store,
        Err(error) => panic!("cannot open the MongoDB test database {}: {error} ({error:?})", database.name()),
    }
}

/// Index names per collection of `database`, read with a plain client.
async fn index_names(database: &ScratchDatabase) -> BTreeMap<String, BTreeSet<String>> {
    let client = mongodb::Client::with_uri_str(database.uri()).await.expect("client");
    let db = client.database(database.name());
    let mut indexes = BTreeMap::new();
    for collection in db.list_collection_names().await.expect("list collections") {
        let names = db.collection::<mongodb::bson::Document>(&collection).list_index_names().await.expect("list indexes");
        indexes.insert(collection, names.into_iter().collect());
    }
    indexes
}

// ----- the shared suite -------------------------------------------------------------------------

async fn fresh() -> Option<(Arc<dyn ResourceStore>, ScratchDatabase)> {
    // The guard exists before the store, so a half-finished open is cleaned up too.
    let database = ScratchDatabase::from_env()?;
    let store = open(&database).await;
    Some((Arc::new(store), database))
}

fhir_store::store_test_suite!(fresh, optional);

// ----- several processes on one database --------------------------------------------------------

/// Two stores with their own clients on one database, as two Tessera processes behind a load
/// balancer: every call goes to the next one in turn, so a read may be served by one process and
/// the update that follows it by the other.
struct TwoProcesses {
    processes: [Arc<MongoStore>; 2],
    next: AtomicUsize,
}

impl TwoProcesses {
    fn next(&self) -> &MongoStore {
        &self.processes[self.next.fetch_add(1, Ordering::Relaxed) % 2]
    }
}

#[async_trait]
impl ResourceStore for TwoProcesses {
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, StoreError> {
        self.next().write(ops).await
    }
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        self.next().read(resource_type, id).await
    }
    async fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<StoredResource>, StoreError> {
        self.next().vread(resource_type, id, version).await
    }
    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage, StoreError> {
        self.next().history(request).await
    }
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError> {
        self.next().search(query).await
    }
    async fn changes(&self, after_seq: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.next().changes(after_seq, limit).await
    }
    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.next().last_seq().await
    }
    async fn checkpoint(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        self.next().checkpoint(consumer).await
    }
    async fn save_checkpoint(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        self.next().save_checkpoint(consumer, seq).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.next().ping().await
    }
}

/// Two stores opened at the same moment on a fresh database (both create the indexes and the
/// change-feed counter concurrently), with the database's guard.
async fn two_processes() -> Option<([Arc<MongoStore>; 2], ScratchDatabase)> {
    let database = ScratchDatabase::from_env()?;
    let (a, b) = tokio::join!(open(&database), open(&database));
    Some(([Arc::new(a), Arc::new(b)], database))
}

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}]})
}

fn body_of(resource: &StoredResource) -> Value {
    serde_json::from_slice(resource.body.as_deref().expect("a live resource has a body")).expect("stored JSON")
}

/// The whole change feed, read in pages of 7 through `store`.
async fn whole_feed(store: &dyn ResourceStore) -> Vec<Change> {
    let mut feed = Vec::new();
    loop {
        let after = feed.last().map_or(0, |c: &Change| c.seq);
        let page = store.changes(after, 7).await.expect("changes");
        if page.is_empty() {
            return feed;
        }
        feed.extend(page);
    }
}

/// Opening a database that is already set up changes nothing: the same indexes, the data
/// kept, and the change-feed numbering carries on where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_an_existing_database_is_idempotent() {
    let Some(database) = ScratchDatabase::from_env() else { return };
    let first = open(&database).await;
    assert_eq!(first.database_name(), database.name());
    let created = first.create("Patient", "p1", patient("Twice")).await.expect("create");
    assert_eq!(created.seq, 1);
    let indexes = index_names(&database).await;
    for collection in ["resources", "versions"] {
        let names = indexes.get(collection).unwrap_or_else(|| panic!("no {collection} collection: {indexes:?}"));
        assert!(names.len() > 1, "{collection} has only {names:?}");
    }

    let second = open(&database).await;
    assert_eq!(index_names(&database).await, indexes, "reopening changed the indexes");
    assert_eq!(second.read("Patient", "p1").await.expect("read"), Some(created.clone()));
    assert_eq!(second.last_seq().await.expect("last seq"), 1);
    let next = second.create("Patient", "p2", patient("Twice")).await.expect("create");
    assert_eq!((next.version, next.seq), (1, 2));
    assert_eq!(first.last_seq().await.expect("last seq"), 2);
    drop((first, second));

    let third = open(&database).await;
    let feed = whole_feed(&third).await;
    assert_eq!(feed.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 2]);
}

/// The shared suite's concurrent-writer case with every call going alternately to one of two
/// processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_change_feed_concurrent_writers() {
    let Some((processes, _database)) = two_processes().await else { return };
    let store = Arc::new(TwoProcesses { processes, next: AtomicUsize::new(0) });
    fhir_store::test_suite::change_feed_concurrent_writers(store).await;
}

/// The shared suite's lost-update case (read, then update with the version read, retried on
/// conflict) with reads and updates alternating between two processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_concurrent_updaters_no_lost_update() {
    let Some((processes, _database)) = two_processes().await else { return };
    let store = Arc::new(TwoProcesses { processes, next: AtomicUsize::new(0) });
    fhir_store::test_suite::concurrent_updaters_no_lost_update(store).await;
}

/// Each process has its own writers: creates, updates and If-Match increments of one shared
/// counter from both at once. Both then read one and the same change feed, numbered 1..=n
/// without a gap, holding every acknowledged write exactly once, and the counter holds every
/// increment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_keep_one_gap_free_feed_and_lose_no_update() {
    const WRITERS_PER_PROCESS: usize = 4;
    const ROUNDS: u64 = 6;
    let Some((processes, _database)) = two_processes().await else { return };
    let mut counter = patient("Counter");
    counter["multipleBirthInteger"] = json!(0);
    let first = processes[0].create("Patient", "counter", counter).await.expect("create counter");

    let mut tasks = Vec::new();
    for (p, process) in processes.iter().enumerate() {
        for w in 0..WRITERS_PER_PROCESS {
            let store = process.clone();
            tasks.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for round in 0..ROUNDS {
                    let id = format!("p{p}-w{w}-r{round}");
                    let created = store.create("Patient", &id, patient("Crowd")).await.expect("create");
                    acknowledged.push(created);
                    // One increment per round, retried until this writer's read version wins.
                    loop {
                        let current = store.read("Patient", "counter").await.expect("read").expect("counter exists");
                        let mut body = body_of(&current);
                        let count = body["multipleBirthInteger"].as_u64().expect("count");
                        body["multipleBirthInteger"] = json!(count + 1);
                        match store.update("Patient", "counter", body, Some(current.version)).await {
                            Ok(updated) => {
                                assert_eq!(updated.version, current.version + 1);
                                acknowledged.push(updated);
                                break;
                            }
                            Err(error) => assert_eq!(error.kind(), StoreErrorKind::VersionConflict, "{error}"),
                        }
                    }
                }
                acknowledged
            }));
        }
    }
    let mut acknowledged = vec![first];
    for task in futures::future::join_all(tasks).await {
        acknowledged.extend(task.expect("writer task"));
    }

    let increments = (2 * WRITERS_PER_PROCESS) as u64 * ROUNDS;
    let counter = processes[1].read("Patient", "counter").await.expect("read").expect("counter exists");
    assert_eq!(counter.version, increments + 1);
    assert_eq!(body_of(&counter)["multipleBirthInteger"], json!(increments), "an If-Match update was lost");

    let feeds = [whole_feed(processes[0].as_ref()).await, whole_feed(processes[1].as_ref()).await];
    assert_eq!(feeds[0], feeds[1], "the two processes see different change feeds");
    let feed = &feeds[0];
    let seqs: Vec<u64> = feed.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=acknowledged.len() as u64).collect::<Vec<_>>(), "the feed has gaps or extra entries");
    for process in &processes {
        assert_eq!(process.last_seq().await.expect("last seq"), acknowledged.len() as u64);
    }
    let mut by_seq: BTreeMap<u64, &StoredResource> = BTreeMap::new();
    for resource in &acknowledged {
        assert!(by_seq.insert(resource.seq, resource).is_none(), "two acknowledged writes got seq {}", resource.seq);
    }
    for change in feed {
        assert_eq!(by_seq.get(&change.seq).copied(), Some(&change.resource), "feed entry {} differs", change.seq);
        let kind = if change.resource.version == 1 { ChangeKind::Create } else { ChangeKind::Update };
        assert_eq!(change.kind, kind);
    }
    // lastUpdated never goes backwards along the feed, whichever process wrote.
    assert!(feed.windows(2).all(|w| w[0].resource.last_updated <= w[1].resource.last_updated));
}

/// Conditional creates of the same identifier racing from two processes: exactly one creates,
/// every other one gets that resource back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_conditional_creates_converge_on_one_resource() {
    const SYSTEM: &str = "urn:example:mrn";
    let Some((processes, _database)) = two_processes().await else { return };
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = processes[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut condition = SearchQuery::all(Some("Patient"));
            condition.filters = vec![Filter::Match {
                param: "identifier".into(),
                any_of: vec![Predicate::Token { system: TokenSystem::Is(SYSTEM.into()), code: Some("4711".into()) }],
                negate: false,
            }];
            let body = json!({
                "resourceType": "Patient",
                "identifier": [{"system": SYSTEM, "value": "4711"}],
                "name": [{"family": "Race"}]
            });
            let op = WriteOp::Create { resource_type: "Patient".into(), id: format!("race{i}"), body, if_none_exist: Some(condition) };
            store.write(vec![op]).await.expect("conditional create").pop().expect("one outcome")
        }));
    }
    let mut created = Vec::new();
    let mut existing = HashSet::new();
    for task in futures::future::join_all(tasks).await {
        match task.expect("task") {
            WriteOutcome::Created(resource) => created.push(resource),
            WriteOutcome::Existing(resource) => {
                existing.insert(resource.id);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "more than one conditional create created: {created:?}");
    assert!(existing.iter().all(|id| *id == created[0].id), "{existing:?} vs {}", created[0].id);
    assert_eq!(processes[0].last_seq().await.expect("last seq"), 1);
}
