//! Measures search on a large embedded store: bulk loading through transaction bundles, then
//! the four searches at 1,000,000 Observations over 10,000 Patients, and prints one
//! markdown table with the targets.
//!
//! Run with `cargo bench -p tessera-server --bench search`. Environment:
//! - `TESSERA_BENCH_OBSERVATIONS` (default 1,000,000) and `TESSERA_BENCH_PATIENTS` (10,000);
//! - `TESSERA_BENCH_SECONDS`, length of each measured phase (default 10);
//! - `TESSERA_BENCH_DIR`, where the data goes (default `/var/tmp`). The loaded store is kept in
//!   `tessera-search-bench-{observations}` there and reused by the next run (loading a million
//!   resources takes minutes); `TESSERA_BENCH_RELOAD=1` starts from an empty store.
//!
//! The process exits with status 1 when any request failed or returned a wrong result.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{cpu_model, filesystem_of, runtimes, start_tessera, warm_then_measure, PhaseResult};

/// Concurrent clients of the search phases, as in the issue.
const CLIENTS: usize = 8;
/// Entries per transaction bundle while loading.
const BUNDLE_SIZE: usize = 1000;
/// Bundles in flight while loading: the writer commits them in groups.
const LOADERS: usize = 2;

/// Lab codes (LOINC) the Observations cycle through: 1,000,000 / 10 = 100,000 per code.
const CODES: &[(&str, &str, &str, f64)] = &[
    ("2339-0", "Glucose", "mg/dL", 70.0),
    ("2951-2", "Sodium", "mmol/L", 135.0),
    ("2823-3", "Potassium", "mmol/L", 3.5),
    ("2160-0", "Creatinine", "mg/dL", 0.6),
    ("718-7", "Hemoglobin", "g/dL", 12.0),
    ("6690-2", "Leukocytes", "10*3/uL", 4.0),
    ("777-3", "Platelets", "10*3/uL", 150.0),
    ("2093-3", "Cholesterol", "mg/dL", 150.0),
    ("4548-4", "Hemoglobin A1c", "%", 4.5),
    ("1742-6", "ALT", "U/L", 10.0),
];

/// Syllables family names are built from: 40 × 50 = 2,000 families.
const FIRST: &[&str] = &[
    "Ab", "Bel", "Cor", "Dan", "Eli", "Far", "Gor", "Hal", "Ing", "Jor", "Kel", "Lan", "Mor", "Nor", "Ost", "Par", "Quin", "Ros",
    "Sal", "Tor", "Ulm", "Var", "Wes", "Xan", "Yor", "Zel", "Ald", "Bran", "Cal", "Dor", "Em", "Fen", "Gil", "Har", "Ivo", "Jas",
    "Kor", "Lor", "Mal", "Ned",
];
const SECOND: &[&str] = &[
    "son", "berg", "ley", "ford", "ton", "man", "well", "wood", "ridge", "field", "stein", "mann", "holm", "vik", "dal", "strom",
    "quist", "gren", "lund", "by", "ham", "worth", "stead", "more", "land", "brook", "dale", "mont", "ville", "court", "ini",
    "elli", "ardi", "ucci", "ez", "ov", "enko", "escu", "ian", "oglu", "aki", "oto", "ara", "ima", "ura", "awa", "ita", "ano",
    "oni", "ulu",
];

/// First effective time: 2024-01-01T00:00:00Z; Observations are spread over two years.
const EPOCH_2024: i64 = 1_704_067_200;
const SPREAD_SECONDS: i64 = 2 * 365 * 86_400;
/// The date the Q1 search asks for (`ge`): the last quarter of the spread.
const DATE_GE: &str = "2025-07-01";

const TARGET_Q1_P99_MS: f64 = 10.0;
const TARGET_NAME_P99_MS: f64 = 10.0;
const TARGET_COUNT_MS: f64 = 100.0;
const TARGET_INCLUDE_RATIO: f64 = 2.0;

fn env_number(key: &str, default: u64) -> u64 {
    match std::env::var(key) {
        Ok(v) => v.replace('_', "").parse().unwrap_or_else(|_| panic!("{key} is a whole number")),
        Err(_) => default,
    }
}

