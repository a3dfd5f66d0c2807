//! A scale check of the embedded backend (ignored by default): bulk load through large atomic
//! writes, then the latency of the search shapes the server's benchmark targets.
//!
//! `TESSERA_SCALE_OBSERVATIONS=1000000 cargo test --release -p fhir-store --test scale -- --ignored --nocapture`
//! (default 100,000 Observations; one Patient per 100 Observations). It prints the numbers and
//! asserts only that each search returns what the data implies, since timings depend on the box.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fhir_model::SearchQuery;
use fhir_store::{ResourceStore, SqliteStore, SqliteStoreOptions, WriteOp};
use serde_json::json;

const CODES: [&str; 10] =
    ["8867-4", "8480-6", "8462-4", "29463-7", "8302-2", "9279-1", "8310-5", "2708-6", "39156-5", "85354-9"];
const FAMILIES: [&str; 8] = ["Smith", "Jones", "Garcia", "Miller", "Davis", "Lopez", "Wilson", "Moore"];

fn parsed(resource_type: &str, query: &str) -> SearchQuery {
    let params: Vec<(String, String)> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').expect("name=value");
            (name.to_string(), value.to_string())
        })
        .collect();
    fhir_model::parse_search(Some(resource_type), &params, true).expect("parse")
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// Runs `queries` from 8 concurrent clients; returns (p50, p99).
async fn measure(store: &Arc<SqliteStore>, queries: Vec<SearchQuery>) -> (Duration, Duration) {
    let queries = Arc::new(queries);
    let mut tasks = Vec::new();
    for client in 0..8 {
        let (store, queries) = (store.clone(), queries.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            for query in queries.iter().skip(client).step_by(8) {
                let start = Instant::now();
                store.search(query).await.expect("search");
                samples.push(start.elapsed());
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("client"));
    }
    let mut sorted = samples.clone();
    sorted.sort();
    (sorted[sorted.len() / 2], p99(samples))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a scale check; run explicitly in release"]
async fn search_at_scale() {
    let observations: usize =
        std::env::var("TESSERA_SCALE_OBSERVATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let patients = (observations / 100).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    // `TESSERA_SCALE_DIR` keeps the database for inspection (`sqlite3 … 'SELECT * FROM dbstat'`).
    let path = std::env::var("TESSERA_SCALE_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| dir.path().to_path_buf());
    let store = Arc::new(SqliteStore::open(SqliteStoreOptions::new(&path)).await.expect("open"));

    let start = Instant::now();
    let mut batch = Vec::new();
    for i in 0..patients {
        let family = format!("{}{}", FAMILIES[i % FAMILIES.len()], i);
        let body = json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Pat"]}], "gender": "female"});
        batch.push(WriteOp::Create { resource_type: "Patient".into(), id: format!("p{i}"), body, if_none_exist: None });
        if batch.len() == 1000 {
            store.write(std::mem::take(&mut batch)).await.expect("load patients");
        }
    }
    for i in 0..observations {
        let day = 1 + (i / patients) % 28;
        let month = 1 + (i / 7) % 12;
        let body = json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": CODES[i % CODES.len()]}]},
            "subject": {"reference": format!("Patient/p{}", i % patients)},
            "effectiveDateTime": format!("2021-{month:02}-{day:02}T10:00:00Z"),
            "valueQuantity": {"value": (i % 200) as f64, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
        });
        batch.push(WriteOp::Create { resource_type: "Observation".into(), id: format!("o{i}"), body, if_none_exist: None });
        if batch.len() == 1000 {
            store.write(std::mem::take(&mut batch)).await.expect("load observations");
        }
    }
    if !batch.is_empty() {
        store.write(batch).await.expect("load");
    }
    let loaded = patients + observations;
    let elapsed = start.elapsed();
    let size = std::fs::metadata(path.join("tessera.db")).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(path.join("tessera.db-wal")).map(|m| m.len()).unwrap_or(0);
    println!(
        "loaded {loaded} resources in {elapsed:?}: {:.0}/s; database {} MB ({} bytes/resource)",
        loaded as f64 / elapsed.as_secs_f64(),
        size / 1_000_000,
        size / loaded as u64
    );

    let patient_code_date: Vec<SearchQuery> = (0..400)
        .map(|i| {
            // Patient p has only the code `CODES[p % 10]` (observation i goes to patient i % patients).
            let patient = (i * 37) % patients;
            parsed("Observation", &format!("patient=p{patient}&code={}&date=ge2021-03-01&_count=50", CODES[patient % 10]))
        })
        .collect();
    let (p50, p99) = measure(&store, patient_code_date.clone()).await;
    println!("Observation?patient&code&date=ge&_count=50: p50 {p50:?}, p99 {p99:?}");
    let page = store.search(&patient_code_date[1]).await.expect("search");
    assert!(page.total.is_some_and(|t| t > 0 || observations < 1000));

    let names: Vec<SearchQuery> =
        (0..400).map(|i| parsed("Patient", &format!("name={}{}", &FAMILIES[i % 8][..4], (i * 13) % 100))).collect();
    let (p50, p99) = measure(&store, names).await;
    println!("Patient?name=prefix: p50 {p50:?}, p99 {p99:?}");

    let count = parsed("Observation", "code=8867-4&_count=0");
    let start = Instant::now();
    let page = store.search(&count).await.expect("count");
    println!("Observation?code&_summary=count over {:?} matches: {:?}", page.total, start.elapsed());
    assert_eq!(page.total, Some((observations / 10) as u64));

    let plain: Vec<SearchQuery> = (0..200).map(|i| parsed("Observation", &format!("patient=p{}&_count=50", (i * 7) % patients))).collect();
    let included: Vec<SearchQuery> = (0..200)
        .map(|i| parsed("Observation", &format!("patient=p{}&_count=50&_include=Observation:patient", (i * 7) % patients)))
        .collect();
    let (_, plain_p99) = measure(&store, plain).await;
    let (_, include_p99) = measure(&store, included.clone()).await;
    println!("Observation?patient first page: p99 {plain_p99:?}; with _include=Observation:patient: p99 {include_p99:?}");
    assert_eq!(store.search(&included[0]).await.expect("search").included.len(), 1);

    let sorted: Vec<SearchQuery> =
        (0..100).map(|i| parsed("Observation", &format!("patient=p{}&_sort=-date&_count=20", (i * 11) % patients))).collect();
    let (p50, p99) = measure(&store, sorted).await;
    println!("Observation?patient&_sort=-date: p50 {p50:?}, p99 {p99:?}");
}
