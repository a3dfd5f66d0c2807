//! The ImagingStudy mapper through the public API: snapshot tests (index snapshots in,
//! `tests/snapshots/imaging_study/<case>.json` out; `UPDATE_SNAPSHOTS=1` rewrites them), each
//! output checked with Tessera's own FHIR validation, and the rules a snapshot cannot show.

use std::fs;
use std::path::PathBuf;

use dicom_store::object_store::ObjectKey;
use dicom_store::{imaging_study_resource, IndexedInstance, SeriesRecord, StudyRecord, StudySnapshot};
use serde_json::Value;
use time::OffsetDateTime;

const BASE_URL: &str = "https://pacs.example.org/dicomweb";
const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const PET_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.128";
const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

fn study(uid: &str) -> StudyRecord {
    StudyRecord {
        patient_id: "MRN-1001".into(),
        issuer_of_patient_id: String::new(),
        patient_name: "Doe^Jane".into(),
        patient_birth_date: "19800214".into(),
        patient_sex: "F".into(),
        study_instance_uid: uid.into(),
        study_date: "20240315".into(),
        study_time: "101530".into(),
        accession_number: String::new(),
        study_description: String::new(),
        study_id: "1".into(),
        referring_physician_name: String::new(),
        modalities_in_study: Vec::new(),
        number_of_series: 0,
        number_of_instances: 0,
    }
}

struct SeriesSpec<'a> {
    uid: &'a str,
    modality: &'a str,
    number: Option<i64>,
    description: &'a str,
    body_part: &'a str,
    sop_class: &'a str,
    instance_numbers: &'a [Option<i64>],
}

/// A snapshot as the index gives it: the study record with its counts, the series in order,
/// each with its instances.
fn snapshot(mut study: StudyRecord, series: &[SeriesSpec]) -> StudySnapshot {
    let mut modalities: Vec<String> = series.iter().map(|s| s.modality.to_string()).filter(|m| !m.is_empty()).collect();
    modalities.sort();
    modalities.dedup();
    study.modalities_in_study = modalities;
    study.number_of_series = series.len() as i64;
    study.number_of_instances = series.iter().map(|s| s.instance_numbers.len() as i64).sum();
    let series = series
        .iter()
        .map(|spec| {
            let record = SeriesRecord {
                study_instance_uid: study.study_instance_uid.clone(),
                series_instance_uid: spec.uid.into(),
                modality: spec.modality.into(),
                series_number: spec.number,
                series_description: spec.description.into(),
                body_part_examined: spec.body_part.into(),
                number_of_instances: spec.instance_numbers.len() as i64,
            };
            let instances = spec
                .instance_numbers
                .iter()
                .enumerate()
                .map(|(i, number)| instance(&study, spec, &format!("{}.{}", spec.uid, i + 1), *number))
                .collect();
            (record, instances)
        })
        .collect();
    StudySnapshot { study, series }
}

fn instance(study: &StudyRecord, series: &SeriesSpec, sop_uid: &str, number: Option<i64>) -> IndexedInstance {
    IndexedInstance {
        patient_id: study.patient_id.clone(),
        issuer_of_patient_id: study.issuer_of_patient_id.clone(),
        patient_name: study.patient_name.clone(),
        patient_birth_date: study.patient_birth_date.clone(),
        patient_sex: study.patient_sex.clone(),
        study_instance_uid: study.study_instance_uid.clone(),
        study_date: study.study_date.clone(),
        study_time: study.study_time.clone(),
        accession_number: study.accession_number.clone(),
        study_description: study.study_description.clone(),
        study_id: study.study_id.clone(),
        referring_physician_name: study.referring_physician_name.clone(),
        series_instance_uid: series.uid.into(),
        modality: series.modality.into(),
        series_number: series.number,
        series_description: series.description.into(),
        body_part_examined: series.body_part.into(),
        sop_class_uid: series.sop_class.into(),
        sop_instance_uid: sop_uid.into(),
        instance_number: number,
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        rows: Some(512),
        columns: Some(512),
        number_of_frames: None,
        object_key: ObjectKey::for_instance(&study.patient_id, &study.study_instance_uid, series.uid, sop_uid),
        sha256: "0".repeat(64),
        size: 1024,
        stored_at: "2024-03-15T10:20:00Z".into(),
    }
}

