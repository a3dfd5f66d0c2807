//! The FHIR mirror through the public API: DICOM objects stored in a real `Archive` (local
//! object store, index in a temp dir) show up as ImagingStudies in a real `SqliteStore`, linked
//! to the right Patient; a later series updates the study; what was indexed while no FHIR store
//! was attached is mirrored at the next start.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_store::object_store::LocalObjectStore;
use dicom_store::{Archive, ArchiveConfig, ConflictPolicy, StoreStatus};
use fhir_store::{ResourceStore, SqliteStore, SqliteStoreOptions};
use serde_json::{json, Value};
use tempfile::TempDir;

const PATIENT_SYSTEM: &str = "urn:tessera:test:patient-id";
const BASE_URL: &str = "http://tessera.test/dicomweb";

/// The patient/study/series/instance attributes of one test object.
struct Object<'a> {
    patient_id: &'a str,
    patient_name: &'a str,
    study_uid: &'a str,
    series_uid: &'a str,
    modality: &'a str,
    sop_class: &'a str,
    sop_uid: &'a str,
    instance_number: i32,
}

/// A Part 10 file (explicit VR little endian) with a 2×2 monochrome image.
fn part10(object: &Object) -> Vec<u8> {
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    let dataset = InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, object.sop_class),
        text(tags::SOP_INSTANCE_UID, VR::UI, object.sop_uid),
        text(tags::STUDY_DATE, VR::DA, "20240315"),
        text(tags::STUDY_TIME, VR::TM, "101530"),
        text(tags::ACCESSION_NUMBER, VR::SH, "ACC-77"),
        text(tags::MODALITY, VR::CS, object.modality),
        text(tags::STUDY_DESCRIPTION, VR::LO, "PET/CT"),
        text(tags::PATIENT_NAME, VR::PN, object.patient_name),
        text(tags::PATIENT_ID, VR::LO, object.patient_id),
        text(tags::PATIENT_BIRTH_DATE, VR::DA, "19800214"),
        text(tags::PATIENT_SEX, VR::CS, "F"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, object.study_uid),
        text(tags::SERIES_INSTANCE_UID, VR::UI, object.series_uid),
        text(tags::STUDY_ID, VR::SH, "1"),
        text(tags::SERIES_NUMBER, VR::IS, "1"),
        text(tags::INSTANCE_NUMBER, VR::IS, &object.instance_number.to_string()),
        us(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, 2),
        us(tags::COLUMNS, 2),
        us(tags::BITS_ALLOCATED, 16),
        us(tags::BITS_STORED, 12),
        us(tags::HIGH_BIT, 11),
        us(tags::PIXEL_REPRESENTATION, 0),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(vec![0u16, 100, 200, 300].into())),
    ]);
    let file = dataset
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .expect("file meta");
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).expect("write part 10");
    bytes
}

struct Setup {
    dir: TempDir,
    store: Arc<dyn ResourceStore>,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(SqliteStoreOptions::new(dir.path().join("fhir"))).await.expect("open fhir store");
        Setup { dir, store: Arc::new(store) }
    }

    async fn archive(&self, mirrored: bool) -> Arc<Archive> {
        let config = ArchiveConfig {
            data_dir: self.dir.path().join("dicom"),
            on_conflict: ConflictPolicy::KeepFirst,
            dicomweb_base_url: BASE_URL.into(),
            patient_identifier_system: PATIENT_SYSTEM.into(),
        };
        let objects = LocalObjectStore::open(self.dir.path().join("objects")).expect("open object store");
        let fhir = mirrored.then(|| self.store.clone());
        Archive::open(config, Arc::new(objects), fhir).await.expect("open archive")
    }
}

async fn store(archive: &Archive, object: &Object<'_>) {
    use std::io::Write;
    let mut writer = archive.staging().create().expect("staging file");
    writer.write_all(&part10(object)).expect("stage");
    let staged = writer.finish().expect("finish staging");
    let outcome = archive.store(&staged, dicom_store::Expected::default()).await.expect("store");
    assert_eq!(outcome.status, StoreStatus::Stored);
}

fn body(stored: &fhir_store::StoredResource) -> Value {
    serde_json::from_slice(stored.body.as_deref().expect("body")).expect("json body")
}

async fn search(store: &dyn ResourceStore, resource_type: &str, params: &[(&str, &str)]) -> Vec<Value> {
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let query = fhir_model::parse_search(Some(resource_type), &params, true).expect("query");
    store.search(&query).await.expect("search").resources.iter().map(body).collect()
}

/// The ImagingStudy of `study_uid`, once it satisfies `ready`.
async fn imaging_study(store: &dyn ResourceStore, study_uid: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let identifier = format!("urn:dicom:uid|urn:oid:{study_uid}");
    let mut last = None;
    let found = eventually(|| {
        let identifier = identifier.clone();
        async move {
            let studies = search(store, "ImagingStudy", &[("identifier", &identifier)]).await;
            assert!(studies.len() <= 1, "one ImagingStudy per study, found {}", studies.len());
            studies.into_iter().next()
        }
    }, |study| {
        last = Some(study.clone());
        ready(study)
    })
    .await;
    found.unwrap_or_else(|| panic!("no ImagingStudy of {study_uid} as expected in time; last seen: {last:#?}"))
}

/// Polls `fetch` until it yields a value `ready` accepts (None after 30 s).
async fn eventually<T, F, Fut>(mut fetch: F, mut ready: impl FnMut(&T) -> bool) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(value) = fetch().await {
            if ready(&value) {
                return Some(value);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn object<'a>(patient_id: &'a str, study_uid: &'a str, series_uid: &'a str, modality: &'a str, sop_uid: &'a str, number: i32) -> Object<'a> {
    let sop_class = if modality == "PT" { uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE } else { uids::CT_IMAGE_STORAGE };
    Object {
        patient_id,
        patient_name: "Doe^Jane",
        study_uid,
        series_uid,
        modality,
        sop_class,
        sop_uid,
        instance_number: number,
    }
}

