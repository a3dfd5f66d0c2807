//! Hostile input over MLLP: every file of `hl7_data/hostile/` (the bytes as sent, one case per
//! file) goes to a running Tessera with `MllpClient` or as raw wire bytes, and must get exactly
//! the specified answer — AA for what the parser wrapper repairs, AE/AR with the right table
//! 0357 code and location otherwise — with every refused message in the log, and the server
//! still healthy and accepting afterwards.

mod hl7_support;

use std::collections::BTreeSet;
use std::time::Duration;

use hl7_bridge::mllp::MllpClient;
use hl7_support::{data_file, data_path, oru_r01, raw_exchange, send, spawn_app, Ack, Rest, EXCHANGE_TIMEOUT};
use serde_json::Value;

/// What a message file must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// AA; `value` is what the OBX of order `order` must read as once stored (escape cases).
    Accept { stored: Option<(&'static str, &'static str)> },
    /// `msa1` (AE/AR) with one v2.5+ ERR segment: table 0357 `code`, ERR-2 starting with
    /// `location` (empty: any location).
    Refuse { msa1: &'static str, code: &'static str, location: &'static str },
    /// As `Refuse`, for a pre-v2.5 message: the location and code in ERR-1 (ELD).
    RefuseOldStyle { msa1: &'static str, code: &'static str, location: &'static str },
    /// No readable header at all: AR, error `code`, MSA-2 empty.
    RefuseUnreadable { code: &'static str },
}

use Expect::*;

/// Every payload file of the corpus and what it must get. The framing cases (`*.mllp`, and
/// the oversized frame built from `oversized_head.hl7`) are tested on their own below.
const CASES: &[(&str, Expect)] = &[
    // hl7-parser problem 1 and 2: escapes after non-ASCII text, and every kind of escape.
    ("escape_after_non_ascii.hl7", Accept { stored: Some(("H-ORD-ESC-1", "ééé & x")) }),
    ("escape_formatting_and_hex.hl7", Accept { stored: Some(("H-ORD-ESC-2", "bold é end")) }),
    // A declared 8859/1 message: its bytes are read as Latin-1, not as broken UTF-8.
    ("msh18_latin1.hl7", Accept { stored: Some(("H-ORD-L1-1", "Grüße aus Köln")) }),
    // Problem 3: the v2.7 truncation character in MSH-2.
    ("msh2_truncation_character.hl7", Accept { stored: None }),
    // Problem 5: BOM and line endings.
    ("utf8_bom.hl7", Accept { stored: None }),
    ("lf_line_endings.hl7", Accept { stored: None }),
    ("crlf_line_endings.hl7", Accept { stored: None }),
    // Problem 4: trailing input is an error, never silently dropped.
    ("trailing_second_message.hl7", Refuse { msa1: "AE", code: "100", location: "" }),
    ("trailing_short_segment_name.hl7", Refuse { msa1: "AE", code: "100", location: "" }),
    ("trailing_long_segment_name.hl7", Refuse { msa1: "AE", code: "100", location: "" }),
    ("trailing_separator_line.hl7", Refuse { msa1: "AE", code: "100", location: "" }),
    // Problem 6: out-of-range timestamps.
    ("pid7_month_13.hl7", Refuse { msa1: "AE", code: "102", location: "PID^1^7" }),
    ("obx14_month_13.hl7", Refuse { msa1: "AE", code: "102", location: "OBX^1^14" }),
    // Header checks.
    ("version_3_0.hl7", Refuse { msa1: "AR", code: "203", location: "MSH^1^12" }),
    ("version_2_10.hl7", Refuse { msa1: "AR", code: "203", location: "MSH^1^12" }),
    ("version_empty.hl7", Refuse { msa1: "AR", code: "203", location: "MSH^1^12" }),
    ("missing_msh10.hl7", Refuse { msa1: "AR", code: "101", location: "MSH^1^10" }),
    ("missing_msh9.hl7", Refuse { msa1: "AR", code: "101", location: "MSH^1^9" }),
    ("processing_id_x.hl7", Refuse { msa1: "AR", code: "202", location: "MSH^1^11" }),
    ("msh18_unknown_charset.hl7", Refuse { msa1: "AE", code: "103", location: "MSH^1^18" }),
    ("v23_missing_pid3.hl7", RefuseOldStyle { msa1: "AE", code: "101", location: "PID^1^3" }),
    // Random bytes inside a frame.
    ("binary_garbage.bin", RefuseUnreadable { code: "100" }),
];

/// Files handled by the framing tests rather than by `CASES`.
const FRAMING_FILES: &[&str] = &["oversized_head.hl7", "truncated_frame.mllp", "truncated_then_valid.mllp"];

/// `actual` (an ERL such as `MSH^1^10^1`) names `expected` (`MSH^1^10`): the same leading
/// components, and nothing narrower after them than the first repetition.
fn location_names(actual: &str, expected: &str) -> bool {
    let actual: Vec<&str> = actual.split('^').collect();
    let expected: Vec<&str> = expected.split('^').collect();
    actual.len() >= expected.len() && actual[..expected.len()] == expected[..] && actual[expected.len()..].iter().all(|p| p.is_empty() || *p == "1")
}

/// Checks one ACK against its expectation.
fn check_ack(file: &str, sent: &[u8], reply: &[u8], expect: Expect) {
    let ack = Ack::parse(reply);
    let context = format!("{file}: {:?}", ack.text);
    match expect {
        Accept { .. } => {
            assert_eq!(ack.msa1(), "AA", "{context}");
            assert!(ack.all("ERR").is_empty(), "{context}");
            ack.assert_answers(sent);
        }
        Refuse { msa1, code, location } => {
            assert_eq!(ack.msa1(), msa1, "{context}");
            ack.assert_answers(sent);
            let errors = ack.errors();
            assert_eq!(errors.len(), 1, "one ERR segment: {context}");
            let err = &errors[0];
            assert_eq!(err.code, code, "ERR-3.1 (table 0357): {context}");
            assert_eq!(err.code_system, "HL70357", "ERR-3.3: {context}");
            assert_eq!(err.severity, "E", "ERR-4: {context}");
            assert!(!err.code_text.is_empty() && !err.message.is_empty(), "ERR-3.2 and ERR-8 say what is wrong: {context}");
            if location.is_empty() {
                assert!(!err.location.is_empty(), "ERR-2 locates the error: {context}");
            } else {
                assert!(location_names(&err.location, location), "ERR-2 {:?} names {location}: {context}", err.location);
            }
        }
        RefuseOldStyle { msa1, code, location } => {
            assert_eq!(ack.msa1(), msa1, "{context}");
            ack.assert_answers(sent);
            assert!(!ack.field("MSA", 3).is_empty(), "MSA-3 carries the text before v2.5: {context}");
            let errors = ack.errors();
            assert_eq!(errors.len(), 1, "one ERR segment: {context}");
            let eld: Vec<&str> = errors[0].eld.split('^').collect();
            assert_eq!(eld.get(..3).map(|p| p.join("^")), Some(location.to_string()), "ERR-1 location: {context}");
            let coded: Vec<&str> = eld.get(3).map(|c| c.split('&').collect()).unwrap_or_default();
            assert_eq!((coded.first().copied(), coded.get(2).copied()), (Some(code), Some("HL70357")), "ERR-1.4: {context}");
            assert!(errors[0].location.is_empty() && errors[0].code.is_empty(), "no v2.5 ERR fields before v2.5: {context}");
        }
        RefuseUnreadable { code } => {
            assert_eq!(ack.msa1(), "AR", "{context}");
            assert_eq!(ack.msa2(), "", "nothing to name: {context}");
            let errors = ack.errors();
            assert_eq!(errors.len(), 1, "{context}");
            assert_eq!((errors[0].code.as_str(), errors[0].code_system.as_str()), (code, "HL70357"), "{context}");
        }
    }
}

/// The stored valueString of the first result of the report with filler number `order`.
async fn stored_result_text(rest: &Rest, order: &str) -> String {
    let reports = rest.search("DiagnosticReport", &[("identifier", order)]).await;
    assert_eq!(reports.len(), 1, "report {order}: {reports:#?}");
    let first = reports[0].pointer("/result/0/reference").and_then(Value::as_str).unwrap_or_else(|| panic!("{:#}", reports[0]));
    let observation = rest.read(first).await;
    observation.get("valueString").and_then(Value::as_str).unwrap_or_else(|| panic!("no valueString: {observation:#}")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus_gets_the_specified_answers_and_leaves_the_server_working() {
    let app = spawn_app().await;
    let rest = &app.rest;

    // Every file of the corpus has its expectation here: a new file cannot go untested.
    let on_disk: BTreeSet<String> = std::fs::read_dir(data_path("hostile"))
        .expect("hostile corpus")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    let covered: BTreeSet<String> = CASES.iter().map(|(f, _)| f.to_string()).chain(FRAMING_FILES.iter().map(|f| f.to_string())).collect();
    assert_eq!(on_disk, covered, "hostile files and test cases differ");

    // Each message on its own connection, as a sender that reconnects would.
    let mut refused: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    for &(file, expect) in CASES {
        let sent = data_file(&format!("hostile/{file}"));
        let reply = send(app.mllp, &sent).await;
        check_ack(file, &sent, &reply, expect);
        match expect {
            Accept { stored: Some((order, text)) } => {
                assert_eq!(stored_result_text(rest, order).await, text, "{file}: the escapes are decoded in the stored value");
            }
            Accept { stored: None } => {}
            Refuse { msa1, .. } | RefuseOldStyle { msa1, .. } => refused.push((file, sent, if msa1 == "AR" { "rejected" } else { "error" })),
            RefuseUnreadable { .. } => refused.push((file, sent, "rejected")),
        }
    }

    // The same corpus on one connection: a bad message does not end the conversation.
    let mut client = MllpClient::connect(app.mllp).await.expect("connect");
    for &(file, expect) in CASES.iter().filter(|(_, e)| !matches!(e, Accept { .. })) {
        let sent = data_file(&format!("hostile/{file}"));
        let reply = tokio::time::timeout(EXCHANGE_TIMEOUT, client.request(&sent)).await.expect("in time").expect("reply");
        check_ack(file, &sent, &reply, expect);
    }
    drop(client);

    // A frame that never ends: nothing is answered, and the server closes with the sender.
    let truncated = raw_exchange(app.mllp, &data_file("hostile/truncated_frame.mllp"), true, 0, EXCHANGE_TIMEOUT).await;
    assert!(truncated.frames.is_empty() && truncated.stray_bytes == 0, "no answer to an unfinished frame: {truncated:?}");
    assert!(truncated.closed, "the server closes the connection after the sender's end");

    // An unfinished frame cut by a new start block: only the complete message is answered.
    let wire = data_file("hostile/truncated_then_valid.mllp");
    let exchange = raw_exchange(app.mllp, &wire, false, 1, EXCHANGE_TIMEOUT).await;
    assert_eq!(exchange.frames.len(), 1, "{exchange:?}");
    let ack = Ack::parse(&exchange.frames[0]);
    assert_eq!((ack.msa1(), ack.msa2()), ("AA", "H-CUT-2"), "{:?}", ack.text);
    assert!(rest.messages(&[("control_id", "H-CUT-1")]).await.is_empty(), "the cut-off message is not processed");

    // A frame over the 1 MiB limit: AR (value too long) naming the message, then the end.
    let mut oversized = data_file("hostile/oversized_head.hl7");
    let mut n = 2;
    while oversized.len() <= 1024 * 1024 + 64 * 1024 {
        oversized.extend_from_slice(format!("\rOBX|{n}|ST|8251-1^Service comment^LN||{}||||||F", "x".repeat(1000)).as_bytes());
        n += 1;
    }
    let mut client = MllpClient::connect(app.mllp).await.expect("connect");
    let reply = tokio::time::timeout(EXCHANGE_TIMEOUT, client.request(&oversized)).await.expect("in time").expect("a reply to an oversized frame");
    let ack = Ack::parse(&reply);
    assert_eq!(ack.msa1(), "AR", "{:?}", ack.text);
    ack.assert_answers(&oversized[..200]);
    let errors = ack.errors();
    assert_eq!(errors.len(), 1, "{:?}", ack.text);
    assert_eq!(errors[0].code, "104", "value too long: {:?}", ack.text);
    let after = tokio::time::timeout(Duration::from_secs(10), client.receive()).await.expect("the server closes within its linger time");
    assert!(!matches!(after, Ok(Some(_))), "nothing follows the reject: {after:?}");
    refused.push(("oversized_head.hl7", oversized.clone(), "rejected"));

    // Every refused message is in the log, with the status its ACK said.
    let mut logged: Vec<(Vec<u8>, String, String)> = Vec::new();
    for status in ["error", "rejected"] {
        for record in rest.messages(&[("status", status), ("_count", "100")]).await {
            let id = record["id"].as_str().expect("record id").to_string();
            assert_eq!(record["status"].as_str(), Some(status), "{record:#}");
            logged.push((rest.raw_message(&id).await, status.to_string(), record["ackCode"].as_str().unwrap_or("").to_string()));
        }
    }
    for (file, sent, status) in &refused {
        let found = logged.iter().find(|(raw, s, _)| {
            s == status && if *file == "oversized_head.hl7" { !raw.is_empty() && sent.starts_with(raw) } else { raw == sent }
        });
        let (_, _, ack_code) = found.unwrap_or_else(|| panic!("{file} is not logged with status {status}"));
        assert_eq!(ack_code, if *status == "rejected" { "AR" } else { "AE" }, "{file}");
    }
    for accepted in ["H-ESC-1", "H-ESC-2", "H-L1-1", "H-TRUNC-1", "H-BOM-1", "H-LF-1", "H-CRLF-1", "H-CUT-2"] {
        let records = rest.messages(&[("status", "accepted"), ("control_id", accepted)]).await;
        assert_eq!(records.len(), 1, "{accepted}: {records:#?}");
    }

    // Still healthy, and a valid message on a new connection is accepted.
    assert_eq!(rest.status("/healthz").await, Some(200));
    let valid = oru_r01("H-AFTER-1", "H-ORD-AFTER-1", "H-PAT-9", 5);
    let ack = Ack::parse(&send(app.mllp, &valid).await);
    assert_eq!(ack.msa1(), "AA", "{:?}", ack.text);
    ack.assert_answers(&valid);
    let reports = rest.search("DiagnosticReport", &[("identifier", "H-ORD-AFTER-1")]).await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["result"].as_array().map(Vec::len), Some(5));
}
