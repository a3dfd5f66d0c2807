//! The v2-to-FHIR mapping through the public API: snapshot tests (tests/messages/*.hl7 in,
//! tests/snapshots/*.json out; `UPDATE_SNAPSHOTS=1` rewrites them), every row of the code
//! tables, device vital signs under FHIR validation, and the located errors.

use std::fs;
use std::path::{Path, PathBuf};

use hl7_bridge::map::{map_message, placeholder, Mapping, ResourceKey, WritePolicy};
use hl7_bridge::{parse, ErrorCode, Hl7Error, Location};
use serde_json::Value;
use time::OffsetDateTime;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

fn map(text: &str) -> Result<Option<Mapping>, Hl7Error> {
    let message = parse(text.as_bytes())
        .unwrap_or_else(|e| panic!("test message does not parse: {e}\n{text}"));
    map_message(&message, None)
}

fn mapped(text: &str) -> Mapping {
    match map(text) {
        Ok(Some(mapping)) => mapping,
        other => panic!("expected a mapping, got {other:?}\n{text}"),
    }
}

fn validate_all(mapping: &Mapping, what: &str) {
    let now = OffsetDateTime::now_utc();
    for (i, resource) in mapping.resources.iter().enumerate() {
        if let Err(e) = fhir_model::validate(&resource.body, now) {
            panic!(
                "{what}: resource {i} ({}) is not valid FHIR: {e:?}\n{:#}",
                resource.resource_type, resource.body
            );
        }
    }
}

fn message_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir("messages"))
        .expect("tests/messages")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hl7"))
        .collect();
    files.sort();
    files
}

