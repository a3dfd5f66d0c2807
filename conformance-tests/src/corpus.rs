//! Round trip of the official R4 examples: stored as JSON they read back unchanged apart from
//! `meta`, and their XML rendering stored under a new id reads back as the same JSON.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::ctx::FHIR_XML;
use crate::fhir;
use crate::{CaseFailure, CaseResult, Ctx};

pub async fn patient_examples_round_trip(ctx: &Ctx) -> CaseResult {
    round_trip_all(ctx, "Patient").await
}

pub async fn observation_examples_round_trip(ctx: &Ctx) -> CaseResult {
    round_trip_all(ctx, "Observation").await
}

/// Runs every `{resource_type}-*.json` of the corpus and reports every file that fails.
async fn round_trip_all(ctx: &Ctx, resource_type: &str) -> CaseResult {
    let files = corpus_files(ctx.corpus_dir(), resource_type)?;
    check!(!files.is_empty(), "no {resource_type}-*.json in {}", ctx.corpus_dir().display());
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = round_trip(ctx, resource_type, file).await {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            failures.push(format!("{name}: {e}"));
        }
    }
    check!(
        failures.is_empty(),
        "{} of {} {resource_type} examples failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    Ok(())
}

fn corpus_files(dir: &Path, resource_type: &str) -> Result<Vec<PathBuf>, CaseFailure> {
    let listing =
        std::fs::read_dir(dir).map_err(|e| CaseFailure::new(format!("cannot list {}: {e}", dir.display())))?;
    let prefix = format!("{resource_type}-");
    let mut files: Vec<PathBuf> = listing
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with(&prefix) && name.ends_with(".json")
        })
        .collect();
    files.sort();
    Ok(files)
}

async fn round_trip(ctx: &Ctx, resource_type: &str, file: &Path) -> CaseResult {
    let text = std::fs::read_to_string(file).map_err(|e| CaseFailure::new(format!("cannot read: {e}")))?;
    let original: Value = serde_json::from_str(&text).map_err(|e| CaseFailure::new(format!("not JSON: {e}")))?;
    check!(original["resourceType"] == resource_type, "resourceType is {}", original["resourceType"]);
    let id = fhir::id_of(&original)?.to_string();
    let url = format!("{resource_type}/{id}");

    ctx.put(&url).json(&original).send().await?.expect_any(&[200, 201])?;
    let stored = fhir::read(ctx, resource_type, &id).await?;
    if let Some(d) = fhir::first_difference(&fhir::without(&original, &["meta"]), &fhir::without(&stored, &["meta"])) {
        fail!("JSON read-back of {url} differs at {d}");
    }

    let reply = ctx.get(&url).accept(FHIR_XML).send().await?;
    reply.expect(200)?;
    let xml = reply.text();
    match fhir::xml_root(&xml) {
        Some((root, _)) if root == resource_type => {}
        other => return Err(reply.failure(format!("expected a <{resource_type}> root, got {other:?}"))),
    }
    let copy_id = format!("{id}-x");
    let copy = fhir::with_xml_id(&xml, &copy_id).ok_or_else(|| reply.failure("no <id value> in the XML"))?;
    let copy_url = format!("{resource_type}/{copy_id}");
    ctx.put(&copy_url).body(FHIR_XML, copy).send().await?.expect_any(&[200, 201])?;
    let copied = fhir::read(ctx, resource_type, &copy_id).await?;
    check!(copied["id"] == copy_id.as_str(), "{copy_url} reads back with id {}", copied["id"]);
    match fhir::first_difference(&fhir::without(&original, &["meta", "id"]), &fhir::without(&copied, &["meta", "id"])) {
        Some(d) => fail!("{copy_url}, stored from the XML of {url}, differs from the example at {d}"),
        None => Ok(()),
    }
}
