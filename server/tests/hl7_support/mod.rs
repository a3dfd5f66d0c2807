//! Shared harness of the HL7 v2 bridge tests (`hl7_e2e`, `hl7_hostile`, `hl7_crash`): starts
//! Tessera in-process or as the real binary with MLLP enabled, sends messages with
//! `MllpClient` or as raw wire bytes, reads ACKs into segments and fields, and talks REST.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hl7_bridge::mllp::MllpClient;
use serde_json::Value;
use tessera_server::{Application, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The test data: message corpus and the python sender.
pub const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hl7_data");

/// How long one MLLP exchange or HTTP request may take before the test fails.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The path of a file of the test data.
pub fn data_path(relative: &str) -> PathBuf {
    Path::new(DATA_DIR).join(relative)
}

/// The bytes of a file of the test data.
pub fn data_file(relative: &str) -> Vec<u8> {
    let path = data_path(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A message file written one segment per line, as the bytes sent on the wire (CR endings).
pub fn message_file(relative: &str) -> Vec<u8> {
    let text = String::from_utf8(data_file(relative)).expect("message files are UTF-8");
    let segments: Vec<&str> = text.split(['\r', '\n']).filter(|l| !l.trim().is_empty()).collect();
    segments.join("\r").into_bytes()
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

/// Tessera running inside the test process, with its MLLP listener on a free port.
pub struct TestApp {
    pub rest: Rest,
    pub mllp: SocketAddr,
    _data_dir: tempfile::TempDir,
}

/// Builds and spawns Tessera on a fresh data dir, HTTP and MLLP on port 0.
pub async fn spawn_app() -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::for_tests(data_dir.path());
    settings.mllp_addr = Some("127.0.0.1:0".into());
    let app = Application::build(settings).await.expect("tessera starts");
    let mllp = app.mllp_addr().expect("the mllp listener is enabled");
    let root = app.base_url().trim_end_matches("/fhir").to_string();
    tokio::spawn(app.run_until_stopped());
    let rest = Rest::new(root);
    assert!(rest.wait_healthy(Duration::from_secs(10)).await, "tessera did not become healthy");
    TestApp { rest, mllp, _data_dir: data_dir }
}

/// The real `tessera` binary as a child process; killed (SIGKILL) when dropped.
pub struct ChildServer {
    child: Child,
    pub rest: Rest,
    pub mllp: SocketAddr,
    pub log: PathBuf,
}

/// A port that was free a moment ago (bound on port 0, read, released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// Starts `tessera` on `data_dir` with HTTP and MLLP on fresh ports and waits for `/healthz`.
/// Its log goes to `log` (appended), so a restart adds to the same file.
pub async fn start_binary(data_dir: &Path, log: &Path) -> ChildServer {
    start_binary_with(data_dir, log, &[]).await
}

/// As `start_binary`, with more `TESSERA_*` settings.
pub async fn start_binary_with(data_dir: &Path, log: &Path, settings: &[(&str, String)]) -> ChildServer {
    let http_port = free_port();
    let mllp_port = free_port();
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    // Only the settings this test means: a stray TESSERA_* variable would be refused.
    for (name, _) in std::env::vars() {
        if name.starts_with("TESSERA_") {
            command.env_remove(name);
        }
    }
    let child = command
        .env("TESSERA_DATA_DIR", data_dir)
        .env("TESSERA_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("TESSERA_MLLP_ADDR", format!("127.0.0.1:{mllp_port}"))
        .env("TESSERA_LOG", "warn")
        .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("tessera binary starts");
    let mut server = ChildServer {
        child,
        rest: Rest::new(format!("http://127.0.0.1:{http_port}")),
        mllp: SocketAddr::from(([127, 0, 0, 1], mllp_port)),
        log: log.to_path_buf(),
    };
    if !server.rest.wait_healthy(Duration::from_secs(30)).await {
        let exited = server.child.try_wait().ok().flatten();
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        panic!("tessera did not become healthy (exit status {exited:?}); log:\n{log}");
    }
    // The MLLP listener is bound before HTTP is served, but give it a connection to prove it.
    tokio::time::timeout(EXCHANGE_TIMEOUT, MllpClient::connect(server.mllp))
        .await
        .expect("mllp connect in time")
        .expect("mllp listener accepts connections");
    server
}

impl ChildServer {
    /// SIGKILL on unix: no shutdown code of the server runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------
// MLLP
// ---------------------------------------------------------------------------------------

/// Sends `payload` in one frame on a new connection and returns the reply's payload.
pub async fn send(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let exchange = async {
        let mut client = MllpClient::connect(addr).await?;
        client.request(payload).await
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no ACK within {EXCHANGE_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("mllp exchange failed: {e}"))
}

/// What came back for bytes written as they are (no framing added).
#[derive(Debug)]
pub struct RawExchange {
    /// The payloads of the complete frames received.
    pub frames: Vec<Vec<u8>>,
    /// Bytes received that were not part of a complete frame.
    pub stray_bytes: usize,
    /// True when the server closed the connection; false when the wait ended first.
    pub closed: bool,
}

/// Writes `wire` unchanged on a new connection, optionally closes the sending side, and reads
/// until the server closes, `expect_frames` complete frames have arrived (with
/// `close_sending_side` false), or `wait` passes.
pub async fn raw_exchange(addr: SocketAddr, wire: &[u8], close_sending_side: bool, expect_frames: usize, wait: Duration) -> RawExchange {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(wire).await.expect("write");
    if close_sending_side {
        stream.shutdown().await.expect("shutdown");
    }
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    let mut closed = false;
    loop {
        if !close_sending_side && expect_frames > 0 && split_frames(&received).0.len() >= expect_frames {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
    let (frames, stray_bytes) = split_frames(&received);
    RawExchange { frames, stray_bytes, closed }
}

/// Complete `0x0B … 0x1C 0x0D` frames in `bytes`, and the count of other bytes.
fn split_frames(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut frames = Vec::new();
    let mut stray = 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(start) = rest.iter().position(|&b| b == 0x0B) else {
            stray += rest.len();
            break;
        };
        stray += start;
        let body = &rest[start + 1..];
        match body.windows(2).position(|w| w == [0x1C, 0x0D]) {
            Some(end) => {
                frames.push(body[..end].to_vec());
                rest = &body[end + 2..];
            }
            None => {
                stray += rest.len() - start;
                break;
            }
        }
    }
    (frames, stray)
}

// ---------------------------------------------------------------------------------------
// ACKs
// ---------------------------------------------------------------------------------------

/// An ACK (or a sent message) read into segments and fields, numbered as in the standard: `field("MSH", 9)` is
/// MSH-9 (MSH-1 being the field separator), `field("MSA", 1)` is MSA-1.
#[derive(Debug, Clone)]
pub struct Ack {
    pub text: String,
    pub segments: Vec<Vec<String>>,
    pub component_separator: char,
    pub subcomponent_separator: char,
}

impl Ack {
    pub fn parse(bytes: &[u8]) -> Ack {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = String::from_utf8_lossy(bytes).into_owned();
        assert!(text.starts_with("MSH"), "an ACK starts with MSH: {text:?}");
        let separator = text[3..].chars().next().expect("MSH-1");
        let mut segments = Vec::new();
        // ACKs end segments with CR; messages read for comparison may use LF too.
        for line in text.split(['\r', '\n']).filter(|l| !l.is_empty()) {
            let mut fields: Vec<String> = line.split(separator).map(str::to_string).collect();
            if fields.first().map(String::as_str) == Some("MSH") {
                fields.insert(1, separator.to_string());
            }
            segments.push(fields);
        }
        let encoding: Vec<char> = segments.first().and_then(|msh| msh.get(2)).map(|e| e.chars().collect()).unwrap_or_default();
        Ack {
            text,
            segments,
            component_separator: encoding.first().copied().unwrap_or('^'),
            subcomponent_separator: encoding.get(3).copied().unwrap_or('&'),
        }
    }

    /// Every segment named `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&[String]> {
        self.segments.iter().filter(|s| s[0] == name).map(Vec::as_slice).collect()
    }

    /// Field `n` of the first segment named `name` ("" when absent).
    pub fn field(&self, name: &str, n: usize) -> &str {
        self.all(name).first().and_then(|s| s.get(n)).map(String::as_str).unwrap_or("")
    }

    /// Component `c` (1-based) of field `n` of the first segment named `name`.
    pub fn component(&self, name: &str, n: usize, c: usize) -> String {
        self.field(name, n).split(self.component_separator).nth(c - 1).unwrap_or("").to_string()
    }

    pub fn msa1(&self) -> &str {
        self.field("MSA", 1)
    }

    pub fn msa2(&self) -> &str {
        self.field("MSA", 2)
    }

    /// The v2.5+ ERR segments as (ERR-2 location, ERR-3.1 code, ERR-3.3 code system, ERR-4).
    pub fn errors(&self) -> Vec<ErrSegment> {
        self.all("ERR")
            .into_iter()
            .map(|s| {
                let get = |n: usize| s.get(n).cloned().unwrap_or_default();
                let part = |n: usize, c: usize| get(n).split(self.component_separator).nth(c - 1).unwrap_or("").to_string();
                ErrSegment {
                    eld: get(1),
                    location: get(2),
                    code: part(3, 1),
                    code_text: part(3, 2),
                    code_system: part(3, 3),
                    severity: get(4),
                    message: get(8),
                }
            })
            .collect()
    }

    /// The checks every ACK must pass against the message it answers: the sending and
    /// receiving application and facility swapped, the version echoed, MSH-9 `ACK^<event>^ACK`,
    /// and MSA-2 naming the control id.
    pub fn assert_answers(&self, sent: &[u8]) {
        let sent = Ack::parse(sent);
        let context = format!("ACK {:?} for {:?}", self.text, sent.segments.first());
        assert_eq!(self.field("MSH", 3), sent.field("MSH", 5), "MSH-3 is the receiving application: {context}");
        assert_eq!(self.field("MSH", 4), sent.field("MSH", 6), "MSH-4 is the receiving facility: {context}");
        assert_eq!(self.field("MSH", 5), sent.field("MSH", 3), "MSH-5 is the sending application: {context}");
        assert_eq!(self.field("MSH", 6), sent.field("MSH", 4), "MSH-6 is the sending facility: {context}");
        assert_eq!(self.field("MSH", 2), sent.field("MSH", 2), "MSH-2 uses the inbound delimiters: {context}");
        if sent.component("MSH", 12, 1).is_empty() {
            assert!(!self.component("MSH", 12, 1).is_empty(), "the ACK names a version even when the message did not: {context}");
        } else {
            assert_eq!(self.component("MSH", 12, 1), sent.component("MSH", 12, 1), "MSH-12 echoes the version: {context}");
        }
        assert_eq!(self.field("MSH", 9), format!("ACK^{}^ACK", sent.component("MSH", 9, 2)), "MSH-9: {context}");
        assert!(!self.field("MSH", 10).is_empty(), "the ACK has its own control id: {context}");
        assert_eq!(self.msa2(), sent.field("MSH", 10), "MSA-2 is the control id sent: {context}");
    }
}

/// One ERR segment of an ACK.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrSegment {
    /// ERR-1 (ELD, before v2.5).
    pub eld: String,
    /// ERR-2 (ERL), e.g. `MSH^1^10^1`.
    pub location: String,
    /// ERR-3.1, the HL7 table 0357 code.
    pub code: String,
    pub code_text: String,
    /// ERR-3.3, `HL70357`.
    pub code_system: String,
    /// ERR-4, `E` for errors.
    pub severity: String,
    /// ERR-8, the text for the sender.
    pub message: String,
}

// ---------------------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------------------

/// HTTP access to one server; `root` is `http://127.0.0.1:<port>` (FHIR under `/fhir`).
#[derive(Clone)]
pub struct Rest {
    pub client: reqwest::Client,
    pub root: String,
}

impl Rest {
    pub fn new(root: String) -> Rest {
        let client = reqwest::Client::builder().timeout(EXCHANGE_TIMEOUT).build().expect("http client");
        Rest { client, root }
    }

    /// Polls `/healthz` until it answers 200 or `wait` passes.
    pub async fn wait_healthy(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.status("/healthz").await == Some(200) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The status of `GET path`, None when the server cannot be reached.
    pub async fn status(&self, path: &str) -> Option<u16> {
        self.client.get(format!("{}{path}", self.root)).send().await.ok().map(|r| r.status().as_u16())
    }

    /// `GET path`: status and body bytes.
    pub async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let response = self.client.get(format!("{}{path}", self.root)).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_else(|e| panic!("GET {path} body: {e}")).to_vec();
        (status, body)
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {}", String::from_utf8_lossy(&body)))
    }

    /// `POST path` with an empty body; status and JSON.
    pub async fn post(&self, path: &str) -> (u16, Value) {
        let response = self.client.post(format!("{}{path}", self.root)).send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// A FHIR resource by `Type/id`.
    pub async fn read(&self, reference: &str) -> Value {
        self.json(&format!("/fhir/{reference}")).await
    }

    /// The matches of a FHIR search (`params` are encoded here), following next links.
    pub async fn search(&self, resource_type: &str, params: &[(&str, &str)]) -> Vec<Value> {
        let mut path = format!("/fhir/{resource_type}?{}", query(params));
        let mut matches = Vec::new();
        for _ in 0..100 {
            let bundle = self.json(&path).await;
            let entries = bundle.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
            for entry in entries {
                let mode = entry.pointer("/search/mode").and_then(Value::as_str).unwrap_or("match");
                if mode == "match" {
                    if let Some(resource) = entry.get("resource") {
                        matches.push(resource.clone());
                    }
                }
            }
            let next = bundle
                .get("link")
                .and_then(Value::as_array)
                .and_then(|links| links.iter().find(|l| l.get("relation").and_then(Value::as_str) == Some("next")))
                .and_then(|l| l.get("url").and_then(Value::as_str))
                .map(str::to_string);
            match next {
                Some(url) => path = url.strip_prefix(&self.root).map(str::to_string).unwrap_or(url),
                None => return matches,
            }
        }
        panic!("search {resource_type} did not end after 100 pages");
    }

    /// The message log entries matching `params` (e.g. `status`, `control_id`), all pages.
    pub async fn messages(&self, params: &[(&str, &str)]) -> Vec<Value> {
        let mut path = format!("/hl7/messages?{}", query(params));
        let mut all = Vec::new();
        for _ in 0..100 {
            let page = self.json(&path).await;
            all.extend(page.get("messages").and_then(Value::as_array).cloned().unwrap_or_default());
            match page.get("next").and_then(Value::as_str) {
                Some(next) => path = next.to_string(),
                None => return all,
            }
        }
        panic!("the message log did not end after 100 pages");
    }

    /// The exact bytes of a logged message.
    pub async fn raw_message(&self, id: &str) -> Vec<u8> {
        let (status, body) = self.get(&format!("/hl7/messages/{id}/raw")).await;
        assert_eq!(status, 200, "raw message {id}");
        body
    }
}

/// `a=1&b=2`, each value percent-encoded.
pub fn query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `Type/id` of a resource.
pub fn reference_of(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource.get("resourceType").and_then(Value::as_str).unwrap_or(""),
        resource.get("id").and_then(Value::as_str).unwrap_or("")
    )
}

/// The identifier system the bridge gives CX/EI values whose assigning authority is the
/// namespace `authority` alone.
pub fn authority_system(authority: &str) -> String {
    format!("urn:tessera:v2-authority:{authority}")
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

/// An ORU^R01 from a monitor: one patient, one order (`order` as OBR-3 and OBR-2), and
/// `results` numeric OBX (lab codes, so every one is an Observation of its own).
pub fn oru_r01(control_id: &str, order: &str, patient: &str, results: usize) -> Vec<u8> {
    const CODES: [(&str, &str, &str, &str); 5] = [
        ("2345-7", "Glucose", "95", "mg/dL"),
        ("2951-2", "Sodium", "140", "mmol/L"),
        ("2823-3", "Potassium", "4.1", "mmol/L"),
        ("2075-0", "Chloride", "101", "mmol/L"),
        ("2160-0", "Creatinine", "0.9", "mg/dL"),
    ];
    let mut segments = vec![
        format!("MSH|^~\\&|CRASH_LAB|CRASH_FAC|TESSERA|TESSERA_FAC|20240301120000||ORU^R01^ORU_R01|{control_id}|P|2.5.1"),
        format!("PID|1||{patient}^^^HOSP^MR||Crash^Carl||19600101|M"),
        format!("OBR|1|{order}-P|{order}^CRASH_FAC|24323-8^Comprehensive metabolic panel^LN|||20240301115000"),
    ];
    for i in 0..results {
        let (code, name, value, unit) = CODES[i % CODES.len()];
        segments.push(format!("OBX|{}|NM|{code}^{name}^LN|{}|{value}|{unit}^{unit}^UCUM|||||F|||20240301115000", i + 1, i / CODES.len() + 1));
    }
    segments.join("\r").into_bytes()
}