#[test]
fn snapshots() {
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    let files = message_files();
    assert!(
        files.len() >= 10,
        "expected the message corpus in tests/messages"
    );
    let mut failures = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name")
            .to_string();
        let text = fs::read_to_string(&file).expect("message file");
        let result = map(&text).unwrap_or_else(|e| panic!("{name}: mapping failed: {e}"));
        if let Some(mapping) = &result {
            validate_all(mapping, &name);
        }
        let actual = serde_json::to_string_pretty(&result).expect("serialise") + "\n";
        let snapshot = dir("snapshots").join(format!("{name}.json"));
        if update {
            fs::write(&snapshot, &actual).expect("write snapshot");
            continue;
        }
        match fs::read_to_string(&snapshot) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{name}: mapping differs from {}\n--- expected\n{expected}\n--- actual\n{actual}",
                snapshot.display()
            )),
            Err(_) => failures.push(format!(
                "{name}: no snapshot at {}; create it with `UPDATE_SNAPSHOTS=1 cargo test -p hl7-bridge --test mapping snapshots` and review it",
                snapshot.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_snapshot_body_is_valid_fhir() {
    let now = OffsetDateTime::now_utc();
    let mut seen = 0;
    for entry in fs::read_dir(dir("snapshots")).expect("tests/snapshots") {
        let path = entry.expect("directory entry").path();
        let snapshot: Value = serde_json::from_str(&fs::read_to_string(&path).expect("snapshot"))
            .expect("snapshot JSON");
        for resource in snapshot
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let body = &resource["body"];
            assert!(
                body.get("id").is_none() && body.get("meta").is_none(),
                "{}: body with id/meta",
                path.display()
            );
            assert_eq!(
                body["resourceType"],
                resource["resource_type"],
                "{}",
                path.display()
            );
            if let Err(e) = fhir_model::validate(body, now) {
                panic!("{}: {e:?}\n{body:#}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen > 30, "only {seen} snapshot bodies");
}

// ---------------------------------------------------------------------------------------
// Code tables, row by row.

const MSH_ADT: &str =
    "MSH|^~\\&|ADT1|HOSP|TESSERA|HOSP|20240315083000+0100||ADT^A28^ADT_A05|C1|P|2.5.1";
const MSH_ORU: &str =
    "MSH|^~\\&|LAB|LABFAC|TESSERA|HOSP|20240315120000+0100||ORU^R01^ORU_R01|C2|P|2.5.1";
const PID: &str = "PID|1||MRN-1^^^HOSP^MR||Doe^John||19700101|M";
const OBR: &str = "OBR|1||F-1^LAB|24331-1^Lipid panel^LN|||20240315093000+0100";

fn patient_with_gender(code: &str) -> Result<Option<Mapping>, Hl7Error> {
    map(&format!(
        "{MSH_ADT}\nPID|1||MRN-1^^^HOSP^MR||Doe^John||19700101|{code}"
    ))
}

fn oru_with_obx(obx: &str) -> Result<Option<Mapping>, Hl7Error> {
    map(&format!("{MSH_ORU}\n{PID}\n{OBR}\n{obx}"))
}

fn first_observation(mapping: &Mapping) -> &Value {
    &mapping
        .resources
        .iter()
        .find(|r| r.resource_type == "Observation")
        .expect("an Observation")
        .body
}

#[test]
fn table_0001_every_row() {
    for (v2, fhir) in [
        ("F", "female"),
        ("M", "male"),
        ("O", "other"),
        ("U", "unknown"),
        ("A", "other"),
        ("N", "other"),
    ] {
        let mapping = patient_with_gender(v2).unwrap().unwrap();
        assert_eq!(
            mapping.resources[0].body["gender"], fhir,
            "table 0001 row {v2}"
        );
    }
    let no_gender = patient_with_gender("").unwrap().unwrap();
    assert!(no_gender.resources[0].body.get("gender").is_none());
}

#[test]
fn table_0078_every_row() {
    const V3: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
    const V2: &str = "http://terminology.hl7.org/CodeSystem/v2-0078";
    let rows = [
        ("<", V3, "<"),
        (">", V3, ">"),
        ("A", V3, "A"),
        ("AA", V3, "AA"),
        ("AC", V2, "AC"),
        ("B", V3, "B"),
        ("CAR", V3, "CAR"),
        ("D", V3, "D"),
        ("DET", V3, "DET"),
        ("E", V3, "E"),
        ("EX", V3, "EX"),
        ("EXP", V3, "EXP"),
        ("H", V3, "H"),
        ("HH", V3, "HH"),
        ("HM", V2, "HM"),
        ("HU", V3, "HU"),
        ("HX", V3, "HX"),
        ("I", V3, "I"),
        ("IE", V3, "IE"),
        ("IND", V3, "IND"),
        ("L", V3, "L"),
        ("LL", V3, "LL"),
        ("LU", V3, "LU"),
        ("LX", V3, "LX"),
        ("MS", V3, "MS"),
        ("N", V3, "N"),
        ("NCL", V3, "NCL"),
        ("ND", V3, "ND"),
        ("NEG", V3, "NEG"),
        ("NR", V3, "NR"),
        ("NS", V3, "NS"),
        ("OBX", V2, "OBX"),
        ("POS", V3, "POS"),
        ("QCF", V2, "QCF"),
        ("R", V3, "R"),
        ("RR", V3, "RR"),
        ("S", V3, "S"),
        ("SDD", V3, "SDD"),
        ("SYN-R", V3, "SYN-R"),
        ("SYN-S", V3, "SYN-S"),
        ("TOX", V2, "TOX"),
        ("U", V3, "U"),
        ("UNE", V3, "UNE"),
        ("VS", V3, "VS"),
        ("W", V3, "W"),
        ("WR", V3, "WR"),
    ];
    for (v2, system, code) in rows {
        let mapping = oru_with_obx(&format!(
            "OBX|1|NM|2093-3^Cholesterol^LN||195|mg/dL|<200|{v2}|||F"
        ))
        .unwrap()
        .unwrap();
        let coding = &first_observation(&mapping)["interpretation"][0]["coding"][0];
        assert_eq!(coding["system"], system, "table 0078 row {v2}");
        assert_eq!(coding["code"], code, "table 0078 row {v2}");
        assert!(
            coding["display"].as_str().is_some_and(|d| !d.is_empty()),
            "table 0078 row {v2}"
        );
        validate_all(&mapping, v2);
    }
    let error = oru_with_obx("OBX|1|NM|2093-3^Cholesterol^LN||195|mg/dL||H~ZZ|||F").unwrap_err();
    assert_eq!(error.code, ErrorCode::TableValueNotFound);
    assert_eq!(
        error.location,
        Some(Location::field("OBX", 1, 8).with_repetition(2))
    );
}

#[test]
fn table_0085_every_row() {
    let rows = [
        ("A", "amended"),
        ("B", "amended"),
        ("C", "corrected"),
        ("D", "entered-in-error"),
        ("F", "final"),
        ("I", "registered"),
        ("N", "cancelled"),
        ("O", "registered"),
        ("P", "preliminary"),
        ("R", "preliminary"),
        ("S", "preliminary"),
        ("U", "final"),
        ("V", "final"),
        ("W", "entered-in-error"),
        ("X", "cancelled"),
    ];
    for (v2, fhir) in rows {
        let mapping = oru_with_obx(&format!(
            "OBX|1|NM|2093-3^Cholesterol^LN||195|mg/dL|||||{v2}"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            first_observation(&mapping)["status"],
            fhir,
            "table 0085 row {v2}"
        );
        validate_all(&mapping, v2);
    }
    let error = oru_with_obx("OBX|1|NM|2093-3^Cholesterol^LN||195|mg/dL|||||Q").unwrap_err();
    assert_eq!(error.code, ErrorCode::TableValueNotFound);
    assert_eq!(error.location, Some(Location::field("OBX", 1, 11)));
    let error = oru_with_obx("OBX|1|NM|2093-3^Cholesterol^LN||195|mg/dL").unwrap_err();
    assert_eq!(error.code, ErrorCode::RequiredFieldMissing);
    assert_eq!(error.location, Some(Location::field("OBX", 1, 11)));
}

#[test]
fn table_0123_every_row() {
    let rows = [
        ("O", "registered"),
        ("I", "registered"),
        ("S", "registered"),
        ("N", "registered"),
        ("A", "partial"),
        ("R", "partial"),
        ("P", "preliminary"),
        ("C", "corrected"),
        ("M", "corrected"),
        ("F", "final"),
        ("X", "cancelled"),
        ("", "unknown"),
    ];
    for (v2, fhir) in rows {
        let mapping =
            map(&format!("{MSH_ORU}\n{PID}\nOBR|1||F-1^LAB|24331-1^Lipid panel^LN|||20240315093000+0100||||||||||||||||||{v2}"))
                .unwrap()
                .unwrap();
        let report = mapping
            .resources
            .iter()
            .find(|r| r.resource_type == "DiagnosticReport")
            .unwrap();
        assert_eq!(report.body["status"], fhir, "table 0123 row {v2:?}");
    }
}

#[test]
fn table_0004_every_row() {
    const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    const V2: &str = "http://terminology.hl7.org/CodeSystem/v2-0004";
    let rows = [
        ("E", ACT, "EMER"),
        ("I", ACT, "IMP"),
        ("O", ACT, "AMB"),
        ("P", ACT, "PRENC"),
        ("R", V2, "R"),
        ("B", V2, "B"),
        ("C", V2, "C"),
        ("N", V2, "N"),
        ("U", V2, "U"),
    ];
    for (v2, system, code) in rows {
        let text = format!(
            "{}\n{PID}\nPV1|1|{v2}",
            MSH_ADT.replace("A28^ADT_A05", "A01^ADT_A01")
        );
        let mapping = mapped(&text);
        let class = &mapping.resources[1].body["class"];
        assert_eq!(
            (class["system"].as_str(), class["code"].as_str()),
            (Some(system), Some(code)),
            "table 0004 row {v2}"
        );
        validate_all(&mapping, v2);
    }
}

// ---------------------------------------------------------------------------------------
// Vital signs from devices.

#[test]
fn device_vital_signs_become_valid_fhir_vital_signs() {
    let text = fs::read_to_string(dir("messages").join("oru_device_vitals.hl7")).unwrap();
    let mapping = mapped(&text);
    validate_all(&mapping, "oru_device_vitals");
    let observations: Vec<&Value> = mapping
        .resources
        .iter()
        .filter(|r| r.resource_type == "Observation")
        .map(|r| &r.body)
        .collect();
    let loinc = |body: &Value| -> Vec<String> {
        body["code"]["coding"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["system"] == "http://loinc.org")
            .map(|c| c["code"].as_str().unwrap().to_string())
            .collect()
    };
    let find = |code: &str| {
        observations
            .iter()
            .copied()
            .filter(|o| loinc(o).iter().any(|c| c == code))
            .collect::<Vec<_>>()
    };
    let vital = |body: &Value| body["category"][0]["coding"][0]["code"] == "vital-signs";

    let heart = find("8867-4");
    assert_eq!(heart.len(), 2, "ECG heart rate and oximeter pulse rate");
    for hr in &heart {
        assert!(vital(hr));
        assert_eq!(hr["valueQuantity"]["code"], "/min");
        assert_eq!(hr["valueQuantity"]["system"], "http://unitsofmeasure.org");
        assert_eq!(hr["device"]["reference"], placeholder(1));
    }
    // The original MDC coding is kept next to the LOINC one.
    assert!(heart[0]["code"]["coding"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["code"] == "147842"));

    let spo2 = find("59408-5");
    assert_eq!(
        spo2.len(),
        1,
        "the SpO2 given as a ratio is not a vital sign"
    );
    assert_eq!(loinc(spo2[0]), ["2708-6", "59408-5"]);
    assert_eq!(spo2[0]["valueQuantity"]["code"], "%");

    let temperature = find("8310-5");
    assert_eq!(temperature.len(), 2);
    assert_eq!(temperature[0]["valueQuantity"]["code"], "Cel");
    assert_eq!(temperature[1]["valueQuantity"]["code"], "[degF]");

    let panels = find("85354-9");
    assert_eq!(panels.len(), 1);
    let components = panels[0]["component"].as_array().unwrap();
    assert_eq!(loinc(&components[0]), ["8480-6"]);
    assert_eq!(loinc(&components[1]), ["8462-4"]);
    assert_eq!(components[0]["valueQuantity"]["value"].to_string(), "120");
    assert_eq!(components[1]["valueQuantity"]["code"], "mm[Hg]");
    assert_eq!(components[1]["interpretation"][0]["coding"][0]["code"], "H");
    assert!(
        find("8480-6").is_empty() && find("8462-4").is_empty(),
        "the paired pressures live only in the panel"
    );

    // The DiagnosticReport lists exactly the Observations written.
    let report = mapping
        .resources
        .iter()
        .find(|r| r.resource_type == "DiagnosticReport")
        .unwrap();
    let results = report.body["result"].as_array().unwrap();
    assert_eq!(results.len(), observations.len());
    for result in results {
        let index: usize = result["reference"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(mapping.resources[index].resource_type, "Observation");
    }

    // Two devices, each written once and only referenced when known.
    let devices: Vec<_> = mapping
        .resources
        .iter()
        .filter(|r| r.resource_type == "Device")
        .collect();
    assert_eq!(devices.len(), 2);
    assert!(devices
        .iter()
        .all(|d| d.policy == WritePolicy::KeepExisting));
    assert_eq!(
        devices[0].key,
        ResourceKey::Identifier {
            system: Some("urn:oid:1.2.3.4.5".into()),
            value: "MON-07".into()
        }
    );
}

#[test]
fn implausible_device_vital_signs_are_caught_by_validation() {
    // The mapping itself does not judge values; the pipeline's validation does, and it must
    // see these as vital signs to do so.
    let now = OffsetDateTime::now_utc();
    for obx in [
        "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||400|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||F",
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||120|%|||||F",
        "OBX|1|NM|150364^MDC_TEMP_BODY^MDC||50|268192^MDC_DIM_DEGC^MDC|||||F",
    ] {
        let mapping = oru_with_obx(obx).unwrap().unwrap();
        let error = fhir_model::validate(first_observation(&mapping), now);
        assert!(
            matches!(error, Err(fhir_model::ModelError::Rule(_))),
            "{obx}: {error:?}"
        );
    }
    let pair = "OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC||70|266016^MDC_DIM_MMHG^MDC|||||F\nOBX|2|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC||90|266016^MDC_DIM_MMHG^MDC|||||F";
    let mapping = oru_with_obx(pair).unwrap().unwrap();
    assert!(matches!(
        fhir_model::validate(first_observation(&mapping), now),
        Err(fhir_model::ModelError::Rule(_))
    ));
}

#[test]
fn a_loinc_vital_sign_in_a_foreign_unit_is_a_data_type_error() {
    let error = oru_with_obx("OBX|1|NM|8867-4^Heart rate^LN||60|Hz|||||F").unwrap_err();
    assert_eq!(error.code, ErrorCode::DataType);
    assert_eq!(error.location, Some(Location::field("OBX", 1, 6)));
}

// ---------------------------------------------------------------------------------------
// Keys, references and merges.

#[test]
fn identical_obx_get_distinct_keys() {
    let mapping = oru_with_obx(
        "OBX|1|NM|2093-3^Cholesterol^LN||195|mg/dL|||||F\nOBX|2|NM|2093-3^Cholesterol^LN||195|mg/dL|||||F",
    )
    .unwrap()
    .unwrap();
    let keys: Vec<_> = mapping
        .resources
        .iter()
        .filter(|r| r.resource_type == "Observation")
        .map(|r| r.key.clone())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1]);
    // The same message maps to the same keys again (ids are derived from them).
    let again = oru_with_obx(
        "OBX|1|NM|2093-3^Cholesterol^LN||195|mg/dL|||||F\nOBX|2|NM|2093-3^Cholesterol^LN||195|mg/dL|||||F",
    )
    .unwrap()
    .unwrap();
    assert_eq!(mapping, again);
}

#[test]
fn merge_links_survivor_and_prior() {
    let text = fs::read_to_string(dir("messages").join("adt_a40_merge.hl7")).unwrap();
    let mapping = mapped(&text);
    let [survivor, prior] = &mapping.resources[..] else {
        panic!("two resources")
    };
    assert_eq!(survivor.policy, WritePolicy::Replace);
    assert_eq!(prior.policy, WritePolicy::PatchExisting);
    assert_eq!(
        prior.key,
        ResourceKey::Identifier {
            system: Some("urn:tessera:v2-authority:HOSP".into()),
            value: "MRN-200".into()
        }
    );
    assert_eq!(
        survivor.body["link"][0]["other"]["reference"],
        placeholder(1)
    );
    assert_eq!(survivor.body["link"][0]["type"], "replaces");
    assert_eq!(prior.body["link"][0]["other"]["reference"], placeholder(0));
    assert_eq!(prior.body["link"][0]["type"], "replaced-by");
    assert_eq!(prior.body["active"], false);
    let old: Vec<_> = survivor.body["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["use"] == "old")
        .collect();
    assert_eq!(old.len(), 2);
}

#[test]
fn unmapped_messages_give_none() {
    for header in [
        "ADT^A03^ADT_A03",
        "ADT^A02^ADT_A02",
        "ORU^R30^ORU_R30",
        "ORM^O01^ORM_O01",
        "ACK^A01^ACK",
        "SIU^S12^SIU_S12",
    ] {
        let text = format!("{}\n{PID}", MSH_ADT.replace("ADT^A28^ADT_A05", header));
        assert_eq!(map(&text), Ok(None), "{header}");
    }
}

// ---------------------------------------------------------------------------------------
// Errors: code and location.

fn assert_error(result: Result<Option<Mapping>, Hl7Error>, code: ErrorCode, location: Location) {
    let error = result.expect_err("an error");
    assert_eq!(error.code, code, "{error}");
    assert_eq!(error.location, Some(location), "{error}");
    assert!(!error.message.is_empty());
}

#[test]
fn missing_pid_3_is_101_at_pid_3() {
    assert_error(
        map(&format!("{MSH_ADT}\nPID|1||||Doe^John||19700101|M")),
        ErrorCode::RequiredFieldMissing,
        Location::field("PID", 1, 3),
    );
    // An explicit null is no identifier either.
    assert_error(
        map(&format!("{MSH_ADT}\nPID|1||\"\"||Doe^John")),
        ErrorCode::RequiredFieldMissing,
        Location::field("PID", 1, 3),
    );
}

#[test]
fn bad_pid_7_is_102_at_pid_7() {
    for bad in [
        "19801301",
        "19800230",
        "1980-01-01",
        "19800101250000",
        "198001",
    ] {
        let result = map(&format!(
            "{MSH_ADT}\nPID|1||MRN-1^^^HOSP^MR||Doe^John||{bad}|M"
        ));
        if bad == "198001" {
            // Month precision is a valid DTM, and FHIR dates may be partial.
            assert_eq!(
                result.unwrap().unwrap().resources[0].body["birthDate"],
                "1980-01"
            );
            continue;
        }
        assert_error(result, ErrorCode::DataType, Location::field("PID", 1, 7));
    }
}

#[test]
fn gender_x_is_103_at_pid_8() {
    let error = patient_with_gender("X").unwrap_err();
    assert_eq!(error.code, ErrorCode::TableValueNotFound);
    assert_eq!(error.location, Some(Location::field("PID", 1, 8)));
    assert!(error.message.contains("0001"), "{}", error.message);
}

#[test]
fn missing_mrg_1_is_101() {
    let base = MSH_ADT.replace("A28^ADT_A05", "A40^ADT_A39");
    assert_error(
        map(&format!("{base}\nPID|1||MRN-1^^^HOSP^MR||Doe^John\nMRG|")),
        ErrorCode::RequiredFieldMissing,
        Location::field("MRG", 1, 1),
    );
    assert_error(
        map(&format!("{base}\nPID|1||MRN-1^^^HOSP^MR||Doe^John")),
        ErrorCode::RequiredFieldMissing,
        Location::field("MRG", 1, 1),
    );
}

#[test]
fn bad_obx_2_is_102_at_obx_2() {
    for obx in [
        "OBX|1|XX|2093-3^Cholesterol^LN||195||||||F",
        "OBX|1|NA|2093-3^Cholesterol^LN||1^2^3||||||F",
    ] {
        assert_error(
            oru_with_obx(obx),
            ErrorCode::DataType,
            Location::field("OBX", 1, 2),
        );
    }
    assert_error(
        oru_with_obx("OBX|1||2093-3^Cholesterol^LN||195||||||F"),
        ErrorCode::RequiredFieldMissing,
        Location::field("OBX", 1, 2),
    );
}

#[test]
fn bad_obx_5_is_102_at_obx_5() {
    for obx in [
        "OBX|1|NM|2093-3^Cholesterol^LN||abc||||||F",
        "OBX|1|SN|2093-3^Cholesterol^LN||^1^*^2||||||F",
        "OBX|1|SN|2093-3^Cholesterol^LN||^x||||||F",
        "OBX|1|DT|21112-8^Birth date^LN||20240230||||||F",
        "OBX|1|DT|21112-8^Birth date^LN||202402011200||||||F",
        "OBX|1|TM|24677-5^Time of dose^LN||2561||||||F",
        "OBX|1|DTM|8665-2^LMP^LN||2024130112||||||F",
    ] {
        assert_error(
            oru_with_obx(obx),
            ErrorCode::DataType,
            Location::field("OBX", 1, 5),
        );
    }
}

#[test]
fn other_structural_errors() {
    // OBX before any OBR.
    let error = map(&format!(
        "{MSH_ORU}\n{PID}\nOBX|1|NM|2093-3^Cholesterol^LN||195||||||F"
    ))
    .unwrap_err();
    assert_eq!(error.code, ErrorCode::SegmentSequence);
    // A visit event without PV1.
    let error = map(&format!(
        "{}\n{PID}",
        MSH_ADT.replace("A28^ADT_A05", "A01^ADT_A01")
    ))
    .unwrap_err();
    assert_eq!(error.code, ErrorCode::SegmentSequence);
    // Missing or unknown patient class.
    let a01 = MSH_ADT.replace("A28^ADT_A05", "A01^ADT_A01");
    assert_error(
        map(&format!("{a01}\n{PID}\nPV1|1|")),
        ErrorCode::RequiredFieldMissing,
        Location::field("PV1", 1, 2),
    );
    assert_error(
        map(&format!("{a01}\n{PID}\nPV1|1|Z")),
        ErrorCode::TableValueNotFound,
        Location::field("PV1", 1, 2),
    );
    // OBR without a service code; unknown result status.
    assert_error(
        map(&format!("{MSH_ORU}\n{PID}\nOBR|1||F-1^LAB")),
        ErrorCode::RequiredFieldMissing,
        Location::field("OBR", 1, 4),
    );
    assert_error(
        map(&format!(
            "{MSH_ORU}\n{PID}\nOBR|1||F-1^LAB|24331-1^Lipid panel^LN{}Y",
            "|".repeat(21)
        )),
        ErrorCode::TableValueNotFound,
        Location::field("OBR", 1, 25),
    );
    // A bad MSH-7 (it gives the sender's zone) and a bad death indicator.
    assert_error(
        map(&format!(
            "{}\n{PID}",
            MSH_ADT.replace("20240315083000+0100", "20241315")
        )),
        ErrorCode::DataType,
        Location::field("MSH", 1, 7),
    );
    let pid_30 = format!(
        "{MSH_ADT}\nPID|1||MRN-1^^^HOSP^MR||Doe^John||19700101|M{}Q",
        "|".repeat(22)
    );
    assert_error(
        map(&pid_30),
        ErrorCode::TableValueNotFound,
        Location::field("PID", 1, 30),
    );
}

#[test]
fn values_without_zone_take_the_senders_zone_or_stay_dates() {
    let with_zone = mapped(&format!(
        "{MSH_ORU}\n{PID}\n{OBR}\nOBX|1|NM|2093-3^Cholesterol^LN||195|mg/dL|||||F|||202403151000"
    ));
    assert_eq!(
        first_observation(&with_zone)["effectiveDateTime"],
        "2024-03-15T10:00:00+01:00"
    );
    let no_zone = MSH_ORU.replace("20240315120000+0100", "20240315120000");
    let without = mapped(&format!(
        "{no_zone}\n{PID}\n{OBR}\nOBX|1|NM|2093-3^Cholesterol^LN||195|mg/dL|||||F|||202403151000"
    ));
    assert_eq!(
        first_observation(&without)["effectiveDateTime"],
        "2024-03-15"
    );
}
