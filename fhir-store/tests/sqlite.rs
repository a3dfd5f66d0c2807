//! Runs the shared storage test suite against `SqliteStore`, plus what only the embedded backend
//! has: durability across reopening the file, and group commit.

use std::sync::Arc;

use fhir_store::{HistoryRequest, HistoryScope, ResourceStore, SqliteStore, SqliteStoreOptions};
use serde_json::json;
use tempfile::TempDir;

async fn fresh() -> (Arc<dyn ResourceStore>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(SqliteStoreOptions::new(dir.path())).await.expect("open store");
    (Arc::new(store), dir)
}

fhir_store::store_test_suite!(fresh);

fn patient(family: &str) -> serde_json::Value {
    json!({"resourceType": "Patient", "name": [{"family": family}]})
}

/// Everything a reader can see, to compare before and after a reopen.
async fn visible_state(store: &SqliteStore) -> impl PartialEq + std::fmt::Debug {
    let history = store
        .history(&HistoryRequest { scope: HistoryScope::System, since: None, count: 100, before_seq: None })
        .await
        .expect("history");
    let mut query = fhir_model::SearchQuery::all(Some("Patient"));
    query.count = 100;
    let search = store.search(&query).await.expect("search");
    (
        store.read("Patient", "p1").await.expect("read"),
        store.read("Patient", "p2").await.expect("read"),
        store.vread("Patient", "p1", 1).await.expect("vread"),
        history,
        search,
        store.changes(0, 100).await.expect("changes"),
        store.last_seq().await.expect("last seq"),
        store.checkpoint("backup").await.expect("checkpoint"),
    )
}

async fn write_some(store: &SqliteStore) {
    store.create("Patient", "p1", patient("Durable")).await.expect("create");
    store.update("Patient", "p1", patient("Durable"), None).await.expect("update");
    store.create("Patient", "p2", patient("Gone")).await.expect("create");
    store.delete("Patient", "p2", None).await.expect("delete");
    store.save_checkpoint("backup", 3).await.expect("checkpoint");
}

/// A returned write is on disk: dropping the store without closing it loses nothing.
#[tokio::test]
async fn data_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("nested").join("data");
    let store = SqliteStore::open(SqliteStoreOptions::new(&data_dir)).await.expect("open");
    write_some(&store).await;
    let before = visible_state(&store).await;
    drop(store);
    assert!(data_dir.join("tessera.db").is_file());

    let store = SqliteStore::open(SqliteStoreOptions::new(&data_dir)).await.expect("reopen");
    assert_eq!(visible_state(&store).await, before);
    // Numbering continues where it stopped.
    let next = store.update("Patient", "p2", patient("Back"), None).await.expect("recreate");
    assert_eq!((next.version, next.seq), (3, 5));
}

#[tokio::test]
async fn checkpoints_persist_across_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(SqliteStoreOptions::new(dir.path())).await.expect("open");
    write_some(&store).await;
    store.save_checkpoint("projections", 2).await.expect("checkpoint");
    store.save_checkpoint("backup", 4).await.expect("checkpoint");
    store.close().await;

    let store = SqliteStore::open(SqliteStoreOptions::new(dir.path())).await.expect("reopen");
    assert_eq!(store.checkpoint("projections").await.expect("checkpoint"), Some(2));
    assert_eq!(store.checkpoint("backup").await.expect("checkpoint"), Some(4));
    assert_eq!(store.checkpoint("other").await.expect("checkpoint"), None);
    assert_eq!(store.last_seq().await.expect("last seq"), 4);
    store.close().await;
}

/// The file is in WAL mode and carries a schema version, and opening twice is harmless.
#[tokio::test]
async fn schema_is_wal_and_idempotent() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("temp dir");
    SqliteStore::open(SqliteStoreOptions::new(dir.path())).await.expect("open").close().await;
    let store = SqliteStore::open(SqliteStoreOptions::new(dir.path())).await.expect("open again");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.path().join("tessera.db").display()))
        .await
        .expect("inspect");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.expect("journal mode");
    assert_eq!(mode, "wal");
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_version").fetch_all(&mut conn).await.expect("version");
    assert_eq!(versions, vec![2]);
    conn.close().await.expect("close");
    store.ping().await.expect("ping");
    store.close().await;
}

async fn concurrent_creates(store: Arc<SqliteStore>, writes: usize) {
    let tasks: Vec<_> = (0..writes)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.create("Patient", &format!("g{i}"), patient("Group")).await })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        task.expect("task").expect("create");
    }
}

/// 64 concurrent creates share commits: fewer commits than write requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(SqliteStoreOptions::new(dir.path())).await.expect("open"));
    concurrent_creates(store.clone(), 64).await;
    let (commits, requests) = (store.commit_count(), store.write_requests());
    println!("group commit: {requests} write requests in {commits} commits");
    assert_eq!(requests, 64);
    assert!(commits < requests, "no batching: {commits} commits for {requests} writes");
    let changes = store.changes(0, 100).await.expect("changes");
    assert_eq!(changes.len(), 64);
}

/// With `max_batch = 1` every request commits alone: the batching above is the writer's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_batch_one_commits_each_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteStoreOptions { max_batch: 1, ..SqliteStoreOptions::new(dir.path()) };
    let store = Arc::new(SqliteStore::open(options).await.expect("open"));
    concurrent_creates(store.clone(), 16).await;
    assert_eq!((store.commit_count(), store.write_requests()), (16, 16));
}

/// A file of another schema version is refused with an error naming both versions.
#[tokio::test]
async fn other_schema_version_is_refused() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("tessera.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("create old file");
    sqlx::query("CREATE TABLE schema_version (version INTEGER NOT NULL)").execute(&mut conn).await.expect("table");
    sqlx::query("INSERT INTO schema_version (version) VALUES (1)").execute(&mut conn).await.expect("version");
    conn.close().await.expect("close");
    let error = match SqliteStore::open(SqliteStoreOptions::new(dir.path())).await {
        Ok(_) => panic!("a version 1 file was opened"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), fhir_store::StoreErrorKind::Backend);
    assert!(error.to_string().contains("schema version 1") || format!("{error:?}").contains("schema version 1"), "{error:?}");
}
