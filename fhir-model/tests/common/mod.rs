//! Test helpers shared by the fhir-model integration tests: the vendored example corpus.

use std::path::PathBuf;

use fhir_model::{parse_resource, Format};
use serde_json::Value;

/// The official Patient and Observation examples and the example transaction Bundle from
/// `conformance-tests/corpus/r4-examples`, sorted by file name, parsed.
pub fn corpus() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance-tests/corpus/r4-examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus directory exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with("Patient-") || name.starts_with("Observation-") || name == "Bundle-bundle-transaction.json"
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("readable example");
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let value = parse_resource(&bytes, Format::Json).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, value)
        })
        .collect()
}
