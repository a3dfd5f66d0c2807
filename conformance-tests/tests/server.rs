//! Runs every conformance case as its own test, each against a freshly started in-process
//! Tessera: on the embedded store with an empty data directory, and again (`mongodb::…`) on
//! MongoDB with a fresh database when `TESSERA_TEST_MONGODB_URI` names a replica set; without
//! it the MongoDB tests print `skipped: TESSERA_TEST_MONGODB_URI not set` and pass.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use conformance_tests::{run_case, Ctx};
use tempfile::TempDir;
use tessera_server::{Application, Settings};

/// The variable naming the MongoDB deployment the tests may create databases on.
const MONGODB_URI_VARIABLE: &str = "TESSERA_TEST_MONGODB_URI";

/// A running server and what it owns: its data directory and, on MongoDB, its database; both
/// live as long as this does.
struct TestServer {
    ctx: Ctx,
    _data_dir: TempDir,
    _database: Option<TestDatabase>,
}

async fn spawn_server() -> TestServer {
    let data_dir = tempfile::tempdir().expect("create a temporary data directory");
    let app = Application::build(Settings::for_tests(data_dir.path())).await.expect("tessera starts");
    TestServer { ctx: serve(app), _data_dir: data_dir, _database: None }
}

/// A server on a fresh MongoDB database, configured as an operator would (`mongodb_uri`,
/// `mongodb_database`); None when no MongoDB is given.
async fn spawn_mongodb_server() -> Option<TestServer> {
    let uri = match std::env::var(MONGODB_URI_VARIABLE) {
        Ok(uri) if !uri.trim().is_empty() => uri,
        _ => {
            println!("skipped: {MONGODB_URI_VARIABLE} not set");
            return None;
        }
    };
    // The guard exists before the server, so a failed start leaves no database behind either.
    let database = TestDatabase::new(uri.clone());
    let data_dir = tempfile::tempdir().expect("create a temporary data directory");
    let mut settings = Settings::for_tests(data_dir.path());
    settings.mongodb_uri = Some(uri);
    settings.mongodb_database = Some(database.name.clone());
    let app = Application::build(settings).await.expect("tessera starts on MongoDB");
    Some(TestServer { ctx: serve(app), _data_dir: data_dir, _database: Some(database) })
}

fn serve(app: Application) -> Ctx {
    let base_url = app.base_url();
    tokio::spawn(app.run_until_stopped());
    Ctx::new(&base_url, Ctx::default_corpus_dir()).expect("http client")
}

/// A MongoDB database named `tessera_test_<pid>_<counter>_<nanos>` (the prefix and the age
/// in the name let `fhir-store`'s MongoDB tests sweep databases of killed runs), dropped when
/// this is dropped — also while a failing test unwinds. `Drop` cannot await, so the drop runs
/// on a thread of its own with its own runtime and client.
struct TestDatabase {
    uri: String,
    name: String,
}

impl TestDatabase {
    fn new(uri: String) -> TestDatabase {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("tessera_test_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        TestDatabase { uri, name }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (uri, name) = (self.uri.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = ::mongodb::Client::with_uri_str(&uri).await.map_err(|e| e.to_string())?;
                let result = client.database(&name).drop().await.map_err(|e| e.to_string());
                client.shutdown().await;
                result
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: test database {} not dropped: {error}", self.name),
            Err(_) => eprintln!("warning: test database {} not dropped: the dropping thread panicked", self.name),
        }
    }
}

async fn run_case_on(server: TestServer, name: &str) {
    if let Err(failure) = run_case(&server.ctx, name).await {
        panic!("{name} failed against {}:\n{failure}", server.ctx.base());
    }
}

async fn run_against_fresh_server(name: &str) {
    run_case_on(spawn_server().await, name).await;
}

async fn run_against_fresh_mongodb_server(name: &str) {
    if let Some(server) = spawn_mongodb_server().await {
        run_case_on(server, name).await;
    }
}

macro_rules! server_tests {
    ($($module:ident { $($case:ident),* $(,)? })*) => {
        $(mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::run_against_fresh_server(concat!(stringify!($module), "::", stringify!($case))).await;
                }
            )*
        })*
    };
}

macro_rules! mongodb_server_tests {
    ($($module:ident { $($case:ident),* $(,)? })*) => {
        $(mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::run_against_fresh_mongodb_server(concat!(stringify!($module), "::", stringify!($case))).await;
                }
            )*
        })*
    };
}

conformance_tests::for_each_case!(server_tests);

/// The same cases against Tessera on MongoDB.
mod mongodb {
    conformance_tests::for_each_case!(mongodb_server_tests);
}
