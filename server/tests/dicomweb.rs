//! DICOMweb end to end against Tessera on a free port: STOW-RS of pydicom's test files in
//! every transfer syntax, WADO-RS byte identity, QIDO-RS by each matching key, metadata and
//! bulk data, bad input refused per part and never indexed, duplicates and conflicts,
//! negotiation, and presigned URLs on the local object store. Expected values come from
//! pydicom's reading of the files, not from Tessera's code.

mod dicom_support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use dicom_support::*;
use serde_json::Value;

const FILES: &[&str] = ONE_FILE_PER_TRANSFER_SYNTAX;

const BOUNDARY: &str = "tessera-test-boundary-7d1f";

/// Status codes of the Store Instances Response.
const CANNOT_UNDERSTAND: u64 = 0xC000;
const MISMATCH: u64 = 0xA900;
const ELEMENTS_DISCARDED: u64 = 0xB006;

struct Corpus {
    paths: Vec<PathBuf>,
    bytes: Vec<Vec<u8>>,
    /// pydicom's reading of each file.
    attrs: Vec<Value>,
}

fn corpus(names: &[&str]) -> Option<Corpus> {
    let dir = pydicom_test_files()?;
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let bytes = paths.iter().map(|p| std::fs::read(p).expect("test file")).collect();
    let attrs = pydicom_attributes(&paths);
    Some(Corpus { paths, bytes, attrs })
}

async fn stow(app: &DicomApp, url_suffix: &str, parts: &[(&str, &[u8])]) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/studies{url_suffix}", app.dicomweb))
        .header("content-type", stow_content_type(BOUNDARY))
        .header("accept", "application/dicom+json")
        .body(multipart_body(BOUNDARY, parts))
        .send()
        .await
        .expect("stow sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("stow answered {status} with non-JSON {text:?}")))
}

async fn stow_files(app: &DicomApp, files: &[Vec<u8>]) -> (u16, Value) {
    let parts: Vec<(&str, &[u8])> = files.iter().map(|b| ("application/dicom", b.as_slice())).collect();
    stow(app, "", &parts).await
}

fn sequence<'a>(response: &'a Value, tag: &str) -> Vec<&'a Value> {
    response[tag]["Value"].as_array().map(|items| items.iter().collect()).unwrap_or_default()
}

async fn get(app: &DicomApp, url: &str, accept: Option<&str>) -> reqwest::Response {
    let url = if url.starts_with("http") { url.to_string() } else { format!("{}{url}", app.dicomweb) };
    let mut request = app.client.get(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().await.expect("request sent")
}

async fn get_json(app: &DicomApp, url: &str) -> Value {
    let response = get(app, url, Some("application/dicom+json")).await;
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "GET {url}: {text}");
    assert_eq!(content_type, "application/dicom+json", "GET {url}");
    serde_json::from_str(&text).expect("JSON")
}

/// The multipart parts of a WADO-RS answer.
async fn retrieve(app: &DicomApp, url: &str, accept: Option<&str>) -> (u16, Vec<Part>) {
    let response = get(app, url, accept).await;
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = response.bytes().await.expect("body");
    if status != 200 {
        return (status, Vec::new());
    }
    assert!(content_type.starts_with("multipart/related"), "{content_type}");
    (status, parse_multipart(&content_type, &body))
}

/// SOP Instance UIDs of a QIDO answer (or study / series UIDs at those levels).
fn uids(matches: &Value, tag: &str) -> BTreeSet<String> {
    matches.as_array().expect("an array").iter().map(|m| json_string(m, tag)).collect()
}

