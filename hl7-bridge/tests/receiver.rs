//! The receive pipeline against the embedded store: ACK only after commit, de-duplication of
//! retries (also concurrent ones), upserts by identifier, the A40 merge, unmapped types and
//! refusals, all checked in the store and in the message log.

use std::sync::Arc;

use fhir_store::{ResourceStore, SqliteStore, SqliteStoreOptions};
use hl7_bridge::{Receiver, ReceiverOptions, Status, UnmappedMessages};
use serde_json::Value;

async fn receiver(dir: &std::path::Path, options: ReceiverOptions) -> (Receiver, Arc<dyn ResourceStore>) {
    let store: Arc<dyn ResourceStore> = Arc::new(SqliteStore::open(SqliteStoreOptions::new(dir)).await.unwrap());
    (Receiver::new(store.clone(), options), store)
}

fn segments(ack: &[u8]) -> Vec<Vec<String>> {
    String::from_utf8_lossy(ack).split('\r').filter(|s| !s.is_empty()).map(|s| s.split('|').map(str::to_owned).collect()).collect()
}

fn msa(ack: &[u8]) -> (String, String) {
    let segs = segments(ack);
    let msa = segs.iter().find(|s| s[0] == "MSA").expect("an MSA segment");
    (msa[1].clone(), msa.get(2).cloned().unwrap_or_default())
}

async fn search(store: &Arc<dyn ResourceStore>, resource_type: &str, params: &[(&str, &str)]) -> Vec<Value> {
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let query = fhir_model::parse_search(Some(resource_type), &params, true).unwrap();
    let page = store.search(&query).await.unwrap();
    page.resources.iter().map(|r| serde_json::from_slice(r.body.as_deref().unwrap()).unwrap()).collect()
}

const ORU: &str = "MSH|^~\\&|MONITOR|ICU|TESSERA|HOSP|20250301120000||ORU^R01^ORU_R01|CTRL-1|P|2.5.1\r\
PID|1||MRN-1^^^HOSP^MR||Doe^Jane||19700101|F\r\
OBR|1||ORD-1^MONITOR|85353-1^Vital signs panel^LN|||20250301120000\r\
OBX|1|NM|8867-4^Heart rate^LN||72|/min^^UCUM|||||F|||20250301120000\r\
OBX|2|NM|59408-5^Oxygen saturation^LN||97|%^^UCUM|||||F|||20250301120000\r\
OBX|3|NM|8310-5^Body temperature^LN||37.1|Cel^^UCUM|||||F|||20250301120000";

#[tokio::test]
async fn oru_is_committed_before_aa_and_a_retry_gets_the_same_ack() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, store) = receiver(dir.path(), ReceiverOptions::default()).await;
    let first = receiver.receive(ORU.as_bytes(), "10.0.0.1:5000").await;
    let ack = first.reply.clone().unwrap();
    assert_eq!(msa(&ack), ("AA".to_string(), "CTRL-1".to_string()), "{}", String::from_utf8_lossy(&ack));
    let msh = &segments(&ack)[0];
    assert_eq!((msh[2].as_str(), msh[3].as_str(), msh[4].as_str(), msh[5].as_str()), ("TESSERA", "HOSP", "MONITOR", "ICU"));
    assert_eq!((msh[8].as_str(), msh[11].as_str()), ("ACK^R01^ACK", "2.5.1"));
    assert_eq!(first.status, Status::Accepted);

    let patients = search(&store, "Patient", &[("identifier", "MRN-1")]).await;
    assert_eq!(patients.len(), 1);
    let subject = format!("Patient/{}", patients[0]["id"].as_str().unwrap());
    let observations = search(&store, "Observation", &[("subject", &subject)]).await;
    assert_eq!(observations.len(), 3);
    // MSH-7 has no offset: the configured sender offset (+0000 by default) applies.
    assert_eq!(observations[0]["effectiveDateTime"], "2025-03-01T12:00:00+00:00");
    let reports = search(&store, "DiagnosticReport", &[("subject", &subject)]).await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["result"].as_array().unwrap().len(), 3);
    let seq = store.last_seq().await.unwrap();

    // The sender did not see the ACK and sends the message again: same ACK, nothing written.
    let retry = receiver.receive(ORU.as_bytes(), "10.0.0.1:5001").await;
    assert!(retry.duplicate);
    assert_eq!(retry.reply.unwrap(), ack);
    assert_eq!(store.last_seq().await.unwrap(), seq);
    assert_eq!(search(&store, "Observation", &[("subject", &subject)]).await.len(), 3);
}