/// A CT of the chest: one series of three images.
fn one_series_ct() -> StudySnapshot {
    let mut record = study("1.2.826.0.1.3680043.8.498.10001");
    record.study_description = "CT CHEST WITHOUT CONTRAST".into();
    snapshot(
        record,
        &[SeriesSpec {
            uid: "1.2.826.0.1.3680043.8.498.10001.1",
            modality: "CT",
            number: Some(2),
            description: "Axial 1.25mm",
            body_part: "CHEST",
            sop_class: CT_IMAGE,
            instance_numbers: &[Some(1), Some(2), Some(3)],
        }],
    )
}

/// A PET/CT with an accession number: a CT series, a PET series, a series of screen captures
/// without a Modality, a body part with no SNOMED code here and instance numbers DICOM allows
/// but FHIR cannot carry.
fn multi_series_with_accession() -> StudySnapshot {
    let mut record = study("1.2.826.0.1.3680043.8.498.20002");
    record.accession_number = "ACC-2024-0042".into();
    record.study_description = "PET/CT WHOLE BODY".into();
    record.patient_name = "Müller^Hans^Peter^Dr.^Jr.".into();
    record.patient_sex = "M".into();
    snapshot(
        record,
        &[
            SeriesSpec {
                uid: "1.2.826.0.1.3680043.8.498.20002.1",
                modality: "CT",
                number: Some(1),
                description: "CT AC",
                body_part: "WHOLEBODY",
                sop_class: CT_IMAGE,
                instance_numbers: &[Some(1), Some(2)],
            },
            SeriesSpec {
                uid: "1.2.826.0.1.3680043.8.498.20002.2",
                modality: "PT",
                number: Some(2),
                description: "PET AC",
                body_part: "wholebody",
                sop_class: PET_IMAGE,
                instance_numbers: &[Some(1), Some(2), Some(3)],
            },
            SeriesSpec {
                uid: "1.2.826.0.1.3680043.8.498.20002.3",
                modality: "",
                number: Some(-1),
                description: "",
                body_part: "LEFT ARM",
                sop_class: SECONDARY_CAPTURE,
                instance_numbers: &[None, Some(-5)],
            },
            SeriesSpec {
                uid: "1.2.826.0.1.3680043.8.498.20002.4",
                modality: "CT",
                number: None,
                description: "Topogram",
                body_part: "",
                sop_class: CT_IMAGE,
                instance_numbers: &[Some(1)],
            },
        ],
    )
}

/// What an anonymised or badly configured modality sends: no date, no time, no patient name,
/// no description.
fn missing_date_time_and_name() -> StudySnapshot {
    let mut record = study("1.2.826.0.1.3680043.8.498.30003");
    record.study_date = String::new();
    record.study_time = String::new();
    record.patient_name = String::new();
    record.patient_birth_date = String::new();
    record.patient_sex = String::new();
    snapshot(
        record,
        &[SeriesSpec {
            uid: "1.2.826.0.1.3680043.8.498.30003.1",
            modality: "MR",
            number: Some(1),
            description: "",
            body_part: "",
            sop_class: "1.2.840.10008.5.1.4.1.1.4",
            instance_numbers: &[Some(1)],
        }],
    )
}

fn cases() -> Vec<(&'static str, StudySnapshot, &'static str)> {
    vec![
        ("one_series_ct", one_series_ct(), "Patient/p-1001"),
        ("multi_series_with_accession", multi_series_with_accession(), "Patient/p-2002"),
        ("missing_date_time_and_name", missing_date_time_and_name(), "Patient/p-3003"),
    ]
}

fn snapshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("snapshots").join("imaging_study")
}

fn assert_valid(name: &str, resource: &Value) {
    if let Err(e) = fhir_model::validate(resource, OffsetDateTime::now_utc()) {
        panic!("{name}: the ImagingStudy is not valid FHIR: {e:?}\n{}", serde_json::to_string_pretty(resource).unwrap());
    }
}

