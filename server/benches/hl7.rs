//! Measures the HL7 v2 bridge: ORU^R01 messages (5 OBX each: heart rate, SpO2, systolic and
//! diastolic blood pressure, body temperature) sent over MLLP by 16 connections to a real
//! Tessera, each ACK awaited (so each is sent after its commit), next to the same load against
//! an MLLP echo (an AA built without processing) in this binary, as the transport's ceiling.
//!
//! Run with `cargo bench -p tessera-server --bench hl7`. `TESSERA_BENCH_SECONDS` sets each
//! measured phase (default 10), `TESSERA_BENCH_DIR` where the data goes (default `/var/tmp`).
//! Every ACK is checked (AA, MSA-2 = the message's MSH-10); the process exits with status 1
//! when any message failed.

use std::net::SocketAddr;
use std::sync::Arc;

mod support;

use hl7_bridge::mllp::{MessageHandler, MllpClient, MllpConfig, MllpServer};
use hl7_bridge::{build_ack, sniff_header, AckCode};
use support::{cpu_model, filesystem_of, run_phase, runtimes, start_tessera_with, verdict, with_warmup_failures, BenchTiming};
use tessera_server::Settings;

const CONNECTIONS: usize = 16;
/// Patients the messages are spread over (each message names one).
const PATIENTS: u64 = 1000;
const TARGET_MESSAGES_PER_SECOND: f64 = 3000.0;
const TARGET_P99_MS: f64 = 50.0;

fn main() {
    let BenchTiming { phase, warmup, parent } = BenchTiming::from_env();
    let work_dir = tempfile::Builder::new().prefix("tessera-hl7-bench-").tempdir_in(&parent).expect("create the bench directory");
    let filesystem = filesystem_of(work_dir.path());
    let (server_runtime, client_runtime) = runtimes();

    let echo_addr = server_runtime.block_on(start_echo());
    let mut settings = Settings::for_tests(work_dir.path().join("data"));
    settings.mllp_addr = Some("127.0.0.1:0".into());
    let (_base_url, store, mllp) = server_runtime.block_on(start_tessera_with(settings));
    let tessera_addr = mllp.expect("the MLLP listener is on");

    let mut rows = Vec::new();
    for (name, addr) in [("MLLP echo (ceiling)", echo_addr), ("Tessera: parse, map, commit, ACK", tessera_addr)] {
        let pool = client_runtime.block_on(connect(addr));
        let warm = client_runtime.block_on(run_phase(sender(pool.clone(), 0), CONNECTIONS, warmup));
        let commits_before = store.commit_count();
        let measured = client_runtime.block_on(run_phase(sender(pool, 1 << 40), CONNECTIONS, phase));
        let commits = store.commit_count() - commits_before;
        rows.push((name, with_warmup_failures(warm, measured), commits));
    }

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!();
    println!("machine: {cores} cores ({}); data on {} ({})", cpu_model(), filesystem.kind, filesystem.source);
    println!("ORU^R01 with 5 OBX, {CONNECTIONS} connections, each waits for its ACK; {} s warm-up, {} s measured", warmup.as_secs(), phase.as_secs());
    println!();
    println!("| measurement | messages/s | p50 ACK | p99 ACK | messages | failed | store commits |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, r, commits) in &rows {
        let commits = if name.starts_with("Tessera") {
            format!("{commits} ({:.1} messages each)", r.requests as f64 / (*commits).max(1) as f64)
        } else {
            String::new()
        };
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {commits} |",
            r.per_second(),
            r.quantile_ms(0.5),
            r.quantile_ms(0.99),
            r.requests,
            r.failures
        );
    }
    let (_, echo, _) = &rows[0];
    let (_, tessera, _) = &rows[1];
    println!();
    println!(
        "Tessera ÷ echo: {:.3}; target ≥ {TARGET_MESSAGES_PER_SECOND:.0} messages/s: {}; p99 ≤ {TARGET_P99_MS:.0} ms: {}",
        tessera.per_second() / echo.per_second().max(1.0),
        verdict(tessera.per_second() >= TARGET_MESSAGES_PER_SECOND),
        verdict(tessera.quantile_ms(0.99) <= TARGET_P99_MS)
    );
    let failed: u64 = rows.iter().map(|(_, r, _)| r.failures).sum();
    for (name, r, _) in &rows {
        for sample in &r.failure_samples {
            eprintln!("{name}: {sample}");
        }
    }
    drop(client_runtime);
    drop(server_runtime);
    if failed > 0 {
        eprintln!("{failed} messages failed");
        std::process::exit(1);
    }
}

