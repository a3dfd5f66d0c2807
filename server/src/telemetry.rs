//! Logging and tracing: `tracing` to stderr always, and to an OTLP/HTTP collector only when
//! an endpoint is configured.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Keeps the exporter alive; flushes pending spans when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {message}")]
    Filter { filter: String, message: String },
    #[error("cannot build the otlp exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
}

/// Installs the global subscriber. `log` is an env-filter directive such as `info`.
pub fn init_telemetry(log: &str, otlp_endpoint: Option<&str>) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_new(log).map_err(|e| TelemetryError::Filter { filter: log.into(), message: e.to_string() })?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let Some(endpoint) = otlp_endpoint else {
        tracing_subscriber::registry().with(filter).with(fmt).init();
        return Ok(TelemetryGuard { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Exporter { endpoint: endpoint.into(), message: e.to_string() })?;
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).build();
    let tracer = provider.tracer("tessera");
    tracing_subscriber::registry().with(filter).with(fmt).with(tracing_opentelemetry::layer().with_tracer(tracer)).init();
    Ok(TelemetryGuard { provider: Some(provider) })
}
