//! The DIMSE SCP against real peers: dcmtk (echoscu, storescu, findscu, and storescp as the
//! reference receiver), pynetdicom, and a hand-written client for the bad inputs.

mod dimse_support;
#[path = "support/peers.rs"]
mod peers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_dictionary_std::tags;
use dicom_store::{DicomErrorKind, DicomQuery, QueryLevel};
use dicom_ul::pdu::{AssociationRQ, Pdu, PresentationContextProposed, UserVariableItem};
use dicom_store::ConflictPolicy;
use peers::free_port;
use dimse_support::{data_set_of, dcmtk, pydicom_test_files, pynetdicom, run, start, start_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

/// One pydicom test file per transfer syntax the issue names (and big endian, stored as
/// received too), with the storescu option that proposes its transfer syntax. Some share a SOP
/// Instance UID (MR_small in several encodings), so each is checked right after it is sent,
/// with the archive replacing on conflict.
const FILES: &[(&str, &str)] = &[
    ("MR_small_implicit.dcm", "-xi"),          // implicit VR LE
    ("CT_small.dcm", "-xe"),                   // explicit VR LE
    ("image_dfl.dcm", "-xd"),                  // deflated explicit VR LE
    ("SC_jpeg_no_color_transform.dcm", "-xy"), // JPEG baseline
    ("JPEG-lossy.dcm", "-xx"),                 // JPEG extended
    ("SC_rgb_jpeg_gdcm.dcm", "-xs"),           // JPEG lossless SV1
    ("MR_small_jpeg_ls_lossless.dcm", "-xt"),  // JPEG-LS lossless
    ("GDCMJ2K_TextGBR.dcm", "-xv"),            // JPEG 2000 lossless
    ("JPEG2000.dcm", "-xw"),                   // JPEG 2000
    ("MR_small_RLE.dcm", "-xr"),               // RLE lossless
    ("ExplVR_BigEnd.dcm", "-xb"),              // explicit VR big endian
];

fn sop_instance_uid(path: &Path) -> String {
    let object = dicom_object::OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path).unwrap();
    object.meta().media_storage_sop_instance_uid().trim_end_matches('\0').to_string()
}

