//! The `tessera` binary: reads settings, starts telemetry and serves everything configured;
//! `tessera projections …` rebuilds or checks a projection from the command line.

use std::io::Write;
use std::path::PathBuf;
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use projections::{Follower, FollowerOptions, Progress};
use tessera_server::{init_telemetry, Application, Projections, Settings};

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
    /// Rebuild or check the PostgreSQL and time-series projections.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Empty a projection and re-create it from the whole store with a progress bar, then
    /// follow the change feed live (a running server's own follower carries on too).
    Rebuild {
        name: ProjectionName,
        /// Exit once the projection has caught up instead of following live.
        #[arg(long)]
        exit_when_done: bool,
    },
    /// Compare a projection with the store; exits with status 1 when they differ.
    Check { name: ProjectionName },
}

#[derive(Clone, Copy, ValueEnum)]
enum ProjectionName {
    Postgres,
    Tsdb,
}

impl ProjectionName {
    fn as_str(self) -> &'static str {
        match self {
            ProjectionName::Postgres => "postgres",
            ProjectionName::Tsdb => "tsdb",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref()).context("loading settings")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => runtime.block_on(serve(settings)),
        Command::Projections { command } => runtime.block_on(projections_command(settings, command)),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let _telemetry = init_telemetry(&settings.log, settings.otlp_endpoint.as_deref())?;
    let addr = settings.http_addr.clone();
    // Names the store without the connection string's credentials.
    let store = settings.store_description();
    let app = Application::build(settings).await?;
    tracing::info!(%addr, port = app.port(), %store, base_url = %app.base_url(), "serving fhir r4");
    app.run_until_stopped().await.context("http server failed")
}

async fn projections_command(settings: Settings, command: ProjectionsCommand) -> anyhow::Result<()> {
    let _telemetry = init_telemetry(&settings.log, settings.otlp_endpoint.as_deref())?;
    // The same store the server opens with these settings (MongoDB or the data dir).
    let store = Application::open_store(&settings).await?;
    let projections = Projections::from_settings(&settings, &store)?;
    match command {
        ProjectionsCommand::Check { name } => {
            let report = projections.check(name.as_str(), store.as_ref()).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.is_consistent() {
                std::process::exit(1);
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { name, exit_when_done } => {
            let projection = projections.named(name.as_str())?;
            let options = FollowerOptions { batch_size: settings.projection_batch_size, ..FollowerOptions::default() };
            projection.reset().await.with_context(|| format!("emptying the {} projection", name.as_str()))?;
            let target = store.last_seq().await?;
            let follower = Follower::new(projection, store.clone(), options);
            let reached = follower.catch_up(target, draw_progress(name.as_str())).await?;
            eprintln!();
            eprintln!("{}: rebuilt up to change {reached} of {target}", name.as_str());
            if exit_when_done {
                return Ok(());
            }
            eprintln!("{}: following the change feed live; Ctrl-C to stop", name.as_str());
            tokio::select! {
                () = follower.run() => Ok(()),
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
    }
}

/// A one-line progress bar on stderr: bar, percentage, changes, rate and time left.
fn draw_progress(name: &'static str) -> impl FnMut(Progress) {
    move |progress: Progress| {
        const WIDTH: usize = 30;
        let fraction = if progress.target == 0 { 1.0 } else { (progress.checkpoint as f64 / progress.target as f64).min(1.0) };
        let filled = (fraction * WIDTH as f64).round() as usize;
        let seconds = progress.elapsed.as_secs_f64().max(1e-3);
        let rate = progress.applied as f64 / seconds;
        let left = progress.target.saturating_sub(progress.checkpoint) as f64 / rate.max(1e-9);
        eprint!(
            "\rrebuilding {name} [{}{}] {:5.1}%  {}/{} changes  {:.0} changes/s  {:.0}s left ",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            fraction * 100.0,
            progress.checkpoint,
            progress.target,
            rate,
            if rate > 0.0 { left } else { 0.0 },
        );
        let _ = std::io::stderr().flush();
    }
}
