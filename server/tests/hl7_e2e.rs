//! End to end with a real external sender: python-hl7 (`hl7.client.MLLPClient`, through
//! `hl7_data/hl7_send.py`) sends ADT and ORU messages to Tessera's MLLP listener; the ACKs it
//! gets are checked field by field, and the resources are read back over FHIR REST.
//!
//! Without python-hl7 the tests print `skipped: …` and pass, unless `TESSERA_REQUIRE_PEERS=1`.

mod hl7_support;

use std::process::Command;

use hl7_support::{authority_system, data_path, reference_of, spawn_app, Ack, Rest, TestApp};
use serde_json::Value;

/// One line of `hl7_send.py`'s output.
#[derive(Debug, Clone, serde::Deserialize)]
struct Exchange {
    file: String,
    control_id: String,
    /// The exact text python-hl7 sent.
    sent: String,
    /// The exact ACK text received.
    ack: String,
    /// MSA-1..3 as python-hl7 reads them from the ACK.
    msa1: String,
    msa2: String,
    #[allow(dead_code)]
    msa3: String,
}

impl Exchange {
    /// The ACK must carry `code`, answer the sent message, and agree with python-hl7's reading.
    fn assert_ack(&self, code: &str) -> Ack {
        let ack = Ack::parse(self.ack.as_bytes());
        assert_eq!(ack.msa1(), code, "MSA-1 for {}: {:?}", self.file, self.ack);
        ack.assert_answers(self.sent.as_bytes());
        assert_eq!(ack.msa2(), self.control_id, "MSA-2 for {}", self.file);
        assert_eq!((self.msa1.as_str(), self.msa2.as_str()), (ack.msa1(), ack.msa2()), "python-hl7 reads the same MSA");
        if code == "AA" || code == "CA" {
            assert!(ack.all("ERR").is_empty(), "no ERR segment in an accept ACK: {:?}", self.ack);
        }
        ack
    }
}

/// True when the tests can run; false (after saying so) when they are to be skipped.
fn python_hl7_ready() -> bool {
    let available = Command::new("python3").args(["-c", "import hl7, hl7.client"]).output().map(|o| o.status.success()).unwrap_or(false);
    if available {
        return true;
    }
    if std::env::var("TESSERA_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("python-hl7 is required (TESSERA_REQUIRE_PEERS=1) but `python3 -c \"import hl7\"` fails: pip install hl7");
    }
    println!("skipped: python-hl7 not installed (pip install hl7)");
    false
}

/// Sends the message files (relative to `hl7_data/e2e/`) over one python-hl7 connection, in
/// order, and returns what happened to each.
async fn python_send(app: &TestApp, files: &[&str]) -> Vec<Exchange> {
    let script = data_path("hl7_send.py");
    let port = app.mllp.port().to_string();
    let paths: Vec<_> = files.iter().map(|f| data_path(&format!("e2e/{f}"))).collect();
    let output = tokio::task::spawn_blocking(move || Command::new("python3").arg(script).arg("127.0.0.1").arg(port).args(paths).output())
        .await
        .expect("python task")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "hl7_send.py failed: {}\nstdout: {stdout}", String::from_utf8_lossy(&output.stderr));
    let exchanges: Vec<Exchange> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l:?}: {e}"))).collect();
    assert_eq!(exchanges.len(), files.len(), "one ACK per message sent: {stdout}");
    exchanges
}

