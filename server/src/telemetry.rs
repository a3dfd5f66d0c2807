//! Logging, tracing and metrics: `tracing` to stderr always; traces and metrics (the
//! projections' lag and throughput among them) to an OTLP/HTTP collector only when an
//! endpoint is configured.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Keeps the exporters alive; flushes pending spans and metrics when dropped.
pub struct TelemetryGuard {
    providers: Option<(SdkTracerProvider, SdkMeterProvider)>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some((traces, metrics)) = self.providers.take() {
            let _ = traces.shutdown();
            let _ = metrics.shutdown();
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

/// The OTLP/HTTP URL of one signal (`traces`, `metrics`) under the collector's base URL. A
/// base that already names the traces path (`…/v1/traces`, as earlier versions took) is
/// accepted too.
fn signal_url(endpoint: &str, signal: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    let base = base.strip_suffix("/v1/traces").unwrap_or(base);
    format!("{base}/v1/{signal}")
}

/// Installs the global subscriber (and, with an endpoint, the global meter provider). `log`
/// is an env-filter directive such as `info`; `otlp_endpoint` the collector's base URL, e.g.
/// `http://127.0.0.1:4318`.
pub fn init_telemetry(log: &str, otlp_endpoint: Option<&str>) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_new(log).map_err(|e| TelemetryError::Filter { filter: log.into(), message: e.to_string() })?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let Some(endpoint) = otlp_endpoint else {
        tracing_subscriber::registry().with(filter).with(fmt).init();
        return Ok(TelemetryGuard { providers: None });
    };
    let exporter_error = |e: opentelemetry_otlp::ExporterBuildError| TelemetryError::Exporter { endpoint: endpoint.into(), message: e.to_string() };
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(signal_url(endpoint, "traces"))
        .build()
        .map_err(exporter_error)?;
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_endpoint(signal_url(endpoint, "metrics"))
        .build()
        .map_err(exporter_error)?;
    let traces = SdkTracerProvider::builder().with_batch_exporter(spans).build();
    let meters = SdkMeterProvider::builder().with_periodic_exporter(metrics).build();
    opentelemetry::global::set_meter_provider(meters.clone());
    let tracer = traces.tracer("tessera");
    tracing_subscriber::registry().with(filter).with(fmt).with(tracing_opentelemetry::layer().with_tracer(tracer)).init();
    Ok(TelemetryGuard { providers: Some((traces, meters)) })
}

#[cfg(test)]
mod tests {
    use super::signal_url;

    #[test]
    fn signal_urls_hang_under_the_collector_base() {
        assert_eq!(signal_url("http://c:4318", "metrics"), "http://c:4318/v1/metrics");
        assert_eq!(signal_url("http://c:4318/", "traces"), "http://c:4318/v1/traces");
        assert_eq!(signal_url("http://c:4318/v1/traces", "metrics"), "http://c:4318/v1/metrics");
    }
}
