//! Measures the projections against real PostgreSQL and InfluxDB servers started here:
//! 1. lag — the foundation's create load (vital-sign Observations POSTed by 32 clients) runs
//!    at full rate while both projections follow the feed; the apply lag (a change's commit to
//!    its projection's commit) is read from `/admin/projections`, and the create rate is
//!    compared with the same load on a Tessera without projections in the same run;
//! 2. rebuild — a store bulk-loaded with vital-sign Observations is projected from scratch
//!    (`Follower::catch_up`, as `tessera projections rebuild` does): measurements/s into
//!    PostgreSQL and points/s into InfluxDB.
//!
//! Run with `cargo bench -p tessera-server --bench projections`. `TESSERA_BENCH_SECONDS` sets
//! the measured phase (default 10), `TESSERA_BENCH_DIR` where data goes (default `/var/tmp`),
//! `TESSERA_BENCH_REBUILD_OBSERVATIONS` the rebuild's size (default 200000).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fhir_store::{ResourceStore, SqliteStore, SqliteStoreOptions, WriteOp};
use projections::postgres::{PostgresConfig, PostgresProjection};
use projections::testing::{InfluxServer, PostgresServer};
use projections::tsdb::{TsdbConfig, TsdbProjection};
use projections::{AlertRules, Follower, FollowerOptions, Projection};
use serde_json::{json, Value};
use support::{cpu_model, filesystem_of, run_phase, runtimes, start_tessera_with, verdict, with_warmup_failures, BenchTiming};
use tessera_server::Settings;

const CLIENTS: usize = 32;
const PATIENTS: u64 = 1000;
const TARGET_LAG_P99_MS: u64 = 1000;
const TARGET_POSTGRES_PER_SECOND: f64 = 20_000.0;
const TARGET_INFLUX_PER_SECOND: f64 = 100_000.0;