/// The one Patient with MR `value` of authority HOSP.
async fn patient(rest: &Rest, value: &str) -> Value {
    let token = format!("{}|{value}", authority_system("HOSP"));
    let found = rest.search("Patient", &[("identifier", &token)]).await;
    assert_eq!(found.len(), 1, "exactly one Patient with identifier {token}: {found:#?}");
    found.into_iter().next().expect("one patient")
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn number_at(value: &Value, pointer: &str) -> Option<f64> {
    value.pointer(pointer).and_then(Value::as_f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_then_update_keeps_one_patient_with_the_new_name() {
    if !python_hl7_ready() {
        return;
    }
    let app = spawn_app().await;
    let rest = &app.rest;

    let a01 = python_send(&app, &["adt_a01.hl7"]).await;
    a01[0].assert_ack("AA");
    let admitted = patient(rest, "E2E-1001").await;
    assert_eq!(str_at(&admitted, "/name/0/family"), "Müller", "{admitted:#}");
    assert_eq!(admitted.pointer("/name/0/given"), Some(&serde_json::json!(["Anna", "Maria"])), "{admitted:#}");
    assert_eq!(str_at(&admitted, "/gender"), "female");
    assert_eq!(str_at(&admitted, "/birthDate"), "1980-02-15");
    let patient_ref = reference_of(&admitted);

    let encounters = rest.search("Encounter", &[("subject", &patient_ref)]).await;
    assert_eq!(encounters.len(), 1, "A01 gives one Encounter: {encounters:#?}");
    let encounter = &encounters[0];
    assert_eq!(str_at(encounter, "/status"), "in-progress", "{encounter:#}");
    assert_eq!(str_at(encounter, "/class/code"), "IMP", "PV1-2 I is an inpatient encounter: {encounter:#}");
    assert_eq!(str_at(encounter, "/subject/reference"), patient_ref);

    // The log holds the admission as accepted, with the resources it wrote.
    let logged = rest.messages(&[("control_id", "E2E-A01-0001")]).await;
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert_eq!(str_at(&logged[0], "/status"), "accepted");
    assert_eq!(str_at(&logged[0], "/messageType"), "ADT^A01");
    let resources: Vec<&str> = logged[0]["resources"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    assert!(resources.contains(&patient_ref.as_str()), "{resources:?}");
    assert!(resources.contains(&reference_of(encounter).as_str()), "{resources:?}");

    let a08 = python_send(&app, &["adt_a08.hl7"]).await;
    a08[0].assert_ack("AA");
    let updated = patient(rest, "E2E-1001").await;
    assert_eq!(reference_of(&updated), patient_ref, "A08 updates the same Patient");
    assert_eq!(str_at(&updated, "/name/0/family"), "Müller-Schmidt", "{updated:#}");
    assert!(updated.to_string().contains("Müller-Schmidt") && !updated.to_string().contains("\"Müller\""), "the old name is replaced: {updated:#}");
    assert_ne!(str_at(&updated, "/meta/versionId"), str_at(&admitted, "/meta/versionId"), "a new version");
    let encounters = rest.search("Encounter", &[("subject", &patient_ref)]).await;
    assert_eq!(encounters.len(), 1, "the same visit number updates the same Encounter: {encounters:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_deactivates_the_prior_patient_and_links_both_ways() {
    if !python_hl7_ready() {
        return;
    }
    let app = spawn_app().await;
    let rest = &app.rest;

    let sent = python_send(&app, &["adt_a01_survivor.hl7", "adt_a01_prior.hl7", "adt_a40.hl7"]).await;
    for exchange in &sent {
        exchange.assert_ack("AA");
    }
    assert_eq!(sent[2].ack.split('\r').next().map(|msh| msh.contains("|ACK^A40^ACK|")), Some(true), "{:?}", sent[2].ack);

    let survivor = patient(rest, "E2E-2001").await;
    let survivor_ref = reference_of(&survivor);
    // The prior's identifier now names both (the survivor carries it as an old identifier).
    let token = format!("{}|E2E-2002", authority_system("HOSP"));
    let both = rest.search("Patient", &[("identifier", &token)]).await;
    let prior = both.iter().find(|p| reference_of(p) != survivor_ref).unwrap_or_else(|| panic!("the prior patient is still there: {both:#?}"));
    let prior_ref = reference_of(prior);

    assert_eq!(prior.get("active"), Some(&Value::Bool(false)), "the prior is inactive: {prior:#}");
    let links = prior["link"].as_array().cloned().unwrap_or_default();
    assert!(
        links.iter().any(|l| str_at(l, "/type") == "replaced-by" && str_at(l, "/other/reference") == survivor_ref),
        "prior links replaced-by {survivor_ref}: {prior:#}"
    );
    let links = survivor["link"].as_array().cloned().unwrap_or_default();
    assert!(
        links.iter().any(|l| str_at(l, "/type") == "replaces" && str_at(l, "/other/reference") == prior_ref),
        "survivor links replaces {prior_ref}: {survivor:#}"
    );
    assert!(
        survivor["identifier"].as_array().is_some_and(|ids| ids.iter().any(|i| str_at(i, "/value") == "E2E-2002" && str_at(i, "/use") == "old")),
        "the survivor keeps the merged identifier as old: {survivor:#}"
    );
    assert_ne!(survivor.get("active"), Some(&Value::Bool(false)), "{survivor:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_vitals_and_lab_results_become_observations_and_reports_once() {
    if !python_hl7_ready() {
        return;
    }
    let app = spawn_app().await;
    let rest = &app.rest;

    let sent = python_send(&app, &["adt_a01.hl7", "oru_r01_vitals_lab.hl7"]).await;
    sent[0].assert_ack("AA");
    sent[1].assert_ack("AA");
    let patient_ref = reference_of(&patient(rest, "E2E-1001").await);

    // One DiagnosticReport per OBR, found by its filler order number, with its results.
    let vitals_reports = rest.search("DiagnosticReport", &[("identifier", "E2E-ORD-1")]).await;
    assert_eq!(vitals_reports.len(), 1, "{vitals_reports:#?}");
    let lab_reports = rest.search("DiagnosticReport", &[("identifier", "E2E-ORD-2")]).await;
    assert_eq!(lab_reports.len(), 1, "{lab_reports:#?}");
    let vitals_report = &vitals_reports[0];
    let lab_report = &lab_reports[0];
    let ord1 = vitals_report["identifier"].as_array().and_then(|ids| ids.iter().find(|i| str_at(i, "/value") == "E2E-ORD-1")).cloned();
    assert_eq!(ord1.as_ref().map(|i| str_at(i, "/system")), Some(authority_system("E2E_ICU").as_str()), "{vitals_report:#}");
    for report in [vitals_report, lab_report] {
        assert_eq!(str_at(report, "/subject/reference"), patient_ref, "{report:#}");
    }
    let results = |report: &Value| -> Vec<String> {
        report["result"].as_array().map(|r| r.iter().map(|x| str_at(x, "/reference").to_string()).collect()).unwrap_or_default()
    };
    let lab_results = results(lab_report);
    assert_eq!(lab_results.len(), 2, "two lab OBX, two results: {lab_report:#}");
    let vitals_results = results(vitals_report);
    assert!((4..=5).contains(&vitals_results.len()), "five vital OBX (BP maybe as one panel): {vitals_report:#}");

    let observations = rest.search("Observation", &[("subject", &patient_ref)]).await;
    let mut all_results: Vec<String> = vitals_results.iter().chain(&lab_results).cloned().collect();
    all_results.sort();
    let mut found: Vec<String> = observations.iter().map(reference_of).collect();
    found.sort();
    assert_eq!(found, all_results, "the patient's Observations are exactly the reports' results");

    let by_loinc = |code: &'static str| {
        let rest = rest.clone();
        let patient_ref = patient_ref.clone();
        async move {
            let token = format!("http://loinc.org|{code}");
            rest.search("Observation", &[("code", &token), ("subject", &patient_ref)]).await
        }
    };
    let vital = |observation: &Value| {
        observation["category"].as_array().is_some_and(|c| c.iter().any(|cat| cat.to_string().contains("vital-signs")))
    };

    let heart_rate = by_loinc("8867-4").await;
    assert_eq!(heart_rate.len(), 1, "{heart_rate:#?}");
    let hr = &heart_rate[0];
    assert_eq!(number_at(hr, "/valueQuantity/value"), Some(72.0), "{hr:#}");
    assert_eq!(str_at(hr, "/valueQuantity/code"), "/min");
    assert_eq!(str_at(hr, "/valueQuantity/system"), "http://unitsofmeasure.org");
    assert!(vital(hr), "heart rate is a vital sign: {hr:#}");
    assert!(hr.to_string().contains("147842"), "the MDC coding is kept: {hr:#}");
    // OBX-14 carries no zone: the sender's, from MSH-7 (+0100), applies.
    assert_eq!(str_at(hr, "/effectiveDateTime"), "2024-03-01T10:55:00+01:00", "{hr:#}");

    let devices = rest.search("Device", &[("identifier", "MON-0042")]).await;
    assert_eq!(devices.len(), 1, "{devices:#?}");
    assert_eq!(str_at(hr, "/device/reference"), reference_of(&devices[0]), "the monitor of OBX-18: {hr:#}");

    // Either SpO2 code (or both, on one Observation).
    let spo2 = rest.search("Observation", &[("code", "http://loinc.org|2708-6,http://loinc.org|59408-5"), ("subject", &patient_ref)]).await;
    assert_eq!(spo2.len(), 1, "{spo2:#?}");
    assert_eq!(number_at(&spo2[0], "/valueQuantity/value"), Some(98.0));
    assert_eq!(str_at(&spo2[0], "/valueQuantity/code"), "%");
    assert!(vital(&spo2[0]));

    let temperature = by_loinc("8310-5").await;
    assert_eq!(temperature.len(), 1, "{temperature:#?}");
    assert_eq!(number_at(&temperature[0], "/valueQuantity/value"), Some(36.8));
    assert_eq!(str_at(&temperature[0], "/valueQuantity/code"), "Cel");

    // Blood pressure: one 85354-9 panel with two components, or a systolic and a diastolic.
    let component = |observation: &Value, code: &str| {
        observation["component"].as_array().and_then(|cs| {
            cs.iter().find(|c| c["code"].to_string().contains(code)).and_then(|c| number_at(c, "/valueQuantity/value"))
        })
    };
    let panels = by_loinc("85354-9").await;
    let (systolic, diastolic) = match panels.as_slice() {
        [panel] => {
            assert!(vital(panel));
            assert!(panel.to_string().contains("mm[Hg]"), "{panel:#}");
            (component(panel, "8480-6"), component(panel, "8462-4"))
        }
        [] => {
            let s = by_loinc("8480-6").await;
            let d = by_loinc("8462-4").await;
            assert_eq!((s.len(), d.len()), (1, 1), "systolic {s:#?} diastolic {d:#?}");
            (number_at(&s[0], "/valueQuantity/value"), number_at(&d[0], "/valueQuantity/value"))
        }
        more => panic!("one blood pressure panel expected: {more:#?}"),
    };
    assert_eq!((systolic, diastolic), (Some(120.0), Some(80.0)));

    let glucose = by_loinc("2345-7").await;
    assert_eq!(glucose.len(), 1, "{glucose:#?}");
    let g = &glucose[0];
    assert_eq!(number_at(g, "/valueQuantity/value"), Some(95.0), "{g:#}");
    assert_eq!(str_at(g, "/valueQuantity/code"), "mg/dL");
    assert_eq!(number_at(g, "/referenceRange/0/low/value"), Some(70.0), "{g:#}");
    assert_eq!(number_at(g, "/referenceRange/0/high/value"), Some(99.0), "{g:#}");
    assert_eq!(str_at(g, "/interpretation/0/coding/0/code"), "N", "{g:#}");
    assert_eq!(str_at(g, "/status"), "final");
    assert!(lab_results.contains(&reference_of(g)), "glucose is a result of the lab report");

    // A retry of the committed message: the identical ACK, nothing written twice.
    let retry = python_send(&app, &["oru_r01_vitals_lab.hl7"]).await;
    retry[0].assert_ack("AA");
    assert_eq!(retry[0].ack, sent[1].ack, "a retry gets the stored ACK, byte for byte");
    let again = rest.search("Observation", &[("subject", &patient_ref)]).await;
    let mut found_again: Vec<String> = again.iter().map(reference_of).collect();
    found_again.sort();
    assert_eq!(found_again, found, "no duplicate Observations after the retry");
    assert_eq!(rest.search("DiagnosticReport", &[("identifier", "E2E-ORD-1")]).await.len(), 1);
    let versions = |list: &[Value]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = list.iter().map(|o| (reference_of(o), str_at(o, "/meta/versionId").to_string())).collect();
        v.sort();
        v
    };
    assert_eq!(versions(&again), versions(&observations), "a retry writes no new versions");
    let logged = rest.messages(&[("control_id", "E2E-ORU-0001")]).await;
    assert_eq!(logged.len(), 1, "the retry is not logged as a second message: {logged:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmapped_message_type_is_acknowledged_and_logged() {
    if !python_hl7_ready() {
        return;
    }
    let app = spawn_app().await;
    let rest = &app.rest;
    let sent = python_send(&app, &["siu_s12.hl7"]).await;
    sent[0].assert_ack("AA");

    let logged = rest.messages(&[("status", "accepted"), ("control_id", "E2E-SIU-0001")]).await;
    assert_eq!(logged.len(), 1, "{logged:#?}");
    let record = &logged[0];
    assert_eq!(str_at(record, "/messageType"), "SIU^S12");
    assert_eq!(str_at(record, "/ackCode"), "AA");
    assert_eq!(str_at(record, "/sendingApplication"), "E2E_SCHED");
    assert_eq!(str_at(record, "/sendingFacility"), "E2E_HOSP");
    assert_eq!(record["resources"].as_array().map(Vec::len), Some(0), "nothing mapped: {record:#}");
    let raw = rest.raw_message(str_at(record, "/id")).await;
    assert_eq!(raw, sent[0].sent.as_bytes(), "the raw message is kept as received");
    assert!(rest.search("Patient", &[]).await.is_empty(), "an unmapped message writes no Patient");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_error_is_answered_ae_and_logged_with_the_exact_bytes() {
    if !python_hl7_ready() {
        return;
    }
    let app = spawn_app().await;
    let rest = &app.rest;
    let sent = python_send(&app, &["adt_a01_bad_gender.hl7"]).await;
    let ack = sent[0].assert_ack("AE");
    let errors = ack.errors();
    assert_eq!(errors.len(), 1, "{:?}", ack.text);
    let err = &errors[0];
    assert_eq!((err.code.as_str(), err.code_system.as_str(), err.severity.as_str()), ("103", "HL70357", "E"), "{err:?}");
    assert!(err.location.starts_with("PID^1^8"), "ERR-2 names PID-8: {err:?}");
    assert!(!err.message.is_empty(), "ERR-8 explains: {err:?}");

    let logged = rest.messages(&[("status", "error"), ("control_id", "E2E-A01-BAD1")]).await;
    assert_eq!(logged.len(), 1, "{logged:#?}");
    let record = &logged[0];
    assert_eq!(str_at(record, "/ackCode"), "AE");
    assert!(!str_at(record, "/error").is_empty(), "{record:#}");
    let raw = rest.raw_message(str_at(record, "/id")).await;
    assert_eq!(raw, sent[0].sent.as_bytes(), "/raw returns the bytes exactly as sent");
    let shown = rest.json(&format!("/hl7/messages/{}", str_at(record, "/id"))).await;
    assert_eq!(str_at(&shown, "/ack"), sent[0].ack, "the log keeps the ACK that was sent");
    assert!(rest.messages(&[("status", "accepted"), ("control_id", "E2E-A01-BAD1")]).await.is_empty());
    let token = format!("{}|E2E-4001", authority_system("HOSP"));
    assert!(rest.search("Patient", &[("identifier", &token)]).await.is_empty(), "nothing of a refused message is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_mode_gets_a_commit_accept() {
    if !python_hl7_ready() {
        return;
    }
    let app = spawn_app().await;
    let rest = &app.rest;
    let sent = python_send(&app, &["adt_a04_enhanced.hl7"]).await;
    sent[0].assert_ack("CA");
    let registered = patient(rest, "E2E-3001").await;
    assert_eq!(str_at(&registered, "/name/0/family"), "Enhanced");
    let logged = rest.messages(&[("control_id", "E2E-A04-0001")]).await;
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert_eq!((str_at(&logged[0], "/status"), str_at(&logged[0], "/ackCode")), ("accepted", "CA"));
}
