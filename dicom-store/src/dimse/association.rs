//! One association, from A-ASSOCIATE-RQ to release or abort: reads PDUs, reassembles commands
//! and data sets from P-DATA fragments (streaming C-STORE data sets to a staging file as they
//! arrive), and answers C-ECHO, C-STORE and C-FIND with correct command sets.

use std::io::Write;
use std::sync::Arc;

use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{AbortRQServiceProviderReason, AbortRQSource, Pdu};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::command::{field, status, Request, Response};
use super::negotiation::{self, AcceptedContext, Negotiated, Service};
use super::DimseConfig;
use crate::{Archive, DicomErrorKind, Expected, DicomQuery, DicomStoreError, QueryLevel, StagedWriter};

/// The largest A-ASSOCIATE-RQ we read (a modality proposing every storage class in several
/// syntaxes stays far below this).
const MAX_ASSOCIATE_RQ: u32 = 1 << 20;
/// The largest command set and C-FIND identifier we assemble.
const MAX_COMMAND_BYTES: usize = 64 * 1024;
const MAX_IDENTIFIER_BYTES: usize = 1 << 20;

/// Why an association ended other than by release.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AssociationEnd {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer aborted")]
    PeerAborted,
    #[error("aborted: {0}")]
    Aborted(String),
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("idle for too long")]
    Idle,
}

pub(crate) async fn serve(socket: TcpStream, config: Arc<DimseConfig>, archive: Arc<Archive>) -> Result<(), AssociationEnd> {
    let _ = socket.set_nodelay(true);
    let mut conn = Connection { socket, config, archive, buffer: Vec::new() };
    conn.run().await
}

struct Connection {
    socket: TcpStream,
    config: Arc<DimseConfig>,
    archive: Arc<Archive>,
    buffer: Vec<u8>,
}

/// What is being assembled from P-DATA fragments.
enum Incoming {
    /// Waiting for a command.
    Idle,
    /// Command fragments so far, on presentation context `pc`.
    Command { pc: u8, bytes: Vec<u8> },
    /// The data set of `request`.
    Data { request: Request, context: AcceptedContext, sink: DataSink },
}

enum DataSink {
    /// A C-STORE data set streaming to its staging file; `refused` once we know it will fail.
    Store { writer: Option<StagedWriter>, refused: Option<(u16, String)> },
    /// A C-FIND identifier.
    Find(Vec<u8>),
}

impl Connection {
    async fn run(&mut self) -> Result<(), AssociationEnd> {
        let (pdu_type, _) = self.read_pdu(MAX_ASSOCIATE_RQ).await?;
        if pdu_type != 0x01 {
            return self.abort(AbortRQServiceProviderReason::UnexpectedPdu, "first PDU is not A-ASSOCIATE-RQ").await;
        }
        let rq = match dicom_ul::pdu::read_pdu(&self.buffer[..], MAX_ASSOCIATE_RQ, false) {
            Ok(Some(Pdu::AssociationRQ(rq))) => rq,
            _ => return self.abort(AbortRQServiceProviderReason::InvalidPduParameter, "malformed A-ASSOCIATE-RQ").await,
        };
        let (contexts, peer_max_pdu) = match negotiation::negotiate(&rq, &self.config) {
            Negotiated::Reject { rj, why } => {
                self.write_pdu(&Pdu::AssociationRJ(rj)).await?;
                return Err(AssociationEnd::Rejected(why));
            }
            Negotiated::Accept { ac, contexts, peer_max_pdu } => {
                self.write_pdu(&Pdu::AssociationAC(ac)).await?;
                (contexts, peer_max_pdu)
            }
        };
        let calling_ae = rq.calling_ae_title.trim().to_string();
        tracing::debug!(calling_ae, contexts = contexts.len(), "association accepted");
        let mut session = Session { contexts, peer_max_pdu, calling_ae, incoming: Incoming::Idle };
        loop {
            let (pdu_type, _) = self.read_pdu(self.config.max_pdu_length).await?;
            match pdu_type {
                0x04 => {
                    let body = std::mem::take(&mut self.buffer);
                    let result = self.on_pdata(&mut session, &body[6..]).await;
                    self.buffer = body;
                    result?;
                }
                0x05 => {
                    self.write_pdu(&Pdu::ReleaseRP).await?;
                    let _ = self.socket.shutdown().await;
                    return Ok(());
                }
                0x07 => return Err(AssociationEnd::PeerAborted),
                0x01..=0x03 | 0x06 => {
                    return self.abort(AbortRQServiceProviderReason::UnexpectedPdu, "unexpected PDU").await;
                }
                other => {
                    let why = format!("unrecognized PDU type {other:#04x}");
                    return self.abort(AbortRQServiceProviderReason::UnrecognizedPdu, &why).await;
                }
            }
        }
    }

