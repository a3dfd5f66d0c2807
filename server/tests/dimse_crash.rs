//! Crash safety of the DIMSE SCP: dcmtk `storescu` streams instances to the real `tessera`
//! binary, which is killed with SIGKILL mid-stream; after a restart on the same data dir every
//! instance that got C-STORE success is retrievable over WADO-RS, byte-verified by the server,
//! and findable over QIDO-RS.

mod dicom_support;
mod hl7_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dicom_support::{pydicom_attributes, skip};
use hl7_support::{free_port, start_binary_with};

const INSTANCES: usize = 200;
/// 256 x 256 16-bit pixels: ~130 KB instances.
const SIDE: &str = "256";
const KILL_AFTER_SUCCESSES: usize = 40;

#[tokio::test(flavor = "multi_thread")]
async fn every_instance_that_got_success_survives_kill_9() {
    let storescu = PathBuf::from("/usr/bin/storescu");
    if !storescu.exists() {
        skip::<()>("dcmtk storescu not installed (apt-get install dcmtk)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let instances = work.path().join("instances");
    std::fs::create_dir_all(&instances).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/make-dicom-instances.py");
    let made = Command::new("python3").arg(script).arg(&instances).args([SIDE, &INSTANCES.to_string()]).status();
    if !made.is_ok_and(|s| s.success()) {
        skip::<()>("pydicom not installed (pip install pydicom)");
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&instances).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();

    let data_dir = work.path().join("data");
    let log = work.path().join("tessera.log");
    let dicom_port = free_port();
    let settings = [("TESSERA_DICOM_ADDR", format!("127.0.0.1:{dicom_port}"))];
    let mut server = start_binary_with(&data_dir, &log, &settings).await;

    // storescu logs "Sending file: <path>" then the response for it.
    let mut child = Command::new(&storescu)
        .args(["-v", "-aet", "CRASHTEST", "-aec", "TESSERA", "127.0.0.1", &dicom_port.to_string()])
        .args(&files)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let mut sending: Option<PathBuf> = None;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(path) = line.strip_prefix("I: Sending file: ") {
                sending = Some(PathBuf::from(path.trim()));
            } else if line.contains("Received Store Response (Success)") {
                acknowledged.extend(sending.take());
            }
        }
        acknowledged
    });
    // Kill once the server has written that many objects (it answers each one after writing).
    let objects = data_dir.join("dicom-objects");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count_objects(&objects) < KILL_AFTER_SUCCESSES && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let _ = child.wait();
    let acknowledged = reader.join().unwrap();
    assert!(acknowledged.len() >= KILL_AFTER_SUCCESSES / 2, "storescu saw {} successes before the kill", acknowledged.len());
    assert!(acknowledged.len() < INSTANCES, "the kill came before the end of the stream");

    let server = start_binary_with(&data_dir, &log, &settings).await;
    let attributes = pydicom_attributes(&acknowledged);
    let text = |row: &serde_json::Value, key: &str| row[key].as_str().unwrap().to_string();
    let (study, series) = (text(&attributes[0], "StudyInstanceUID"), text(&attributes[0], "SeriesInstanceUID"));
    for (file, row) in acknowledged.iter().zip(&attributes) {
        let uid = text(row, "SOPInstanceUID");
        let (status, body) = server.rest.get(&format!("/dicomweb/studies/{study}/series/{series}/instances/{uid}")).await;
        assert_eq!(status, 200, "{} got success but is not retrievable: {}", file.display(), String::from_utf8_lossy(&body));
        assert!(body.windows(uid.len()).any(|w| w == uid.as_bytes()), "the retrieved object is {uid}");
    }
    let found = server.rest.json(&format!("/dicomweb/studies/{study}/series/{series}/instances")).await;
    let found = found.as_array().unwrap().len();
    assert!(found >= acknowledged.len(), "QIDO finds {found} instances, {} were acknowledged", acknowledged.len());
    println!("{} acknowledged before the kill, {found} stored after restart", acknowledged.len());
}

fn count_objects(dir: &Path) -> usize {
    fn walk(dir: &Path, n: &mut usize) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if path.extension().is_some_and(|e| e == "dcm") {
                    *n += 1;
                }
            }
        }
    }
    let mut n = 0;
    walk(dir, &mut n);
    n
}
