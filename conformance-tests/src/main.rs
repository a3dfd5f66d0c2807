//! Command-line runner: every conformance case against one FHIR server base URL.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use conformance_tests::{run, Ctx};

/// Runs the FHIR R4 conformance cases against a server and prints one line per case.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// FHIR base URL, e.g. http://127.0.0.1:8080/fhir.
    #[arg(long)]
    base_url: String,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Directory of the example resources (defaults to the crate's corpus/).
    #[arg(long)]
    corpus: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let corpus = args.corpus.unwrap_or_else(Ctx::default_corpus_dir);
    let ctx = Ctx::new(&args.base_url, corpus)?;
    let summary = run(&ctx, args.filter.as_deref(), |outcome| println!("{}", outcome.line())).await;
    println!("{summary}");
    Ok(if summary.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