    /// Reads one PDU (header and body) into `self.buffer`; a body longer than `max_body` is
    /// an abort. Idle for longer than the configured timeout is an abort too.
    async fn read_pdu(&mut self, max_body: u32) -> Result<(u8, u32), AssociationEnd> {
        let mut header = [0u8; 6];
        match tokio::time::timeout(self.config.idle_timeout, self.socket.read_exact(&mut header)).await {
            Err(_) => {
                let _ = self.abort(AbortRQServiceProviderReason::ReasonNotSpecified, "idle timeout").await;
                return Err(AssociationEnd::Idle);
            }
            Ok(result) => {
                result?;
            }
        }
        let pdu_type = header[0];
        let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        // The negotiated maximum bounds the P-DATA variable field; the header is extra.
        if length > max_body.max(16 * 1024) {
            let why = format!("PDU of {length} bytes exceeds the maximum of {max_body}");
            self.abort(AbortRQServiceProviderReason::InvalidPduParameter, &why).await?;
            return Err(AssociationEnd::Aborted(why));
        }
        self.buffer.clear();
        self.buffer.extend_from_slice(&header);
        self.buffer.resize(6 + length as usize, 0);
        let body = &mut self.buffer[6..];
        match tokio::time::timeout(self.config.idle_timeout, self.socket.read_exact(body)).await {
            Err(_) => Err(AssociationEnd::Idle),
            Ok(result) => {
                result?;
                Ok((pdu_type, length))
            }
        }
    }

    async fn write_pdu(&mut self, pdu: &Pdu) -> Result<(), AssociationEnd> {
        let mut bytes = Vec::new();
        dicom_ul::pdu::write_pdu(&mut bytes, pdu).map_err(|e| AssociationEnd::Aborted(e.to_string()))?;
        self.socket.write_all(&bytes).await?;
        Ok(())
    }

    async fn abort(&mut self, reason: AbortRQServiceProviderReason, why: &str) -> Result<(), AssociationEnd> {
        tracing::warn!(why, "aborting association");
        let _ = self.write_pdu(&Pdu::AbortRQ { source: AbortRQSource::ServiceProvider(reason) }).await;
        let _ = self.socket.shutdown().await;
        Err(AssociationEnd::Aborted(why.to_string()))
    }

    /// Handles the PDVs of one P-DATA-TF.
    async fn on_pdata(&mut self, session: &mut Session, mut items: &[u8]) -> Result<(), AssociationEnd> {
        while !items.is_empty() {
            if items.len() < 6 {
                return self.abort(AbortRQServiceProviderReason::InvalidPduParameter, "truncated PDV item").await;
            }
            let length = u32::from_be_bytes([items[0], items[1], items[2], items[3]]) as usize;
            if length < 2 || items.len() < 4 + length {
                return self.abort(AbortRQServiceProviderReason::InvalidPduParameter, "PDV item length out of range").await;
            }
            let pc = items[4];
            let header = items[5];
            let data = &items[6..4 + length];
            items = &items[4 + length..];
            let (is_command, is_last) = (header & 0x01 != 0, header & 0x02 != 0);
            if session.context(pc).is_none() {
                let why = format!("PDV on presentation context {pc}, which was not accepted");
                return self.abort(AbortRQServiceProviderReason::InvalidPduParameter, &why).await;
            }
            match (is_command, &mut session.incoming) {
                (true, Incoming::Idle) => session.incoming = Incoming::Command { pc, bytes: data.to_vec() },
                (true, Incoming::Command { pc: current, bytes }) if *current == pc => {
                    if bytes.len() + data.len() > MAX_COMMAND_BYTES {
                        return self.abort(AbortRQServiceProviderReason::InvalidPduParameter, "command set too large").await;
                    }
                    bytes.extend_from_slice(data);
                }
                (false, Incoming::Data { context, sink, .. }) if context.id == pc => {
                    if let Err(why) = sink.accept(data) {
                        return self.abort(AbortRQServiceProviderReason::InvalidPduParameter, &why).await;
                    }
                }
                _ => {
                    return self.abort(AbortRQServiceProviderReason::UnexpectedPdu, "PDV out of sequence").await;
                }
            }
            if !is_last {
                continue;
            }
            match std::mem::replace(&mut session.incoming, Incoming::Idle) {
                Incoming::Command { pc, bytes } => {
                    let request = match Request::decode(&bytes) {
                        Ok(request) => request,
                        Err(e) => return self.abort(AbortRQServiceProviderReason::InvalidPduParameter, &e.to_string()).await,
                    };
                    let context = session.context(pc).cloned().expect("checked above");
                    if request.has_data_set {
                        session.incoming = Incoming::Data { sink: self.sink_for(&request, &context, session), request, context };
                    } else {
                        self.on_command(session, &request, &context).await?;
                    }
                }
                Incoming::Data { request, context, sink } => self.on_data_set(session, request, context, sink).await?,
                Incoming::Idle => unreachable!("a last fragment always completes something"),
            }
        }
        Ok(())
    }

