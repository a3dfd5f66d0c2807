//! Measures durable write and read throughput of a real Tessera on this machine, next to the
//! disk's own fsync rate and a bare actix-web handler, and prints one markdown table.
//!
//! Run with `cargo bench -p tessera-server --bench throughput`. `TESSERA_BENCH_SECONDS` sets
//! the length of each measured phase (default 10), `TESSERA_BENCH_DIR` the directory the data
//! and the fsync probe go in (default `/var/tmp`; it must be on a real disk, not tmpfs).
//! Everything listens on 127.0.0.1 only. The process exits with status 1 when any request
//! failed, so a broken run cannot pass for a slow one.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

use actix_web::{web, App, HttpResponse, HttpServer};
use support::{
    BenchTiming, cpu_model, filesystem_of, run_phase, runtimes, start_tessera, warm_then_measure, with_warmup_failures, Filesystem, PhaseResult,
};

/// Concurrent clients of the loaded phases.
const CLIENTS: usize = 32;
/// How many created ids the read phase spreads its requests over.
const READ_IDS: usize = 1000;

const TARGET_CREATES_PER_FSYNC: f64 = 10.0;
const TARGET_CREATES_PER_SECOND: f64 = 4000.0;
const TARGET_READ_OVER_BARE: f64 = 0.40;

fn main() {
    let BenchTiming { phase, warmup, parent } = BenchTiming::from_env();
    let work_dir =
        tempfile::Builder::new().prefix("tessera-bench-").tempdir_in(&parent).expect("create the bench directory");
    let filesystem = filesystem_of(work_dir.path());
    if filesystem.volatile() {
        eprintln!("warning: {} is on {}; fsyncs there do not reach a disk", work_dir.path().display(), filesystem.kind);
    }

    let fsync = measure_fsync(&work_dir.path().join("fsync-probe"), Duration::from_millis(1500));

    let (server_runtime, client_runtime) = runtimes();

    let data_dir = work_dir.path().join("data");
    let (base_url, store) = server_runtime.block_on(start_tessera(&data_dir));
    let client = reqwest::Client::builder().no_proxy().build().expect("http client");
    let mut phases = Vec::new();
    let created_ids = Arc::new(Mutex::new(Vec::with_capacity(READ_IDS)));
    let create = Workload::Create { url: format!("{base_url}/Observation"), ids: created_ids.clone() };

    for clients in [1, CLIENTS] {
        let name = format!("create Observation, {clients} client{}", if clients == 1 { "" } else { "s" });
        let warm = client_runtime.block_on(run_phase(requester(&client, &create), clients, warmup));
        let commits_before = store.commit_count();
        let measured = client_runtime.block_on(run_phase(requester(&client, &create), clients, phase));
        let commits = store.commit_count() - commits_before;
        let result = with_warmup_failures(warm, measured);
        phases.push(PhaseReport { name, result, commits: Some(commits) });
    }

    let read_urls: Vec<String> =
        created_ids.lock().expect("id list").iter().map(|id| format!("{base_url}/Observation/{id}")).collect();
    // Without a created Observation there is nothing to read, nor a body for the bare server.
    let mut body_bytes = 0;
    if let Some(first) = read_urls.first() {
        let sample = client_runtime.block_on(fetch(&client, first));
        body_bytes = sample.len();
        let read = Workload::Get { urls: Arc::new(read_urls) };
        let result = client_runtime.block_on(warm_then_measure(requester(&client, &read), CLIENTS, warmup, phase));
        phases.push(PhaseReport { name: format!("read Observation by id, {CLIENTS} clients"), result, commits: None });

        let bare_url = server_runtime.block_on(start_bare(sample));
        let bare = Workload::Get { urls: Arc::new(vec![bare_url]) };
        let result = client_runtime.block_on(warm_then_measure(requester(&client, &bare), CLIENTS, warmup, phase));
        phases.push(PhaseReport { name: format!("bare actix-web handler, {CLIENTS} clients"), result, commits: None });
    }

    let failed: u64 = phases.iter().map(|p| p.result.failures).sum();
    print_report(
        &Context { phase, warmup, work_dir: work_dir.path(), filesystem: &filesystem, body_bytes },
        &fsync,
        &phases,
    );

    drop(client_runtime);
    drop(server_runtime);
    drop(work_dir);
    if failed > 0 {
        eprintln!("{failed} requests failed; see the failures above");
        std::process::exit(1);
    }
}

