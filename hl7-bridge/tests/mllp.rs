//! End-to-end tests of the MLLP listener and client through real TCP (and TLS) sockets:
//! framing over any chunking, noise, frame limits, idle timeout, handler panics, TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hl7_bridge::mllp::{
    encode_frame, Decoded, FrameDecoder, FrameRejection, MessageHandler, MllpClient, MllpConfig,
    MllpError, MllpErrorKind, MllpServer, TlsFiles,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Log capture: one global subscriber writing into a buffer; tests find their own lines by
// the peer address of their connection.

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}

fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("hl7_bridge=debug"))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
}

/// Waits (a little) for a log line containing every part.
async fn log_line_with(parts: &[&str]) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = logs().0.lock().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        if let Some(line) = text.lines().find(|line| parts.iter().all(|p| line.contains(p))) {
            return Some(line.to_string());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// A handler that records every call and answers `ACK <message>`, with a few commands.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Handle { message: Vec<u8>, peer: SocketAddr },
    Reject { head: Vec<u8>, reason: FrameRejection, peer: SocketAddr },
}

struct Recorder {
    calls: Mutex<Vec<Call>>,
    barrier: tokio::sync::Barrier,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder { calls: Mutex::new(Vec::new()), barrier: tokio::sync::Barrier::new(2) }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn messages_from(&self, peer: SocketAddr) -> Vec<Vec<u8>> {
        self.calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Handle { message, peer: p } if p == peer => Some(message),
                _ => None,
            })
            .collect()
    }

    fn record(&self, call: Call) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }
}

#[async_trait::async_trait]
impl MessageHandler for Recorder {
    async fn handle(&self, message: Vec<u8>, peer: SocketAddr) -> Option<Vec<u8>> {
        self.record(Call::Handle { message: message.clone(), peer });
        match message.as_slice() {
            b"SILENT" => return None,
            b"PANIC" => panic!("handler panic requested by the test"),
            b"BARRIER" => {
                self.barrier.wait().await;
            }
            _ => {}
        }
        if let Some(millis) = message.strip_prefix(b"SLOW ") {
            let millis: u64 = String::from_utf8_lossy(millis).parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
        Some([b"ACK ".as_slice(), &message].concat())
    }

    async fn reject(&self, head: Vec<u8>, reason: FrameRejection, peer: SocketAddr) -> Option<Vec<u8>> {
        self.record(Call::Reject { head: head.clone(), reason: reason.clone(), peer });
        let FrameRejection::TooLarge { limit } = reason;
        Some(format!("REJECT {limit} {}", head.len()).into_bytes())
    }
}

// ---------------------------------------------------------------------------------------
// Harness.

struct Running {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config() -> MllpConfig {
    MllpConfig { addr: "127.0.0.1:0".to_string(), ..MllpConfig::default() }
}

async fn start(config: MllpConfig) -> Running {
    logs();
    let recorder = Arc::new(Recorder::new());
    let server = MllpServer::bind(config, recorder.clone()).await.expect("bind");
    let addr = server.local_addr();
    let task = tokio::spawn(server.run());
    Running { addr, recorder, task }
}

async fn within<F: std::future::Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, body).await.expect("test timed out")
}

fn hl7(id: &str) -> Vec<u8> {
    format!("MSH|^~\\&|SND|FAC|RCV|FAC|20240101120000||ADT^A01|{id}|P|2.5\rPID|1||{id}^^^MRN\r")
        .into_bytes()
}

fn ack(message: &[u8]) -> Vec<u8> {
    [b"ACK ".as_slice(), message].concat()
}

/// Reads frames from a raw socket until `count` were read or the stream ended.
async fn read_frames(stream: &mut TcpStream, count: usize) -> Vec<Vec<u8>> {
    let mut decoder = FrameDecoder::new(64 * 1024 * 1024);
    let mut frames = Vec::new();
    let mut decoded = Vec::new();
    let mut buffer = vec![0u8; 4096];
    while frames.len() < count {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => decoder.decode(&buffer[..read], &mut decoded),
        }
        for item in decoded.drain(..) {
            if let Decoded::Frame(frame) = item {
                frames.push(frame);
            }
        }
    }
    frames
}

