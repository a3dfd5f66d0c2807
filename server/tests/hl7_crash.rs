//! Crash safety of the HL7 v2 bridge: the real `tessera` binary receives ORU^R01 messages from
//! several senders and is killed with SIGKILL mid-stream; after a restart on the same data dir
//! and a resend of what was in flight (as a real sender retries everything unacknowledged),
//! every acknowledged message is stored exactly once, and so is every retried one.

mod hl7_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use hl7_bridge::mllp::MllpClient;
use hl7_support::{authority_system, oru_r01, reference_of, send, start_binary, Ack, Rest};
use serde_json::Value;

const CLIENTS: usize = 4;
/// More than a client gets through before the kill, so every client is cut off mid-stream.
const MESSAGES_PER_CLIENT: usize = 2000;
const RESULTS_PER_MESSAGE: usize = 5;
const KILL_AFTER: Duration = Duration::from_millis(1500);

/// One message of the stream: client `c`, number `i`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Msg {
    control_id: String,
    order: String,
    patient: String,
}

impl Msg {
    fn new(c: usize, i: usize) -> Msg {
        Msg { control_id: format!("CR-{c}-{i:05}"), order: format!("ORD-{c}-{i:05}"), patient: format!("CP-{c}-{i:05}") }
    }

    fn bytes(&self) -> Vec<u8> {
        oru_r01(&self.control_id, &self.order, &self.patient, RESULTS_PER_MESSAGE)
    }
}

/// What one sender saw before the server died.
#[derive(Debug, Default)]
struct SenderLog {
    /// Answered AA.
    acked: Vec<Msg>,
    /// Written (or about to be) without an answer: the sender must retry it.
    in_flight: Vec<Msg>,
    /// Never sent.
    next_unsent: Option<Msg>,
}

/// Sends client `c`'s messages one after the other until the connection breaks.
async fn sender(addr: std::net::SocketAddr, c: usize, acked_total: Arc<AtomicUsize>) -> SenderLog {
    let mut log = SenderLog::default();
    let Ok(mut client) = MllpClient::connect(addr).await else {
        log.next_unsent = Some(Msg::new(c, 0));
        return log;
    };
    for i in 0..MESSAGES_PER_CLIENT {
        let msg = Msg::new(c, i);
        match tokio::time::timeout(Duration::from_secs(20), client.request(&msg.bytes())).await {
            Ok(Ok(reply)) => {
                let ack = Ack::parse(&reply);
                assert_eq!((ack.msa1(), ack.msa2()), ("AA", msg.control_id.as_str()), "{:?}", ack.text);
                acked_total.fetch_add(1, Ordering::Relaxed);
                log.acked.push(msg);
            }
            Ok(Err(_)) | Err(_) => {
                log.in_flight.push(msg);
                log.next_unsent = Some(Msg::new(c, i + 1));
                return log;
            }
        }
    }
    log
}

/// How many times the message is stored: (reports with their result count, log records,
/// observations of its patient).
async fn stored(rest: &Rest, msg: &Msg) -> (Vec<usize>, usize, usize) {
    let reports = rest.search("DiagnosticReport", &[("identifier", &msg.order)]).await;
    let results = reports.iter().map(|r| r["result"].as_array().map(Vec::len).unwrap_or(0)).collect();
    let records = rest.messages(&[("status", "accepted"), ("control_id", &msg.control_id)]).await.len();
    let token = format!("{}|{}", authority_system("HOSP"), msg.patient);
    let patients = rest.search("Patient", &[("identifier", &token)]).await;
    let observations = match patients.as_slice() {
        [patient] => rest.search("Observation", &[("subject", &reference_of(patient))]).await.len(),
        [] => 0,
        more => panic!("{} patients {}: {more:#?}", more.len(), msg.patient),
    };
    (results, records, observations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let log = dir.path().join("tessera.log");
    let mut server = start_binary(&data_dir, &log).await;

    let acked_total = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..CLIENTS).map(|c| tokio::spawn(sender(server.mllp, c, acked_total.clone()))).collect();
    tokio::time::sleep(KILL_AFTER).await;
    server.kill();
    let mut logs = Vec::new();
    for task in senders {
        logs.push(task.await.expect("sender task"));
    }
    let acked: Vec<Msg> = logs.iter().flat_map(|l| l.acked.clone()).collect();
    let in_flight: Vec<Msg> = logs.iter().flat_map(|l| l.in_flight.clone()).collect();
    assert!(!acked.is_empty(), "some messages were acknowledged before the kill");
    assert_eq!(acked.len(), acked_total.load(Ordering::Relaxed));
    assert!(logs.iter().all(|l| l.next_unsent.is_some()), "every sender was cut off by the kill (raise MESSAGES_PER_CLIENT)");
    println!("before the kill: {} acknowledged, {} in flight", acked.len(), in_flight.len());

    // Restart on the same data and resend what never got an answer.
    let server = start_binary(&data_dir, &log).await;
    for msg in &in_flight {
        let ack = Ack::parse(&send(server.mllp, &msg.bytes()).await);
        assert_eq!((ack.msa1(), ack.msa2()), ("AA", msg.control_id.as_str()), "retry after restart: {:?}", ack.text);
    }

    // Every acknowledged and every retried message: one report with its 5 results, one log
    // record, 5 observations.
    let rest = &server.rest;
    let expected: Vec<Msg> = acked.iter().chain(&in_flight).cloned().collect();
    let checks = stream::iter(expected.iter().cloned())
        .map(|msg| async move {
            let found = stored(rest, &msg).await;
            (msg, found)
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    for (msg, (reports, records, observations)) in &checks {
        assert_eq!(reports, &vec![RESULTS_PER_MESSAGE], "{}: one DiagnosticReport with {RESULTS_PER_MESSAGE} results", msg.control_id);
        assert_eq!(*records, 1, "{}: one message log record", msg.control_id);
        assert_eq!(*observations, RESULTS_PER_MESSAGE, "{}: {RESULTS_PER_MESSAGE} Observations", msg.control_id);
    }

    // Nothing else was stored: what was never sent is absent, and the log holds exactly the
    // acknowledged and retried messages.
    for msg in logs.iter().filter_map(|l| l.next_unsent.as_ref()) {
        assert_eq!(stored(rest, msg).await, (vec![], 0, 0), "{} was never sent", msg.control_id);
    }
    let mut logged: Vec<String> = rest
        .messages(&[("status", "accepted"), ("_count", "500")])
        .await
        .iter()
        .map(|r| r["controlId"].as_str().unwrap_or("").to_string())
        .collect();
    logged.sort();
    let mut wanted: Vec<String> = expected.iter().map(|m| m.control_id.clone()).collect();
    wanted.sort();
    assert_eq!(logged, wanted, "the log holds each acknowledged or retried message once");
    let reports = rest.search("DiagnosticReport", &[("_count", "500")]).await;
    assert_eq!(reports.len(), expected.len(), "one DiagnosticReport per stored message");
    assert!(reports.iter().all(|r| r.get("status").and_then(Value::as_str).is_some()));
}