// ---- The disk ----

/// Syncs per second of two 4 KiB write patterns: rewriting one block (`sync_data`, what a
/// reused WAL sees) and appending (`sync_all`, which must also commit the file's new size).
struct FsyncRates {
    overwrite: f64,
    append: f64,
}

impl FsyncRates {
    /// The faster pattern: the fewest syncs the disk could have been limited to.
    fn best(&self) -> f64 {
        self.overwrite.max(self.append)
    }
}

fn measure_fsync(path: &Path, each: Duration) -> FsyncRates {
    let block = [0x5a_u8; 4096];
    let mut file = std::fs::File::create(path).expect("create the fsync probe");
    let started = Instant::now();
    let mut overwrites = 0u64;
    while started.elapsed() < each {
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.write_all(&block).expect("write 4 KiB");
        file.sync_data().expect("fdatasync");
        overwrites += 1;
    }
    let overwrite = overwrites as f64 / started.elapsed().as_secs_f64();

    file.seek(SeekFrom::End(0)).expect("seek");
    let started = Instant::now();
    let mut appends = 0u64;
    while started.elapsed() < each {
        file.write_all(&block).expect("write 4 KiB");
        file.sync_all().expect("fsync");
        appends += 1;
    }
    let append = appends as f64 / started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(path);
    FsyncRates { overwrite, append }
}

// ---- The servers ----

/// Starts a bare actix-web server that answers `GET /fhir/{type}/{id}` with `body`, and
/// returns a URL on it. Same worker count as Tessera (actix's default, one per core).
async fn start_bare(body: web::Bytes) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the bare server");
    let port = listener.local_addr().expect("bare server address").port();
    let body = web::Data::new(body);
    let server = HttpServer::new(move || {
        App::new().app_data(body.clone()).route("/fhir/{type}/{id}", web::get().to(fixed_body))
    })
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}/fhir/Observation/bare")
}

async fn fixed_body(body: web::Data<web::Bytes>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/fhir+json; charset=utf-8").body(body.get_ref().clone())
}

// ---- The load ----

/// What every client of a phase does in a loop.
#[derive(Clone)]
enum Workload {
    /// POST a new heart-rate Observation; keeps the first `READ_IDS` ids created.
    Create { url: String, ids: Arc<Mutex<Vec<String>>> },
    /// GET one of `urls`, round robin.
    Get { urls: Arc<Vec<String>> },
}

/// A valid heart-rate Observation whose value and effective time vary with `n`.
fn observation(n: u64) -> String {
    let beats = 40 + n % 140;
    let effective = time::OffsetDateTime::now_utc() - time::Duration::seconds(60 + (n % 86_400) as i64);
    let effective = effective.format(&time::format_description::well_known::Rfc3339).expect("format a time");
    format!(
        r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}}],"text":"Heart rate"}},"subject":{{"reference":"Patient/x"}},"effectiveDateTime":"{effective}","valueQuantity":{{"value":{beats},"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}}}}"#
    )
}

/// The request loop body of a phase running `workload`.
fn requester(
    client: &reqwest::Client,
    workload: &Workload,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> + Clone + Send + 'static {
    let (client, workload) = (client.clone(), workload.clone());
    move |n| {
        let (client, workload) = (client.clone(), workload.clone());
        Box::pin(async move { one_request(&client, &workload, n).await })
    }
}

