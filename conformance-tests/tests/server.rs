//! Runs every conformance case as its own test, each against a freshly started in-process
//! Tessera: on the embedded store with an empty data directory, and again (`mongodb::…`) on
//! MongoDB with a fresh database when `TESSERA_TEST_MONGODB_URI` names a replica set; without
//! it the MongoDB tests print `skipped: TESSERA_TEST_MONGODB_URI not set` and pass.

use conformance_tests::{run_case, Ctx};
use fhir_store::ScratchDatabase;
use tempfile::TempDir;
use tessera_server::{Application, Settings};

/// A running server and what it owns: its data directory and, on MongoDB, its database; both
/// live as long as this does.
struct TestServer {
    ctx: Ctx,
    _data_dir: TempDir,
    _database: Option<ScratchDatabase>,
}

async fn spawn_server() -> TestServer {
    let data_dir = tempfile::tempdir().expect("create a temporary data directory");
    let app = Application::build(Settings::for_tests(data_dir.path())).await.expect("tessera starts");
    TestServer { ctx: serve(app), _data_dir: data_dir, _database: None }
}

/// A server on a fresh MongoDB database, configured as an operator would (`mongodb_uri`,
/// `mongodb_database`); None when no MongoDB is given.
async fn spawn_mongodb_server() -> Option<TestServer> {
    // The guard exists before the server, so a failed start leaves no database behind either.
    let database = ScratchDatabase::from_env()?;
    let data_dir = tempfile::tempdir().expect("create a temporary data directory");
    let mut settings = Settings::for_tests(data_dir.path());
    settings.mongodb_uri = Some(database.uri().to_string());
    settings.mongodb_database = Some(database.name().to_string());
    let app = Application::build(settings).await.expect("tessera starts on MongoDB");
    Some(TestServer { ctx: serve(app), _data_dir: data_dir, _database: Some(database) })
}

fn serve(app: Application) -> Ctx {
    let base_url = app.base_url();
    tokio::spawn(app.run_until_stopped());
    Ctx::new(&base_url, Ctx::default_corpus_dir()).expect("http client")
}

async fn run_case_on(server: TestServer, name: &str) {
    if let Err(failure) = run_case(&server.ctx, name).await {
        panic!("{name} failed against {}:\n{failure}", server.ctx.base());
    }
}

/// The runner of the cases generated at the crate root: the embedded store.
async fn run_on_fresh_server(name: &str) {
    run_case_on(spawn_server().await, name).await;
}

/// One test per case; each calls the `run_on_fresh_server` of the module the macro is used in,
/// so the same list runs against the embedded store here and against MongoDB in `mongodb`.
macro_rules! server_tests {
    ($($module:ident { $($case:ident),* $(,)? })*) => {
        $(mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_on_fresh_server(concat!(stringify!($module), "::", stringify!($case))).await;
                }
            )*
        })*
    };
}

conformance_tests::for_each_case!(server_tests);

/// The same cases against Tessera on MongoDB.
mod mongodb {
    async fn run_on_fresh_server(name: &str) {
        if let Some(server) = crate::spawn_mongodb_server().await {
            crate::run_case_on(server, name).await;
        }
    }

    conformance_tests::for_each_case!(server_tests);
}