    /// Where a request's data set goes while it arrives.
    fn sink_for(&self, request: &Request, context: &AcceptedContext, session: &Session) -> DataSink {
        match (request.command_field, context.service) {
            (field::C_STORE_RQ, Service::Storage) => {
                if request.affected_sop_class_uid != context.abstract_syntax {
                    let why = format!(
                        "SOP class {} sent on the presentation context for {}",
                        request.affected_sop_class_uid, context.abstract_syntax
                    );
                    return DataSink::Store { writer: None, refused: Some((status::DATASET_DOES_NOT_MATCH_SOP_CLASS, why)) };
                }
                match self.start_part10(request, context, &session.calling_ae) {
                    Ok(writer) => DataSink::Store { writer: Some(writer), refused: None },
                    Err(e) => DataSink::Store { writer: None, refused: Some((status::OUT_OF_RESOURCES, format!("staging: {e}"))) },
                }
            }
            (field::C_FIND_RQ, Service::StudyRootFind) => DataSink::Find(Vec::new()),
            _ => DataSink::Store {
                writer: None,
                refused: Some((status::UNRECOGNIZED_OPERATION, "operation not supported on this presentation context".into())),
            },
        }
    }

    /// A staging file holding the Part 10 preamble and file meta group, ready for the data set.
    fn start_part10(&self, request: &Request, context: &AcceptedContext, calling_ae: &str) -> std::io::Result<StagedWriter> {
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(request.affected_sop_class_uid.as_str())
            .media_storage_sop_instance_uid(request.affected_sop_instance_uid.as_str())
            .transfer_syntax(context.transfer_syntax.as_str())
            .implementation_class_uid(negotiation::IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(negotiation::IMPLEMENTATION_VERSION_NAME)
            .source_application_entity_title(calling_ae)
            .build()
            .map_err(std::io::Error::other)?;
        let mut writer = self.archive.staging().create()?;
        writer.write_all(&[0u8; 128])?;
        writer.write_all(b"DICM")?;
        meta.write(&mut writer).map_err(std::io::Error::other)?;
        Ok(writer)
    }

    async fn on_command(&mut self, session: &Session, request: &Request, context: &AcceptedContext) -> Result<(), AssociationEnd> {
        let response = match (request.command_field, context.service) {
            (field::C_ECHO_RQ, Service::Verification) => Response::to(request, field::C_ECHO_RSP, status::SUCCESS, false),
            // A cancel for a C-FIND we already finished answering: nothing left to cancel.
            (field::C_CANCEL_RQ, _) => return Ok(()),
            _ => {
                let answer = response_field(request.command_field);
                Response::to(request, answer, status::UNRECOGNIZED_OPERATION, false)
                    .error_comment("operation not supported on this presentation context")
            }
        };
        self.send(session, context.id, &response.encode(), true).await
    }

    async fn on_data_set(&mut self, session: &Session, request: Request, context: AcceptedContext, sink: DataSink) -> Result<(), AssociationEnd> {
        match sink {
            DataSink::Store { writer, refused } => {
                let (code, comment) = match (writer, refused) {
                    (_, Some(refused)) => refused,
                    (None, None) => (status::OUT_OF_RESOURCES, "no staging file".to_string()),
                    (Some(writer), None) => self.store(writer, &request).await,
                };
                let answer = response_field(request.command_field);
                let mut response = Response::to(&request, answer, code, false);
                if code != status::SUCCESS {
                    tracing::warn!(sop_instance_uid = %request.affected_sop_instance_uid, status = format!("{code:04X}"), comment, "C-STORE failed");
                    response = response.error_comment(&comment);
                }
                self.send(session, context.id, &response.encode(), true).await
            }
            DataSink::Find(identifier) => self.find(session, &request, &context, &identifier).await,
        }
    }

    /// Stores a complete staged data set; the status and comment to answer with.
    async fn store(&self, writer: StagedWriter, request: &Request) -> (u16, String) {
        let staged = match writer.finish() {
            Ok(staged) => staged,
            Err(e) => return (status::OUT_OF_RESOURCES, format!("staging: {e}")),
        };
        let expected = Expected { sop_class_uid: Some(&request.affected_sop_class_uid), ..Expected::default() };
        match self.archive.store(&staged, expected).await {
            // The file meta carries the command's SOP Instance UID, and the parser refuses a data
            // set with another, so what was stored is the instance the command named.
            Ok(_) => (status::SUCCESS, String::new()),
            Err(e) => (store_status(&e), e.to_string()),
        }
    }

    async fn find(&mut self, session: &Session, request: &Request, context: &AcceptedContext, identifier: &[u8]) -> Result<(), AssociationEnd> {
        let answer = |code: u16| Response::to(request, field::C_FIND_RSP, code, false);
        let parsed = TransferSyntaxRegistry
            .get(&context.transfer_syntax)
            .ok_or_else(|| "unknown transfer syntax".to_string())
            .and_then(|ts| InMemDicomObject::read_dataset_with_ts(identifier, ts).map_err(|e| e.to_string()));
        let keys = match parsed {
            Ok(keys) => keys,
            Err(e) => {
                let response = answer(status::FIND_IDENTIFIER_DOES_NOT_MATCH).error_comment(&format!("identifier: {e}"));
                return self.send(session, context.id, &response.encode(), true).await;
            }
        };
        let matches = match find_query(&keys) {
            Ok(query) => self.archive.query(&query).await.map(|m| (query.level, m)),
            Err(e) => Err(e),
        };
        let (level, matches) = match matches {
            Ok(found) => found,
            Err(e) => {
                let code = if e.kind() == DicomErrorKind::InvalidQuery {
                    status::FIND_IDENTIFIER_DOES_NOT_MATCH
                } else {
                    status::FIND_UNABLE_TO_PROCESS
                };
                let response = answer(code).error_comment(&e.to_string());
                return self.send(session, context.id, &response.encode(), true).await;
            }
        };
        let ts = TransferSyntaxRegistry.get(&context.transfer_syntax).expect("checked above");
        for found in &matches {
            let identifier = find_response_identifier(&keys, level, found, &self.config.ae_title);
            let mut bytes = Vec::new();
            if let Err(e) = identifier.write_dataset_with_ts_cs(&mut bytes, ts, SpecificCharacterSet::ISO_IR_192) {
                let response = answer(status::FIND_UNABLE_TO_PROCESS).error_comment(&format!("encoding a match: {e}"));
                return self.send(session, context.id, &response.encode(), true).await;
            }
            let pending = Response::to(request, field::C_FIND_RSP, status::PENDING, true);
            self.send(session, context.id, &pending.encode(), true).await?;
            self.send(session, context.id, &bytes, false).await?;
        }
        self.send(session, context.id, &answer(status::SUCCESS).encode(), true).await
    }

    /// Sends a command set or data set as P-DATA-TF PDUs no larger than the peer accepts.
    async fn send(&mut self, session: &Session, pc: u8, bytes: &[u8], is_command: bool) -> Result<(), AssociationEnd> {
        // Each PDV item costs 6 bytes inside the PDU's variable field.
        let max_fragment = match session.peer_max_pdu {
            0 => 1 << 20,
            n => (n as usize).saturating_sub(6).max(1),
        };
        let mut out = Vec::with_capacity(bytes.len() + 12 * (bytes.len() / max_fragment + 1));
        let count = bytes.len().div_ceil(max_fragment).max(1);
        for (i, chunk) in bytes.chunks(max_fragment).chain((bytes.is_empty()).then_some(&[][..])).enumerate() {
            push_pdata(&mut out, pc, is_command, i + 1 == count, chunk);
        }
        self.socket.write_all(&out).await?;
        Ok(())
    }
}

fn push_pdata(out: &mut Vec<u8>, pc: u8, is_command: bool, is_last: bool, data: &[u8]) {
    let item_length = data.len() as u32 + 2;
    out.extend_from_slice(&[0x04, 0x00]);
    out.extend_from_slice(&(item_length + 4).to_be_bytes());
    out.extend_from_slice(&item_length.to_be_bytes());
    out.push(pc);
    out.push(u8::from(is_command) | (u8::from(is_last) << 1));
    out.extend_from_slice(data);
}

impl DataSink {
    /// Takes one data fragment; Err is a reason to abort.
    fn accept(&mut self, data: &[u8]) -> Result<(), String> {
        match self {
            DataSink::Store { writer, refused } => {
                if let Some(w) = writer {
                    if let Err(e) = w.write_all(data) {
                        *writer = None;
                        *refused = Some((status::OUT_OF_RESOURCES, format!("staging: {e}")));
                    }
                }
                Ok(())
            }
            DataSink::Find(bytes) => {
                if bytes.len() + data.len() > MAX_IDENTIFIER_BYTES {
                    return Err("C-FIND identifier too large".into());
                }
                bytes.extend_from_slice(data);
                Ok(())
            }
        }
    }
}

struct Session {
    contexts: Vec<AcceptedContext>,
    peer_max_pdu: u32,
    calling_ae: String,
    incoming: Incoming,
}

impl Session {
    fn context(&self, id: u8) -> Option<&AcceptedContext> {
        self.contexts.iter().find(|c| c.id == id)
    }
}

/// The response Command Field for a request's (the request's with the high bit set).
fn response_field(request_field: u16) -> u16 {
    request_field | 0x8000
}

/// The C-STORE status for an archive failure.
fn store_status(error: &DicomStoreError) -> u16 {
    match error.kind() {
        DicomErrorKind::SopClassMismatch => status::DATASET_DOES_NOT_MATCH_SOP_CLASS,
        DicomErrorKind::InvalidObject | DicomErrorKind::InvalidQuery => status::CANNOT_UNDERSTAND,
        DicomErrorKind::Conflict => status::DUPLICATE_SOP_INSTANCE,
        DicomErrorKind::OutOfResources
        | DicomErrorKind::Unavailable
        | DicomErrorKind::Integrity
        | DicomErrorKind::Archived
        | DicomErrorKind::NotFound => status::OUT_OF_RESOURCES,
    }
}

/// The query a C-FIND identifier asks: its level and the matching keys with values.
fn find_query(keys: &InMemDicomObject) -> Result<DicomQuery, DicomStoreError> {
    let level = keys
        .element_opt(tags::QUERY_RETRIEVE_LEVEL)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .ok_or_else(|| DicomStoreError::InvalidQuery("the identifier has no QueryRetrieveLevel (0008,0052)".into()))?;
    let mut query = DicomQuery::new(QueryLevel::from_dicom(&level)?);
    for element in keys.iter() {
        if let Ok(value) = element.to_str() {
            query.add_match(element.tag(), value.trim_end_matches(['\0', ' ']))?;
        }
    }
    Ok(query)
}

/// A match as the identifier of a pending C-FIND response: every key the request asked for
/// (with our value, or empty when we have none), the level's unique keys and the level.
fn find_response_identifier(keys: &InMemDicomObject, level: QueryLevel, found: &crate::QueryMatch, ae_title: &str) -> InMemDicomObject {
    let attributes = found.attributes();
    let mut out = InMemDicomObject::new_empty();
    let put = |out: &mut InMemDicomObject, tag: Tag, vr: VR, values: &[String]| {
        let value = match (vr, values) {
            (_, []) => PrimitiveValue::Empty,
            (VR::US, values) => PrimitiveValue::U16(values.iter().filter_map(|v| v.parse().ok()).collect()),
            (_, values) => PrimitiveValue::Strs(values.iter().cloned().collect()),
        };
        out.put(DataElement::new(tag, vr, value));
    };
    for element in keys.iter() {
        let tag = element.tag();
        if tag == tags::SPECIFIC_CHARACTER_SET || tag.group() == 0x0000 {
            continue;
        }
        match attributes.iter().find(|a| a.tag == tag) {
            Some(a) => put(&mut out, a.tag, a.vr, &a.values),
            None if tag == tags::RETRIEVE_AE_TITLE => put(&mut out, tag, VR::AE, &[ae_title.to_string()]),
            None => put(&mut out, tag, element.vr(), &[]),
        }
    }
    let unique: &[Tag] = match level {
        QueryLevel::Study => &[tags::STUDY_INSTANCE_UID],
        QueryLevel::Series => &[tags::STUDY_INSTANCE_UID, tags::SERIES_INSTANCE_UID],
        QueryLevel::Instance => &[tags::STUDY_INSTANCE_UID, tags::SERIES_INSTANCE_UID, tags::SOP_INSTANCE_UID],
    };
    for tag in unique {
        if let Some(a) = attributes.iter().find(|a| a.tag == *tag) {
            put(&mut out, a.tag, a.vr, &a.values);
        }
    }
    let level_name = match level {
        QueryLevel::Study => "STUDY",
        QueryLevel::Series => "SERIES",
        QueryLevel::Instance => "IMAGE",
    };
    put(&mut out, tags::QUERY_RETRIEVE_LEVEL, VR::CS, &[level_name.to_string()]);
    put(&mut out, tags::SPECIFIC_CHARACTER_SET, VR::CS, &["ISO_IR 192".to_string()]);
    out
}
