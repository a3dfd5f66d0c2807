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
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fhir_model::{Filter, Predicate, SearchQuery, TokenSystem};
use fhir_store::{
    Change, ChangeKind, HistoryPage, HistoryRequest, MongoStore, MongoStoreOptions, ResourceStore, SearchPage,
    StoreError, StoreErrorKind, StoredResource, WriteOp, WriteOutcome,
};
use mongodb::bson::doc;
use serde_json::{json, Value};

/// The variable naming the MongoDB deployment the tests may create databases on.
const URI_VARIABLE: &str = "TESSERA_TEST_MONGODB_URI";

/// Every database these tests (and the conformance tests) create starts with this.
const DATABASE_PREFIX: &str = "tessera_test_";

/// A test database older than this is left over from a killed run and is dropped.
const STALE_AFTER: Duration = Duration::from_secs(60 * 60);

/// The deployment to test against, or None after printing why the test is skipped.
fn test_uri() -> Option<String> {
    match std::env::var(URI_VARIABLE) {
        Ok(uri) if !uri.trim().is_empty() => Some(uri),
        _ => {
            println!("skipped: {URI_VARIABLE} not set");
            None
        }
    }
}

// ----- fresh databases --------------------------------------------------------------------------

/// A database name no other test, process or earlier run uses:
/// `tessera_test_<pid>_<counter>_<nanos since the epoch>`.
fn unique_database_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{DATABASE_PREFIX}{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Owns one test database and drops it when dropped, also when the test fails (the guard is
/// dropped while unwinding). `Drop` cannot await, so the drop runs on a thread of its own with
/// its own runtime and client, independent of the test's runtime.
struct TestDatabase {
    uri: String,
    name: String,
}

impl TestDatabase {
    fn new(uri: &str) -> TestDatabase {
        sweep_stale_databases(uri);
        TestDatabase { uri: uri.to_string(), name: unique_database_name() }
    }

    fn options(&self) -> MongoStoreOptions {
        MongoStoreOptions { database: Some(self.name.clone()), ..MongoStoreOptions::new(self.uri.clone()) }
    }

    /// Opens a store on this database, as one Tessera process would (its own client).
    async fn open(&self) -> MongoStore {
        match MongoStore::open(self.options()).await {
            Ok(store) => store,
            Err(error) => panic!("cannot open the MongoDB test database {}: {error} ({error:?})", self.name),
        }
    }

    /// Index names per collection, read with a plain client.
    async fn indexes(&self) -> BTreeMap<String, BTreeSet<String>> {
        let client = mongodb::Client::with_uri_str(&self.uri).await.expect("client");
        let db = client.database(&self.name);
        let mut indexes = BTreeMap::new();
        for collection in db.list_collection_names().await.expect("list collections") {
            let names = db.collection::<mongodb::bson::Document>(&collection).list_index_names().await.expect("list indexes");
            indexes.insert(collection, names.into_iter().collect());
        }
        indexes
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (uri, name) = (self.uri.clone(), self.name.clone());
        match std::thread::spawn(move || drop_database(&uri, &name)).join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: test database {} not dropped: {error}", self.name),
            Err(_) => eprintln!("warning: test database {} not dropped: the dropping thread panicked", self.name),
        }
    }
}

/// Runs `work` with a fresh client on a current-thread runtime of the calling thread.
fn with_client<T>(
    uri: &str,
    work: impl for<'c> FnOnce(&'c mongodb::Client) -> futures::future::BoxFuture<'c, mongodb::error::Result<T>>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = mongodb::Client::with_uri_str(uri).await.map_err(|e| e.to_string())?;
        let result = work(&client).await.map_err(|e| e.to_string());
        client.shutdown().await;
        result
    })
}

fn drop_database(uri: &str, name: &str) -> Result<(), String> {
    let name = name.to_string();
    with_client(uri, move |client| Box::pin(async move { client.database(&name).drop().await }))
}

/// Once per test binary, drops the test databases of runs that were killed before their guards
/// could (older than `STALE_AFTER`, judged by the timestamp in the name). Best effort.
fn sweep_stale_databases(uri: &str) {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        let uri = uri.to_string();
        let swept = std::thread::spawn(move || {
            let names = with_client(&uri, |client| {
                Box::pin(async move {
                    client.list_database_names().filter(doc! { "name": { "$regex": format!("^{DATABASE_PREFIX}") } }).await
                })
            })?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            for name in names {
                let created = name.rsplit('_').next().and_then(|nanos| nanos.parse::<u128>().ok());
                if created.is_some_and(|created| now.saturating_sub(created) > STALE_AFTER.as_nanos()) {
                    drop_database(&uri, &name)?;
                }
            }
            Ok::<(), String>(())
        })
        .join();
        if let Ok(Err(error)) = swept {
            eprintln!("warning: stale test databases not swept: {error}");
        }
    });
}

// ----- the shared suite -------------------------------------------------------------------------

async fn fresh() -> Option<(Arc<dyn ResourceStore>, TestDatabase)> {
    let uri = test_uri()?;
    // The guard exists before the store, so a half-finished open is cleaned up too.
    let database = TestDatabase::new(&uri);
    let store = database.open().await;
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
async fn two_processes() -> Option<([Arc<MongoStore>; 2], TestDatabase)> {
    let uri = test_uri()?;
    let database = TestDatabase::new(&uri);
    let (a, b) = tokio::join!(database.open(), database.open());
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
    let Some(uri) = test_uri() else { return };
    let database = TestDatabase::new(&uri);
    let first = database.open().await;
    assert_eq!(first.database_name(), database.name);
    let created = first.create("Patient", "p1", patient("Twice")).await.expect("create");
    assert_eq!(created.seq, 1);
    let indexes = database.indexes().await;
    for collection in ["resources", "versions"] {
        let names = indexes.get(collection).unwrap_or_else(|| panic!("no {collection} collection: {indexes:?}"));
        assert!(names.len() > 1, "{collection} has only {names:?}");
    }

    let second = database.open().await;
    assert_eq!(database.indexes().await, indexes, "reopening changed the indexes");
    assert_eq!(second.read("Patient", "p1").await.expect("read"), Some(created.clone()));
    assert_eq!(second.last_seq().await.expect("last seq"), 1);
    let next = second.create("Patient", "p2", patient("Twice")).await.expect("create");
    assert_eq!((next.version, next.seq), (1, 2));
    assert_eq!(first.last_seq().await.expect("last seq"), 2);
    drop((first, second));

    let third = database.open().await;
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