async fn instance_by_uid(archive: &dicom_store::Archive, uid: &str) -> Option<dicom_store::IndexedInstance> {
    let mut query = DicomQuery::new(QueryLevel::Instance);
    query.sop_instance_uid = vec![uid.to_string()];
    match archive.query(&query).await.unwrap().pop() {
        Some(dicom_store::QueryMatch::Instance(instance)) => Some(instance),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_answers_and_ae_titles_are_enforced() {
    let Some(echoscu) = dcmtk("echoscu") else { return };
    let scp = start(|c| c.accepted_calling_ae_titles = vec!["MODALITY1".into()]).await;
    let port = scp.addr.port().to_string();
    let echo = |aet: &str, aec: &str| {
        let mut command = Command::new(&echoscu);
        command.args(["-aet", aet, "-aec", aec, "127.0.0.1", &port]);
        command
    };
    let (ok, out) = run(&mut echo("MODALITY1", "TESSERA")).await;
    assert!(ok, "C-ECHO from an accepted AE failed: {out}");
    let (ok, out) = run(&mut echo("STRANGER", "TESSERA")).await;
    assert!(!ok && out.contains("Rejected"), "a calling AE outside the list must be rejected: {out}");
    let (ok, out) = run(&mut echo("MODALITY1", "ORTHANC")).await;
    assert!(!ok && out.contains("Rejected"), "another called AE title must be rejected: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn storescu_stores_every_transfer_syntax_as_dcmtk_storescp_receives_it() {
    let (Some(storescu), Some(storescp), Some(test_files)) = (dcmtk("storescu"), dcmtk("storescp"), pydicom_test_files()) else {
        return;
    };
    let files: Vec<(PathBuf, &str)> = FILES.iter().map(|(f, option)| (test_files.join(f), *option)).collect();
    let scp = start_with(ConflictPolicy::Replace, |_| {}).await;

    // dcmtk's own receiver, bit-preserving, is the reference for what arrives on the wire.
    let reference_dir = tempfile::tempdir().unwrap();
    let reference_port = free_port();
    let mut reference = Command::new(&storescp)
        .args(["+xa", "+B", "-aet", "REFERENCE", "-od"])
        .arg(reference_dir.path())
        .args(["-uf", &reference_port.to_string()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // One association per file: storescu proposes one transfer syntax per SOP class and
    // association, and several of these files share a SOP class.
    for (file, propose) in &files {
        for (aec, port) in [("TESSERA", scp.addr.port()), ("REFERENCE", reference_port)] {
            let mut command = Command::new(&storescu);
            command.args([*propose, "-v", "-aet", "TESTSCU", "-aec", aec, "127.0.0.1", &port.to_string()]).arg(file);
            let (ok, out) = run(&mut command).await;
            // storescu exits 0 whatever the C-STORE status; the status is in its log.
            assert!(ok && out.contains("Received Store Response (Success)"), "storescu of {} to {aec} failed: {out}", file.display());
        }
        let uid = sop_instance_uid(file);
        let instance = instance_by_uid(&scp.archive, &uid).await.unwrap_or_else(|| panic!("{} not indexed", file.display()));
        let stored = scp.archive.read(&instance).await.unwrap();
        let received_by_dcmtk = newest_file_for(reference_dir.path(), &uid).unwrap();
        assert!(
            data_set_of(&stored) == data_set_of(&received_by_dcmtk),
            "{}: the stored data set differs from what storescp received",
            file.display()
        );
        assert_eq!(instance.transfer_syntax_uid, transfer_syntax_of(&received_by_dcmtk), "{}", file.display());
    }
    reference.kill().await.unwrap();

    // Reading verifies: bytes changed on disk behind the archive's back are never served.
    let instance = instance_by_uid(&scp.archive, &sop_instance_uid(&files[1].0)).await.unwrap();
    let path = scp.dir.path().join("objects").join(instance.object_key.as_str());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    let error = scp.archive.read(&instance).await.unwrap_err();
    assert_eq!(error.kind(), DicomErrorKind::Integrity, "{error}");
}

/// storescp names its files `<modality>.<SOP Instance UID>[.<n>]`; the newest one for `uid`.
fn newest_file_for(dir: &Path, uid: &str) -> std::io::Result<Vec<u8>> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.split_once('.').is_some_and(|(_, rest)| rest == uid || rest.starts_with(&format!("{uid}."))) {
            let modified = entry.metadata()?.modified()?;
            if newest.as_ref().is_none_or(|(t, _)| modified >= *t) {
                newest = Some((modified, entry.path()));
            }
        }
    }
    match newest {
        Some((_, path)) => std::fs::read(path),
        None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("storescp wrote no file for {uid}"))),
    }
}

fn transfer_syntax_of(part10: &[u8]) -> String {
    let object = dicom_object::OpenFileOptions::new().read_until(tags::PIXEL_DATA).from_reader(&part10[128..]).unwrap();
    object.meta().transfer_syntax().trim_end_matches('\0').to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn pynetdicom_pushes_and_findscu_finds_at_every_level() {
    let (Some(findscu), Some(test_files), Some(())) = (dcmtk("findscu"), pydicom_test_files(), pynetdicom()) else {
        return;
    };
    let scp = start(|_| {}).await;
    let files = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"];
    let script = r#"
import sys
from pydicom import dcmread
from pynetdicom import AE
ae = AE(ae_title="PYNETDICOM")
datasets = [dcmread(f) for f in sys.argv[3:]]
for ds in datasets:
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
assoc = ae.associate("127.0.0.1", int(sys.argv[2]), ae_title=sys.argv[1])
assert assoc.is_established, "association failed"
for ds in datasets:
    status = assoc.send_c_store(ds)
    print("%s %04X" % (ds.SOPInstanceUID, status.Status if status else 0xFFFF))
assoc.release()
"#;
    let mut command = Command::new("python3");
    command.args(["-c", script, "TESSERA", &scp.addr.port().to_string()]).args(files.iter().map(|f| test_files.join(f)));
    let (ok, out) = run(&mut command).await;
    assert!(ok, "pynetdicom push failed: {out}");
    let statuses: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(uid, status)| uid.starts_with(|c: char| c.is_ascii_digit()) && status.len() == 4)
        .map(|(u, s)| (u.to_string(), s.to_string()))
        .collect();
    assert_eq!(statuses.len(), files.len(), "{out}");
    for ((uid, status), file) in statuses.iter().zip(files) {
        assert_eq!(status, "0000", "{file}: {out}");
        assert!(instance_by_uid(&scp.archive, uid).await.is_some(), "{file} not indexed");
    }

    let ct = dicom_object::open_file(test_files.join("CT_small.dcm")).unwrap();
    let text = |tag| ct.element(tag).unwrap().to_str().unwrap().trim().to_string();
    let (patient_id, study_uid, series_uid) = (text(tags::PATIENT_ID), text(tags::STUDY_INSTANCE_UID), text(tags::SERIES_INSTANCE_UID));
    let find = |keys: Vec<String>| {
        let findscu = findscu.clone();
        let port = scp.addr.port().to_string();
        async move {
            let out_dir = tempfile::tempdir().unwrap();
            let mut command = Command::new(&findscu);
            command.args(["-S", "-aet", "TESTSCU", "-aec", "TESSERA", "-X", "-od"]).arg(out_dir.path());
            for key in &keys {
                command.args(["-k", key]);
            }
            command.args(["127.0.0.1", &port]);
            let (ok, out) = run(&mut command).await;
            assert!(ok, "findscu failed: {out}");
            let mut responses: Vec<dicom_object::DefaultDicomObject> = std::fs::read_dir(out_dir.path())
                .unwrap()
                .map(|e| dicom_object::open_file(e.unwrap().path()).unwrap())
                .collect();
            responses.sort_by_key(|r| r.meta().media_storage_sop_instance_uid().to_string());
            responses
        }
    };
    let value = |r: &dicom_object::DefaultDicomObject, tag| r.element(tag).ok().and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()));

    let studies = find(vec![
        "QueryRetrieveLevel=STUDY".into(),
        format!("PatientID={patient_id}"),
        "StudyInstanceUID".into(),
        "ModalitiesInStudy".into(),
        "NumberOfStudyRelatedInstances".into(),
        "PatientName".into(),
    ])
    .await;
    assert_eq!(studies.len(), 1, "one study has PatientID {patient_id}");
    assert_eq!(value(&studies[0], tags::STUDY_INSTANCE_UID).as_deref(), Some(study_uid.as_str()));
    assert_eq!(value(&studies[0], tags::MODALITIES_IN_STUDY).as_deref(), Some("CT"));
    assert_eq!(value(&studies[0], tags::NUMBER_OF_STUDY_RELATED_INSTANCES).as_deref(), Some("1"));

    let series = find(vec!["QueryRetrieveLevel=SERIES".into(), format!("StudyInstanceUID={study_uid}"), "SeriesInstanceUID".into(), "Modality".into()]).await;
    assert_eq!(series.len(), 1);
    assert_eq!(value(&series[0], tags::SERIES_INSTANCE_UID).as_deref(), Some(series_uid.as_str()));

    let images = find(vec![
        "QueryRetrieveLevel=IMAGE".into(),
        format!("StudyInstanceUID={study_uid}"),
        format!("SeriesInstanceUID={series_uid}"),
        "SOPInstanceUID".into(),
        "SOPClassUID".into(),
    ])
    .await;
    assert_eq!(images.len(), 1);
    assert_eq!(value(&images[0], tags::SOP_CLASS_UID).as_deref(), Some("1.2.840.10008.5.1.4.1.1.2"));

    // Wildcards on the patient's name match all four stored studies' patients that fit.
    let all = find(vec!["QueryRetrieveLevel=STUDY".into(), "PatientName=*".into(), "StudyInstanceUID".into()]).await;
    let stored_studies = scp.archive.query(&DicomQuery::new(QueryLevel::Study)).await.unwrap().len();
    assert_eq!(all.len(), stored_studies);
    let none = find(vec!["QueryRetrieveLevel=STUDY".into(), "PatientName=NOBODY*".into(), "StudyInstanceUID".into()]).await;
    assert!(none.is_empty());
}

