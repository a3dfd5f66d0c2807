//! `Observation/$stats` over HTTP against Tessera spawned in-process: vital signs POSTed over
//! REST for two patients, statistics asked by GET and POST and compared with numbers computed
//! by hand in this file, windows, blood-pressure components, period boundaries, the source
//! Observations, and every way a request can be refused with a 400 — answered from the store,
//! from a real InfluxDB (`influxd`) fed by the time-series projection, and from the store again
//! once that database is stopped.

use std::time::Duration;

use serde_json::{json, Value};
use projections::testing::InfluxServer;
use tessera_server::{Application, Settings};
use time::OffsetDateTime;

const LOINC: &str = "http://loinc.org";
const SOURCE_EXTENSION: &str = "https://tessera.health/fhir/StructureDefinition/stats-source";
const ALL: &str = "average,maximum,minimum,count,median,std-dev,sum,variance";
/// The period of the fixed test data: `[10:00, 10:05)` on 2025-01-10.
const PERIOD: &str = "2025-01-10T10:00:00Z/2025-01-10T10:05:00Z";

struct App {
    base: String,
    client: reqwest::Client,
    _data_dir: tempfile::TempDir,
}

async fn spawn_app() -> App {
    spawn_app_with(|_| {}).await
}

/// Spawns Tessera on a fresh data dir with the test settings as `configure` changes them.
async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> App {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::for_tests(data_dir.path());
    configure(&mut settings);
    let app = Application::build(settings).await.expect("tessera starts");
    let base = app.base_url();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client");
    let root = base.trim_end_matches("/fhir").to_string();
    for _ in 0..100 {
        if client.get(format!("{root}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return App { base, client, _data_dir: data_dir };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("tessera did not become healthy");
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl App {
    async fn put(&self, path: &str, body: Value) {
        let response = self
            .client
            .put(format!("{}/{path}", self.base))
            .header("content-type", "application/fhir+json")
            .json(&body)
            .send()
            .await
            .expect("put");
        let status = response.status();
        assert!(status.is_success(), "PUT {path}: {status} {}", response.text().await.unwrap_or_default());
    }

    async fn create(&self, body: Value) {
        let response = self
            .client
            .post(format!("{}/Observation", self.base))
            .header("content-type", "application/fhir+json")
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = response.status();
        assert_eq!(status.as_u16(), 201, "create: {}", response.text().await.unwrap_or_default());
    }

    /// `GET $stats` with `params`; the status and the body.
    async fn get_stats(&self, params: &[(&str, &str)]) -> (u16, Value) {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        let response = self.client.get(format!("{}/Observation/$stats?{}", self.base, query.join("&"))).send().await.expect("get");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a json body"))
    }

    /// `POST $stats` with a raw body.
    async fn post_stats(&self, body: String) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/Observation/$stats", self.base))
            .header("content-type", "application/fhir+json")
            .body(body)
            .send()
            .await
            .expect("post");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a json body"))
    }
}

fn loinc(code: &str) -> Value {
    json!({"coding": [{"system": LOINC, "code": code}]})
}

fn vital(patient: &str, code: &str, at: &str, value: f64, unit: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": loinc(code),
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": at,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    })
}

fn bp(patient: &str, at: &str, systolic: f64, diastolic: f64) -> Value {
    let component = |code: &str, value: f64| {
        json!({"code": loinc(code), "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
    };
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": loinc("85354-9"),
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": at,
        "component": [component("8480-6", systolic), component("8462-4", diastolic)],
    })
}

/// Two patients' heart rates, SpO2 and blood pressures around `[10:00, 10:05)`, and two
/// recent heart rates for the default 24-hour period.
async fn load(app: &App, now: OffsetDateTime) {
    for id in ["p1", "p2"] {
        app.put(&format!("Patient/{id}"), json!({"resourceType": "Patient", "id": id, "active": true})).await;
    }
    let hr = |patient: &str, at: &str, value: f64| vital(patient, "8867-4", at, value, "/min");
    for body in [
        hr("p1", "2025-01-10T09:59:59Z", 200.0), // before the start: out
        hr("p1", "2025-01-10T10:00:00Z", 60.0),  // at the start: in
        hr("p1", "2025-01-10T10:00:30Z", 72.0),
        hr("p1", "2025-01-10T10:01:15Z", 80.0),
        hr("p1", "2025-01-10T10:01:45+00:00", 84.0),
        hr("p1", "2025-01-10T11:02:10+01:00", 64.0), // 10:02:10Z
        hr("p1", "2025-01-10T10:05:00Z", 100.0), // at the end: out
        hr("p2", "2025-01-10T10:01:00Z", 150.0), // another patient
        hr("p2", "2025-01-10T10:03:00Z", 160.0),
        vital("p1", "59408-5", "2025-01-10T10:00:10Z", 97.0, "%"),
        vital("p1", "59408-5", "2025-01-10T10:02:20Z", 95.0, "%"),
        vital("p1", "59408-5", "2025-01-10T10:04:00Z", 99.0, "%"),
        vital("p1", "2708-6", "2025-01-10T10:04:30Z", 93.0, "%"), // the other SpO2 code
        bp("p1", "2025-01-10T10:00:00Z", 120.0, 80.0),
        bp("p1", "2025-01-10T10:02:00Z", 130.0, 84.0),
        bp("p1", "2025-01-10T10:04:00Z", 110.0, 76.0),
        bp("p2", "2025-01-10T10:01:00Z", 160.0, 100.0),
    ] {
        app.create(body).await;
    }
    let ago = |hours: i64| fhir_model_instant(now - time::Duration::hours(hours));
    app.create(hr("p1", &ago(1), 77.0)).await;
    app.create(hr("p1", &ago(25), 150.0)).await;
}

fn fhir_model_instant(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).expect("formats")
}

/// The `statistic` Observations of a Parameters answer.
fn results(parameters: &Value) -> Vec<&Value> {
    parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "statistic")
        .map(|p| &p["resource"])
        .collect()
}

fn sources(parameters: &Value) -> Vec<&Value> {
    parameters["parameter"].as_array().into_iter().flatten().filter(|p| p["name"] == "source").map(|p| &p["resource"]).collect()
}

/// The component of statistic `code`.
fn component<'a>(observation: &'a Value, code: &str) -> &'a Value {
    observation["component"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["code"]["coding"][0]["code"] == code))
        .unwrap_or_else(|| panic!("no {code} component in {observation}"))
}

