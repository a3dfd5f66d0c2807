//! The `tessera` binary: reads settings, starts telemetry and serves everything configured.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tessera_server::{init_telemetry, Application, Settings};

#[derive(Parser)]
#[command(name = "tessera", version, about = "FHIR R4 / HL7 v2 / DICOM interoperability server")]
struct Cli {
    /// TOML settings file; environment variables (TESSERA_*) override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve everything that is configured (the default).
    Serve,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref()).context("loading settings")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let _telemetry = init_telemetry(&settings.log, settings.otlp_endpoint.as_deref())?;
        let addr = settings.http_addr.clone();
        let data_dir = settings.data_dir.display().to_string();
        let app = Application::build(settings).await?;
        tracing::info!(%addr, port = app.port(), %data_dir, base_url = %app.base_url(), "serving fhir r4");
        app.run_until_stopped().await.context("http server failed")
    })
}
