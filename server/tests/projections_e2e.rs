//! The projections end to end, against real PostgreSQL and InfluxDB servers started by the
//! test: data written through FHIR REST and HL7 MLLP reaches both; both databases can go
//! down while writes go on and catch up afterwards; `tessera` killed with SIGKILL mid-batch
//! resumes without loss or duplicates. "Equal" is decided by the projections' own
//! consistency checks (`/admin/projections/{name}/check`) plus row and point counts.

mod hl7_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hl7_support::{send, start_binary_with, Ack, Rest};
use projections::testing::{InfluxServer, PostgresServer};
use serde_json::{json, Value};
use tessera_server::{Application, Settings};

/// PostgreSQL and InfluxDB for one test, each with a fresh database.
struct Peers {
    postgres: PostgresServer,
    postgres_url: String,
    influx: InfluxServer,
}

/// Starts both databases; None (the test is skipped) when either is not installed.
async fn peers() -> Option<Peers> {
    let postgres = PostgresServer::start()?;
    let influx = InfluxServer::start()?;
    let postgres_url = postgres.create_database("tessera_e2e").await;
    Some(Peers { postgres, postgres_url, influx })
}

impl Peers {
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TESSERA_POSTGRES_URL", self.postgres_url.clone()),
            ("TESSERA_TSDB_URL", self.influx.url()),
            ("TESSERA_TSDB_DATABASE", "tessera_e2e".into()),
            ("TESSERA_PROJECTION_BATCH_SIZE", "50".into()),
        ]
    }
}

/// Tessera in this process with both projections and MLLP on.
async fn spawn_app(peers: &Peers, data_dir: &std::path::Path) -> (Rest, SocketAddr) {
    let mut settings = Settings::for_tests(data_dir);
    settings.mllp_addr = Some("127.0.0.1:0".into());
    settings.postgres_url = Some(peers.postgres_url.clone());
    settings.tsdb_url = Some(peers.influx.url());
    settings.tsdb_database = "tessera_e2e".into();
    settings.projection_batch_size = 50;
    let app = Application::build(settings).await.expect("tessera starts");
    let mllp = app.mllp_addr().expect("mllp on");
    let rest = Rest::new(format!("http://127.0.0.1:{}", app.port()));
    tokio::spawn(app.run_until_stopped());
    assert!(rest.wait_healthy(Duration::from_secs(10)).await);
    (rest, mllp)
}