fn value(observation: &Value, code: &str) -> Option<f64> {
    component(observation, code)["valueQuantity"]["value"].as_f64()
}

fn assert_close(observation: &Value, code: &str, expected: f64) {
    let got = value(observation, code).unwrap_or_else(|| panic!("{code} has no value in {observation}"));
    assert!((got - expected).abs() < 1e-9, "{code}: got {got}, expected {expected}");
}

/// Asserts all eight statistics: (average, maximum, minimum, count, median, std-dev, sum,
/// variance); None where it must be absent.
fn assert_stats(observation: &Value, expected: [Option<f64>; 8]) {
    let codes = ["average", "maximum", "minimum", "count", "median", "std-dev", "sum", "variance"];
    for (code, expected) in codes.iter().zip(expected) {
        match expected {
            Some(v) => assert_close(observation, code, v),
            None => {
                let c = component(observation, code);
                assert!(c.get("valueQuantity").is_none(), "{code} should be absent: {c}");
                assert_eq!(c["dataAbsentReason"]["coding"][0]["code"], "not-applicable");
                assert_eq!(c["dataAbsentReason"]["coding"][0]["system"], "http://terminology.hl7.org/CodeSystem/data-absent-reason");
            }
        }
    }
}

fn period_of(observation: &Value) -> (&str, &str) {
    (observation["effectivePeriod"]["start"].as_str().unwrap_or(""), observation["effectivePeriod"]["end"].as_str().unwrap_or(""))
}

fn source_of(observation: &Value) -> &Value {
    let extension = observation["extension"].as_array().and_then(|e| e.iter().find(|e| e["url"] == SOURCE_EXTENSION));
    &extension.unwrap_or_else(|| panic!("no stats-source extension in {observation}"))["valueCode"]
}

async fn assert_bad(app: &App, params: &[(&str, &str)], says: &str) {
    let (status, body) = app.get_stats(params).await;
    assert_eq!(status, 400, "{params:?}: {body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{params:?}");
    let text = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(text.contains(says), "{params:?}: {text:?} does not mention {says:?}");
}