/// Sends one request and reads the whole response; `Err` says what was wrong with it.
async fn one_request(client: &reqwest::Client, workload: &Workload, n: u64) -> Result<(), String> {
    match workload {
        Workload::Create { url, ids } => {
            let response = client
                .post(url)
                .header("content-type", "application/fhir+json")
                .body(observation(n))
                .send()
                .await
                .map_err(|e| format!("POST {url}: {e}"))?;
            let status = response.status();
            let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = response.bytes().await.map_err(|e| format!("POST {url}: reading the body: {e}"))?;
            if status != reqwest::StatusCode::CREATED {
                return Err(format!("POST {url}: {status} {}", String::from_utf8_lossy(&body)));
            }
            // Location is {base}/Observation/{id}/_history/{vid}.
            let id = location.as_deref().and_then(|l| l.split('/').rev().nth(2)).map(str::to_string);
            let Some(id) = id else { return Err(format!("POST {url}: 201 without a usable Location: {location:?}")) };
            let mut ids = ids.lock().expect("id list");
            if ids.len() < READ_IDS {
                ids.push(id);
            }
            Ok(())
        }
        Workload::Get { urls } => {
            let url = &urls[(n % urls.len() as u64) as usize];
            let response = client.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| format!("GET {url}: reading the body: {e}"))?;
            if status != reqwest::StatusCode::OK {
                return Err(format!("GET {url}: {status} {}", String::from_utf8_lossy(&body)));
            }
            Ok(())
        }
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> web::Bytes {
    let response = client.get(url).send().await.expect("GET a created Observation");
    assert_eq!(response.status(), reqwest::StatusCode::OK, "GET {url}");
    let body = response.bytes().await.expect("read the Observation");
    web::Bytes::copy_from_slice(&body)
}

// ---- The report ----

struct PhaseReport {
    name: String,
    result: PhaseResult,
    /// Store commits (each one fsync of the WAL) during the measured phase, for writes.
    commits: Option<u64>,
}

struct Context<'a> {
    phase: Duration,
    warmup: Duration,
    work_dir: &'a Path,
    filesystem: &'a Filesystem,
    body_bytes: usize,
}

fn print_report(ctx: &Context<'_>, fsync: &FsyncRates, phases: &[PhaseReport]) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!();
    println!(
        "machine: {cores} cores ({}); data dir {} on {} ({}, mounted at {})",
        cpu_model(),
        ctx.work_dir.display(),
        ctx.filesystem.kind,
        ctx.filesystem.source,
        ctx.filesystem.mount_point
    );
    println!(
        "each phase: {} s warm-up, then {} s measured; Observation as stored: {} bytes; clients and servers share this machine",
        ctx.warmup.as_secs(),
        ctx.phase.as_secs(),
        ctx.body_bytes
    );
    println!();
    println!("| measurement | rate | p50 | p99 | requests | failed | store commits |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!("| disk: 4 KiB overwrite + fdatasync | {:.0} /s | | | | | |", fsync.overwrite);
    println!("| disk: 4 KiB append + fsync | {:.0} /s | | | | | |", fsync.append);
    for p in phases {
        let r = &p.result;
        let commits = match p.commits {
            Some(c) => format!("{c} ({:.1} writes each)", r.requests as f64 / c.max(1) as f64),
            None => String::new(),
        };
        println!(
            "| {} | {:.0} req/s | {:.2} ms | {:.2} ms | {} | {} | {} |",
            p.name,
            r.per_second(),
            r.quantile_ms(0.50),
            r.quantile_ms(0.99),
            r.requests,
            r.failures,
            commits
        );
    }

    let rate = |prefix: &str| phases.iter().find(|p| p.name.starts_with(prefix)).map_or(0.0, |p| p.result.per_second());
    let creates = rate(&format!("create Observation, {CLIENTS} clients"));
    let read = rate("read Observation by id");
    let bare = rate("bare actix-web");
    let per_fsync = creates / fsync.best();
    let read_over_bare = if bare > 0.0 { read / bare } else { 0.0 };
    let verdict = |value: f64, target: f64| {
        if value >= target {
            "met".to_string()
        } else {
            format!("missed ({:.1} % of target)", 100.0 * value / target)
        }
    };
    println!();
    println!("| target | measured | goal | verdict |");
    println!("|---|---:|---:|---|");
    println!(
        "| creates/s ({CLIENTS} clients) ÷ fsync/s (faster disk pattern) | {per_fsync:.2} | ≥ {TARGET_CREATES_PER_FSYNC} | {} |",
        verdict(per_fsync, TARGET_CREATES_PER_FSYNC)
    );
    println!(
        "| creates/s ({CLIENTS} clients) | {creates:.0} | ≥ {TARGET_CREATES_PER_SECOND} | {} |",
        verdict(creates, TARGET_CREATES_PER_SECOND)
    );
    println!(
        "| read ÷ bare ({CLIENTS} clients) | {read_over_bare:.2} | ≥ {TARGET_READ_OVER_BARE} | {} |",
        verdict(read_over_bare, TARGET_READ_OVER_BARE)
    );

    for p in phases.iter().filter(|p| p.result.failures > 0) {
        println!();
        println!("FAILURES in {}: {} requests failed; first ones:", p.name, p.result.failures);
        for sample in &p.result.failure_samples {
            println!("- {sample}");
        }
    }
}