#[test]
fn snapshots() {
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    let dir = snapshot_dir();
    if update {
        fs::create_dir_all(&dir).expect("create snapshot dir");
    }
    let cases = cases();
    let mut failures = Vec::new();
    for (name, snapshot, patient) in &cases {
        let resource = imaging_study_resource(snapshot, patient, BASE_URL);
        assert_valid(name, &resource);
        let actual = serde_json::to_string_pretty(&resource).expect("serialise") + "\n";
        let file = dir.join(format!("{name}.json"));
        if update {
            fs::write(&file, &actual).expect("write snapshot");
            continue;
        }
        match fs::read_to_string(&file) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!("{name}: differs\n--- expected\n{expected}\n--- actual\n{actual}")),
            Err(e) => failures.push(format!("{name}: cannot read {}: {e} (UPDATE_SNAPSHOTS=1 writes it)", file.display())),
        }
    }
    // A snapshot without a case is a case that was lost.
    for entry in fs::read_dir(&dir).expect("tests/snapshots/imaging_study") {
        let path = entry.expect("directory entry").path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if !cases.iter().any(|(name, _, _)| *name == stem) {
            failures.push(format!("{}: snapshot without a case", path.display()));
        }
    }
    assert!(failures.is_empty(), "{} snapshot failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn counts_and_uids_follow_the_snapshot() {
    let snapshot = multi_series_with_accession();
    let resource = imaging_study_resource(&snapshot, "Patient/p", BASE_URL);
    assert_eq!(resource["numberOfSeries"], 4);
    assert_eq!(resource["numberOfInstances"], 8);
    let series = resource["series"].as_array().expect("series");
    for ((record, instances), element) in snapshot.series.iter().zip(series) {
        assert_eq!(element["uid"], record.series_instance_uid.as_str());
        assert_eq!(element["numberOfInstances"], instances.len());
        let uids: Vec<&str> = element["instance"].as_array().expect("instances").iter().map(|i| i["uid"].as_str().unwrap()).collect();
        let expected: Vec<&str> = instances.iter().map(|i| i.sop_instance_uid.as_str()).collect();
        assert_eq!(uids, expected);
    }
    // Modalities once each, in series order, the series without one as OT.
    let modalities: Vec<&str> = resource["modality"].as_array().unwrap().iter().map(|m| m["code"].as_str().unwrap()).collect();
    assert_eq!(modalities, ["CT", "PT", "OT"]);
}

#[test]
fn the_id_depends_on_the_study_uid_only() {
    let a = imaging_study_resource(&one_series_ct(), "Patient/a", BASE_URL);
    let b = imaging_study_resource(&one_series_ct(), "Patient/b", "http://other/dicomweb");
    let c = imaging_study_resource(&missing_date_time_and_name(), "Patient/a", BASE_URL);
    assert_eq!(a["id"], b["id"]);
    assert_ne!(a["id"], c["id"]);
    assert!(fhir_model::is_valid_id(a["id"].as_str().unwrap()));
}

#[test]
fn no_base_url_means_no_endpoint() {
    let resource = imaging_study_resource(&one_series_ct(), "Patient/p", "");
    assert_valid("no_base_url", &resource);
    assert!(resource.get("endpoint").is_none());
    assert!(resource.get("contained").is_none());
}

#[test]
fn an_invalid_study_date_is_left_out() {
    let mut snapshot = one_series_ct();
    snapshot.study.study_date = "20230230".into();
    let resource = imaging_study_resource(&snapshot, "Patient/p", BASE_URL);
    assert_valid("invalid_date", &resource);
    assert!(resource.get("started").is_none());
}

#[test]
fn the_validation_used_here_rejects_a_broken_imaging_study() {
    // The snapshots are checked with `fhir_model::validate`; it must catch what R4 forbids.
    let mut resource = imaging_study_resource(&one_series_ct(), "Patient/p", BASE_URL);
    resource.as_object_mut().unwrap().remove("subject");
    assert!(fhir_model::validate(&resource, OffsetDateTime::now_utc()).is_err(), "subject is 1..1");
    let mut resource = imaging_study_resource(&one_series_ct(), "Patient/p", BASE_URL);
    resource["started"] = "2024-03-15T10:15:30".into();
    assert!(fhir_model::validate(&resource, OffsetDateTime::now_utc()).is_err(), "a time needs an offset");
}
