//! Measures C-STORE receive: dcmtk `storescu` sends ~0.5 MB and ~5 MB instances over one
//! association to Tessera's DIMSE SCP (local object store: fsynced file + SHA-256 sidecar +
//! SQLite index row before each success), to dcmtk's own `storescp` writing to disk in the same
//! run (the receive-to-disk ceiling; it does not fsync), and to Orthanc when installed.
//!
//! Run with `cargo bench -p dicom-store --bench cstore`. `TESSERA_BENCH_DIR` is where the data
//! goes (default `/var/tmp`), `TESSERA_BENCH_ROUNDS` how many times each receiver is measured
//! (default 3; the best round is reported). Needs dcmtk and pydicom (the instances are made by
//! `scripts/make-dicom-instances.py` from the wheel's CT_small.dcm with random pixel data); Orthanc is optional.
//! Every instance is checked to be indexed after Tessera's rounds; exit status 1 otherwise.
//!
//! Every dcmtk process (storescu, storescp, and Orthanc, which uses dcmtk's network library)
//! runs with `TCP_NODELAY=1`: Debian's dcmtk leaves Nagle's algorithm on unless that variable
//! is set, and its SCP writes each C-STORE response as two small writes, so without it every
//! response waits ~40 ms for the peer's delayed ACK and the "ceiling" would be a timer.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_store::object_store::LocalObjectStore;
use dicom_store::{Archive, ArchiveConfig, ConflictPolicy, DicomQuery, DimseConfig, DimseServer, QueryLevel};

/// (label, rows = columns of 16-bit pixels, instance count)
const SIZES: &[(&str, u32, usize)] = &[("0.5 MB", 512, 200), ("5 MB", 1600, 40)];


fn main() {
    let parent = std::env::var("TESSERA_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let rounds: usize = std::env::var("TESSERA_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let work = tempfile::Builder::new().prefix("tessera-cstore-bench-").tempdir_in(&parent).expect("bench dir");
    let storescu = dcmtk("storescu");
    let storescp = dcmtk("storescp");
    let orthanc = ["/usr/sbin/Orthanc", "/usr/bin/Orthanc"].iter().map(PathBuf::from).find(|p| p.exists());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("C-STORE benchmark in {} ({} rounds, best reported)", work.path().display(), rounds);
    let mut failed = false;
    for &(label, side, count) in SIZES {
        let files_dir = work.path().join(format!("instances-{side}"));
        std::fs::create_dir_all(&files_dir).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/make-dicom-instances.py");
        let made = Command::new("python3").arg(script).arg(&files_dir).arg(side.to_string()).arg(count.to_string()).status();
        assert!(made.is_ok_and(|s| s.success()), "making instances needs pydicom");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&files_dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();

        let best = |name: &str, results: Vec<Duration>| -> f64 {
            let best = results.into_iter().min().unwrap();
            let per_second = count as f64 / best.as_secs_f64();
            println!(
                "  {label:>6} {name:<22} {:>8.1} instances/s {:>8.1} MB/s ({count} instances, {:.1} MB, {:.2} s)",
                per_second,
                bytes as f64 / 1e6 / best.as_secs_f64(),
                bytes as f64 / 1e6,
                best.as_secs_f64()
            );
            per_second
        };

        let mut tessera = Vec::new();
        let mut ceiling = Vec::new();
        let mut orthanc_runs = Vec::new();
        for round in 0..rounds {
            // Tessera, a fresh archive per round.
            let dir = work.path().join(format!("tessera-{side}-{round}"));
            let (elapsed, indexed) = runtime.block_on(async {
                let objects = Arc::new(LocalObjectStore::open(dir.join("objects")).unwrap());
                let config = ArchiveConfig {
                    data_dir: dir.join("data"),
                    on_conflict: ConflictPolicy::KeepFirst,
                    dicomweb_base_url: String::new(),
                    patient_identifier_system: "urn:bench".into(),
                };
                let archive = Archive::open(config, objects, None).await.unwrap();
                let server = DimseServer::bind(DimseConfig::new("127.0.0.1:0".parse().unwrap()), archive.clone()).await.unwrap();
                let port = server.local_addr().port();
                let task = tokio::spawn(server.run());
                let storescu = storescu.clone();
                let files = files.clone();
                let elapsed = tokio::task::spawn_blocking(move || send(&storescu, "TESSERA", port, &files)).await.unwrap();
                task.abort();
                let indexed = archive.query(&DicomQuery::new(QueryLevel::Instance)).await.unwrap().len();
                (elapsed, indexed)
            });
            if indexed != count {
                eprintln!("FAILED: {indexed} of {count} instances indexed");
                failed = true;
            }
            tessera.push(elapsed);
            let _ = std::fs::remove_dir_all(&dir);

            // dcmtk storescp, bit-preserving, to disk.
            let dir = work.path().join(format!("storescp-{side}-{round}"));
            std::fs::create_dir_all(&dir).unwrap();
            let port = free_port();
            let mut child = Command::new(&storescp)
                .env("TCP_NODELAY", "1")
                .args(["+B", "-od"])
                .arg(&dir)
                .arg(port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            wait_for_port(port);
            ceiling.push(send(&storescu, "STORESCP", port, &files));
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);

            if let Some(orthanc) = &orthanc {
                let dir = work.path().join(format!("orthanc-{side}-{round}"));
                std::fs::create_dir_all(&dir).unwrap();
                let (dicom_port, http_port) = (free_port(), free_port());
                let config = dir.join("orthanc.json");
                std::fs::write(
                    &config,
                    format!(
                        r#"{{"Name":"bench","StorageDirectory":"{0}","IndexDirectory":"{0}","DicomAet":"ORTHANC","DicomPort":{1},"HttpPort":{2},"RemoteAccessAllowed":false,"AuthenticationEnabled":false,"DicomCheckCalledAet":false,"Plugins":[]}}"#,
                        dir.join("storage").display(),
                        dicom_port,
                        http_port
                    ),
                )
                .unwrap();
                let mut child = Command::new(orthanc).env("TCP_NODELAY", "1").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
                if wait_for_port(dicom_port) {
                    orthanc_runs.push(send(&storescu, "ORTHANC", dicom_port, &files));
                }
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let ours = best("tessera", tessera);
        let theirs = best("dcmtk storescp (disk)", ceiling);
        println!("  {label:>6} tessera / storescp = {:.0}%", 100.0 * ours / theirs);
        if !orthanc_runs.is_empty() {
            let orthanc = best("orthanc", orthanc_runs);
            println!("  {label:>6} tessera / orthanc = {:.2}x", ours / orthanc);
        }
    }
    if failed {
        std::process::exit(1);
    }
}

/// Sends every file over one association; the wall time. Panics unless every store succeeded.
fn send(storescu: &Path, aec: &str, port: u16, files: &[PathBuf]) -> Duration {
    let started = Instant::now();
    let output = Command::new(storescu)
        .env("TCP_NODELAY", "1")
        .args(["-v", "-aet", "BENCH", "-aec", aec, "127.0.0.1", &port.to_string()])
        .args(files)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let log = String::from_utf8_lossy(&output.stderr).to_string() + &String::from_utf8_lossy(&output.stdout);
    let successes = log.matches("Received Store Response (Success)").count();
    assert!(output.status.success() && successes == files.len(), "storescu to {aec}: {successes} of {} stored\n{log}", files.len());
    elapsed
}

fn dcmtk(tool: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(tool);
    assert!(path.exists(), "dcmtk's {tool} is needed (apt-get install dcmtk)");
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16) -> bool {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
