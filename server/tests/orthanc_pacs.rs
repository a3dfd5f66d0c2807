//! Orthanc as the PACS: the Debian package's Orthanc, started by the test with Tessera in its
//! `DicomModalities`, C-ECHOes, C-STOREs and C-FINDs against Tessera's DIMSE SCP through its
//! own REST API, the way a PACS administrator would wire the two together. Orthanc sends the
//! same instances to dcmtk's `storescp` too: what Tessera keeps must be, byte for byte, the data
//! set storescp received. The study tree Orthanc finds is checked against pydicom's reading of
//! the files, and each study must show up over FHIR REST as an ImagingStudy.

mod dicom_support;
mod hl7_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dicom_support::*;
use hl7_support::free_port;
use serde_json::{json, Value};

const FILES: &[&str] = ONE_FILE_PER_TRANSFER_SYNTAX;

/// Orthanc on free ports in a temp dir; killed when dropped.
struct Orthanc {
    rest: String,
    child: Child,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Orthanc {
    /// Starts Orthanc knowing `modalities` (name → [AE title, port on 127.0.0.1]), or skips.
    async fn start(modalities: &[(&str, &str, u16)]) -> Option<Orthanc> {
        let binary = ["/usr/sbin/Orthanc", "/usr/bin/Orthanc"].iter().map(PathBuf::from).find(|p| p.exists());
        let Some(binary) = binary else { return skip("Orthanc not installed (apt-get install orthanc)") };
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let modalities: serde_json::Map<String, Value> =
            modalities.iter().map(|(name, aet, port)| (name.to_string(), json!({ "AET": aet, "Host": "127.0.0.1", "Port": port }))).collect();
        let config = json!({
            "Name": "tessera-test",
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("storage"),
            "DicomAet": "ORTHANC",
            "DicomPort": free_port(),
            "HttpPort": http_port,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "Plugins": [],
            "DicomModalities": modalities,
        });
        let config_path = dir.path().join("orthanc.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let child = Command::new(binary).arg(&config_path).stdout(Stdio::null()).stderr(log).spawn().expect("Orthanc starts");
        let orthanc = Orthanc {
            rest: format!("http://127.0.0.1:{http_port}"),
            child,
            client: reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap(),
            _dir: dir,
        };
        for _ in 0..200 {
            if orthanc.client.get(format!("{}/system", orthanc.rest)).send().await.is_ok_and(|r| r.status().is_success()) {
                return Some(orthanc);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("Orthanc did not answer on {}", orthanc.rest);
    }

    /// POSTs to Orthanc's REST API: (status, JSON answer or Null).
    async fn post(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self.client.post(format!("{}{path}", self.rest)).body(body).send().await.expect("Orthanc answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Asks Orthanc to C-FIND on `modality`; its answers as keyword → value objects.
    async fn find(&self, modality: &str, level: &str, query: Value) -> Vec<Value> {
        let body = json!({ "Level": level, "Query": query }).to_string().into_bytes();
        let (status, started) = self.post(&format!("/modalities/{modality}/query"), body).await;
        assert_eq!(status, 200, "C-FIND at {level}: {started}");
        let id = started["ID"].as_str().expect("a query id");
        let url = format!("{}/queries/{id}/answers?expand&simplify", self.rest);
        let answers: Value = self.client.get(url).send().await.unwrap().json().await.unwrap();
        answers.as_array().expect("a list of answers").clone()
    }
}

/// The values of `keyword` over Orthanc's C-FIND answers.
fn answered(answers: &[Value], keyword: &str) -> BTreeSet<String> {
    answers.iter().map(|a| a[keyword].as_str().unwrap_or_default().to_string()).collect()
}

/// The file dcmtk's storescp (`+B`, bit-preserving) wrote for `uid`: it names its files
/// `<modality>.<SOP Instance UID>`.
fn received_by_storescp(dir: &Path, uid: &str) -> Vec<u8> {
    let found = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).find(|p| {
        p.file_name().and_then(|n| n.to_str()).and_then(|n| n.split_once('.')).is_some_and(|(_, rest)| rest == uid)
    });
    std::fs::read(found.unwrap_or_else(|| panic!("storescp received no {uid}"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orthanc_echoes_stores_and_finds_with_tessera_as_a_modality() {
    let Some(dir) = pydicom_test_files() else { return };
    let paths: Vec<PathBuf> = FILES.iter().map(|n| dir.join(n)).collect();
    let attrs = pydicom_attributes(&paths);
    let app = spawn_app().await;
    let port = app.dimse.expect("the DIMSE listener is on").port();
    let Some(storescp) = ["/usr/bin/storescp", "/usr/local/bin/storescp"].iter().map(PathBuf::from).find(|p| p.exists()) else {
        return skip("dcmtk storescp not installed (apt-get install dcmtk)").unwrap_or(());
    };
    // dcmtk's own receiver, bit-preserving: the reference for what Orthanc puts on the wire.
    let reference_dir = tempfile::tempdir().unwrap();
    let reference_port = free_port();
    let mut reference = Command::new(storescp)
        .args(["+xa", "+B", "-aet", "REFERENCE", "-od"])
        .arg(reference_dir.path())
        .arg(reference_port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let modalities = [("tessera", "TESSERA", port), ("stranger", "NOT-TESSERA", port), ("reference", "REFERENCE", reference_port)];
    let Some(orthanc) = Orthanc::start(&modalities).await else { return };

    // C-ECHO: Tessera answers its own AE title and refuses another.
    let (status, answer) = orthanc.post("/modalities/tessera/echo", b"{}".to_vec()).await;
    assert_eq!(status, 200, "C-ECHO to TESSERA: {answer}");
    let (status, answer) = orthanc.post("/modalities/stranger/echo", b"{}".to_vec()).await;
    assert_ne!(status, 200, "an association to another called AE title is rejected: {answer}");
    assert!(answer.to_string().contains("Rejected"), "{answer}");

    // The files go into Orthanc over its REST API, then to Tessera by C-STORE.
    let mut orthanc_ids = Vec::new();
    for path in &paths {
        let (status, answer) = orthanc.post("/instances", std::fs::read(path).unwrap()).await;
        assert_eq!(status, 200, "Orthanc takes {}: {answer}", path.display());
        orthanc_ids.push(answer["ID"].as_str().unwrap().to_string());
    }
    for modality in ["tessera", "reference"] {
        let body = json!({ "Resources": orthanc_ids, "Synchronous": true }).to_string().into_bytes();
        let (status, answer) = orthanc.post(&format!("/modalities/{modality}/store"), body).await;
        assert_eq!(status, 200, "C-STORE to {modality}: {answer}");
        let counts = (answer["InstancesCount"].as_u64(), answer["FailedInstancesCount"].as_u64());
        assert_eq!(counts, (Some(FILES.len() as u64), Some(0)), "C-STORE to {modality}: {answer}");
    }
    let _ = reference.kill();
    let _ = reference.wait();

    // What Tessera serves over WADO-RS is the data set storescp received, in the same transfer
    // syntax. (Not Orthanc's own file: dcmtk re-encodes on sending, e.g. drops trailing padding.)
    let copies = tempfile::tempdir().unwrap();
    let mut received = Vec::new();
    for (row, name) in attrs.iter().zip(FILES) {
        let url = format!(
            "{}/studies/{}/series/{}/instances/{}",
            app.dicomweb,
            attr(row, "StudyInstanceUID"),
            attr(row, "SeriesInstanceUID"),
            attr(row, "SOPInstanceUID")
        );
        let response = app.client.get(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "WADO-RS {name}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        let parts = parse_multipart(&content_type, &response.bytes().await.unwrap());
        assert_eq!(parts.len(), 1, "{name}");
        let reference = received_by_storescp(reference_dir.path(), attr(row, "SOPInstanceUID"));
        assert!(data_set_of(&parts[0].body) == data_set_of(&reference), "{name}: Tessera's data set differs from storescp's");
        let ours = copies.path().join(name);
        std::fs::write(&ours, &parts[0].body).unwrap();
        received.push(ours);
    }
    for ((ours, row), name) in pydicom_attributes(&received).iter().zip(&attrs).zip(FILES) {
        assert_eq!(attr(ours, "TransferSyntaxUID"), attr(row, "TransferSyntaxUID"), "{name} is kept in the syntax it was sent in");
    }

    // C-FIND at STUDY level: every study, its modalities and instance count, as pydicom reads them.
    let mut studies: BTreeMap<&str, (BTreeSet<&str>, usize)> = BTreeMap::new();
    for row in &attrs {
        let study = studies.entry(attr(row, "StudyInstanceUID")).or_default();
        study.0.insert(attr(row, "Modality"));
        study.1 += 1;
    }
    let query = json!({ "PatientID": "*", "StudyInstanceUID": "", "ModalitiesInStudy": "", "NumberOfStudyRelatedInstances": "" });
    let answers = orthanc.find("tessera", "Study", query).await;
    assert_eq!(answered(&answers, "StudyInstanceUID"), studies.keys().map(|s| s.to_string()).collect());
    for answer in &answers {
        let (modalities, count) = &studies[attr(answer, "StudyInstanceUID")];
        let found: BTreeSet<&str> = attr(answer, "ModalitiesInStudy").split('\\').collect();
        assert_eq!(&found, modalities, "{answer}");
        assert_eq!(attr(answer, "NumberOfStudyRelatedInstances"), count.to_string(), "{answer}");
    }
    // A PatientName wildcard.
    let name = attr(&attrs[0], "PatientName");
    let prefix = &name[..name.len().min(6)];
    let expected: BTreeSet<String> =
        attrs.iter().filter(|r| attr(r, "PatientName").starts_with(prefix)).map(|r| attr(r, "StudyInstanceUID").to_string()).collect();
    let answers = orthanc.find("tessera", "Study", json!({ "PatientName": format!("{prefix}*"), "StudyInstanceUID": "" })).await;
    assert_eq!(answered(&answers, "StudyInstanceUID"), expected, "PatientName={prefix}*");

    // SERIES and IMAGE levels inside the study of JPEG2000.dcm and JPEG-lossy.dcm.
    let study = attr(&attrs[5], "StudyInstanceUID");
    let in_study: Vec<&Value> = attrs.iter().filter(|r| attr(r, "StudyInstanceUID") == study).collect();
    let answers = orthanc.find("tessera", "Series", json!({ "StudyInstanceUID": study, "SeriesInstanceUID": "", "Modality": "" })).await;
    assert_eq!(answered(&answers, "SeriesInstanceUID"), in_study.iter().map(|r| attr(r, "SeriesInstanceUID").to_string()).collect());
    let series = attr(&attrs[5], "SeriesInstanceUID");
    let query = json!({ "StudyInstanceUID": study, "SeriesInstanceUID": series, "SOPInstanceUID": "", "PatientID": "", "Modality": "" });
    let answers = orthanc.find("tessera", "Instance", query).await;
    let expected: BTreeSet<String> =
        in_study.iter().filter(|r| attr(r, "SeriesInstanceUID") == series).map(|r| attr(r, "SOPInstanceUID").to_string()).collect();
    assert_eq!(expected.len(), 2, "JPEG2000.dcm and JPEG-lossy.dcm share a series");
    assert_eq!(answered(&answers, "SOPInstanceUID"), expected);
    // Higher-level keys asked at IMAGE level are answered with the instance's values.
    assert_eq!(answered(&answers, "PatientID"), BTreeSet::from([attr(&attrs[5], "PatientID").to_string()]));
    assert_eq!(answered(&answers, "Modality"), BTreeSet::from([attr(&attrs[5], "Modality").to_string()]));

    // Each study becomes an ImagingStudy over FHIR REST, for a Patient with the PatientID.
    for (study, (_, count)) in &studies {
        let url = format!("{}/fhir/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{study}", app.origin);
        let mut found = Value::Null;
        for _ in 0..200 {
            let bundle: Value = app.client.get(&url).send().await.unwrap().json().await.unwrap();
            found = bundle["entry"][0]["resource"].clone();
            if found["numberOfInstances"].as_u64() == Some(*count as u64) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(found["numberOfInstances"].as_u64(), Some(*count as u64), "ImagingStudy of {study}: {found}");
        let row = attrs.iter().find(|r| attr(r, "StudyInstanceUID") == *study).unwrap();
        let patient = found["subject"]["reference"].as_str().expect("a subject");
        let patient: Value = app.client.get(format!("{}/fhir/{patient}", app.origin)).send().await.unwrap().json().await.unwrap();
        let ids: Vec<&str> = patient["identifier"].as_array().into_iter().flatten().filter_map(|i| i["value"].as_str()).collect();
        assert!(attr(row, "PatientID").is_empty() || ids.contains(&attr(row, "PatientID")), "{study}: {patient}");
    }
}