const STUDY_UID: &str = "0020000D";
const SERIES_UID: &str = "0020000E";
const SOP_UID: &str = "00080018";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_instances_come_back_byte_identical_in_every_transfer_syntax() {
    let Some(corpus) = corpus(FILES) else { return };
    let app = spawn_app().await;
    let (status, response) = stow_files(&app, &corpus.bytes).await;
    assert_eq!(status, 200, "{response}");
    assert!(response.get("00081198").is_none(), "no failures: {response}");
    let referenced = sequence(&response, "00081199");
    assert_eq!(referenced.len(), FILES.len());
    for (item, row) in referenced.iter().zip(&corpus.attrs) {
        assert_eq!(json_string(item, "00081155"), attr(row, "SOPInstanceUID"));
        assert_eq!(json_string(item, "00081150"), attr(row, "SOPClassUID"));
    }

    // Each instance, by its RetrieveURL, is exactly the file posted.
    for ((item, bytes), name) in referenced.iter().zip(&corpus.bytes).zip(FILES) {
        let url = json_string(item, "00081190");
        let (status, parts) = retrieve(&app, &url, Some("multipart/related; type=\"application/dicom\"")).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(parts.len(), 1, "{name}");
        assert!(
            parts[0].body == *bytes,
            "{name}: retrieved {} bytes differ from the {} posted",
            parts[0].body.len(),
            bytes.len()
        );
        assert!(parts[0].header("content-type").unwrap_or_default().starts_with("application/dicom"), "{name}");
    }

    // A series and a study come back as the set of their files, whatever the order.
    let nm = corpus.attrs.iter().position(|r| attr(r, "SOPInstanceUID") == attr(&corpus.attrs[5], "SOPInstanceUID")).unwrap();
    let (study, series) = (attr(&corpus.attrs[nm], "StudyInstanceUID"), attr(&corpus.attrs[nm], "SeriesInstanceUID"));
    let expected: BTreeSet<&Vec<u8>> =
        corpus.attrs.iter().zip(&corpus.bytes).filter(|(r, _)| attr(r, "SeriesInstanceUID") == series).map(|(_, b)| b).collect();
    assert_eq!(expected.len(), 2, "JPEG2000.dcm and JPEG-lossy.dcm share a series");
    for url in [format!("/studies/{study}/series/{series}"), format!("/studies/{study}")] {
        let (status, parts) = retrieve(&app, &url, None).await;
        assert_eq!(status, 200, "{url}");
        let got: BTreeSet<&Vec<u8>> = parts.iter().map(|p| &p.body).collect();
        assert_eq!(got, expected, "{url}");
    }
    // All of a study with */* too.
    let sc = attr(&corpus.attrs[3], "StudyInstanceUID");
    let (status, parts) = retrieve(&app, &format!("/studies/{sc}"), Some("*/*")).await;
    assert_eq!((status, parts.len()), (200, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qido_matches_on_each_supported_key() {
    let Some(mut corpus) = corpus(FILES) else { return };
    let app = spawn_app().await;
    // An accession number to match on (none of the test files has one), written by pydicom.
    let accessioned = app.data_dir.path().join("accessioned.dcm");
    pydicom_rewrite(
        &corpus.paths[0],
        &accessioned,
        &[
            ("AccessionNumber", "ACC-42"),
            ("StudyInstanceUID", "1.2.826.0.1.3680043.10.1077.1"),
            ("SeriesInstanceUID", "1.2.826.0.1.3680043.10.1077.1.1"),
            ("SOPInstanceUID", "1.2.826.0.1.3680043.10.1077.1.1.1"),
        ],
    );
    corpus.bytes.push(std::fs::read(&accessioned).unwrap());
    corpus.attrs.extend(pydicom_attributes(&[accessioned]));
    let (status, response) = stow_files(&app, &corpus.bytes).await;
    assert_eq!(status, 200, "{response}");
    let all_studies: BTreeSet<String> = corpus.attrs.iter().map(|r| attr(r, "StudyInstanceUID").to_string()).collect();
    let studies_where = |keep: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        corpus.attrs.iter().filter(|r| keep(r)).map(|r| attr(r, "StudyInstanceUID").to_string()).collect()
    };

    let found = get_json(&app, "/studies").await;
    assert_eq!(uids(&found, STUDY_UID), all_studies);
    for study in found.as_array().unwrap() {
        let url = json_string(study, "00081190");
        assert_eq!(url, format!("{}/studies/{}", app.dicomweb, json_string(study, STUDY_UID)), "RetrieveURL");
    }

    // PatientID by keyword and by tag.
    let ct = studies_where(&|r| attr(r, "PatientID") == "1CT1");
    assert_eq!(ct.len(), 2, "CT_small.dcm and its copy with an accession number");
    assert_eq!(uids(&get_json(&app, "/studies?PatientID=1CT1").await, STUDY_UID), ct);
    assert_eq!(uids(&get_json(&app, "/studies?00100020=1CT1").await, STUDY_UID), ct);
    let found = get_json(&app, "/studies?PatientID=1CT1").await;
    assert_eq!(json_string(&found[0], "00100010"), "CompressedSamples^CT1");
    assert!(found[0]["00100010"]["Value"][0].is_object(), "PN is an object: {}", found[0]);

    // PatientName with a wildcard.
    let compressed = studies_where(&|r| attr(r, "PatientName").starts_with("CompressedSamples"));
    assert!(compressed.len() >= 3);
    assert_eq!(uids(&get_json(&app, "/studies?PatientName=CompressedSamples*").await, STUDY_UID), compressed);
    assert_eq!(
        uids(&get_json(&app, "/studies?PatientName=Lestrade%5EG").await, STUDY_UID),
        studies_where(&|r| attr(r, "PatientName") == "Lestrade^G")
    );

    // StudyDate: a range, open ranges and one date.
    let dated = |from: &str, to: &str| {
        studies_where(&|r| {
            let d = attr(r, "StudyDate");
            !d.is_empty() && (from.is_empty() || d >= from) && (to.is_empty() || d <= to)
        })
    };
    for (query, from, to) in [
        ("20040101-20041231", "20040101", "20041231"),
        ("-20040119", "", "20040119"),
        ("20170101-", "20170101", ""),
        ("20040826", "20040826", "20040826"),
    ] {
        let expected = dated(from, to);
        assert!(!expected.is_empty(), "{query}");
        assert_eq!(uids(&get_json(&app, &format!("/studies?StudyDate={query}")).await, STUDY_UID), expected, "StudyDate={query}");
    }

    // AccessionNumber, ModalitiesInStudy, StudyInstanceUID lists.
    assert_eq!(
        uids(&get_json(&app, "/studies?AccessionNumber=ACC-42").await, STUDY_UID),
        BTreeSet::from(["1.2.826.0.1.3680043.10.1077.1".to_string()])
    );
    assert_eq!(
        uids(&get_json(&app, "/studies?ModalitiesInStudy=MR").await, STUDY_UID),
        studies_where(&|r| attr(r, "Modality") == "MR")
    );
    let two: Vec<&String> = all_studies.iter().take(2).collect();
    let listed = get_json(&app, &format!("/studies?StudyInstanceUID={},{}", two[0], two[1])).await;
    assert_eq!(uids(&listed, STUDY_UID), two.into_iter().cloned().collect());

    // Series level: all, by modality, within a study.
    let all_series: BTreeSet<String> = corpus.attrs.iter().map(|r| attr(r, "SeriesInstanceUID").to_string()).collect();
    assert_eq!(uids(&get_json(&app, "/series").await, SERIES_UID), all_series);
    let nm_series: BTreeSet<String> =
        corpus.attrs.iter().filter(|r| attr(r, "Modality") == "NM").map(|r| attr(r, "SeriesInstanceUID").to_string()).collect();
    assert_eq!(uids(&get_json(&app, "/series?Modality=NM").await, SERIES_UID), nm_series);
    let nm_study = corpus.attrs.iter().find(|r| attr(r, "Modality") == "NM").map(|r| attr(r, "StudyInstanceUID")).unwrap();
    assert_eq!(uids(&get_json(&app, &format!("/studies/{nm_study}/series")).await, SERIES_UID), nm_series);

    // Instance level: all, by SOP Instance UID, within a study, within a series.
    let all_instances: BTreeSet<String> = corpus.attrs.iter().map(|r| attr(r, "SOPInstanceUID").to_string()).collect();
    assert_eq!(uids(&get_json(&app, "/instances").await, SOP_UID), all_instances);
    let one = attr(&corpus.attrs[1], "SOPInstanceUID");
    let found = get_json(&app, &format!("/instances?SOPInstanceUID={one}")).await;
    assert_eq!(uids(&found, SOP_UID), BTreeSet::from([one.to_string()]));
    // A search for all instances answers with their study and series attributes too (PS3.18).
    for (tag, keyword) in [("00100020", "PatientID"), ("0020000D", "StudyInstanceUID"), ("00080060", "Modality")] {
        assert_eq!(json_string(&found[0], tag), attr(&corpus.attrs[1], keyword), "{keyword} of an instance match");
    }
    let instance_url = json_string(&found[0], "00081190");
    assert_eq!(retrieve(&app, &instance_url, None).await.1[0].body, corpus.bytes[1], "an instance's RetrieveURL retrieves it");
    let in_study: BTreeSet<String> = corpus
        .attrs
        .iter()
        .filter(|r| attr(r, "StudyInstanceUID") == nm_study)
        .map(|r| attr(r, "SOPInstanceUID").to_string())
        .collect();
    assert_eq!(in_study.len(), 2);
    assert_eq!(uids(&get_json(&app, &format!("/studies/{nm_study}/instances")).await, SOP_UID), in_study);
    let nm_series_uid = nm_series.iter().next().unwrap();
    assert_eq!(uids(&get_json(&app, &format!("/studies/{nm_study}/series/{nm_series_uid}/instances")).await, SOP_UID), in_study);
    let modality_filtered = get_json(&app, &format!("/studies/{nm_study}/instances?SOPInstanceUID={one}")).await;
    assert_eq!(modality_filtered, Value::Array(vec![]), "the URL's study and the parameter both apply");

    // limit and offset page through the same order without overlap.
    let mut paged = Vec::new();
    for offset in (0..all_studies.len()).step_by(2) {
        let page = get_json(&app, &format!("/studies?limit=2&offset={offset}")).await;
        assert!(page.as_array().unwrap().len() <= 2);
        paged.extend(page.as_array().unwrap().iter().map(|m| json_string(m, STUDY_UID)));
    }
    assert_eq!(paged.len(), all_studies.len(), "{paged:?}");
    assert_eq!(paged.iter().cloned().collect::<BTreeSet<_>>(), all_studies);
    assert_eq!(get_json(&app, &format!("/studies?offset={}", all_studies.len())).await, Value::Array(vec![]));

    // No match is 200 with an empty array.
    assert_eq!(get_json(&app, "/studies?PatientID=nobody").await, Value::Array(vec![]));

    // An attribute that is not a matching key is ignored with a warning; fuzzymatching and
    // includefield are accepted.
    let response = get(&app, "/studies?Rows=512&includefield=PatientAge&fuzzymatching=false", None).await;
    assert_eq!(response.status().as_u16(), 200);
    let warning = response.headers().get("warning").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(warning.starts_with("299 ") && warning.contains("Rows"), "{warning:?}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(uids(&body, STUDY_UID), all_studies);

    // Mistakes are 400s that say what is wrong.
    for (query, says) in [
        ("PatientNmae=x", "PatientNmae"),
        ("StudyDate=2004", "2004"),
        ("StudyDate=20040101-2005", "date"),
        ("limit=many", "limit"),
    ] {
        let response = get(&app, &format!("/studies?{query}"), None).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "{query}: {text}");
        assert!(text.contains(says), "{query}: {text}");
    }
    let response = get(&app, "/studies", Some("application/dicom+xml")).await;
    assert_eq!(response.status().as_u16(), 406);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_points_at_bulk_data_that_can_be_fetched() {
    let Some(corpus) = corpus(&["CT_small.dcm", "JPEG2000.dcm", "JPEG-lossy.dcm"]) else { return };
    let app = spawn_app().await;
    let (status, response) = stow_files(&app, &corpus.bytes).await;
    assert_eq!(status, 200, "{response}");
    // pydicom's pixel data: CT_small's native bytes, and JPEG2000.dcm's fragments.
    const PIXELS: &str = r#"
import json, sys, pydicom
from pydicom.encaps import generate_fragments
out = []
for path in sys.argv[1:]:
    ds = pydicom.dcmread(path)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        # The first item is the Basic Offset Table.
        out.append([list(f) for f in generate_fragments(ds.PixelData)][1:])
    else:
        out.append([list(ds.PixelData)])
print(json.dumps(out))
"#;
    let pixels: Vec<Vec<Vec<u8>>> = serde_json::from_value(python_json(PIXELS, &[&corpus.paths[0], &corpus.paths[1]])).unwrap();

    for (index, expected_parts) in pixels.iter().enumerate() {
        let row = &corpus.attrs[index];
        let url = format!(
            "/studies/{}/series/{}/instances/{}/metadata",
            attr(row, "StudyInstanceUID"),
            attr(row, "SeriesInstanceUID"),
            attr(row, "SOPInstanceUID")
        );
        let metadata = get_json(&app, &url).await;
        let instance = &metadata.as_array().expect("an array")[0];
        assert_eq!(json_string(instance, SOP_UID), attr(row, "SOPInstanceUID"));
        assert_eq!(json_string(instance, "00100020"), attr(row, "PatientID"));
        assert_eq!(json_string(instance, "00100010"), attr(row, "PatientName"));
        assert!(instance.get("00020010").is_none(), "file meta is not part of the dataset");
        let pixel_data = &instance["7FE00010"];
        assert!(pixel_data.get("Value").is_none() && pixel_data.get("InlineBinary").is_none(), "{pixel_data}");
        let bulk = pixel_data["BulkDataURI"].as_str().expect("PixelData has a BulkDataURI");
        let response = get(&app, bulk, Some("multipart/related; type=\"application/octet-stream\"")).await;
        assert_eq!(response.status().as_u16(), 200, "{bulk}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.contains("application/octet-stream"), "{content_type}");
        let parts = parse_multipart(&content_type, &response.bytes().await.unwrap());
        let got: Vec<Vec<u8>> = parts.into_iter().map(|p| p.body).collect();
        assert_eq!(got.len(), expected_parts.len(), "{bulk}");
        assert!(got == *expected_parts, "{bulk}: bulk data differs from pydicom's pixel data");
    }

    // Series and study metadata list every instance; rows and columns are numbers.
    let nm = &corpus.attrs[1];
    let (study, series) = (attr(nm, "StudyInstanceUID"), attr(nm, "SeriesInstanceUID"));
    for url in [format!("/studies/{study}/metadata"), format!("/studies/{study}/series/{series}/metadata")] {
        let metadata = get_json(&app, &url).await;
        let expected: BTreeSet<String> = corpus.attrs[1..].iter().map(|r| attr(r, "SOPInstanceUID").to_string()).collect();
        assert_eq!(uids(&metadata, SOP_UID), expected, "{url}");
        assert!(metadata[0]["00280010"]["Value"][0].is_u64(), "{}", metadata[0]["00280010"]);
    }

    // Unknown instances and tag paths are 404s; a malformed tag path is a 400.
    let ct = &corpus.attrs[0];
    let base = format!(
        "/studies/{}/series/{}/instances/{}",
        attr(ct, "StudyInstanceUID"),
        attr(ct, "SeriesInstanceUID"),
        attr(ct, "SOPInstanceUID")
    );
    assert_eq!(get(&app, &format!("{base}/bulkdata/7FE00011"), None).await.status().as_u16(), 404);
    assert_eq!(get(&app, &format!("{base}/bulkdata/not-a-tag"), None).await.status().as_u16(), 400);
    assert_eq!(get(&app, "/studies/1.2.3/metadata", None).await.status().as_u16(), 404);
    assert_eq!(get(&app, &format!("{base}/metadata"), Some("application/dicom+xml")).await.status().as_u16(), 406);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parts_are_refused_one_by_one_and_never_indexed() {
    let Some(corpus) = corpus(&["CT_small.dcm", "SC_rgb_small_odd.dcm", "MR_small.dcm"]) else { return };
    let app = spawn_app().await;
    let truncated = &corpus.bytes[2][..1000];
    let (status, response) = stow(
        &app,
        "",
        &[
            ("application/dicom", &corpus.bytes[0]),
            ("application/dicom", truncated),
            ("application/dicom", b"this is not DICOM at all"),
        ],
    )
    .await;
    assert_eq!(status, 202, "{response}");
    assert_eq!(sequence(&response, "00081199").len(), 1, "{response}");
    let failed = sequence(&response, "00081198");
    assert_eq!(failed.len(), 2, "{response}");
    for item in &failed {
        assert_eq!(item["00081197"]["Value"][0].as_u64(), Some(CANNOT_UNDERSTAND), "{item}");
    }
    let instances = get_json(&app, "/instances").await;
    assert_eq!(uids(&instances, SOP_UID), BTreeSet::from([attr(&corpus.attrs[0], "SOPInstanceUID").to_string()]));

    // A request of nothing but bad parts stores nothing: 409.
    let (status, response) = stow(&app, "", &[("application/dicom", b"DICM? no")]).await;
    assert_eq!(status, 409, "{response}");
    assert!(response.get("00081199").is_none());

    // A part of another media type is refused.
    let (status, response) = stow(&app, "", &[("application/dicom+json", b"[]")]).await;
    assert_eq!(status, 409, "{response}");
    assert_eq!(sequence(&response, "00081198")[0]["00081197"]["Value"][0].as_u64(), Some(CANNOT_UNDERSTAND));

    // An instance of another study than the URL's is refused with 0xA900 and not stored.
    let (status, response) = stow(&app, "/1.2.3.999", &[("application/dicom", &corpus.bytes[2])]).await;
    assert_eq!(status, 409, "{response}");
    let item = sequence(&response, "00081198")[0];
    assert_eq!(item["00081197"]["Value"][0].as_u64(), Some(MISMATCH));
    assert_eq!(json_string(item, "00081155"), attr(&corpus.attrs[2], "SOPInstanceUID"));
    // …and accepted under its own study.
    let own = attr(&corpus.attrs[2], "StudyInstanceUID");
    let (status, response) = stow(&app, &format!("/{own}"), &[("application/dicom", &corpus.bytes[2])]).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(json_string(&response, "00081190"), format!("{}/studies/{own}", app.dicomweb));

    // A body cut off inside its second part: the first part stands, the second fails.
    let mut cut = multipart_body(BOUNDARY, &[("application/dicom", &corpus.bytes[1]), ("application/dicom", &corpus.bytes[1])]);
    cut.truncate(cut.len() - 200);
    let response = app
        .client
        .post(format!("{}/studies", app.dicomweb))
        .header("content-type", stow_content_type(BOUNDARY))
        .body(cut)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!((sequence(&body, "00081199").len(), sequence(&body, "00081198").len()), (1, 1), "{body}");

    // A second part whose headers are not headers: the first stands, the second is refused.
    let mut broken = multipart_body(BOUNDARY, &[("application/dicom", &corpus.bytes[1])]);
    broken.truncate(broken.len() - format!("--{BOUNDARY}--\r\n").len());
    broken.extend_from_slice(format!("--{BOUNDARY}\r\nthis line is no header\r\n\r\n").as_bytes());
    broken.extend_from_slice(&corpus.bytes[0]);
    broken.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let response = app
        .client
        .post(format!("{}/studies", app.dicomweb))
        .header("content-type", stow_content_type(BOUNDARY))
        .body(broken)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!((sequence(&body, "00081199").len(), sequence(&body, "00081198").len()), (1, 1), "{body}");

    // Not multipart at all, or no boundary: 415 / 400 with an explanation; nothing stored.
    let before = get_json(&app, "/instances").await;
    for (content_type, expected) in [
        ("application/dicom", 415),
        ("application/json", 415),
        ("multipart/related; type=\"application/dicom+xml\"; boundary=x", 415),
        ("multipart/related; type=\"application/dicom\"", 400),
    ] {
        let response = app
            .client
            .post(format!("{}/studies", app.dicomweb))
            .header("content-type", content_type)
            .body(corpus.bytes[0].clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, expected, "{content_type}: {text}");
        assert!(text.contains("multipart/related"), "{content_type}: the answer says what is accepted: {text}");
    }
    let response = app
        .client
        .post(format!("{}/studies", app.dicomweb))
        .header("content-type", stow_content_type(BOUNDARY))
        .body("no multipart here")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(get_json(&app, "/instances").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_copy_with_other_bytes_is_a_warning_and_the_first_is_kept() {
    // Same SOP Instance UID, JPEG-LS and then explicit VR little endian bytes.
    let Some(corpus) = corpus(&["MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"]) else { return };
    assert_eq!(attr(&corpus.attrs[0], "SOPInstanceUID"), attr(&corpus.attrs[1], "SOPInstanceUID"));
    let app = spawn_app().await;
    let (status, first) = stow_files(&app, &corpus.bytes[..1]).await;
    assert_eq!(status, 200, "{first}");
    // The same bytes again: success, no warning.
    let (status, again) = stow_files(&app, &corpus.bytes[..1]).await;
    assert_eq!(status, 200, "{again}");
    assert!(sequence(&again, "00081199")[0].get("00081196").is_none(), "{again}");
    // Other bytes: stored copy kept, a warning.
    let (status, other) = stow_files(&app, &corpus.bytes[1..]).await;
    assert_eq!(status, 202, "{other}");
    let item = sequence(&other, "00081199")[0];
    assert_eq!(item["00081196"]["Value"][0].as_u64(), Some(ELEMENTS_DISCARDED), "{other}");
    let url = json_string(item, "00081190");
    let (_, parts) = retrieve(&app, &url, None).await;
    assert!(parts[0].body == corpus.bytes[0], "the first copy is kept");
    assert_eq!(get_json(&app, "/instances").await.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_is_refused_under_the_reject_policy() {
    let Some(corpus) = corpus(&["MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"]) else { return };
    let app = spawn_app_with(|s| s.dicom_on_conflict = tessera_server::DicomConflict::Reject).await;
    assert_eq!(stow_files(&app, &corpus.bytes[..1]).await.0, 200);
    let (status, response) = stow_files(&app, &corpus.bytes[1..]).await;
    assert_eq!(status, 409, "{response}");
    let item = sequence(&response, "00081198")[0];
    assert_eq!(item["00081197"]["Value"][0].as_u64(), Some(0x0111), "{response}");
    assert_eq!(json_string(item, "00081155"), attr(&corpus.attrs[1], "SOPInstanceUID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieve_negotiates_and_answers_404_for_unknown_uids() {
    let Some(corpus) = corpus(&["CT_small.dcm", "SC_rgb_jpeg_dcmtk.dcm"]) else { return };
    let app = spawn_app().await;
    assert_eq!(stow_files(&app, &corpus.bytes).await.0, 200);
    let url = |row: &Value| {
        format!(
            "/studies/{}/series/{}/instances/{}",
            attr(row, "StudyInstanceUID"),
            attr(row, "SeriesInstanceUID"),
            attr(row, "SOPInstanceUID")
        )
    };
    let (ct, jpeg) = (url(&corpus.attrs[0]), url(&corpus.attrs[1]));
    let explicit_le = "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1";
    // An instance stored in the transfer syntax asked for is served; another is 406 (no transcoding).
    let (status, parts) = retrieve(&app, &ct, Some(explicit_le)).await;
    assert_eq!((status, parts[0].body == corpus.bytes[0]), (200, true));
    assert_eq!(retrieve(&app, &jpeg, Some(explicit_le)).await.0, 406);
    let wildcard = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
    let (status, parts) = retrieve(&app, &jpeg, Some(wildcard)).await;
    assert_eq!((status, parts[0].body == corpus.bytes[1]), (200, true));
    assert!(parts[0].header("content-type").unwrap().contains(attr(&corpus.attrs[1], "TransferSyntaxUID")));
    for accept in ["application/dicom+xml", "image/jpeg", "multipart/related; type=\"application/octet-stream\""] {
        let response = get(&app, &ct, Some(accept)).await;
        assert_eq!(response.status().as_u16(), 406, "{accept}");
        assert!(response.text().await.unwrap().contains("application/dicom"), "{accept}");
    }
    let study = attr(&corpus.attrs[0], "StudyInstanceUID");
    for missing in [
        "/studies/1.2.3.4".to_string(),
        format!("/studies/{study}/series/1.2.3.4"),
        format!("/studies/{study}/series/{}/instances/1.2.3.4", attr(&corpus.attrs[0], "SeriesInstanceUID")),
    ] {
        assert_eq!(retrieve(&app, &missing, None).await.0, 404, "{missing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_need_s3_and_restore_on_local_disk_is_immediate() {
    let Some(corpus) = corpus(&["CT_small.dcm"]) else { return };
    let app = spawn_app().await;
    assert_eq!(stow_files(&app, &corpus.bytes).await.0, 200);
    let row = &corpus.attrs[0];
    let base = format!(
        "/studies/{}/series/{}/instances/{}",
        attr(row, "StudyInstanceUID"),
        attr(row, "SeriesInstanceUID"),
        attr(row, "SOPInstanceUID")
    );
    let response = get(&app, &format!("{base}/presigned?expires=600"), None).await;
    assert_eq!(response.status().as_u16(), 501);
    let text = response.text().await.unwrap();
    assert!(text.contains("TESSERA_S3_BUCKET") && text.contains("WADO-RS"), "{text}");
    assert_eq!(get(&app, &format!("{base}/presigned?expires=0"), None).await.status().as_u16(), 400);
    assert_eq!(get(&app, &format!("{base}/presigned?expires=604801"), None).await.status().as_u16(), 400);
    let study = attr(row, "StudyInstanceUID");
    assert_eq!(get(&app, &format!("/studies/{study}/series/1.2/instances/1.2.3/presigned"), None).await.status().as_u16(), 404);

    let response = app.client.post(format!("{}{base}/restore", app.dicomweb)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "available");
    let response =
        app.client.post(format!("{}/studies/{study}/series/1.2/instances/1.2.3/restore", app.dicomweb)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stow_of_several_large_parts_arriving_in_many_chunks() {
    // Four ~230 kB instances (one copy with new UIDs each, by pydicom) reach the server in many
    // TCP reads; each part streams to its own staging file.
    let Some(corpus) = corpus(&["examples_rgb_color.dcm"]) else { return };
    let app = spawn_app().await;
    let mut files = Vec::new();
    for n in 1..=4 {
        let path = app.data_dir.path().join(format!("copy-{n}.dcm"));
        let uid = format!("1.2.826.0.1.3680043.10.1077.9.{n}");
        pydicom_rewrite(&corpus.paths[0], &path, &[("SOPInstanceUID", uid.as_str())]);
        files.push(std::fs::read(&path).unwrap());
    }
    let (status, response) = stow_files(&app, &files).await;
    assert_eq!(status, 200, "{response}");
    for (item, bytes) in sequence(&response, "00081199").iter().zip(&files) {
        let (_, parts) = retrieve(&app, &json_string(item, "00081190"), None).await;
        assert!(parts[0].body == *bytes);
    }
    let row = &corpus.attrs[0];
    let series = format!("/studies/{}/series/{}", attr(row, "StudyInstanceUID"), attr(row, "SeriesInstanceUID"));
    assert_eq!(retrieve(&app, &series, None).await.1.len(), 4);
}
