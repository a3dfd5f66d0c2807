//! Traces and metrics leave the process over OTLP/HTTP when an endpoint is configured: a
//! minimal HTTP listener stands in for the collector and must receive a protobuf export of our
//! span and of a projection metric.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use tessera_server::init_telemetry;

/// Accepts connections, answers 200 to each request and reports (request line, body length).
fn fake_collector() -> (String, mpsc::Receiver<(String, usize)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut data = Vec::new();
            let mut buf = [0u8; 8192];
            // Read headers, then exactly Content-Length bytes of body.
            let (head, body_len) = loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break (String::new(), 0);
                }
                data.extend_from_slice(&buf[..n]);
                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..end]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    while data.len() < end + 4 + len {
                        let n = stream.read(&mut buf).unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        data.extend_from_slice(&buf[..n]);
                    }
                    break (head, len);
                }
            };
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            let first = head.lines().next().unwrap_or_default().to_string();
            let _ = tx.send((first, body_len));
        }
    });
    (endpoint, rx)
}

#[test]
fn spans_and_metrics_are_exported_over_otlp_http_when_an_endpoint_is_set() {
    let (endpoint, received) = fake_collector();
    let guard = init_telemetry("info", Some(&endpoint)).expect("telemetry starts");
    tracing::info_span!("fhir_request", resource_type = "Patient").in_scope(|| tracing::info!("inside"));
    let meter = opentelemetry::global::meter("tessera.projections");
    meter.u64_counter("tessera.projection.applied").build().add(3, &[opentelemetry::KeyValue::new("projection", "postgres")]);
    // Dropping the guard shuts the providers down, which flushes both exports.
    drop(guard);
    let mut exports = Vec::new();
    while let Ok((request_line, body_len)) = received.recv_timeout(Duration::from_secs(10)) {
        assert!(body_len > 0, "the export carried a body: {request_line}");
        exports.push(request_line.split(' ').take(2).collect::<Vec<_>>().join(" "));
        if exports.len() == 2 {
            break;
        }
    }
    exports.sort();
    assert_eq!(exports, ["POST /v1/metrics", "POST /v1/traces"]);
}