fn main() {
    let observations = env_number("TESSERA_BENCH_OBSERVATIONS", 1_000_000);
    let patients = env_number("TESSERA_BENCH_PATIENTS", 10_000).max(1);
    let seconds = env_number("TESSERA_BENCH_SECONDS", 10).max(1);
    let phase = Duration::from_secs(seconds);
    let warmup = Duration::from_secs(seconds.clamp(1, 2));
    let parent = std::env::var_os("TESSERA_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let data_dir = parent.join(format!("tessera-search-bench-{observations}-{patients}"));
    let marker = data_dir.join("loaded.json");
    if std::env::var("TESSERA_BENCH_RELOAD").is_ok_and(|v| v == "1") && data_dir.exists() {
        std::fs::remove_dir_all(&data_dir).expect("remove the old bench store");
    }
    std::fs::create_dir_all(&data_dir).expect("create the bench data dir");
    let filesystem = filesystem_of(&data_dir);

    let (server_runtime, client_runtime) = runtimes();
    let (base_url, _store) = server_runtime.block_on(start_tessera(&data_dir));
    let client = reqwest::Client::builder().no_proxy().build().expect("http client");

    // ---- Load (or reuse) ----
    let load = match std::fs::read_to_string(&marker) {
        Ok(text) => LoadReport::from_marker(&text),
        Err(_) => {
            let report = client_runtime.block_on(load_store(&client, &base_url, patients, observations));
            std::fs::write(&marker, report.to_marker()).expect("write the load marker");
            report
        }
    };
    let db_bytes = std::fs::read_dir(&data_dir)
        .map(|dir| dir.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum::<u64>())
        .unwrap_or(0);

    // ---- Searches ----
    let codes = CODES.len() as u64;
    let families = (FIRST.len() * SECOND.len()) as u64;
    let q1 = {
        let (client, base) = (client.clone(), base_url.clone());
        move |n: u64| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let r = mix(n);
                let patient = r % patients;
                let code = CODES[(mix(r) % codes) as usize].0;
                let url = format!(
                    "{base}/Observation?patient=p{patient}&code=http://loinc.org%7C{code}&date=ge{DATE_GE}&_count=50"
                );
                let bundle = get_bundle(&client, &url).await?;
                check_matches(&bundle, &url, |o| {
                    o["subject"]["reference"] == format!("Patient/p{patient}") && o["code"]["coding"][0]["code"] == code
                })
            }
        }
    };
    let name = {
        let (client, base) = (client.clone(), base_url.clone());
        move |n: u64| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                // Patient i is named family_name(i): only the first `patients` families exist.
                let family = family_name(mix(n) % families.min(patients));
                // The first syllable and one letter of the second: ~40 families, ~200 patients.
                let prefix: String = family.chars().take(family.len() - family_second_len(&family) + 1).collect();
                let url = format!("{base}/Patient?name={}", prefix.to_lowercase());
                let bundle = get_bundle(&client, &url).await?;
                let want = prefix.to_lowercase();
                check_matches(&bundle, &url, |p| {
                    p["name"][0]["family"].as_str().is_some_and(|f| f.to_lowercase().starts_with(&want))
                })?;
                if bundle["total"].as_u64().unwrap_or(0) == 0 {
                    return Err(format!("{url}: no patient matched"));
                }
                Ok(())
            }
        }
    };
    let expected_per_code = observations / codes;
    let count = {
        let (client, base) = (client.clone(), base_url.clone());
        move |n: u64| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let code = CODES[(n % codes) as usize].0;
                let url = format!("{base}/Observation?code=http://loinc.org%7C{code}&_summary=count");
                let bundle = get_bundle(&client, &url).await?;
                let total = bundle["total"].as_u64().unwrap_or(0);
                // Codes cycle with the Observation number, so each has all but a remainder.
                if total < expected_per_code || total > expected_per_code + 1 {
                    return Err(format!("{url}: total {total}, expected {expected_per_code}"));
                }
                Ok(())
            }
        }
    };
    let page = move |include: bool| {
        let (client, base) = (client.clone(), base_url.clone());
        move |n: u64| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let code = CODES[(n % codes) as usize].0;
                let include = if include { "&_include=Observation:patient" } else { "" };
                let url = format!("{base}/Observation?code=http://loinc.org%7C{code}&_count=50&_total=none{include}");
                let bundle = get_bundle(&client, &url).await?;
                let entries = bundle["entry"].as_array().map_or(0, Vec::len);
                let included = bundle["entry"]
                    .as_array()
                    .map_or(0, |e| e.iter().filter(|e| e["search"]["mode"] == "include").count());
                if entries < 50 || (!include.is_empty() && included == 0) {
                    return Err(format!("{url}: {entries} entries, {included} included"));
                }
                Ok(())
            }
        }
    };

    let mut phases = Vec::new();
    let mut run = |name: String, result: PhaseResult| phases.push((name, result));
    run(
        format!("Q1 Observation?patient&code&date=ge&_count=50, {CLIENTS} clients"),
        client_runtime.block_on(warm_then_measure(q1, CLIENTS, warmup, phase)),
    );
    run(format!("Q2 Patient?name=<prefix>, {CLIENTS} clients"), client_runtime.block_on(warm_then_measure(name, CLIENTS, warmup, phase)));
    run(
        format!("Q3 Observation?code&_summary=count ({expected_per_code} matches), 1 client"),
        client_runtime.block_on(warm_then_measure(count, 1, warmup, phase)),
    );
    run(
        format!("Q4a Observation?code&_count=50, {CLIENTS} clients"),
        client_runtime.block_on(warm_then_measure(page(false), CLIENTS, warmup, phase)),
    );
    run(
        format!("Q4b same + _include=Observation:patient, {CLIENTS} clients"),
        client_runtime.block_on(warm_then_measure(page(true), CLIENTS, warmup, phase)),
    );

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!();
    println!(
        "machine: {cores} cores ({}); store {} on {} ({}), {:.2} GiB on disk",
        cpu_model(),
        data_dir.display(),
        filesystem.kind,
        filesystem.source,
        db_bytes as f64 / (1u64 << 30) as f64
    );
    println!(
        "data: {observations} Observations over {patients} Patients; each phase {} s warm-up then {} s measured",
        warmup.as_secs(),
        phase.as_secs()
    );
    println!();
    println!("| load | resources | seconds | resources/s |");
    println!("|---|---:|---:|---:|");
    println!("| {} | {} | {:.1} | {:.0} |", load.how, load.resources, load.seconds, load.resources as f64 / load.seconds.max(1e-9));
    println!();
    println!("| search | req/s | p50 | p99 | max | requests | failed |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, r) in &phases {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} |",
            r.per_second(),
            r.quantile_ms(0.50),
            r.quantile_ms(0.99),
            r.quantile_ms(1.0),
            r.requests,
            r.failures
        );
    }
    let p99 = |i: usize| phases[i].1.quantile_ms(0.99);
    let p50 = |i: usize| phases[i].1.quantile_ms(0.50);
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    println!();
    println!("| target | measured | goal | verdict |");
    println!("|---|---:|---:|---|");
    println!("| Q1 p99 ({CLIENTS} clients) | {:.2} ms | ≤ {TARGET_Q1_P99_MS} ms | {} |", p99(0), verdict(p99(0) <= TARGET_Q1_P99_MS));
    println!("| Q2 p99 ({CLIENTS} clients) | {:.2} ms | ≤ {TARGET_NAME_P99_MS} ms | {} |", p99(1), verdict(p99(1) <= TARGET_NAME_P99_MS));
    println!("| Q3 p99 (count of {expected_per_code}) | {:.2} ms | ≤ {TARGET_COUNT_MS} ms | {} |", p99(2), verdict(p99(2) <= TARGET_COUNT_MS));
    let ratio50 = p50(4) / p50(3).max(1e-9);
    let ratio99 = p99(4) / p99(3).max(1e-9);
    println!(
        "| Q4 include ÷ without, p50 (p99) | {ratio50:.2} ({ratio99:.2}) | ≤ {TARGET_INCLUDE_RATIO} | {} |",
        verdict(ratio50 <= TARGET_INCLUDE_RATIO)
    );

    let failed: u64 = phases.iter().map(|(_, r)| r.failures).sum();
    for (name, r) in phases.iter().filter(|(_, r)| r.failures > 0) {
        println!();
        println!("FAILURES in {name}: {} requests failed; first ones:", r.failures);
        for sample in &r.failure_samples {
            println!("- {sample}");
        }
    }
    drop(client_runtime);
    drop(server_runtime);
    if failed > 0 {
        eprintln!("{failed} requests failed; see the failures above");
        std::process::exit(1);
    }
}

