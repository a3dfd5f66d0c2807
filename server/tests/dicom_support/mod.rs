//! Shared harness of the DICOM tests (`dicomweb`, `dimse`): starts Tessera in-process with its
//! DIMSE listener on a free port, finds pydicom's test files, reads their attributes with
//! pydicom (an implementation independent of ours), and speaks multipart/related.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tessera_server::{Application, Settings};

/// How long one HTTP request may take before the test fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Tessera running inside the test process.
pub struct DicomApp {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    /// `http://127.0.0.1:PORT/dicomweb`
    pub dicomweb: String,
    /// The DIMSE listener, when the settings leave it on.
    pub dimse: Option<SocketAddr>,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
}

/// Tessera on a fresh data dir, HTTP and DIMSE on free ports.
pub async fn spawn_app() -> DicomApp {
    spawn_app_with(|_| {}).await
}

/// As `spawn_app`, with the settings changed by `tweak` first (HTTP is always on port 0; the
/// DIMSE listener is on `127.0.0.1:0` unless `tweak` turns it off with `dicom_addr = None`).
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> DicomApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::for_tests(data_dir.path());
    settings.dicom_addr = Some("127.0.0.1:0".into());
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("tessera starts");
    let origin = format!("http://127.0.0.1:{}", app.port());
    let dimse = app.dicom_addr();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("http client");
    let healthy = async {
        loop {
            if let Ok(response) = client.get(format!("{origin}/healthz")).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), healthy).await.expect("tessera becomes healthy");
    DicomApp { dicomweb: format!("{origin}/dicomweb"), origin, dimse, client, data_dir }
}

/// True when peers are required (CI): a missing one fails the test instead of skipping it.
pub fn peers_required() -> bool {
    std::env::var("TESSERA_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Skips (prints `skipped: …` and returns None) or, under `TESSERA_REQUIRE_PEERS=1`, panics.
pub fn skip<T>(why: &str) -> Option<T> {
    if peers_required() {
        panic!("{why} (TESSERA_REQUIRE_PEERS=1)");
    }
    eprintln!("skipped: {why}");
    None
}

/// pydicom test files of distinct SOP instances, one per transfer syntax the store keeps as
/// received; JPEG2000.dcm and JPEG-lossy.dcm share a study and series, as do SC_rgb_rle.dcm and
/// SC_rgb_jpeg_dcmtk.dcm.
pub const ONE_FILE_PER_TRANSFER_SYNTAX: &[&str] = &[
    "CT_small.dcm",                  // Explicit VR Little Endian
    "SC_rgb_jpeg_dcmd.dcm",          // Implicit VR Little Endian
    "image_dfl.dcm",                 // Deflated Explicit VR Little Endian
    "SC_rgb_jpeg_dcmtk.dcm",         // JPEG Baseline
    "MR_small_jpeg_ls_lossless.dcm", // JPEG-LS Lossless
    "JPEG2000.dcm",                  // JPEG 2000
    "SC_rgb_rle.dcm",                // RLE Lossless (same study and series as SC_rgb_jpeg_dcmtk)
    "JPEG-lossy.dcm",                // JPEG Extended (same study and series as JPEG2000)
];

/// pydicom's directory of test files (`pydicom/data/test_files`), or a skip when pydicom is
/// not installed.
pub fn pydicom_test_files() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args(["-c", "import pydicom, os; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))"])
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("CT_small.dcm").is_file() {
                Some(dir)
            } else {
                skip(&format!("pydicom's test files are not in {}", dir.display()))
            }
        }
        Ok(out) => skip(&format!("pydicom is not installed: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => skip(&format!("python3 cannot be run: {e}")),
    }
}

/// The bytes of a Part 10 file after its file meta group: the data set as sent over DIMSE.
pub fn data_set_of(part10: &[u8]) -> &[u8] {
    assert_eq!(&part10[128..132], b"DICM", "not a Part 10 file");
    // (0002,0000) UL group length, explicit VR LE: tag 4, VR 2, length 2, value 4.
    let group_length = u32::from_le_bytes(part10[140..144].try_into().unwrap()) as usize;
    &part10[144 + group_length..]
}

/// Runs a python3 script with pydicom and returns what it printed as JSON.
pub fn python_json(script: &str, args: &[&Path]) -> Value {
    let output = Command::new("python3").arg("-c").arg(script).args(args).output().expect("python3 runs");
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("python printed JSON")
}

/// What pydicom reads from each file: its UIDs and the attributes QIDO-RS matches on, as
/// strings (empty when absent), keyed by keyword.
pub fn pydicom_attributes(files: &[PathBuf]) -> Vec<Value> {
    const SCRIPT: &str = r#"
import json, sys, pydicom
keys = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID", "PatientName",
        "StudyDate", "AccessionNumber", "Modality"]
out = []
for path in sys.argv[1:]:
    ds = pydicom.dcmread(path)
    row = {k: str(ds.get(k, "") or "") for k in keys}
    row["TransferSyntaxUID"] = str(ds.file_meta.TransferSyntaxUID)
    out.append(row)
print(json.dumps(out))
"#;
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    python_json(SCRIPT, &paths).as_array().expect("a list").clone()
}

