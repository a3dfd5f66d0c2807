//! For tests against a real MongoDB (`TESSERA_TEST_MONGODB_URI`): a uniquely named scratch
//! database that is dropped when its guard goes, also while a failing test unwinds, and the
//! sweep of databases left behind by killed runs. Used by this crate's MongoDB tests and by the
//! conformance suite's MongoDB-backed servers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::bson::doc;

use super::MongoStoreOptions;

/// The variable naming the MongoDB deployment tests may create databases on.
pub const TEST_MONGODB_URI_VARIABLE: &str = "TESSERA_TEST_MONGODB_URI";

/// Every scratch database's name starts with this.
const DATABASE_PREFIX: &str = "tessera_test_";

/// A scratch database older than this is left over from a killed run and is dropped.
const STALE_AFTER: Duration = Duration::from_secs(60 * 60);

/// A MongoDB database named `tessera_test_<pid>_<counter>_<nanos>`, dropped when this is
/// dropped. `Drop` cannot await, so the drop runs on a thread of its own with its own runtime
/// and client, independent of the test's runtime.
pub struct ScratchDatabase {
    uri: String,
    name: String,
}

impl ScratchDatabase {
    /// A fresh database on the deployment `TEST_MONGODB_URI_VARIABLE` names, or None after
    /// printing `skipped: TESSERA_TEST_MONGODB_URI not set`.
    pub fn from_env() -> Option<ScratchDatabase> {
        match std::env::var(TEST_MONGODB_URI_VARIABLE) {
            Ok(uri) if !uri.trim().is_empty() => Some(ScratchDatabase::new(&uri)),
            _ => {
                println!("skipped: {TEST_MONGODB_URI_VARIABLE} not set");
                None
            }
        }
    }

    /// A fresh database on `uri`; sweeps stale scratch databases once per process first.
    pub fn new(uri: &str) -> ScratchDatabase {
        sweep_stale_databases(uri);
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("{DATABASE_PREFIX}{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        ScratchDatabase { uri: uri.to_string(), name }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Options opening a `MongoStore` on this database.
    pub fn options(&self) -> MongoStoreOptions {
        MongoStoreOptions { database: Some(self.name.clone()), ..MongoStoreOptions::new(self.uri.clone()) }
    }
}

impl Drop for ScratchDatabase {
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

/// Once per process, drops the scratch databases of runs that were killed before their guards
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