/// True when the server has closed the connection (end of stream or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0u8; 64];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn raw_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

// ---------------------------------------------------------------------------------------
// Framing.

#[tokio::test]
async fn pipelined_frames_in_one_write_are_split_and_answered_in_order() {
    within(async {
        let server = start(config()).await;
        let mut stream = raw_connect(server.addr).await;
        let messages: Vec<Vec<u8>> = (0..20).map(|i| hl7(&format!("P{i}"))).collect();
        let wire: Vec<u8> = messages.iter().flat_map(|m| encode_frame(m)).collect();
        stream.write_all(&wire).await.expect("write");
        let replies = read_frames(&mut stream, messages.len()).await;
        let expected: Vec<Vec<u8>> = messages.iter().map(|m| ack(m)).collect();
        assert_eq!(replies, expected);
        let peer = stream.local_addr().expect("local addr");
        assert_eq!(server.recorder.messages_from(peer), messages);
    })
    .await
}

#[tokio::test]
async fn frames_split_byte_by_byte_are_reassembled() {
    within(async {
        let server = start(config()).await;
        let mut stream = raw_connect(server.addr).await;
        // Includes a 0x1C not followed by 0x0D, which is payload.
        let first = b"MSH|^~\\&|A\x1cB|\rPID|1\r".to_vec();
        let second = hl7("BYTE2");
        let wire = [encode_frame(&first), encode_frame(&second)].concat();
        for byte in &wire {
            stream.write_all(std::slice::from_ref(byte)).await.expect("write");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let replies = read_frames(&mut stream, 2).await;
        assert_eq!(replies, vec![ack(&first), ack(&second)]);
        let peer = stream.local_addr().expect("local addr");
        assert_eq!(server.recorder.messages_from(peer), vec![first, second]);
    })
    .await
}

#[tokio::test]
async fn frames_split_across_uneven_writes_are_reassembled() {
    within(async {
        let server = start(config()).await;
        let mut stream = raw_connect(server.addr).await;
        let messages: Vec<Vec<u8>> = (0..10).map(|i| hl7(&format!("U{i}"))).collect();
        let wire: Vec<u8> = messages.iter().flat_map(|m| encode_frame(m)).collect();
        let mut rest = wire.as_slice();
        let mut size = 1;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            stream.write_all(chunk).await.expect("write");
            tokio::time::sleep(Duration::from_millis(2)).await;
            rest = tail;
            size = size * 3 % 97 + 1;
        }
        let replies = read_frames(&mut stream, messages.len()).await;
        assert_eq!(replies, messages.iter().map(|m| ack(m)).collect::<Vec<_>>());
    })
    .await
}