#[tokio::test]
async fn concurrent_deliveries_of_one_message_commit_once() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, store) = receiver(dir.path(), ReceiverOptions::default()).await;
    let receiver = Arc::new(receiver);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let receiver = receiver.clone();
            tokio::spawn(async move { receiver.receive(ORU.as_bytes(), &format!("10.0.0.{i}:1")).await })
        })
        .collect();
    let mut acks = Vec::new();
    for task in tasks {
        let receipt = task.await.unwrap();
        assert_eq!(receipt.status, Status::Accepted);
        acks.push(receipt.reply.unwrap());
    }
    assert!(acks.iter().all(|a| a == &acks[0]), "every delivery gets the committed ACK");
    assert_eq!(search(&store, "Observation", &[("code", "http://loinc.org|8867-4")]).await.len(), 1);
    assert_eq!(search(&store, "Patient", &[("identifier", "MRN-1")]).await.len(), 1);
}

#[tokio::test]
async fn adt_updates_the_same_patient_and_a40_merges() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, store) = receiver(dir.path(), ReceiverOptions::default()).await;
    let adt = |event: &str, id: &str, pid: &str, extra: &str| {
        format!("MSH|^~\\&|HIS|HOSP|TESSERA|HOSP|20250301120000||ADT^{event}|{id}|P|2.5.1\rEVN|{event}|20250301120000\r{pid}{extra}")
    };
    for (event, id, pid) in [
        ("A04", "A-1", "PID|1||MRN-100^^^HOSP^MR||Garcia^Maria||19650712|F"),
        ("A08", "A-2", "PID|1||MRN-100^^^HOSP^MR||Garcia-Lopez^Maria||19650712|F"),
        ("A28", "A-3", "PID|1||MRN-200^^^HOSP^MR||Garcia^M||19650712|F"),
    ] {
        let pv1 = if event == "A28" { "" } else { "\rPV1|1|O|CLINIC^1^1" };
        let receipt = receiver.receive(adt(event, id, pid, pv1).as_bytes(), "peer").await;
        assert_eq!(msa(&receipt.reply.unwrap()).0, "AA", "{event}");
    }
    let patients = search(&store, "Patient", &[("identifier", "MRN-100")]).await;
    assert_eq!(patients.len(), 1, "A08 updated the A04 patient");
    assert_eq!(patients[0]["name"][0]["family"], "Garcia-Lopez");
    assert_eq!(patients[0]["meta"]["versionId"], "2");
    let survivor_id = patients[0]["id"].as_str().unwrap().to_string();

    let merge = adt("A40", "A-4", "PID|1||MRN-100^^^HOSP^MR||Garcia-Lopez^Maria||19650712|F", "\rMRG|MRN-200^^^HOSP^MR");
    let receipt = receiver.receive(merge.as_bytes(), "peer").await;
    assert_eq!(msa(&receipt.reply.unwrap()).0, "AA");
    let prior = &search(&store, "Patient", &[("identifier", "MRN-200")]).await;
    // Both carry MRN-200 now: the survivor as a merged identifier, the prior as its own.
    assert_eq!(prior.len(), 2);
    let old = prior.iter().find(|p| p["id"] != survivor_id.as_str()).unwrap();
    assert_eq!(old["active"], false);
    assert_eq!(old["link"][0]["type"], "replaced-by");
    assert_eq!(old["link"][0]["other"]["reference"], format!("Patient/{survivor_id}"));

    // A merge naming a patient nobody knows is an AE with error 204.
    let unknown = adt("A40", "A-5", "PID|1||MRN-100^^^HOSP^MR||Garcia^Maria||19650712|F", "\rMRG|MRN-999^^^HOSP^MR");
    let receipt = receiver.receive(unknown.as_bytes(), "peer").await;
    let ack = receipt.reply.unwrap();
    assert_eq!(msa(&ack).0, "AE");
    let err = segments(&ack).into_iter().find(|s| s[0] == "ERR").unwrap();
    assert!(err[3].starts_with("204^"), "{err:?}");
}