async fn assert_bad_post(app: &App, body: Value, says: &str) {
    let (status, outcome) = app.post_stats(body.to_string()).await;
    assert_eq!(status, 400, "{body}: {outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let text = outcome["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(text.contains(says), "{body}: {text:?} does not mention {says:?}");
}

/// The statistics of the fixed data of `load` over `[10:00, 10:05)`, checked against numbers
/// computed by hand, all answered by `source`.
async fn check_numbers(app: &App, source: &str) {
    // --- GET, one code, every statistic over [10:00, 10:05) ---------------------------
    // Heart rates of p1 in the period: 60, 72, 80, 84, 64 (09:59:59 and 10:05:00 are out,
    // p2's are not p1's). Sum 360, mean 72, sorted 60 64 72 80 84 so median 72; deviations
    // -12 0 8 12 -8, squares 144 0 64 144 64 = 416, sample variance 416/4 = 104,
    // std-dev sqrt(104) = 10.198039027185569.
    let (status, body) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", ALL), ("period", PERIOD)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resourceType"], "Parameters");
    let got = results(&body);
    assert_eq!(got.len(), 1, "{body}");
    let hr = got[0];
    assert_eq!(hr["resourceType"], "Observation");
    assert_eq!(hr["status"], "final");
    assert_eq!(hr["code"]["coding"][0], json!({"system": LOINC, "code": "8867-4"}));
    assert_eq!(hr["subject"]["reference"], "Patient/p1");
    assert_eq!(period_of(hr), ("2025-01-10T10:00:00.000Z", "2025-01-10T10:05:00.000Z"));
    assert_eq!(source_of(hr), source);
    assert_stats(hr, [Some(72.0), Some(84.0), Some(60.0), Some(5.0), Some(72.0), Some(10.198039027185569), Some(360.0), Some(104.0)]);
    let average = component(hr, "average");
    assert_eq!(average["code"]["coding"][0], json!({"system": "http://hl7.org/fhir/observation-statistics", "code": "average", "display": "Average"}));
    assert_eq!(average["valueQuantity"]["unit"], "/min");
    assert_eq!(average["valueQuantity"]["code"], "/min");
    assert_eq!(average["valueQuantity"]["system"], "http://unitsofmeasure.org");
    assert_eq!(component(hr, "count")["valueQuantity"], json!({"value": 5, "system": "http://unitsofmeasure.org", "code": "1"}));
    assert_eq!(component(hr, "std-dev")["code"]["coding"][0]["display"], "Standard Deviation");
    // Only the statistics asked for, in the order asked.
    let (_, two) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "sum"), ("statistic", "minimum"), ("period", PERIOD)]).await;
    let codes: Vec<&Value> = results(&two)[0]["component"].as_array().unwrap().iter().map(|c| &c["code"]["coding"][0]["code"]).collect();
    assert_eq!(codes, [&json!("sum"), &json!("minimum")]);

    // --- the other patient ------------------------------------------------------------
    // p2: 150 and 160; mean 155, variance (25 + 25) / 1 = 50.
    let (_, body) = app.get_stats(&[("subject", "Patient/p2"), ("code", "8867-4"), ("statistic", "count,average,variance"), ("period", PERIOD)]).await;
    let p2 = results(&body)[0];
    assert_eq!(p2["subject"]["reference"], "Patient/p2");
    assert_close(p2, "count", 2.0);
    assert_close(p2, "average", 155.0);
    assert_close(p2, "variance", 50.0);

    // --- an absolute subject URL and system=LOINC --------------------------------------
    let absolute = format!("{}/Patient/p1", app.base);
    let (status, body) =
        app.get_stats(&[("subject", &absolute), ("system", LOINC), ("code", "8867-4"), ("statistic", "count"), ("period", PERIOD)]).await;
    assert_eq!(status, 200, "{body}");
    assert_close(results(&body)[0], "count", 5.0);
    assert_eq!(results(&body)[0]["subject"]["reference"], absolute.as_str());

    // --- boundaries: the start is inclusive, the end exclusive ---------------------------
    // [09:59:59, 10:00:00) holds only the 200; [10:05:00, 10:05:01) only the 100.
    for (period, expected) in [("2025-01-10T09:59:59Z/2025-01-10T10:00:00Z", 200.0), ("2025-01-10T10:05:00Z/2025-01-10T10:05:01Z", 100.0)] {
        let (_, body) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count,sum"), ("period", period)]).await;
        assert_close(results(&body)[0], "count", 1.0);
        assert_close(results(&body)[0], "sum", expected);
    }
    // A period with no values: one result, count and sum 0, the rest absent.
    let (_, body) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", ALL), ("period", "2025-01-09T00:00:00Z/2025-01-09T01:00:00Z")]).await;
    let empty = results(&body);
    assert_eq!(empty.len(), 1);
    assert_eq!(period_of(empty[0]), ("2025-01-09T00:00:00.000Z", "2025-01-09T01:00:00.000Z"));
    assert_stats(empty[0], [None, None, None, Some(0.0), None, None, Some(0.0), None]);

    // --- windows of one minute ---------------------------------------------------------
    // [10:00,10:01): 60, 72 — mean 66, variance 36+36 = 72, std-dev sqrt(72).
    // [10:01,10:02): 80, 84 — mean 82, variance 4+4 = 8, std-dev sqrt(8).
    // [10:02,10:03): 64 alone — no deviation. 10:03 and 10:04 hold nothing: not returned.
    let (status, body) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", ALL), ("period", PERIOD), ("window", "1m")]).await;
    assert_eq!(status, 200, "{body}");
    let windows = results(&body);
    let periods: Vec<_> = windows.iter().map(|w| period_of(w)).collect();
    assert_eq!(
        periods,
        [
            ("2025-01-10T10:00:00.000Z", "2025-01-10T10:01:00.000Z"),
            ("2025-01-10T10:01:00.000Z", "2025-01-10T10:02:00.000Z"),
            ("2025-01-10T10:02:00.000Z", "2025-01-10T10:03:00.000Z"),
        ]
    );
    assert_stats(windows[0], [Some(66.0), Some(72.0), Some(60.0), Some(2.0), Some(66.0), Some(8.48528137423857), Some(132.0), Some(72.0)]);
    assert_stats(windows[1], [Some(82.0), Some(84.0), Some(80.0), Some(2.0), Some(82.0), Some(2.8284271247461903), Some(164.0), Some(8.0)]);
    assert_stats(windows[2], [Some(64.0), Some(64.0), Some(64.0), Some(1.0), Some(64.0), None, Some(64.0), None]);
    // Windows align to the epoch, not to the start: from 10:00:30, the first is [10:00,10:01)
    // holding only the 72.
    let (_, body) = app
        .get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "sum"), ("period", "2025-01-10T10:00:30Z/2025-01-10T10:05:00Z"), ("window", "5m")])
        .await;
    let aligned = results(&body);
    assert_eq!(aligned.len(), 1);
    assert_eq!(period_of(aligned[0]), ("2025-01-10T10:00:00.000Z", "2025-01-10T10:05:00.000Z"));
    assert_close(aligned[0], "sum", 300.0); // 72 + 80 + 84 + 64

    // --- POST: SpO2 (both codes) and blood pressure components ------------------------
    // SpO2 of p1: 97, 95, 99 (59408-5) and 93 (2708-6): sum 384, mean 96, median (95+97)/2
    // = 96, squares 1 1 9 9 = 20, variance 20/3.
    // Systolic 120 130 110: mean 120, variance (0+100+100)/2 = 100. Diastolic 80 84 76:
    // mean 80, variance (0+16+16)/2 = 16. p2's 160/100 is not p1's.
    let parameters = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueUri": "Patient/p1"},
            {"name": "code", "valueString": "59408-5"},
            {"name": "coding", "valueCoding": {"system": LOINC, "code": "8480-6"}},
            {"name": "coding", "valueCoding": {"system": LOINC, "code": "8462-4"}},
            {"name": "statistic", "valueCode": "average"},
            {"name": "statistic", "valueCode": "maximum"},
            {"name": "statistic", "valueCode": "minimum"},
            {"name": "statistic", "valueCode": "count"},
            {"name": "statistic", "valueCode": "median"},
            {"name": "statistic", "valueCode": "std-dev"},
            {"name": "statistic", "valueCode": "sum"},
            {"name": "statistic", "valueCode": "variance"},
            {"name": "period", "valuePeriod": {"start": "2025-01-10T10:00:00Z", "end": "2025-01-10T10:05:00Z"}}
        ]
    });
    let (status, body) = app.post_stats(parameters.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let got = results(&body);
    let codes: Vec<&Value> = got.iter().map(|o| &o["code"]["coding"][0]["code"]).collect();
    assert_eq!(codes, [&json!("59408-5"), &json!("8480-6"), &json!("8462-4")]);
    assert_stats(got[0], [Some(96.0), Some(99.0), Some(93.0), Some(4.0), Some(96.0), Some(2.581988897471611), Some(384.0), Some(20.0 / 3.0)]);
    assert_eq!(component(got[0], "average")["valueQuantity"]["code"], "%");
    assert_stats(got[1], [Some(120.0), Some(130.0), Some(110.0), Some(3.0), Some(120.0), Some(10.0), Some(360.0), Some(100.0)]);
    assert_stats(got[2], [Some(80.0), Some(84.0), Some(76.0), Some(3.0), Some(80.0), Some(4.0), Some(240.0), Some(16.0)]);
    assert_eq!(component(got[1], "maximum")["valueQuantity"]["code"], "mm[Hg]");
    for observation in &got {
        assert_eq!(source_of(observation), source);
        assert_eq!(observation["subject"]["reference"], "Patient/p1");
    }
    // The same by GET gives the same numbers.
    let (_, by_get) = app.get_stats(&[("subject", "Patient/p1"), ("code", "59408-5,8480-6"), ("coding", "http://loinc.org|8462-4"), ("statistic", ALL), ("period", PERIOD)]).await;
    assert_eq!(results(&by_get), got);

}

