//! Loads every official R4 example of the corpus into the server under test, keeping the
//! examples' ids (update-as-create), and remembers the ones the server rejected.

use std::path::{Path, PathBuf};

use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::{fhir, CaseFailure, Ctx};

/// Requests in flight while loading.
const IN_FLIGHT: usize = 8;

/// An example the server would not store, with the status and the first issue it gave.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub file: String,
    /// `Type/id` of the example.
    pub reference: String,
    pub status: u16,
    pub issue: String,
}

/// What loading the corpus did.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub stored: usize,
    pub rejected: Vec<Rejected>,
}

impl Loaded {
    /// Why `reference` (`Type/id`) is not on the server, when it was rejected.
    pub fn rejection(&self, reference: &str) -> Option<&Rejected> {
        self.rejected.iter().find(|r| r.reference == reference)
    }

    /// One line per rejected example, for messages.
    pub fn describe_rejected(&self) -> String {
        self.rejected
            .iter()
            .map(|r| format!("{} ({}): {} {}", r.file, r.reference, r.status, r.issue))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// PUTs every `*.json` of the corpus directory to `{resourceType}/{id}` and waits for all.
/// A 400 or 422 reply is a rejection to report, not a failure; anything else that is not 200
/// or 201 fails, as does a corpus that cannot be read.
pub async fn load_examples(ctx: &Ctx) -> Result<Loaded, CaseFailure> {
    let files = example_files(ctx.corpus_dir())?;
    check!(!files.is_empty(), "no *.json examples in {}", ctx.corpus_dir().display());
    // The futures are collected first: a closure inside the stream would make the case's
    // future not provably Send for every lifetime, which the case registry needs.
    let puts: Vec<_> = files.iter().map(|file| put_example(ctx, file)).collect();
    let results: Vec<Result<Option<Rejected>, CaseFailure>> =
        stream::iter(puts).buffer_unordered(IN_FLIGHT).collect().await;
    let mut loaded = Loaded { stored: 0, rejected: Vec::new() };
    for result in results {
        match result? {
            None => loaded.stored += 1,
            Some(rejected) => loaded.rejected.push(rejected),
        }
    }
    loaded.rejected.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(loaded)
}

fn example_files(dir: &Path) -> Result<Vec<PathBuf>, CaseFailure> {
    let listing =
        std::fs::read_dir(dir).map_err(|e| CaseFailure::new(format!("cannot list {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = listing
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

async fn put_example(ctx: &Ctx, file: &Path) -> Result<Option<Rejected>, CaseFailure> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let text = std::fs::read_to_string(file).map_err(|e| CaseFailure::new(format!("{name}: cannot read: {e}")))?;
    let example: Value = serde_json::from_str(&text).map_err(|e| CaseFailure::new(format!("{name}: not JSON: {e}")))?;
    let reference = fhir::reference_to(&example).map_err(|e| e.context(&name))?;
    let reply = ctx.put(&reference).json(&example).send().await?;
    match reply.status {
        200 | 201 => Ok(None),
        400 | 422 => {
            Ok(Some(Rejected { file: name, reference, status: reply.status, issue: first_issue(&reply.body) }))
        }
        _ => Err(reply.failure(format!("loading {name}: expected 200, 201, 400 or 422"))),
    }
}

/// The diagnostics (or details text) of the first issue of an OperationOutcome body.
fn first_issue(body: &[u8]) -> String {
    let outcome: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let issue = &outcome["issue"][0];
    issue["diagnostics"].as_str().or_else(|| issue["details"]["text"].as_str()).unwrap_or("<no issue text>").to_string()
}