async fn post_json(rest: &Rest, path: &str, body: &Value) -> (u16, Value) {
    let response = rest
        .client
        .post(format!("{}{path}", rest.root))
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn put_json(rest: &Rest, path: &str, body: &Value) -> (u16, Value) {
    let response = rest
        .client
        .put(format!("{}{path}", rest.root))
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn loinc(code: &str) -> Value {
    json!({"coding": [{"system": "http://loinc.org", "code": code}]})
}

/// A vital-sign Observation of `patient` (and `device`), `minute` minutes into 2026-03-01.
fn vital(patient: &str, device: Option<&str>, code: &str, value: f64, unit: &str, minute: u32) -> Value {
    let mut body = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": loinc(code),
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": format!("2026-03-01T{:02}:{:02}:00Z", minute / 60 % 24, minute % 60),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    });
    if let Some(device) = device {
        body["device"] = json!({"reference": format!("Device/{device}")});
    }
    body
}

/// An ORU^R01 from a bedside monitor: heart rate and SpO2 of patient `mrn`, MDC-coded.
fn monitor_oru(control_id: &str, mrn: &str, minute: u32, heart_rate: u32, spo2: u32) -> Vec<u8> {
    let time = format!("202603011{}{:02}00+0000", minute / 60 % 10, minute % 60);
    [
        format!("MSH|^~\\&|GATEWAY|ICU|TESSERA|HOSP|{time}||ORU^R01^ORU_R01|{control_id}|P|2.6"),
        format!("PID|1||{mrn}^^^HOSP^MR||Monitor^Mia||19700101|F"),
        format!("OBR|1||{control_id}^GATEWAY|182777000^monitoring of patient^SCT|||{time}"),
        format!("OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.0.1.1|{heart_rate}|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||{time}||||MON-{mrn}^ICU^1.2.3.4.5^ISO"),
        format!("OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.0.1.2|{spo2}|262688^MDC_DIM_PERCENT^MDC|||||R|||{time}||||MON-{mrn}^ICU^1.2.3.4.5^ISO"),
    ]
    .join("\r")
    .into_bytes()
}

async fn send_oru(mllp: SocketAddr, message: &[u8]) {
    let ack = Ack::parse(&send(mllp, message).await);
    assert_eq!(ack.msa1(), "AA", "{:?}", ack.errors());
}

/// Waits until every projection's checkpoint is the feed head, and returns the status.
async fn wait_caught_up(rest: &Rest, wait: Duration) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let status = rest.json("/admin/projections").await;
        let head = status["head"].as_u64().unwrap_or(0);
        let projections = status["projections"].as_array().cloned().unwrap_or_default();
        if projections.len() == 2 && projections.iter().all(|p| p["checkpoint"].as_u64() == Some(head)) {
            return status;
        }
        assert!(Instant::now() < deadline, "projections did not catch up: {status:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both consistency checks are clean; returns (rows/points checked per projection).
async fn assert_consistent(rest: &Rest) -> Vec<Value> {
    let mut reports = Vec::new();
    for name in ["postgres", "tsdb"] {
        let report = rest.json(&format!("/admin/projections/{name}/check")).await;
        assert_eq!(report["problems"], json!([]), "{name} differs from the store: {report:#}");
        reports.push(report);
    }
    reports
}

/// `SELECT count(*)` of vital-sign measurements in PostgreSQL, over the HTTP-free path.
async fn postgres_count(url: &str, sql: &str) -> i64 {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url).await.expect("connect to the test database");
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&mut connection).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The number of stored vital-sign values of one field in InfluxDB.
async fn influx_count(influx: &InfluxServer, field: &str) -> u64 {
    let body = influx.query("tessera_e2e", &format!("SELECT count(\"{field}\") FROM \"vital_signs\"")).await;
    body.pointer("/results/0/series/0/values/0/1").and_then(Value::as_u64).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rest_and_hl7_writes_reach_postgres_and_influxdb() {
    let Some(peers) = peers().await else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let (rest, mllp) = spawn_app(&peers, data_dir.path()).await;

    let patient = json!({"resourceType": "Patient", "id": "p1",
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "value": "MRN-E2E"}],
        "name": [{"family": "Rest", "given": ["Rita"]}], "gender": "female", "birthDate": "1950-05-06"});
    let (status, body) = put_json(&rest, "/fhir/Patient/p1", &patient).await;
    assert_eq!(status, 201, "{body}");
    let device = json!({"resourceType": "Device", "id": "d1", "serialNumber": "SN-E2E", "manufacturer": "Acme", "status": "active"});
    let (status, body) = put_json(&rest, "/fhir/Device/d1", &device).await;
    assert_eq!(status, 201, "{body}");
    let mut ids = Vec::new();
    for minute in 0..20 {
        let (status, body) = post_json(&rest, "/fhir/Observation", &vital("p1", Some("d1"), "8867-4", 60.0 + minute as f64, "/min", minute)).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (status, low) = post_json(&rest, "/fhir/Observation", &vital("p1", Some("d1"), "59408-5", 88.0, "%", 30)).await;
    assert_eq!(status, 201, "{low}");
    // An update moves a value, a delete removes one.
    let mut updated = vital("p1", Some("d1"), "8867-4", 99.0, "/min", 0);
    updated["id"] = json!(ids[0]);
    let (status, body) = put_json(&rest, &format!("/fhir/Observation/{}", ids[0]), &updated).await;
    assert_eq!(status, 200, "{body}");
    let deleted = rest.client.delete(format!("{}/fhir/Observation/{}", rest.root, ids[1])).send().await.unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    for i in 0..5 {
        send_oru(mllp, &monitor_oru(&format!("E2E-{i}"), "MRN-HL7", 40 + i, 70 + i, 97)).await;
    }

    wait_caught_up(&rest, Duration::from_secs(30)).await;
    let reports = assert_consistent(&rest).await;
    assert!(reports.iter().all(|r| r["resources_checked"].as_u64().unwrap_or(0) >= 27), "{reports:?}");

    let url = &peers.postgres_url;
    assert_eq!(postgres_count(url, "SELECT count(*) FROM measurements WHERE patient_fhir_id = 'p1' AND type = 'heart_rate'").await, 19);
    assert_eq!(postgres_count(url, "SELECT count(*) FROM measurements WHERE type = 'heart_rate' AND value = 99").await, 1);
    assert_eq!(postgres_count(url, "SELECT count(*) FROM patients WHERE mrn IN ('MRN-E2E', 'MRN-HL7')").await, 2);
    assert_eq!(postgres_count(url, "SELECT count(*) FROM devices WHERE serial_number = 'SN-E2E' AND last_seen IS NOT NULL").await, 1);
    // 19 from REST and 5 from HL7.
    assert_eq!(influx_count(&peers.influx, "heart_rate").await, 24);
    assert_eq!(influx_count(&peers.influx, "spo2").await, 6);

    // SpO2 88 % breaks the default critical rule; acknowledging it keeps who and when.
    let alerts = rest.json("/admin/alerts?acknowledged=false&severity=critical").await;
    let alert = alerts["alerts"].as_array().and_then(|a| a.iter().find(|a| a["observation_fhir_id"] == low["id"])).cloned();
    let alert = alert.unwrap_or_else(|| panic!("a critical SpO2 alert: {alerts:#}"));
    assert_eq!((alert["measurement_type"].as_str(), alert["value"].as_f64()), (Some("spo2"), Some(88.0)));
    let response = rest
        .client
        .post(format!("{}/admin/alerts/{}/acknowledge", rest.root, alert["id"]))
        .json(&json!({"by": "nurse-7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let acknowledged: Value = response.json().await.unwrap();
    assert_eq!((acknowledged["acknowledged"].as_bool(), acknowledged["acknowledged_by"].as_str()), (Some(true), Some("nurse-7")));
    let open = rest.json("/admin/alerts?acknowledged=false&severity=critical").await;
    assert!(open["alerts"].as_array().unwrap().iter().all(|a| a["id"] != alert["id"]));

    // The status reports lag and no error.
    let status = rest.json("/admin/projections").await;
    for projection in status["projections"].as_array().unwrap() {
        assert_eq!(projection["lag_changes"], 0, "{projection}");
        assert_eq!(projection["last_error"], Value::Null, "{projection}");
        assert!(projection["applied_changes"].as_u64().unwrap() > 0, "{projection}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_go_on_while_the_databases_are_down_and_the_projections_catch_up() {
    let Some(mut peers) = peers().await else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let (rest, mllp) = spawn_app(&peers, data_dir.path()).await;
    for minute in 0..30 {
        let (status, _) = post_json(&rest, "/fhir/Observation", &vital("p2", None, "8867-4", 70.0, "/min", minute)).await;
        assert_eq!(status, 201);
    }
    wait_caught_up(&rest, Duration::from_secs(30)).await;

    peers.postgres.stop();
    peers.influx.stop();
    // Tessera keeps accepting writes through FHIR and HL7 while both are down.
    for minute in 30..130 {
        let (status, body) = post_json(&rest, "/fhir/Observation", &vital("p2", None, "59408-5", 95.0, "%", minute)).await;
        assert_eq!(status, 201, "{body}");
    }
    for i in 0..20 {
        send_oru(mllp, &monitor_oru(&format!("OUT-{i}"), "MRN-OUT", 200 + i, 80, 96)).await;
    }
    // The outage is visible in the status.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = rest.json("/admin/projections").await;
        let failing = status["projections"].as_array().unwrap().iter().filter(|p| p["last_error"].is_string() && p["lag_changes"].as_u64() > Some(0)).count();
        if failing == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the outage did not show: {status:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    peers.postgres.start_again();
    peers.influx.restart();
    wait_caught_up(&rest, Duration::from_secs(60)).await;
    assert_consistent(&rest).await;
    let url = &peers.postgres_url;
    assert_eq!(postgres_count(url, "SELECT count(*) FROM measurements WHERE type = 'heart_rate'").await, 30 + 20);
    assert_eq!(postgres_count(url, "SELECT count(*) FROM measurements WHERE type = 'spo2'").await, 100 + 20);
    assert_eq!(influx_count(&peers.influx, "spo2").await, 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tessera_killed_mid_batch_resumes_without_loss_or_duplicates() {
    let Some(peers) = peers().await else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let log = data_dir.path().join("tessera.log");
    let store_dir = data_dir.path().join("data");
    let mut server = start_binary_with(&store_dir, &log, &peers.settings()).await;

    // Writers keep posting until the server dies under them.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..4u32 {
        let rest = Rest::new(server.rest.root.clone());
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..100_000u32 {
                let body = vital(&format!("k{w}"), None, "8867-4", 60.0 + (i % 50) as f64, "/min", i % 1440);
                match rest.client.post(format!("{}/fhir/Observation", rest.root)).header("content-type", "application/fhir+json").body(body.to_string()).send().await {
                    Ok(r) if r.status().as_u16() == 201 => {
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::SeqCst) < 400 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    for writer in writers {
        let _ = writer.await;
    }
    let acked = acknowledged.load(Ordering::SeqCst);
    assert!(acked >= 400, "only {acked} writes before the kill");

    let restarted = start_binary_with(&store_dir, &log, &peers.settings()).await;
    wait_caught_up(&restarted.rest, Duration::from_secs(60)).await;
    assert_consistent(&restarted.rest).await;
    // Every acknowledged write is in the store, and the projections hold exactly the store's.
    let stored = restarted.rest.json("/fhir/Observation?_summary=count").await["total"].as_u64().unwrap();
    assert!(stored as usize >= acked, "{stored} stored < {acked} acknowledged");
    let url = &peers.postgres_url;
    assert_eq!(postgres_count(url, "SELECT count(*) FROM measurements").await as u64, stored);
    assert_eq!(postgres_count(url, "SELECT count(*) FROM (SELECT observation_fhir_id FROM measurements GROUP BY 1 HAVING count(*) > 1) d").await, 0);
}

/// Runs `tessera projections …` on `data_dir` with the peers' settings; (exit code, stderr,
/// stdout).
fn run_cli(peers: &Peers, data_dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TESSERA_") {
            command.env_remove(name);
        }
    }
    let output = command
        .args(["projections"])
        .args(args)
        .env("TESSERA_DATA_DIR", data_dir)
        .env("TESSERA_LOG", "warn")
        .envs(peers.settings())
        .output()
        .expect("tessera runs");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_rebuilds_and_checks_next_to_a_running_server() {
    let Some(peers) = peers().await else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let (rest, _mllp) = spawn_app(&peers, data_dir.path()).await;
    for minute in 0..120 {
        let (status, body) = post_json(&rest, "/fhir/Observation", &vital("c1", None, "8867-4", 70.0 + (minute % 7) as f64, "/min", minute)).await;
        assert_eq!(status, 201, "{body}");
    }
    wait_caught_up(&rest, Duration::from_secs(30)).await;

    // A rebuild from the command line while the server's own followers keep running: both
    // apply the feed, neither applies a change twice.
    for name in ["postgres", "tsdb"] {
        let dir = data_dir.path().to_path_buf();
        let (code, stderr, _) = tokio::task::block_in_place(|| run_cli(&peers, &dir, &["rebuild", name, "--exit-when-done"]));
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains(&format!("rebuilding {name} [")) && stderr.contains("100.0%") && stderr.contains("changes/s"), "{stderr}");
        assert!(stderr.contains("rebuilt up to change"), "{stderr}");
        let (code, stderr, stdout) = tokio::task::block_in_place(|| run_cli(&peers, &dir, &["check", name]));
        assert_eq!(code, 0, "{stderr}{stdout}");
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!((report["problems"].clone(), report["resources_checked"].as_u64()), (json!([]), Some(120)));
    }
    assert_eq!(postgres_count(&peers.postgres_url, "SELECT count(*) FROM measurements").await, 120);
    assert_eq!(influx_count(&peers.influx, "heart_rate").await, 120);

    // A row removed behind the projection's back: `check` says so and exits 1.
    postgres_count(&peers.postgres_url, "WITH gone AS (DELETE FROM measurements WHERE id IN (SELECT id FROM measurements LIMIT 1) RETURNING 1) SELECT count(*) FROM gone").await;
    let dir = data_dir.path().to_path_buf();
    let (code, _, stdout) = tokio::task::block_in_place(|| run_cli(&peers, &dir, &["check", "postgres"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("Observation/"), "{stdout}");
    let (code, stderr, _) = tokio::task::block_in_place(|| run_cli(&peers, &dir, &["rebuild", "nosuch"]));
    assert_ne!(code, 0);
    assert!(stderr.contains("postgres") && stderr.contains("tsdb"), "{stderr}");
}
