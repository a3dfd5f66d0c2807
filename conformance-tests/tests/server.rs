//! Runs every conformance case as its own test, each against a freshly started in-process
//! Tessera with an empty data directory.

use conformance_tests::{run_case, Ctx};
use tempfile::TempDir;
use tessera_server::{Application, Settings};

/// A running server and the data directory it owns; the directory lives as long as this does.
struct TestServer {
    ctx: Ctx,
    _data_dir: TempDir,
}

async fn spawn_server() -> TestServer {
    let data_dir = tempfile::tempdir().expect("create a temporary data directory");
    let app = Application::build(Settings::for_tests(data_dir.path())).await.expect("tessera starts");
    let base_url = app.base_url();
    tokio::spawn(app.run_until_stopped());
    let ctx = Ctx::new(&base_url, Ctx::default_corpus_dir()).expect("http client");
    TestServer { ctx, _data_dir: data_dir }
}

async fn run_against_fresh_server(name: &str) {
    let server = spawn_server().await;
    if let Err(failure) = run_case(&server.ctx, name).await {
        panic!("{name} failed against {}:\n{failure}", server.ctx.base());
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

conformance_tests::for_each_case!(server_tests);
