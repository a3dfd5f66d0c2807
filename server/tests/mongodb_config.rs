//! The `tessera` binary configured for MongoDB, without any MongoDB server: an unreachable
//! deployment or a malformed connection string ends start-up quickly with a non-zero exit
//! status and a message that names MongoDB and hides credentials; no panic, no hang. The
//! `projections` subcommand opens the same store as the server.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longer than any of these runs may take: the server selection timeout below is 1.5 s.
const DEADLINE: Duration = Duration::from_secs(30);

/// What a finished run of the binary left behind.
struct Run {
    status: ExitStatus,
    output: String,
    took: Duration,
}

/// A port nothing listens on: bound on port 0, read, released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// Runs `tessera <args>` with only the given `TESSERA_*` settings (plus a temp data dir and a
/// free HTTP port) and waits for it to exit; kills it and fails the test after `DEADLINE`.
fn run_tessera(args: &[&str], settings: &[(&str, String)], data_dir: &Path) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    // Only the settings this test means: a stray TESSERA_* variable would change the run.
    for (name, _) in std::env::vars() {
        if name.starts_with("TESSERA_") {
            command.env_remove(name);
        }
    }
    let started = Instant::now();
    let mut child = command
        .args(args)
        .env("TESSERA_DATA_DIR", data_dir)
        .env("TESSERA_HTTP_ADDR", format!("127.0.0.1:{}", closed_port()))
        .env("TESSERA_LOG", "info")
        .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tessera binary starts");
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tessera") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tessera still running after {DEADLINE:?}: start-up hangs on an unusable MongoDB");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let output = format!("{}{}", stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    Run { status, output, took }
}

fn assert_clean_failure(run: &Run) {
    assert!(!run.status.success(), "tessera exited successfully:\n{}", run.output);
    // An ordinary error exit (anyhow: status 1), not a panic (101) or a signal.
    assert_eq!(run.status.code(), Some(1), "unexpected exit status {:?}:\n{}", run.status, run.output);
    assert!(!run.output.contains("panicked"), "tessera panicked:\n{}", run.output);
}

#[test]
fn unreachable_mongodb_fails_start_up_quickly_naming_it_without_the_password() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let uri = format!("mongodb://tessera:hunter2@127.0.0.1:{}/?serverSelectionTimeoutMS=1500", closed_port());
    let run = run_tessera(&[], &[("TESSERA_MONGODB_URI", uri)], data_dir.path());
    assert_clean_failure(&run);
    assert!(run.took < Duration::from_secs(15), "took {:?} to give up", run.took);
    assert!(run.output.contains("MongoDB database `tessera`"), "the message does not name MongoDB:\n{}", run.output);
    assert!(run.output.contains("not reachable"), "{}", run.output);
    assert!(!run.output.contains("hunter2"), "the password is in the output:\n{}", run.output);
    // Nothing fell back to the embedded store.
    assert!(!data_dir.path().join("tessera.db").exists(), "an embedded store was created");
}

#[test]
fn configured_database_is_named_in_the_failure() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let uri = format!("mongodb://127.0.0.1:{}/ignored?serverSelectionTimeoutMS=1500", closed_port());
    let settings = [("TESSERA_MONGODB_URI", uri), ("TESSERA_MONGODB_DATABASE", "fhir_ward7".to_string())];
    let run = run_tessera(&[], &settings, data_dir.path());
    assert_clean_failure(&run);
    assert!(run.output.contains("MongoDB database `fhir_ward7`"), "{}", run.output);
}

#[test]
fn malformed_connection_string_fails_start_up_with_a_message_about_it() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let run = run_tessera(&[], &[("TESSERA_MONGODB_URI", "notmongo://x".to_string())], data_dir.path());
    assert_clean_failure(&run);
    assert!(run.took < Duration::from_secs(15), "took {:?} to refuse a malformed string", run.took);
    assert!(run.output.contains("MongoDB"), "{}", run.output);
    assert!(run.output.contains("connection string"), "the message does not mention the connection string:\n{}", run.output);
}

/// `tessera projections …` opens the store the server would: with MongoDB configured it fails
/// on MongoDB instead of quietly reading an empty embedded store.
#[test]
fn projections_subcommand_uses_the_configured_mongodb() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let uri = format!("mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=1500", closed_port());
    let run = run_tessera(&["projections", "check", "postgres"], &[("TESSERA_MONGODB_URI", uri)], data_dir.path());
    assert_clean_failure(&run);
    assert!(run.output.contains("MongoDB database `tessera`"), "{}", run.output);
    assert!(!data_dir.path().join("tessera.db").exists(), "the subcommand opened the embedded store");
}