/// A cheap deterministic scrambler (splitmix64), so that clients spread over patients and codes.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn family_name(i: u64) -> String {
    let first = FIRST[(i % FIRST.len() as u64) as usize];
    let second = SECOND[((i / FIRST.len() as u64) % SECOND.len() as u64) as usize];
    format!("{first}{second}")
}

/// Length of the second syllable of a generated family name.
fn family_second_len(family: &str) -> usize {
    SECOND.iter().filter(|s| family.ends_with(*s)).map(|s| s.len()).max().unwrap_or(1)
}

fn patient(i: u64) -> Value {
    let gender = if i % 2 == 0 { "female" } else { "male" };
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": format!("MRN{i:08}")}],
        "name": [{"family": family_name(i), "given": [format!("Given{}", i % 97)]}],
        "gender": gender,
        "birthDate": format!("{}-{:02}-{:02}", 1930 + i % 90, 1 + i % 12, 1 + i % 28),
    })
}

fn observation(n: u64, patients: u64) -> Value {
    let (code, display, unit, base) = CODES[(n % CODES.len() as u64) as usize];
    let effective = EPOCH_2024 + (mix(n) % SPREAD_SECONDS as u64) as i64;
    let effective = time::OffsetDateTime::from_unix_timestamp(effective)
        .expect("a 2024-2025 time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format a time");
    let value = base + (mix(n ^ 0x5bd1) % 1000) as f64 / 100.0;
    serde_json::json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
        "subject": {"reference": format!("Patient/p{}", n % patients)},
        "effectiveDateTime": effective,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    })
}