#[tokio::test]
async fn a_stored_study_appears_with_a_created_patient_and_grows_with_its_series() {
    let setup = Setup::new().await;
    let archive = setup.archive(true).await;
    let study_uid = "1.2.826.0.1.3680043.8.498.501";
    let series_ct = "1.2.826.0.1.3680043.8.498.501.1";
    for i in 1..=3 {
        store(&archive, &object("MRN-501", study_uid, series_ct, "CT", &format!("{series_ct}.{i}"), i)).await;
    }

    let study = imaging_study(setup.store.as_ref(), study_uid, |s| s["numberOfInstances"] == 3).await;
    assert_eq!(study["numberOfSeries"], 1);
    assert_eq!(study["status"], "available");
    assert_eq!(study["modality"], json!([{ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT" }]));
    assert_eq!(study["started"], "2024-03-15");
    assert_eq!(study["contained"][0]["address"], BASE_URL);
    assert!(fhir_model::validate(&study, time::OffsetDateTime::now_utc()).is_ok(), "{study:#}");

    // No Patient had the PatientID: one was created with it, and the study points at it.
    let patients = search(setup.store.as_ref(), "Patient", &[("identifier", &format!("{PATIENT_SYSTEM}|MRN-501"))]).await;
    assert_eq!(patients.len(), 1, "{patients:#?}");
    let patient = &patients[0];
    assert_eq!(study["subject"]["reference"], format!("Patient/{}", patient["id"].as_str().unwrap()));
    assert_eq!(patient["name"][0]["family"], "Doe");
    assert_eq!(patient["name"][0]["given"], json!(["Jane"]));
    assert_eq!(patient["birthDate"], "1980-02-14");
    assert_eq!(patient["gender"], "female");

    // A second series updates the same ImagingStudy.
    let series_pt = "1.2.826.0.1.3680043.8.498.501.2";
    store(&archive, &object("MRN-501", study_uid, series_pt, "PT", &format!("{series_pt}.1"), 1)).await;
    let study = imaging_study(setup.store.as_ref(), study_uid, |s| s["numberOfSeries"] == 2).await;
    assert_eq!(study["numberOfInstances"], 4);
    let modalities: Vec<&str> = study["modality"].as_array().unwrap().iter().map(|m| m["code"].as_str().unwrap()).collect();
    assert_eq!(modalities.len(), 2);
    assert!(modalities.contains(&"CT") && modalities.contains(&"PT"), "{modalities:?}");
    let series_uids: Vec<&str> = study["series"].as_array().unwrap().iter().map(|s| s["uid"].as_str().unwrap()).collect();
    assert!(series_uids.contains(&series_ct) && series_uids.contains(&series_pt), "{series_uids:?}");
    assert!(fhir_model::validate(&study, time::OffsetDateTime::now_utc()).is_ok(), "{study:#}");

    // Still one Patient for the PatientID.
    let patients = search(setup.store.as_ref(), "Patient", &[("identifier", "MRN-501")]).await;
    assert_eq!(patients.len(), 1);
}

#[tokio::test]
async fn an_existing_patient_is_linked_not_duplicated() {
    let setup = Setup::new().await;
    let existing = json!({
        "resourceType": "Patient",
        "identifier": [{ "system": PATIENT_SYSTEM, "value": "MRN-502" }],
        "name": [{ "family": "Registered", "given": ["ByTheEhr"] }],
    });
    setup.store.create("Patient", "ehr-502", existing).await.expect("create patient");

    let archive = setup.archive(true).await;
    let study_uid = "1.2.826.0.1.3680043.8.498.502";
    let series = "1.2.826.0.1.3680043.8.498.502.1";
    store(&archive, &object("MRN-502", study_uid, series, "CT", &format!("{series}.1"), 1)).await;

    let study = imaging_study(setup.store.as_ref(), study_uid, |s| s["numberOfInstances"] == 1).await;
    assert_eq!(study["subject"]["reference"], "Patient/ehr-502");
    let patients = search(setup.store.as_ref(), "Patient", &[("identifier", "MRN-502")]).await;
    assert_eq!(patients.len(), 1, "{patients:#?}");
    // Linked, not rewritten with the DICOM header's name.
    let (version, patient) = {
        let stored = setup.store.read("Patient", "ehr-502").await.expect("read").expect("patient");
        (stored.version, body(&stored))
    };
    assert_eq!(version, 1);
    assert_eq!(patient["name"][0]["family"], "Registered");
}

#[tokio::test]
async fn studies_indexed_without_a_fhir_store_are_mirrored_at_the_next_start() {
    let setup = Setup::new().await;
    let study_uid = "1.2.826.0.1.3680043.8.498.503";
    let series = "1.2.826.0.1.3680043.8.498.503.1";
    {
        let archive = setup.archive(false).await;
        for i in 1..=2 {
            store(&archive, &object("MRN-503", study_uid, series, "CT", &format!("{series}.{i}"), i)).await;
        }
    }
    assert!(search(setup.store.as_ref(), "ImagingStudy", &[]).await.is_empty());

    let _archive = setup.archive(true).await;
    let study = imaging_study(setup.store.as_ref(), study_uid, |s| s["numberOfInstances"] == 2).await;
    assert_eq!(study["numberOfSeries"], 1);
    let patients = search(setup.store.as_ref(), "Patient", &[("identifier", &format!("{PATIENT_SYSTEM}|MRN-503"))]).await;
    assert_eq!(patients.len(), 1);
}
