//! Starts the S3-compatible servers the S3 object store tests talk to (moto, s3s-fs), each in
//! a temp dir on a free port and killed when its guard drops, and skips a test whose server is
//! not installed (or fails it under `TESSERA_REQUIRE_PEERS=1`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use crate::peers::{free_port, skip};

/// A running server; dropping it kills the process and removes its directory.
pub struct Peer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    dir: TempDir,
}

impl Peer {
    /// The server's own directory (s3s-fs keeps its buckets here).
    #[allow(dead_code)]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("{} output (last lines):", self.endpoint);
            tail.iter().rev().for_each(|line| eprintln!("  {line}"));
        }
    }
}

/// `name` on PATH, or in `~/.cargo/bin` where `cargo install` puts it.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin"));
    std::env::split_paths(&path).chain(cargo_bin).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// moto's S3 in server mode (`moto_server`, from `pip install 'moto[server]'`).
pub async fn start_moto() -> Option<Peer> {
    let Some(binary) = find_binary("moto_server") else {
        return skip("moto_server is not installed (pip install 'moto[server]')");
    };
    Some(
        start("moto_server", |port, _dir| {
            let mut command = Command::new(&binary);
            command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            command
        })
        .await,
    )
}

/// s3s-fs (`cargo install s3s-fs --features binary`): S3 over a directory, with SigV4 checked
/// against one key pair.
pub async fn start_s3s_fs(access_key: &str, secret_key: &str) -> Option<Peer> {
    let Some(binary) = find_binary("s3s-fs") else {
        return skip("s3s-fs is not installed (cargo install s3s-fs@0.14.1 --features binary --locked)");
    };
    Some(
        start("s3s-fs", |port, dir| {
            let mut command = Command::new(&binary);
            command
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--access-key",
                    access_key,
                    "--secret-key",
                    secret_key,
                ])
                .arg(dir.join("data"));
            command
        })
        .await,
    )
}

/// Starts the server `command` makes for a port and a directory and waits until it accepts
/// connections; tries other ports if one was taken in between.
async fn start(name: &str, command: impl Fn(u16, &Path) -> Command) -> Peer {
    let mut last_log = String::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let port = free_port();
        let child = command(port, dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut peer = Peer { child, endpoint: format!("http://127.0.0.1:{port}"), dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = peer.child.try_wait() {
                break;
            }
            // An answer from a server that is not ours (another test's, on a port reused in
            // between) shows as our process having exited.
            if answers_http(port) && matches!(peer.child.try_wait(), Ok(None)) {
                return peer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let _ = peer.child.kill();
    }
    panic!("{name} did not start; its last output:\n{last_log}");
}

/// Whether an HTTP server answers on `port`: a bare TCP connect is not enough, since a connect
/// to a free local port can meet itself (TCP simultaneous open).
fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut start = [0; 5];
    stream.read_exact(&mut start).is_ok() && &start == b"HTTP/"
}