fn main() {
    let BenchTiming { phase, warmup, parent } = BenchTiming::from_env();
    let rebuild_size: u64 = std::env::var("TESSERA_BENCH_REBUILD_OBSERVATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let work_dir = tempfile::Builder::new().prefix("tessera-projections-bench-").tempdir_in(&parent).expect("create the bench directory");
    let filesystem = filesystem_of(work_dir.path());
    let (server_runtime, client_runtime) = runtimes();
    let postgres = PostgresServer::start().expect("PostgreSQL is installed (scripts/install-test-deps.sh)");
    let influx = InfluxServer::start().expect("InfluxDB is installed (scripts/install-test-deps.sh)");

    // 1. Lag under the create load, next to the same load without projections.
    let mut create_rows = Vec::new();
    let mut lag_rows = Vec::new();
    for with_projections in [false, true] {
        let mut settings = Settings::for_tests(work_dir.path().join(if with_projections { "lag" } else { "plain" }));
        if with_projections {
            settings.postgres_url = Some(server_runtime.block_on(postgres.create_database("bench_lag")));
            settings.tsdb_url = Some(influx.url());
            settings.tsdb_database = "bench_lag".into();
        }
        let (base_url, _store, _) = server_runtime.block_on(start_tessera_with(settings));
        let root = base_url.trim_end_matches("/fhir").to_string();
        let client = reqwest::Client::new();
        let warm = client_runtime.block_on(run_phase(creator(client.clone(), base_url.clone(), 0), CLIENTS, warmup));
        let measured = client_runtime.block_on(run_phase(creator(client.clone(), base_url.clone(), 1 << 40), CLIENTS, phase));
        let result = with_warmup_failures(warm, measured);
        if with_projections {
            let status = client_runtime.block_on(wait_caught_up(&client, &root));
            lag_rows = status["projections"].as_array().cloned().unwrap_or_default();
        }
        create_rows.push((with_projections, result));
    }

    // 2. Rebuild from a bulk-loaded store.
    let store = server_runtime.block_on(bulk_load(&work_dir.path().join("rebuild"), rebuild_size));
    let postgres_url = server_runtime.block_on(postgres.create_database("bench_rebuild"));
    let config = PostgresConfig { url: postgres_url.clone(), alert_rules: AlertRules::default(), months_ahead: 3 };
    // The lazy pool belongs to the runtime it is made in.
    let postgres_projection: Arc<dyn Projection> = Arc::new(server_runtime.block_on(async { PostgresProjection::new(config) }).expect("postgres projection"));
    let tsdb_config = TsdbConfig { url: influx.url(), database: "bench_rebuild".into(), org: None, bucket: None, token: None };
    let tsdb_projection: Arc<dyn Projection> = Arc::new(TsdbProjection::new(tsdb_config, store.clone()).expect("tsdb projection"));
    let mut rebuild_rows = Vec::new();
    for projection in [postgres_projection, tsdb_projection] {
        let name = projection.name();
        let elapsed = server_runtime.block_on(async {
            projection.reset().await.expect("reset");
            let target = store.last_seq().await.expect("head");
            let follower = Follower::new(projection, store.clone(), FollowerOptions { batch_size: 5000, ..FollowerOptions::default() });
            let started = Instant::now();
            follower.catch_up(target, |_| {}).await.expect("rebuild");
            started.elapsed()
        });
        let values = match name {
            "postgres" => server_runtime.block_on(postgres_rows(&postgres_url)),
            _ => server_runtime.block_on(influx_points(&influx, "bench_rebuild")),
        };
        rebuild_rows.push((name, values, elapsed));
    }

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!();
    println!("machine: {cores} cores ({}); data on {} ({}); PostgreSQL and InfluxDB on the same cores", cpu_model(), filesystem.kind, filesystem.source);
    println!("create load: heart-rate Observations, {CLIENTS} clients, {} s warm-up, {} s measured", warmup.as_secs(), phase.as_secs());
    println!();
    println!("| create load | creates/s | p50 | p99 | failed |");
    println!("|---|---:|---:|---:|---:|");
    for (with_projections, r) in &create_rows {
        let name = if *with_projections { "Tessera + PostgreSQL + InfluxDB projections" } else { "Tessera, no projections" };
        println!("| {name} | {:.0} | {:.1} ms | {:.1} ms | {} |", r.per_second(), r.quantile_ms(0.5), r.quantile_ms(0.99), r.failures);
    }
    let ratio = create_rows[1].1.per_second() / create_rows[0].1.per_second().max(1.0);
    println!();
    println!("creates/s with projections ÷ without: {ratio:.3}");
    println!();
    println!("| projection | changes applied | apply lag p50 | p99 | max | target p99 ≤ {TARGET_LAG_P99_MS} ms |");
    println!("|---|---:|---:|---:|---:|---|");
    for row in &lag_rows {
        let p99 = row["apply_lag_ms_p99"].as_u64().unwrap_or(u64::MAX);
        println!(
            "| {} | {} | {} ms | {p99} ms | {} ms | {} |",
            row["name"].as_str().unwrap_or("?"),
            row["applied_changes"],
            row["apply_lag_ms_p50"],
            row["apply_lag_ms_max"],
            verdict(p99 <= TARGET_LAG_P99_MS)
        );
    }
    println!();
    println!("rebuild of {rebuild_size} vital-sign Observations (one measurement each), batches of 5000:");
    println!();
    println!("| projection | values written | seconds | values/s | target |");
    println!("|---|---:|---:|---:|---|");
    for (name, values, elapsed) in &rebuild_rows {
        let rate = *values as f64 / elapsed.as_secs_f64();
        let target = if *name == "postgres" { TARGET_POSTGRES_PER_SECOND } else { TARGET_INFLUX_PER_SECOND };
        println!("| {name} | {values} | {:.1} | {rate:.0} | ≥ {target:.0}/s: {} |", elapsed.as_secs_f64(), verdict(rate >= target));
    }
    let failed: u64 = create_rows.iter().map(|(_, r)| r.failures).sum();
    for (_, r) in &create_rows {
        for sample in &r.failure_samples {
            eprintln!("{sample}");
        }
    }
    drop(client_runtime);
    drop(server_runtime);
    if failed > 0 {
        eprintln!("{failed} creates failed");
        std::process::exit(1);
    }
}

/// A heart-rate Observation: patient `n % PATIENTS`, a distinct time per `n` (the phases'
/// offsets, multiples of 2^40, become whole blocks of 2^24 seconds).
fn observation(n: u64) -> Value {
    let seconds = 1_600_000_000 + ((n & 0xFF_FFFF) + (n >> 40) * 0x100_0000) as i64;
    let time = time::OffsetDateTime::from_unix_timestamp(seconds).expect("a valid time");
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/bench-{}", n % PATIENTS)},
        "effectiveDateTime": fhir_model::format_instant(time),
        "valueQuantity": {"value": 50 + n % 80, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

type Request = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

fn creator(client: reqwest::Client, base_url: String, offset: u64) -> impl Fn(u64) -> Request + Clone + Send + 'static {
    move |n: u64| {
        let (client, url) = (client.clone(), format!("{base_url}/Observation"));
        Box::pin(async move {
            let response = client
                .post(url)
                .header("content-type", "application/fhir+json")
                .header("prefer", "return=minimal")
                .body(observation(n + offset).to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            match response.status().as_u16() {
                201 => Ok(()),
                status => Err(format!("{status}: {}", response.text().await.unwrap_or_default())),
            }
        })
    }
}

async fn wait_caught_up(client: &reqwest::Client, root: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status: Value = client.get(format!("{root}/admin/projections")).send().await.expect("status").json().await.expect("json");
        let head = status["head"].as_u64().unwrap_or(0);
        let projections = status["projections"].as_array().cloned().unwrap_or_default();
        if !projections.is_empty() && projections.iter().all(|p| p["checkpoint"].as_u64() == Some(head)) {
            return status;
        }
        assert!(Instant::now() < deadline, "the projections did not catch up: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A store holding `count` heart-rate Observations, written directly in batches of 1000.
async fn bulk_load(dir: &std::path::Path, count: u64) -> Arc<dyn ResourceStore> {
    let store: Arc<dyn ResourceStore> = Arc::new(SqliteStore::open(SqliteStoreOptions::new(dir)).await.expect("open the store"));
    let mut n = 0;
    while n < count {
        let ops: Vec<WriteOp> = (n..(n + 1000).min(count))
            .map(|i| WriteOp::Create { resource_type: "Observation".into(), id: format!("r{i}"), body: observation(i), if_none_exist: None })
            .collect();
        n += ops.len() as u64;
        store.write(ops).await.expect("bulk write");
    }
    store
}

async fn postgres_rows(url: &str) -> u64 {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM measurements").fetch_one(&mut connection).await.expect("count") as u64
}

async fn influx_points(influx: &InfluxServer, database: &str) -> u64 {
    let body = influx.query(database, "SELECT count(\"heart_rate\") FROM \"vital_signs\"").await;
    body.pointer("/results/0/series/0/values/0/1").and_then(Value::as_u64).unwrap_or(0)
}