/// One attribute of a `pydicom_attributes` row, "" when absent.
pub fn attr<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().unwrap_or_default()
}

/// Writes a copy of `source` to `target` with some attributes changed (keyword → value), by
/// pydicom, keeping the transfer syntax.
pub fn pydicom_rewrite(source: &Path, target: &Path, changes: &[(&str, &str)]) {
    const SCRIPT: &str = r#"
import json, sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
for keyword, value in json.loads(sys.argv[3]).items():
    setattr(ds, keyword, value)
    if keyword == "SOPInstanceUID":
        ds.file_meta.MediaStorageSOPInstanceUID = value
ds.save_as(sys.argv[2], enforce_file_format=True)
print("{}")
"#;
    let changes: serde_json::Map<String, Value> = changes.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    let changes = Value::Object(changes).to_string();
    python_json(SCRIPT, &[source, target, Path::new(&changes)]);
}

// ---------------------------------------------------------------------------------------
// multipart/related
// ---------------------------------------------------------------------------------------

/// A multipart/related body of `parts` (content type, bytes) with `boundary`.
pub fn multipart_body(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (content_type, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// The STOW-RS Content-Type for `boundary`.
pub fn stow_content_type(boundary: &str) -> String {
    format!("multipart/related; type=\"application/dicom\"; boundary={boundary}")
}

/// One part of a multipart response: its headers (names lower-case) and bytes.
#[derive(Debug, Clone)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Splits a multipart response by the boundary of its Content-Type (a plain reading of RFC
/// 2046, independent of the server's own reader).
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .unwrap_or_else(|| panic!("no boundary in {content_type:?}"))
        .trim_matches('"')
        .to_string();
    let delimiter = format!("--{boundary}").into_bytes();
    let mut positions = Vec::new();
    let mut i = 0;
    while i + delimiter.len() <= body.len() {
        if body[i..].starts_with(&delimiter) && (i == 0 || body[..i].ends_with(b"\r\n")) {
            positions.push(i);
            i += delimiter.len();
        } else {
            i += 1;
        }
    }
    let mut parts = Vec::new();
    for pair in positions.windows(2) {
        let start = pair[0] + delimiter.len();
        assert!(body[start..].starts_with(b"\r\n"), "a delimiter line ends with CRLF");
        let end = pair[1] - 2; // the CRLF before the next delimiter belongs to it
        let section = &body[start + 2..end];
        let split = section.windows(4).position(|w| w == b"\r\n\r\n").map(|p| (p, p + 4));
        let (headers, content) = match split {
            Some((head_end, content_start)) => (&section[..head_end], &section[content_start..]),
            None if section.starts_with(b"\r\n") => (&section[..0], &section[2..]),
            None => panic!("a part without a header end"),
        };
        let headers = String::from_utf8_lossy(headers)
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("Name: value");
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        parts.push(Part { headers, body: content.to_vec() });
    }
    let last = *positions.last().expect("at least the closing delimiter");
    assert!(body[last + delimiter.len()..].starts_with(b"--"), "the body ends with the closing delimiter");
    parts
}

/// The string values of attribute `tag` in one DICOM JSON object (PN as its Alphabetic form).
pub fn json_strings(object: &Value, tag: &str) -> Vec<String> {
    object[tag]["Value"]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Object(pn) => pn.get("Alphabetic").and_then(Value::as_str).unwrap_or_default().to_string(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The first string value of `tag`, or "".
pub fn json_string(object: &Value, tag: &str) -> String {
    json_strings(object, tag).into_iter().next().unwrap_or_default()
}