// ---- a hand-written SCU for what real SCUs never send ----

const CT_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const MR_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

async fn associate(addr: std::net::SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let context = |id: u8, abstract_syntax: &str| PresentationContextProposed {
        id,
        abstract_syntax: abstract_syntax.into(),
        transfer_syntaxes: vec![EXPLICIT_LE.into()],
    };
    let rq = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "RAWSCU".into(),
        called_ae_title: "TESSERA".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![context(1, CT_STORAGE), context(3, MR_STORAGE)],
        user_variables: vec![UserVariableItem::MaxLength(16384)],
    });
    let mut bytes = Vec::new();
    dicom_ul::pdu::write_pdu(&mut bytes, &rq).unwrap();
    socket.write_all(&bytes).await.unwrap();
    let (pdu_type, _) = read_raw_pdu(&mut socket).await.unwrap();
    assert_eq!(pdu_type, 0x02, "association accepted");
    socket
}

async fn read_raw_pdu(socket: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 6];
    socket.read_exact(&mut header).await?;
    let mut body = vec![0u8; u32::from_be_bytes(header[2..6].try_into().unwrap()) as usize];
    socket.read_exact(&mut body).await?;
    Ok((header[0], body))
}

fn pdata(pc: u8, is_command: bool, is_last: bool, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04, 0x00];
    out.extend_from_slice(&(data.len() as u32 + 6).to_be_bytes());
    out.extend_from_slice(&(data.len() as u32 + 2).to_be_bytes());
    out.push(pc);
    out.push(u8::from(is_command) | (u8::from(is_last) << 1));
    out.extend_from_slice(data);
    out
}

