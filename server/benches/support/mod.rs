//! What the benchmarks share: starting Tessera, timed phases of concurrent requests with
//! latency histograms, and a description of the machine and disk the numbers came from.

#![allow(dead_code)] // Each bench binary uses its own part of this module.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fhir_store::{ResourceStore, SqliteStore, SqliteStoreOptions};
use hdrhistogram::Histogram;
use tessera_server::{Application, Settings};

/// At most this many failure messages are kept per phase for the report.
pub const FAILURE_SAMPLES: usize = 5;

/// The server's runtime and the clients' runtime. The server gets its own, as in `tessera`;
/// the clients run on another, so the store's writer task does not queue behind client
/// tasks. Both share the machine's cores with actix's worker threads.
pub fn runtimes() -> (tokio::runtime::Runtime, tokio::runtime::Runtime) {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .expect("server runtime");
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("client runtime");
    (server, client)
}

/// The phase lengths and data directory every bench reads from the environment:
/// `TESSERA_BENCH_SECONDS` (measured phase, default 10; warm-up 1–2 s) and `TESSERA_BENCH_DIR`
/// (default `/var/tmp`, which must be on a real disk).
pub struct BenchTiming {
    pub phase: Duration,
    pub warmup: Duration,
    pub parent: std::path::PathBuf,
}

impl BenchTiming {
    pub fn from_env() -> BenchTiming {
        let seconds: u64 = match std::env::var("TESSERA_BENCH_SECONDS") {
            Ok(v) => v.parse().expect("TESSERA_BENCH_SECONDS is a whole number of seconds"),
            Err(_) => 10,
        };
        let parent = std::env::var_os("TESSERA_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| "/var/tmp".into());
        BenchTiming { phase: Duration::from_secs(seconds.max(1)), warmup: Duration::from_secs(seconds.clamp(1, 2)), parent }
    }
}

/// Starts Tessera on its embedded store in `data_dir`. This is `Application::build` spelled
/// out, so the bench can also read the store's commit counter.
pub async fn start_tessera(data_dir: &Path) -> (String, Arc<SqliteStore>) {
    let (base_url, store, _) = start_tessera_with(Settings::for_tests(data_dir)).await;
    (base_url, store)
}

/// As `start_tessera`, with the caller's settings (e.g. the MLLP listener on); also returns
/// the MLLP address when the listener is on.
pub async fn start_tessera_with(settings: Settings) -> (String, Arc<SqliteStore>, Option<std::net::SocketAddr>) {
    let store = Arc::new(SqliteStore::open(SqliteStoreOptions::new(&settings.data_dir)).await.expect("open the store"));
    let shared: Arc<dyn ResourceStore> = store.clone();
    let app = Application::build_with_store(settings, shared).await.expect("tessera starts");
    let base_url = app.base_url();
    let mllp = app.mllp_addr();
    tokio::spawn(app.run_until_stopped());
    (base_url, store, mllp)
}

/// The mounted filesystem a path lives on, from `/proc/self/mountinfo`.
pub struct Filesystem {
    pub kind: String,
    pub source: String,
    pub mount_point: String,
}

impl Filesystem {
    pub fn volatile(&self) -> bool {
        matches!(self.kind.as_str(), "tmpfs" | "ramfs")
    }
}

pub fn filesystem_of(path: &Path) -> Filesystem {
    let unknown = || Filesystem { kind: "unknown".into(), source: "?".into(), mount_point: "?".into() };
    let Ok(path) = path.canonicalize() else { return unknown() };
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else { return unknown() };
    // Each line: id parent major:minor root mount-point options [optional...] - type source ...
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mount_point = before.split(' ').nth(4)?.replace("\\040", " ");
            let mut rest = after.split(' ');
            let kind = rest.next()?.to_string();
            let source = rest.next()?.to_string();
            Some(Filesystem { kind, source, mount_point })
        })
        .filter(|fs| path.starts_with(&fs.mount_point))
        // The longest mount point wins; among equals the last mounted, which shadows the others.
        .fold(None, |best: Option<Filesystem>, fs| match best {
            Some(b) if b.mount_point.len() > fs.mount_point.len() => Some(b),
            _ => Some(fs),
        })
        .unwrap_or_else(unknown)
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown cpu".into())
}

/// What one timed phase did.
pub struct PhaseResult {
    pub requests: u64,
    pub failures: u64,
    pub failure_samples: Vec<String>,
    /// Latency of the successful requests, in microseconds.
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
}

impl PhaseResult {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Runs `clients` concurrent loops of `request(n)` until `duration` has passed; `n` counts up
/// from a different start in each client so that they spread over ids and values.
pub async fn run_phase<F, Fut>(request: F, clients: usize, duration: Duration) -> PhaseResult
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|index| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut result = PhaseResult {
                    requests: 0,
                    failures: 0,
                    failure_samples: Vec::new(),
                    latency: new_histogram(),
                    elapsed: Duration::ZERO,
                };
                // Spread clients over the id list and the generated values.
                let mut n = index as u64 * 7919;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match request(n).await {
                        Ok(()) => {
                            result.requests += 1;
                            result.latency.saturating_record(sent.elapsed().as_micros() as u64);
                        }
                        Err(message) => {
                            result.failures += 1;
                            if result.failure_samples.len() < FAILURE_SAMPLES {
                                result.failure_samples.push(message);
                            }
                        }
                    }
                    n += 1;
                }
                result
            })
        })
        .collect();
    let mut total = PhaseResult {
        requests: 0,
        failures: 0,
        failure_samples: Vec::new(),
        latency: new_histogram(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let part = task.await.expect("a client task panicked");
        total.requests += part.requests;
        total.failures += part.failures;
        let room = FAILURE_SAMPLES.saturating_sub(total.failure_samples.len());
        total.failure_samples.extend(part.failure_samples.into_iter().take(room));
        total.latency.add(&part.latency).expect("histograms with equal bounds");
    }
    total.elapsed = started.elapsed();
    total
}

/// A warm-up (connections opened, caches filled) whose failures still count, then the phase.
pub async fn warm_then_measure<F, Fut>(request: F, clients: usize, warmup: Duration, duration: Duration) -> PhaseResult
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let warm = run_phase(request.clone(), clients, warmup).await;
    let measured = run_phase(request, clients, duration).await;
    with_warmup_failures(warm, measured)
}

/// The measured phase, with the failures of its warm-up added so that none goes unreported.
pub fn with_warmup_failures(warm: PhaseResult, mut measured: PhaseResult) -> PhaseResult {
    measured.failures += warm.failures;
    let room = FAILURE_SAMPLES.saturating_sub(warm.failure_samples.len());
    let mut samples = warm.failure_samples;
    samples.extend(measured.failure_samples.into_iter().take(room));
    measured.failure_samples = samples;
    measured
}


/// "met" or "missed", for a target line of a report.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}