/// The default period (the last 24 hours ending now) and `duration`.
async fn check_default_period_and_duration(app: &App, now: OffsetDateTime, source: &str) {
    // p1 has 77 an hour ago and 150 twenty-five hours ago.
    let (_, body) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count,sum")]).await;
    let last_day = results(&body)[0];
    assert_eq!(source_of(last_day), source);
    assert_close(last_day, "count", 1.0);
    assert_close(last_day, "sum", 77.0);
    let (start, end) = period_of(last_day);
    let parse = |t: &str| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).expect("an instant");
    assert_eq!(parse(end) - parse(start), time::Duration::hours(24));
    assert!((parse(end) - now).abs() < time::Duration::minutes(5));
    let (_, body) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count,sum"), ("duration", "26")]).await;
    assert_close(results(&body)[0], "count", 2.0);
    assert_close(results(&body)[0], "sum", 227.0);
    let (_, body) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count"), ("duration", "0.5")]).await;
    assert_close(results(&body)[0], "count", 0.0);

}

#[tokio::test]
async fn stats_from_the_store() {
    let app = spawn_app().await;
    let now = OffsetDateTime::now_utc();
    load(&app, now).await;
    check_numbers(&app, "store").await;
    check_default_period_and_duration(&app, now, "store").await;

    // --- include and limit -------------------------------------------------------------
    let (_, body) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count"), ("period", PERIOD), ("include", "true")]).await;
    let values: Vec<f64> = sources(&body).iter().map(|o| o["valueQuantity"]["value"].as_f64().unwrap_or(f64::NAN)).collect();
    assert_eq!(values, [60.0, 72.0, 80.0, 84.0, 64.0]);
    let (_, body) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count"), ("period", PERIOD), ("include", "true"), ("limit", "2")]).await;
    let limited: Vec<&Value> = sources(&body).iter().map(|o| &o["effectiveDateTime"]).collect();
    assert_eq!(limited, [&json!("2025-01-10T10:01:45+00:00"), &json!("2025-01-10T11:02:10+01:00")]);
    assert!(sources(&body).iter().all(|o| o["resourceType"] == "Observation" && o["id"].is_string()));
    assert_close(results(&body)[0], "count", 5.0); // the limit does not change the statistics
    let (_, body) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8480-6"), ("statistic", "count"), ("period", PERIOD), ("include", "true")]).await;
    let panels: Vec<&Value> = sources(&body).iter().map(|o| &o["code"]["coding"][0]["code"]).collect();
    assert_eq!(panels, [&json!("85354-9"), &json!("85354-9"), &json!("85354-9")]);
    let (_, body) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count"), ("period", PERIOD), ("include", "false")]).await;
    assert!(sources(&body).is_empty());

    // --- the answer is valid R4: it renders as XML too ----------------------------------
    let (status, _) = app.get_stats(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", ALL), ("period", "2025-01-09T00:00:00Z/2025-01-09T01:00:00Z")]).await;
    assert_eq!(status, 200);
    let xml = app
        .client
        .get(format!("{}/Observation/$stats?subject=Patient/p1&code=8867-4&statistic={ALL}&period={}&_format=xml", app.base, encode(PERIOD)))
        .send()
        .await
        .expect("get xml");
    assert_eq!(xml.status().as_u16(), 200);
    let text = xml.text().await.unwrap_or_default();
    assert!(text.contains("<Parameters") && text.contains("std-dev") && text.contains("stats-source"), "{text}");
}

/// Waits until the follower named `name` has applied the whole change feed.
async fn wait_caught_up(app: &App, name: &str) {
    let root = app.base.trim_end_matches("/fhir");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value = app.client.get(format!("{root}/admin/projections")).send().await.expect("admin").json().await.expect("json");
        let projection = status["projections"].as_array().and_then(|list| list.iter().find(|p| p["name"] == name)).cloned();
        let checkpoint = projection.as_ref().and_then(|p| p["checkpoint"].as_u64());
        if status["head"].as_u64().is_some_and(|head| head > 0 && checkpoint == Some(head)) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the {name} projection did not catch up: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_from_the_time_series_database_and_the_store_when_it_is_down() {
    let Some(influx) = tokio::task::spawn_blocking(InfluxServer::start).await.expect("start influxd") else { return };
    let url = influx.url();
    let app = spawn_app_with(|settings| {
        settings.tsdb_url = Some(url);
        settings.tsdb_database = "tessera_stats".into();
    })
    .await;
    let now = OffsetDateTime::now_utc();
    load(&app, now).await;
    wait_caught_up(&app, "tsdb").await;
    check_numbers(&app, "tsdb").await;
    check_default_period_and_duration(&app, now, "tsdb").await;

    // The database goes down: the same numbers come from the store.
    let mut influx = influx;
    let influx = tokio::task::spawn_blocking(move || {
        influx.stop();
        influx
    })
    .await
    .expect("stop influxd");
    check_numbers(&app, "store").await;
    drop(influx);
}

#[tokio::test]
async fn every_mistake_is_a_400_operation_outcome() {
    let app = spawn_app().await;
    let ok: [(&str, &str); 4] = [("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "average"), ("period", PERIOD)];
    let (status, _) = app.get_stats(&ok).await;
    assert_eq!(status, 200);
    let with = |name: &'static str, value: &'static str| -> Vec<(&'static str, &'static str)> {
        let mut params: Vec<_> = ok.iter().copied().filter(|(k, _)| *k != name).collect();
        params.push((name, value));
        params
    };
    let without = |name: &str| -> Vec<(&'static str, &'static str)> { ok.iter().copied().filter(|(k, _)| *k != name).collect() };
    let plus = |name: &'static str, value: &'static str| -> Vec<(&'static str, &'static str)> {
        let mut params = ok.to_vec();
        params.push((name, value));
        params
    };

    assert_bad(&app, &without("subject"), "subject").await;
    assert_bad(&app, &with("subject", "Device/d1"), "not a Patient reference").await;
    assert_bad(&app, &with("subject", "p1"), "not a Patient reference").await;
    assert_bad(&app, &with("subject", "Patient/a,b"), "not a Patient reference").await;
    assert_bad(&app, &plus("subject", "Patient/p2"), "only once").await;
    assert_bad(&app, &without("code"), "code or coding is required").await;
    assert_bad(&app, &with("code", "1234-5"), "8867-4").await; // names the supported codes
    assert_bad(&app, &with("code", "85354-9"), "not a supported vital sign").await;
    assert_bad(&app, &with("code", "8867-4,"), "empty value").await;
    assert_bad(&app, &with("code", "http://loinc.org|8867-4"), "use coding").await;
    assert_bad(&app, &plus("system", "http://snomed.info/sct"), "not supported").await;
    assert_bad(&app, &[("subject", "Patient/p1"), ("coding", "http://snomed.info/sct|364075005"), ("statistic", "average")], "not supported").await;
    assert_bad(&app, &[("subject", "Patient/p1"), ("coding", "8867-4"), ("statistic", "average")], "system|code").await;
    assert_bad(&app, &without("statistic"), "statistic is required").await;
    assert_bad(&app, &with("statistic", "mode"), "average, maximum, minimum, count, median, std-dev, sum, variance").await;
    assert_bad(&app, &with("statistic", "average,20-percent"), "not supported").await;
    assert_bad(&app, &[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count"), ("duration", "-1")], "duration").await;
    assert_bad(&app, &[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count"), ("duration", "0")], "duration").await;
    assert_bad(&app, &[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count"), ("duration", "abc")], "duration").await;
    assert_bad(&app, &[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count"), ("duration", "NaN")], "duration").await;
    assert_bad(&app, &[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count"), ("duration", "1e300")], "duration").await;
    assert_bad(&app, &plus("duration", "1"), "either duration or period").await;
    assert_bad(&app, &with("period", "2025-01-10T10:00:00Z"), "<start>/<end>").await;
    assert_bad(&app, &with("period", "2025-01-10/2025-01-11"), "not an instant").await;
    assert_bad(&app, &with("period", "2025-01-10T10:05:00Z/2025-01-10T10:00:00Z"), "before its end").await;
    assert_bad(&app, &with("period", "2025-01-10T10:00:00Z/2025-01-10T10:00:00Z"), "before its end").await;
    assert_bad(&app, &plus("window", "5x"), "window").await;
    assert_bad(&app, &plus("window", "0m"), "window").await;
    assert_bad(&app, &plus("window", "m"), "window").await;
    // 86,400 one-second windows in a day; at most 10,000.
    assert_bad(&app, &with("period", "2025-01-10T00:00:00Z/2025-01-11T00:00:00Z").into_iter().chain([("window", "1s")]).collect::<Vec<_>>(), "10000").await;
    assert_bad(&app, &plus("include", "yes"), "include").await;
    assert_bad(&app, &plus("limit", "0"), "limit").await;
    assert_bad(&app, &plus("limit", "1001"), "limit").await;
    assert_bad(&app, &plus("limit", "x"), "limit").await;
    assert_bad(&app, &plus("foo", "bar"), "unknown parameter").await;

    let parameters = |extra: Value| {
        let mut parameter = vec![
            json!({"name": "subject", "valueUri": "Patient/p1"}),
            json!({"name": "code", "valueString": "8867-4"}),
            json!({"name": "statistic", "valueCode": "average"}),
        ];
        parameter.push(extra);
        json!({"resourceType": "Parameters", "parameter": parameter})
    };
    let (status, body) = app.post_stats(parameters(json!({"name": "include", "valueBoolean": false})).to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_bad_post(&app, json!({"resourceType": "Patient"}), "Parameters resource").await;
    assert_bad_post(&app, json!({"resourceType": "Parameters"}), "no parameter").await;
    assert_bad_post(&app, parameters(json!({"name": "include", "valueString": "true"})), "valueBoolean").await;
    assert_bad_post(&app, parameters(json!({"name": "duration", "valueString": "1"})), "valueDecimal").await;
    assert_bad_post(&app, parameters(json!({"name": "duration", "valueDecimal": -2})), "duration").await;
    assert_bad_post(&app, parameters(json!({"name": "period", "valuePeriod": {"start": "2025-01-10T10:00:00Z"}})), "start and an end").await;
    assert_bad_post(&app, parameters(json!({"name": "coding", "valueCoding": {"code": "8867-4"}})), "system and a code").await;
    assert_bad_post(&app, parameters(json!({"name": "statistic", "valueCode": "mode"})), "not supported").await;
    assert_bad_post(&app, parameters(json!({"name": "limit", "valuePositiveInt": 0})), "limit").await;
    assert_bad_post(&app, parameters(json!({"name": "window", "valueString": "1w"})), "window").await;
    assert_bad_post(&app, parameters(json!({"name": "subject", "valueUri": "Patient/p2"})), "only once").await;
    assert_bad_post(&app, parameters(json!({"name": "bogus", "valueString": "x"})), "unknown parameter").await;
    assert_bad_post(&app, parameters(json!({"name": "code", "resource": {"resourceType": "Patient"}})), "takes a value").await;
    let (status, body) = app.post_stats("{not json".into()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    // Query parameters other than _format do not mix with a POSTed body.
    let response = app
        .client
        .post(format!("{}/Observation/$stats?subject=Patient/p1", app.base))
        .header("content-type", "application/fhir+json")
        .body(parameters(json!({"name": "include", "valueBoolean": true})).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 400);
}
