//! What the DIMSE tests share: the external peers (dcmtk, pynetdicom, the pydicom test files)
//! with the skip-or-fail rule, and an archive with its DIMSE SCP on a free port.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use dicom_store::object_store::LocalObjectStore;
use dicom_store::{Archive, ArchiveConfig, ConflictPolicy, DimseConfig, DimseServer};

/// `found`, or None after `skip` when the peer is missing.
pub fn peer<T>(found: Option<T>, why: &str) -> Option<T> {
    found.or_else(|| crate::peers::skip(why))
}

/// A dcmtk tool. pynetdicom installs Python apps with the same names (storescu, findscu…), so
/// the dcmtk binary is looked up where Debian puts it and checked by its version banner.
pub fn dcmtk(tool: &str) -> Option<PathBuf> {
    let found = ["/usr/bin", "/usr/local/bin"].iter().map(|dir| Path::new(dir).join(tool)).find(|path| {
        Command::new(path).arg("--version").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("dcmtk"))
    });
    peer(found, &format!("dcmtk {tool} not installed (apt-get install dcmtk)"))
}

/// The pydicom wheel's test files directory.
pub fn pydicom_test_files() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import pydicom, os; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    peer(found_dir(out), "pydicom not installed (pip install pydicom)")
}

fn found_dir(dir: Option<PathBuf>) -> Option<PathBuf> {
    dir.filter(|d| d.is_dir())
}

/// True when python3 can import pynetdicom.
pub fn pynetdicom() -> Option<()> {
    let ok = Command::new("python3").args(["-c", "import pynetdicom"]).status().is_ok_and(|s| s.success());
    peer(ok.then_some(()), "pynetdicom not installed (pip install pynetdicom)")
}

/// An archive in a temp dir with its DIMSE SCP listening on a free port.
pub struct DimseArchive {
    pub archive: Arc<Archive>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DimseArchive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(configure: impl FnOnce(&mut DimseConfig)) -> DimseArchive {
    start_with(ConflictPolicy::KeepFirst, configure).await
}

pub async fn start_with(on_conflict: ConflictPolicy, configure: impl FnOnce(&mut DimseConfig)) -> DimseArchive {
    let dir = tempfile::tempdir().unwrap();
    let objects = Arc::new(LocalObjectStore::open(dir.path().join("objects")).unwrap());
    let config = ArchiveConfig {
        data_dir: dir.path().join("data"),
        on_conflict,
        dicomweb_base_url: "http://127.0.0.1/dicomweb".into(),
        patient_identifier_system: "urn:tessera:test:patient-id".into(),
    };
    let archive = Archive::open(config, objects, None).await.unwrap();
    let mut dimse = DimseConfig::new("127.0.0.1:0".parse().unwrap());
    configure(&mut dimse);
    let server = DimseServer::bind(dimse, archive.clone()).await.unwrap();
    let addr = server.local_addr();
    let task = tokio::spawn(server.run());
    DimseArchive { archive, addr, dir, task }
}

/// Runs a command with a time limit; (exit success, stdout + stderr).
pub async fn run(command: &mut tokio::process::Command) -> (bool, String) {
    let output = tokio::time::timeout(Duration::from_secs(120), command.kill_on_drop(true).output())
        .await
        .expect("peer command timed out")
        .expect("peer command runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The bytes of a Part 10 file after its file meta group: the data set as sent over DIMSE.
pub fn data_set_of(part10: &[u8]) -> &[u8] {
    assert_eq!(&part10[128..132], b"DICM", "not a Part 10 file");
    // (0002,0000) UL group length, explicit VR LE: tag 4, VR 2, length 2, value 4.
    let group_length = u32::from_le_bytes(part10[140..144].try_into().unwrap()) as usize;
    &part10[144 + group_length..]
}