fn element(out: &mut Vec<u8>, element: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

fn uid(value: &str) -> Vec<u8> {
    let mut bytes = value.as_bytes().to_vec();
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    bytes
}

fn c_store_rq(message_id: u16, sop_class: &str, sop_instance: &str) -> Vec<u8> {
    let mut body = Vec::new();
    element(&mut body, 0x0002, &uid(sop_class));
    element(&mut body, 0x0100, &1u16.to_le_bytes());
    element(&mut body, 0x0110, &message_id.to_le_bytes());
    element(&mut body, 0x0700, &0u16.to_le_bytes());
    element(&mut body, 0x0800, &0u16.to_le_bytes());
    element(&mut body, 0x1000, &uid(sop_instance));
    let mut out = Vec::new();
    element(&mut out, 0x0000, &(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads one response command; (message id being responded to, status).
async fn read_response(socket: &mut TcpStream) -> (u16, u16) {
    let (pdu_type, body) = read_raw_pdu(socket).await.unwrap();
    assert_eq!(pdu_type, 0x04, "a P-DATA response");
    let command = &body[6..];
    let (mut responded_to, mut status) = (None, None);
    let mut rest = command;
    while rest.len() >= 8 {
        let el = u16::from_le_bytes([rest[2], rest[3]]);
        let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
        let value = &rest[8..8 + len];
        match el {
            0x0120 => responded_to = Some(u16::from_le_bytes([value[0], value[1]])),
            0x0900 => status = Some(u16::from_le_bytes([value[0], value[1]])),
            _ => {}
        }
        rest = &rest[8 + len..];
    }
    (responded_to.unwrap(), status.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_failure_statuses_or_aborts_and_nothing_half_stored_is_indexed() {
    let Some(test_files) = pydicom_test_files() else { return };
    let scp = start(|c| c.idle_timeout = Duration::from_secs(2)).await;
    let ct_file = std::fs::read(test_files.join("CT_small.dcm")).unwrap();
    let ct_data_set = data_set_of(&ct_file).to_vec();
    let ct_uid = sop_instance_uid(&test_files.join("CT_small.dcm"));

    let mut socket = associate(scp.addr).await;
    // A CT data set announced as MR, on the MR context: the data set does not match (A900).
    socket.write_all(&pdata(3, true, true, &c_store_rq(11, MR_STORAGE, &ct_uid))).await.unwrap();
    socket.write_all(&pdata(3, false, true, &ct_data_set)).await.unwrap();
    assert_eq!(read_response(&mut socket).await, (11, 0xA900));
    // A CT C-STORE sent on the MR context: wrong SOP class for the presentation context.
    socket.write_all(&pdata(3, true, true, &c_store_rq(12, CT_STORAGE, &ct_uid))).await.unwrap();
    socket.write_all(&pdata(3, false, true, &ct_data_set)).await.unwrap();
    assert_eq!(read_response(&mut socket).await, (12, 0xA900));
    // Truncated data set, with the command split over three fragments: cannot understand.
    let command = c_store_rq(13, CT_STORAGE, &ct_uid);
    let (a, rest) = command.split_at(10);
    let (b, c) = rest.split_at(20);
    for (fragment, last) in [(a, false), (b, false), (c, true)] {
        socket.write_all(&pdata(1, true, last, fragment)).await.unwrap();
    }
    socket.write_all(&pdata(1, false, false, &ct_data_set[..ct_data_set.len() / 3])).await.unwrap();
    socket.write_all(&pdata(1, false, true, &ct_data_set[ct_data_set.len() / 3..ct_data_set.len() / 2])).await.unwrap();
    assert_eq!(read_response(&mut socket).await, (13, 0xC000));
    assert!(instance_by_uid(&scp.archive, &ct_uid).await.is_none(), "nothing failed is indexed");
    // The same association still stores a good one, its command split across fragments too.
    for (fragment, last) in [(a, false), (b, false), (c, true)] {
        socket.write_all(&pdata(1, true, last, fragment)).await.unwrap();
    }
    for (i, chunk) in ct_data_set.chunks(4000).enumerate() {
        let last = (i + 1) * 4000 >= ct_data_set.len();
        socket.write_all(&pdata(1, false, last, chunk)).await.unwrap();
    }
    assert_eq!(read_response(&mut socket).await, (13, 0x0000));
    assert!(instance_by_uid(&scp.archive, &ct_uid).await.is_some());

    // An association that never releases is aborted once idle.
    let started = std::time::Instant::now();
    let (pdu_type, _) = read_raw_pdu(&mut socket).await.unwrap();
    assert_eq!(pdu_type, 0x07, "A-ABORT after the idle timeout");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Garbage instead of PDUs: aborted, and the server keeps serving.
    let mut garbage = TcpStream::connect(scp.addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut answer)).await.unwrap();
    assert!(answer.is_empty() || answer[0] == 0x07, "garbage gets an A-ABORT or a close, got {answer:?}");
    // A PDU on a context that was never accepted is an abort.
    let mut socket = associate(scp.addr).await;
    socket.write_all(&pdata(9, true, true, &c_store_rq(1, CT_STORAGE, "1.2.3"))).await.unwrap();
    let (pdu_type, _) = read_raw_pdu(&mut socket).await.unwrap();
    assert_eq!(pdu_type, 0x07);
    // Still up.
    let mut socket = associate(scp.addr).await;
    socket.write_all(&[0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0]).await.unwrap();
    let (pdu_type, _) = read_raw_pdu(&mut socket).await.unwrap();
    assert_eq!(pdu_type, 0x06, "A-RELEASE-RP");
    let instances = scp.archive.query(&DicomQuery::new(QueryLevel::Instance)).await.unwrap();
    assert_eq!(instances.len(), 1, "only the good C-STORE is indexed");
}