#[tokio::test]
async fn unmapped_types_are_logged_and_accepted_or_rejected_as_configured() {
    let siu = "MSH|^~\\&|SCHED|HOSP|TESSERA|HOSP|20250301120000||SIU^S12|S-1|P|2.5.1\rSCH|1";
    let dir = tempfile::tempdir().unwrap();
    let (accepting, store) = receiver(dir.path(), ReceiverOptions::default()).await;
    let receipt = accepting.receive(siu.as_bytes(), "peer").await;
    assert_eq!(msa(&receipt.reply.unwrap()).0, "AA");
    let record = store.read("AuditEvent", receipt.record_id.as_deref().unwrap()).await.unwrap().unwrap();
    let body: Value = serde_json::from_slice(record.body.as_deref().unwrap()).unwrap();
    let message = hl7_bridge::ReceivedMessage::from_audit_event(&record.id, &body).unwrap();
    assert_eq!(message.raw, siu.as_bytes());
    assert_eq!((message.message_type.as_str(), message.control_id.as_str()), ("SIU^S12", "S-1"));

    let dir = tempfile::tempdir().unwrap();
    let options = ReceiverOptions { unmapped: UnmappedMessages::Reject, ..ReceiverOptions::default() };
    let (rejecting, _) = receiver(dir.path(), options).await;
    let receipt = rejecting.receive(siu.as_bytes(), "peer").await;
    assert_eq!(receipt.status, Status::Rejected);
    let ack = receipt.reply.unwrap();
    assert_eq!(msa(&ack).0, "AR");
    assert!(segments(&ack).iter().any(|s| s[0] == "ERR" && s[3].starts_with("200^")));
}

#[tokio::test]
async fn refusals_are_logged_with_their_error_and_enhanced_mode_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, store) = receiver(dir.path(), ReceiverOptions::default()).await;
    let bad_date = ORU.replace("19700101", "19701301");
    let receipt = receiver.receive(bad_date.as_bytes(), "peer").await;
    assert_eq!(receipt.status, Status::Error);
    let ack = receipt.reply.unwrap();
    assert_eq!(msa(&ack), ("AE".to_string(), "CTRL-1".to_string()));
    let err = segments(&ack).into_iter().find(|s| s[0] == "ERR").unwrap();
    assert_eq!((err[2].as_str(), &err[3][..4], err[4].as_str()), ("PID^1^7^1", "102^", "E"), "{err:?}");
    assert!(search(&store, "Patient", &[]).await.is_empty(), "nothing of a refused message is written");
    let logged = search(&store, "AuditEvent", &[("outcome", "4")]).await;
    assert_eq!(logged.len(), 1);

    // The fixed message with the same control id is then accepted (a refusal does not count
    // as the committed delivery).
    assert_eq!(msa(&receiver.receive(ORU.as_bytes(), "peer").await.reply.unwrap()).0, "AA");

    // Enhanced mode: MSH-15 AL asks for a commit ACK; NE/NE asks for nothing.
    let enhanced = ORU.replace("CTRL-1|P|2.5.1", "CTRL-2|P|2.5.1|||AL|NE");
    assert_eq!(msa(&receiver.receive(enhanced.as_bytes(), "peer").await.reply.unwrap()).0, "CA");
    let silent = ORU.replace("CTRL-1|P|2.5.1", "CTRL-3|P|2.5.1|||NE|NE");
    assert!(receiver.receive(silent.as_bytes(), "peer").await.reply.is_none());

    // Missing control id: AR, ERR-2 points at MSH-10.
    let no_id = ORU.replace("CTRL-1", "");
    let ack = receiver.receive(no_id.as_bytes(), "peer").await.reply.unwrap();
    assert_eq!(msa(&ack).0, "AR");
    let err = segments(&ack).into_iter().find(|s| s[0] == "ERR").unwrap();
    assert_eq!(&err[2], "MSH^1^10^1");

    // No MSH at all: AR with defaults, MSA-2 empty.
    let ack = receiver.receive(b"\x00\x01garbage", "peer").await.reply.unwrap();
    assert_eq!(msa(&ack), ("AR".to_string(), String::new()));
}
