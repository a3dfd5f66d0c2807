//! InfluxDB 1.x test server: `influxd` with a generated configuration in a temporary
//! directory, listening on free loopback ports, stopped and started again at will (same data,
//! same ports), killed and removed when dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{free_port, peer_missing};

/// How long `influxd` may take to answer `/ping` after starting, or to let go of its port.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct InfluxServer {
    binary: PathBuf,
    dir: PathBuf,
    http: SocketAddr,
    child: Option<Child>,
}

impl InfluxServer {
    /// Starts a fresh server; None (after `peer_missing`) when `influxd` is not installed.
    pub fn start() -> Option<InfluxServer> {
        let Some(binary) = find_influxd() else {
            peer_missing("InfluxDB not installed (influxd)");
            return None;
        };
        let dir = unique_dir();
        std::fs::create_dir_all(&dir).expect("create the influxd directory");
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let rpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = format!(
            r#"reporting-disabled = true
bind-address = "{rpc}"

[meta]
  dir = "{meta}"

[data]
  dir = "{data}"
  wal-dir = "{wal}"
  query-log-enabled = false

[http]
  bind-address = "{http}"
  log-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false
"#,
            meta = dir.join("meta").display(),
            data = dir.join("data").display(),
            wal = dir.join("wal").display(),
        );
        std::fs::write(dir.join("influxdb.conf"), config).expect("write influxdb.conf");
        let mut server = InfluxServer { binary, dir, http, child: None };
        server.restart();
        Some(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and waits until its port is closed.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&self.http, Duration::from_millis(200)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again after `stop` (same directories and ports) and waits until
    /// `/ping` answers 204. Does nothing while it runs.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            return;
        }
        let log = File::options().create(true).append(true).open(self.dir.join("influxd.log")).expect("open influxd.log");
        let child = Command::new(&self.binary)
            .arg("-config")
            .arg(self.dir.join("influxdb.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .spawn()
            .expect("spawn influxd");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !ping(self.http) {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!("influxd exited with {status}:\n{}", self.log());
                }
            }
            if Instant::now() > deadline {
                panic!("influxd did not answer /ping within {START_TIMEOUT:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs InfluxQL against `database` and returns the JSON answer (times in ns).
    pub async fn query(&self, database: &str, influxql: &str) -> serde_json::Value {
        let mut url = reqwest::Url::parse(&format!("{}/query", self.url())).expect("the server's url");
        url.query_pairs_mut().append_pair("db", database).append_pair("epoch", "ns").append_pair("q", influxql);
        let response = reqwest::Client::new().post(url).send().await.expect("query influxd");
        response.json().await.expect("a JSON answer from influxd")
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("influxd.log")).unwrap_or_default()
    }
}

impl Drop for InfluxServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_influxd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("influxd"))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A directory of its own under the system temporary directory.
fn unique_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    std::env::temp_dir().join(format!("tessera-influxd-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// True when `GET /ping` answers 204.
fn ping(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /ping HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).is_ok() && answer.starts_with(b"HTTP/1.") && &answer[9..12] == b"204"
}