/// The open connections not in use; as many as client tasks, so a task always finds one.
type Pool = Arc<std::sync::Mutex<Vec<MllpClient>>>;

async fn connect(addr: SocketAddr) -> Pool {
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        clients.push(MllpClient::connect(addr).await.expect("connect to the MLLP listener"));
    }
    Arc::new(std::sync::Mutex::new(clients))
}

/// One request: the next message on a free connection of the pool, ACK checked.
fn sender(pool: Pool, offset: u64) -> impl Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> + Clone + Send + 'static {
    move |n: u64| {
        let pool = pool.clone();
        Box::pin(async move {
            let control_id = format!("B{:X}", n + offset);
            let message = oru(&control_id, n % PATIENTS, n);
            let mut client = pool.lock().expect("pool lock").pop().ok_or("no free connection")?;
            let result = client.request(message.as_bytes()).await;
            pool.lock().expect("pool lock").push(client);
            let ack = result.map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&ack);
            let msa = text.split('\r').find(|s| s.starts_with("MSA|")).ok_or_else(|| format!("no MSA in {text:?}"))?;
            let fields: Vec<&str> = msa.split('|').collect();
            if fields.get(1) != Some(&"AA") || fields.get(2) != Some(&control_id.as_str()) {
                return Err(format!("unexpected ACK for {control_id}: {text:?}"));
            }
            Ok(())
        })
    }
}

/// An ORU^R01 from a bedside monitor: 5 vital signs of one patient.
fn oru(control_id: &str, patient: u64, n: u64) -> String {
    let hr = 60 + n % 40;
    let spo2 = 90 + n % 10;
    let sys = 100 + n % 40;
    let dia = 60 + n % 30;
    let temp = 36.0 + (n % 20) as f64 / 10.0;
    let minute = n % 60;
    let hour = (n / 60) % 24;
    [
        format!("MSH|^~\\&|MONITOR|ICU|TESSERA|HOSP|20250301{hour:02}{minute:02}00||ORU^R01^ORU_R01|{control_id}|P|2.5.1"),
        format!("PID|1||MRN{patient:06}^^^HOSP^MR||Bench^Patient{patient}||19700101|F"),
        format!("OBR|1||ORD{control_id}^MONITOR|85353-1^Vital signs panel^LN|||20250301{hour:02}{minute:02}00"),
        format!("OBX|1|NM|8867-4^Heart rate^LN||{hr}|/min^^UCUM|||||F|||20250301{hour:02}{minute:02}00"),
        format!("OBX|2|NM|59408-5^Oxygen saturation^LN||{spo2}|%^^UCUM|||||F|||20250301{hour:02}{minute:02}00"),
        format!("OBX|3|NM|8480-6^Systolic blood pressure^LN||{sys}|mm[Hg]^^UCUM|||||F|||20250301{hour:02}{minute:02}00"),
        format!("OBX|4|NM|8462-4^Diastolic blood pressure^LN||{dia}|mm[Hg]^^UCUM|||||F|||20250301{hour:02}{minute:02}00"),
        format!("OBX|5|NM|8310-5^Body temperature^LN||{temp:.1}|Cel^^UCUM|||||F|||20250301{hour:02}{minute:02}00"),
    ]
    .join("\r")
}

/// The ceiling: an MLLP listener whose handler only builds an AA from the header.
struct Echo;

#[async_trait::async_trait]
impl MessageHandler for Echo {
    async fn handle(&self, message: Vec<u8>, _peer: SocketAddr) -> Option<Vec<u8>> {
        Some(build_ack(sniff_header(&message).as_ref(), AckCode::AA, &[], "20250101000000", "ECHO"))
    }

    async fn reject(&self, _head: Vec<u8>, _reason: hl7_bridge::mllp::FrameRejection, _peer: SocketAddr) -> Option<Vec<u8>> {
        None
    }
}

async fn start_echo() -> SocketAddr {
    let config = MllpConfig { addr: "127.0.0.1:0".into(), ..MllpConfig::default() };
    let server = MllpServer::bind(config, Arc::new(Echo)).await.expect("bind the echo listener");
    let addr = server.local_addr();
    tokio::spawn(server.run());
    addr
}