/// A transaction of PUTs (the generated ids make a reload idempotent).
fn transaction(entries: Vec<(String, Value)>) -> String {
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|(url, resource)| serde_json::json!({"resource": resource, "request": {"method": "PUT", "url": url}}))
        .collect();
    serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string()
}

struct LoadReport {
    how: String,
    resources: u64,
    seconds: f64,
}

impl LoadReport {
    fn to_marker(&self) -> String {
        serde_json::json!({"resources": self.resources, "seconds": self.seconds}).to_string()
    }

    fn from_marker(text: &str) -> LoadReport {
        let v: Value = serde_json::from_str(text).expect("a valid load marker");
        LoadReport {
            how: "transaction bundles of 1,000 PUTs (measured when this store was loaded)".into(),
            resources: v["resources"].as_u64().unwrap_or(0),
            seconds: v["seconds"].as_f64().unwrap_or(0.0),
        }
    }
}

/// Loads the Patients, then the Observations, `LOADERS` bundles in flight, and reports the rate.
async fn load_store(client: &reqwest::Client, base: &str, patients: u64, observations: u64) -> LoadReport {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = patients + observations;
    let tasks: Vec<_> = (0..LOADERS)
        .map(|_| {
            let (client, base, next) = (client.clone(), base.to_string(), next.clone());
            tokio::spawn(async move {
                loop {
                    let first = next.fetch_add(BUNDLE_SIZE as u64, std::sync::atomic::Ordering::Relaxed);
                    if first >= total {
                        break;
                    }
                    let last = (first + BUNDLE_SIZE as u64).min(total);
                    // Patients come first in the numbering so they exist before their Observations.
                    let entries = (first..last)
                        .map(|k| {
                            if k < patients {
                                (format!("Patient/p{k}"), patient(k))
                            } else {
                                let n = k - patients;
                                (format!("Observation/o{n}"), observation(n, patients))
                            }
                        })
                        .collect();
                    let response = client
                        .post(&base)
                        .header("content-type", "application/fhir+json")
                        .body(transaction(entries))
                        .send()
                        .await
                        .expect("POST a transaction");
                    let status = response.status();
                    if status != reqwest::StatusCode::OK {
                        let body = response.text().await.unwrap_or_default();
                        panic!("transaction {first}..{last}: {status} {}", &body[..body.len().min(2000)]);
                    }
                    response.bytes().await.expect("read the transaction response");
                    if (last / BUNDLE_SIZE as u64) % 100 == 0 {
                        eprintln!("loaded {last} of {total} resources in {:.0} s", started.elapsed().as_secs_f64());
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a loader panicked");
    }
    LoadReport {
        how: format!("transaction bundles of {BUNDLE_SIZE} PUTs, {LOADERS} in flight"),
        resources: total,
        seconds: started.elapsed().as_secs_f64(),
    }
}

async fn get_bundle(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = client.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("GET {url}: {status} {}", String::from_utf8_lossy(&body[..body.len().min(500)])));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

/// Every `match` entry satisfies `ok`: a fast wrong answer must not pass for a fast one.
fn check_matches(bundle: &Value, url: &str, ok: impl Fn(&Value) -> bool) -> Result<(), String> {
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        if entry["search"]["mode"] == "match" && !ok(&entry["resource"]) {
            return Err(format!("{url}: wrong match {}", entry["fullUrl"]));
        }
    }
    Ok(())
}