#[tokio::test]
async fn messages_of_one_connection_are_handled_one_at_a_time_in_order() {
    within(async {
        let server = start(config()).await;
        let mut stream = raw_connect(server.addr).await;
        // The first message is slow; if handling overlapped, the fast ones would finish first.
        let messages = [b"SLOW 300".to_vec(), b"SLOW 0".to_vec(), hl7("AFTER")];
        let wire: Vec<u8> = messages.iter().flat_map(|m| encode_frame(m)).collect();
        stream.write_all(&wire).await.expect("write");
        let replies = read_frames(&mut stream, 3).await;
        assert_eq!(replies, messages.iter().map(|m| ack(m)).collect::<Vec<_>>());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_connections_get_their_own_replies() {
    within(async {
        let server = start(config()).await;
        let mut clients = Vec::new();
        for c in 0..100 {
            let addr = server.addr;
            clients.push(tokio::spawn(async move {
                let mut client = MllpClient::connect(addr).await.expect("connect");
                for m in 0..5 {
                    let message = hl7(&format!("C{c}M{m}"));
                    let reply = client.request(&message).await.expect("request");
                    assert_eq!(reply, ack(&message));
                }
                c
            }));
        }
        let mut done = Vec::new();
        for client in clients {
            done.push(client.await.expect("client task"));
        }
        assert_eq!(done.len(), 100);
        assert_eq!(server.recorder.calls().len(), 500);
    })
    .await
}

#[tokio::test]
async fn connections_are_served_concurrently() {
    within(async {
        // Each BARRIER call waits for the other: served one after the other, they would hang.
        let server = start(config()).await;
        let mut a = MllpClient::connect(server.addr).await.expect("connect a");
        let mut b = MllpClient::connect(server.addr).await.expect("connect b");
        let (ra, rb) = tokio::join!(a.request(b"BARRIER"), b.request(b"BARRIER"));
        assert_eq!(ra.expect("a"), ack(b"BARRIER"));
        assert_eq!(rb.expect("b"), ack(b"BARRIER"));
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Noise and broken frames.

#[tokio::test]
async fn bytes_outside_frames_are_discarded_and_logged() {
    within(async {
        let server = start(config()).await;
        let mut stream = raw_connect(server.addr).await;
        let peer = stream.local_addr().expect("local addr");
        let first = hl7("N1");
        let second = hl7("N2");
        // 5 bytes of noise, a frame, "\r\n" and a stray end block + CR (4 bytes), a frame.
        let wire = [
            b"noise".to_vec(),
            encode_frame(&first),
            b"\r\n\x1c\r".to_vec(),
            encode_frame(&second),
        ]
        .concat();
        stream.write_all(&wire).await.expect("write");
        let replies = read_frames(&mut stream, 2).await;
        assert_eq!(replies, vec![ack(&first), ack(&second)]);
        assert_eq!(server.recorder.messages_from(peer), vec![first, second]);
        let peer_field = format!("peer={peer}");
        for bytes in ["bytes=5", "bytes=4"] {
            let line = log_line_with(&["discarded bytes outside an mllp frame", &peer_field, bytes]).await;
            let line = line.unwrap_or_else(|| panic!("no discard log line with {bytes}"));
            assert!(line.contains("WARN"), "{line}");
        }
    })
    .await
}

#[tokio::test]
async fn start_block_inside_a_frame_drops_the_unfinished_frame() {
    within(async {
        let server = start(config()).await;
        let mut stream = raw_connect(server.addr).await;
        let peer = stream.local_addr().expect("local addr");
        let message = hl7("REAL");
        let wire = [b"\x0bMSH|^~\\&|UNFINISHED".to_vec(), encode_frame(&message)].concat();
        stream.write_all(&wire).await.expect("write");
        assert_eq!(read_frames(&mut stream, 1).await, vec![ack(&message)]);
        assert_eq!(server.recorder.messages_from(peer), vec![message]);
        let line = log_line_with(&["dropped unfinished mllp frame", &format!("peer={peer}"), "bytes=19"]).await;
        assert!(line.is_some(), "no log line for the dropped frame");
    })
    .await
}

#[tokio::test]
async fn connection_closed_mid_frame_calls_no_handler() {
    within(async {
        let server = start(config()).await;
        let mut stream = raw_connect(server.addr).await;
        let peer = stream.local_addr().expect("local addr");
        let answered = hl7("DONE");
        let wire = [encode_frame(&answered), b"\x0bMSH|^~\\&|HALF".to_vec()].concat();
        stream.write_all(&wire).await.expect("write");
        stream.shutdown().await.expect("shutdown");
        // The reply to the complete frame, then the server closes on end of stream.
        assert_eq!(read_frames(&mut stream, 2).await, vec![ack(&answered)]);
        assert_eq!(server.recorder.messages_from(peer), vec![answered]);
        let peer_field = format!("peer={peer}");
        let line = log_line_with(&["dropped unfinished mllp frame at connection end", &peer_field, "bytes=13"]).await;
        assert!(line.is_some(), "no log line for the frame cut by the close");
        assert!(log_line_with(&["mllp connection accepted", &peer_field]).await.is_some());
        assert!(log_line_with(&["mllp connection closed", &peer_field, "peer closed"]).await.is_some());
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Frame size limit.

/// Sends one frame of `payload_bytes` (starting with an MSH) while reading what comes back;
/// returns the frames received before the server closed the connection.
async fn send_oversized(addr: SocketAddr, payload: Vec<u8>) -> (Vec<Vec<u8>>, SocketAddr) {
    let stream = raw_connect(addr).await;
    let peer = stream.local_addr().expect("local addr");
    let (mut reader, mut writer) = stream.into_split();
    let writer_task = tokio::spawn(async move {
        // The server stops reading; the write may fail with a reset, which is expected.
        let _ = writer.write_all(&encode_frame(&payload)).await;
        writer
    });
    let mut decoder = FrameDecoder::new(1024 * 1024);
    let mut decoded = Vec::new();
    let mut buffer = vec![0u8; 4096];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => decoder.decode(&buffer[..read], &mut decoded),
        }
    }
    let _ = writer_task.await;
    let frames = decoded
        .into_iter()
        .filter_map(|item| match item {
            Decoded::Frame(frame) => Some(frame),
            _ => None,
        })
        .collect();
    (frames, peer)
}

fn big_message(len: usize) -> Vec<u8> {
    let mut message = hl7("BIG");
    message.resize(len, b'X');
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mib_frame_is_refused_under_the_default_limit() {
    within(async {
        let server = start(config()).await;
        let payload = big_message(2 * 1024 * 1024);
        let (frames, peer) = send_oversized(server.addr, payload.clone()).await;
        assert_eq!(frames, vec![b"REJECT 1048576 4096".to_vec()]);
        let calls: Vec<Call> = server
            .recorder
            .calls()
            .into_iter()
            .filter(|call| matches!(call, Call::Handle { peer: p, .. } | Call::Reject { peer: p, .. } if *p == peer))
            .collect();
        assert_eq!(
            calls,
            vec![Call::Reject {
                head: payload[..4096].to_vec(),
                reason: FrameRejection::TooLarge { limit: 1_048_576 },
                peer,
            }]
        );
    })
    .await
}

#[tokio::test]
async fn small_configured_limit_accepts_up_to_it_and_refuses_beyond() {
    within(async {
        let server = start(MllpConfig { max_frame_bytes: 100, ..config() }).await;
        let mut stream = raw_connect(server.addr).await;
        let peer = stream.local_addr().expect("local addr");
        let exact = big_message(100);
        let over = big_message(101);
        let wire = [encode_frame(&exact), encode_frame(&over), encode_frame(b"never")].concat();
        stream.write_all(&wire).await.expect("write");
        let replies = read_frames(&mut stream, 3).await;
        assert_eq!(replies, vec![ack(&exact), b"REJECT 100 100".to_vec()]);
        assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
        assert_eq!(
            server.recorder.calls().into_iter().filter(|c| match c {
                Call::Handle { peer: p, .. } | Call::Reject { peer: p, .. } => *p == peer,
            }).collect::<Vec<_>>(),
            vec![
                Call::Handle { message: exact, peer },
                Call::Reject { head: over[..100].to_vec(), reason: FrameRejection::TooLarge { limit: 100 }, peer },
            ]
        );
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Idle timeout, silent replies, panics.

#[tokio::test]
async fn idle_connection_is_closed_after_the_timeout() {
    within(async {
        let server = start(MllpConfig { idle_timeout: Duration::from_millis(200), ..config() }).await;
        let mut stream = raw_connect(server.addr).await;
        let started = Instant::now();
        assert!(closed_within(&mut stream, Duration::from_secs(5)).await, "idle connection stayed open");
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(150), "closed too early: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "closed too late: {elapsed:?}");
    })
    .await
}

#[tokio::test]
async fn busy_handler_does_not_make_a_connection_idle() {
    within(async {
        let server = start(MllpConfig { idle_timeout: Duration::from_millis(400), ..config() }).await;
        let mut client = MllpClient::connect(server.addr).await.expect("connect");
        // The handler works for 1.2 s, three times the idle timeout.
        assert_eq!(client.request(b"SLOW 1200").await.expect("slow reply"), ack(b"SLOW 1200"));
        // Traffic keeps it open; silence closes it.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(client.request(b"ping").await.expect("ping"), ack(b"ping"));
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(client.request(b"late").await.is_err(), "connection survived the idle timeout");
    })
    .await
}

#[tokio::test]
async fn no_reply_sends_nothing_and_keeps_the_connection() {
    within(async {
        let server = start(config()).await;
        let mut client = MllpClient::connect(server.addr).await.expect("connect");
        client.send(b"SILENT").await.expect("send");
        let message = hl7("AFTER-SILENT");
        // The first frame back answers the second message: nothing came for the first.
        assert_eq!(client.request(&message).await.expect("reply"), ack(&message));
        assert_eq!(server.recorder.calls().len(), 2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_closes_only_its_connection() {
    within(async {
        let server = start(config()).await;
        let mut bystander = MllpClient::connect(server.addr).await.expect("connect bystander");
        assert_eq!(bystander.request(b"before").await.expect("before"), ack(b"before"));

        let mut stream = raw_connect(server.addr).await;
        let peer = stream.local_addr().expect("local addr");
        stream.write_all(&encode_frame(b"PANIC")).await.expect("write");
        assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
        assert!(log_line_with(&["panicked", &format!("peer={peer}")]).await.is_some());

        assert_eq!(bystander.request(b"after").await.expect("after"), ack(b"after"));
        let mut newcomer = MllpClient::connect(server.addr).await.expect("connect newcomer");
        assert_eq!(newcomer.request(b"new").await.expect("new"), ack(b"new"));
    })
    .await
}

#[tokio::test]
async fn client_sees_a_clean_close_as_none() {
    within(async {
        let server = start(config()).await;
        let mut client = MllpClient::connect(server.addr).await.expect("connect");
        assert_eq!(client.request(b"one").await.expect("one"), ack(b"one"));
        client.shutdown().await.expect("shutdown");
        assert_eq!(client.receive().await.expect("receive"), None);
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Configuration errors.

#[tokio::test]
async fn bind_failure_names_the_address() {
    within(async {
        let first = start(config()).await;
        let addr = first.addr.to_string();
        let error = match MllpServer::bind(MllpConfig { addr: addr.clone(), ..config() }, first.recorder.clone()).await {
            Ok(_) => panic!("second bind on {addr} succeeded"),
            Err(error) => error,
        };
        assert_eq!(error.kind(), MllpErrorKind::Bind);
        assert!(error.to_string().contains(&addr), "{error}");
    })
    .await
}

#[tokio::test]
async fn tls_file_errors_name_the_file() {
    within(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing-cert.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"not a pem file\n").expect("write");
        let cases = [
            (TlsFiles { cert: missing.clone(), key: empty.clone() }, missing.clone()),
            (TlsFiles { cert: empty.clone(), key: empty.clone() }, empty.clone()),
        ];
        for (files, named) in cases {
            let bound = MllpServer::bind(MllpConfig { tls: Some(files), ..config() }, Arc::new(Recorder::new())).await;
            let error = match bound {
                Ok(_) => panic!("bind with bad tls files succeeded"),
                Err(error) => error,
            };
            assert_eq!(error.kind(), MllpErrorKind::Tls);
            assert!(error.to_string().contains(&named.display().to_string()), "{error}");
        }
        let client = MllpClient::connect_tls("127.0.0.1:1", "localhost", &missing).await;
        match client {
            Ok(_) => panic!("client with a missing ca file connected"),
            Err(error) => assert!(error.to_string().contains("missing-cert.pem"), "{error}"),
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// TLS end to end, with certificates made by the openssl command line.

fn openssl_available() -> bool {
    let found = Command::new("openssl").arg("version").output().map(|o| o.status.success()).unwrap_or(false);
    if !found {
        if std::env::var("TESSERA_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("openssl not installed and TESSERA_REQUIRE_PEERS=1");
        }
        println!("skipped: openssl not installed");
    }
    found
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A test CA (self-signed) and a server certificate for `localhost`/127.0.0.1 signed by it
/// for the given key file. Returns (ca cert, server cert chain).
fn make_certificates(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    if !dir.join("ca.pem").exists() {
        openssl(dir, &[
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Tessera Test CA",
        ]);
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("write ext");
    }
    let csr = format!("{key}.csr");
    let cert = format!("{key}.crt");
    openssl(dir, &["req", "-new", "-key", key, "-out", &csr, "-subj", "/CN=localhost"]);
    openssl(dir, &[
        "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", &cert, "-days", "2", "-extfile", "server.ext",
    ]);
    (dir.join("ca.pem"), dir.join(cert))
}

fn pem_label(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read key").lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn tls_exchange_with_pkcs8_pkcs1_and_sec1_keys() {
    if !openssl_available() {
        return;
    }
    within(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        openssl(d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "pkcs8.key"]);
        openssl(d, &["ec", "-in", "pkcs8.key", "-out", "sec1.key"]);
        openssl(d, &["genrsa", "-traditional", "-out", "pkcs1.key", "2048"]);
        let keys = [
            ("pkcs8.key", "-----BEGIN PRIVATE KEY-----"),
            ("pkcs1.key", "-----BEGIN RSA PRIVATE KEY-----"),
            ("sec1.key", "-----BEGIN EC PRIVATE KEY-----"),
        ];
        for (key, label) in keys {
            assert_eq!(pem_label(&d.join(key)), label, "openssl wrote {key} in another format");
            let (ca, cert) = make_certificates(d, key);
            let tls = TlsFiles { cert, key: d.join(key) };
            let server = start(MllpConfig { tls: Some(tls), ..config() }).await;
            for name in ["localhost", "127.0.0.1"] {
                let mut client = MllpClient::connect_tls(server.addr, name, &ca).await.expect("tls connect");
                let message = hl7(&format!("TLS-{key}"));
                assert_eq!(client.request(&message).await.expect("tls request"), ack(&message), "{key}");
                // Pipelined frames over TLS, too.
                client.send(b"one").await.expect("send");
                client.send(b"two").await.expect("send");
                assert_eq!(client.receive().await.expect("receive"), Some(ack(b"one")));
                assert_eq!(client.receive().await.expect("receive"), Some(ack(b"two")));
            }
            // A plain-TCP client gets no MLLP answer from a TLS listener.
            let mut plain = raw_connect(server.addr).await;
            plain.write_all(&encode_frame(b"plain")).await.expect("write");
            assert!(read_frames(&mut plain, 1).await.is_empty());
            // A client that does not trust the certificate fails the handshake.
            let other = tempfile::tempdir().expect("tempdir");
            openssl(other.path(), &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "k.key"]);
            let (other_ca, _) = make_certificates(other.path(), "k.key");
            let refused = MllpClient::connect_tls(server.addr, "localhost", &other_ca).await;
            assert!(matches!(refused, Err(MllpError::TlsHandshake { .. })), "untrusted certificate accepted");
        }
    })
    .await
}

#[tokio::test]
async fn tls_key_not_matching_the_certificate_is_refused_naming_both_files() {
    if !openssl_available() {
        return;
    }
    within(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        openssl(d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "a.key"]);
        openssl(d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "b.key"]);
        let (_, cert) = make_certificates(d, "a.key");
        let tls = TlsFiles { cert: cert.clone(), key: d.join("b.key") };
        match MllpServer::bind(MllpConfig { tls: Some(tls), ..config() }, Arc::new(Recorder::new())).await {
            Ok(_) => panic!("mismatched key accepted"),
            Err(error) => {
                let text = error.to_string();
                assert!(text.contains(&cert.display().to_string()) && text.contains("b.key"), "{text}");
            }
        }
    })
    .await
}
