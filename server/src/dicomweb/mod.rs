//! DICOMweb under `/dicomweb` (PS3.18): STOW-RS stores, QIDO-RS searches, WADO-RS retrieves
//! (instances as stored, metadata as DICOM JSON, bulk data), presigned download URLs and
//! restores of archived objects; everything goes through the one `dicom_store::Archive`.
//!
//! Choices where the standard leaves them to us (the README's DICOM section repeats them):
//! - Errors are OperationOutcomes from `error.rs`, as everywhere else in the server; a STOW-RS
//!   answer with failed instances is not an error but a Store Instances Response (DICOM JSON).
//! - STOW-RS parts are streamed to staging files; the request is never held in memory.
//! - QIDO-RS: a parameter that names no attribute is a 400; an attribute that is not one of
//!   the archive's matching keys is ignored with a `Warning: 299` header; no match is 200 `[]`.
//! - WADO-RS returns each instance's bytes exactly as stored, in their own transfer syntax
//!   (the archive never transcodes); asking for another transfer syntax is a 406.

mod multipart;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use dicom_core::dictionary::DataDictionary;
use dicom_core::Tag;
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_store::dicom_json::{self, BulkData, TagPathPart};
use dicom_store::object_store::RestoreState;
use dicom_store::{Archive, DicomErrorKind, DicomQuery, DicomStoreError, Expected, IndexedInstance, QueryLevel, QueryMatch, StoreStatus};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::fhir_http::{query_params, respond};
use crate::routes::AppState;
use multipart::{Event, MediaType, MultipartError, MultipartReader};

type State = web::Data<AppState>;

const DICOM_JSON: &str = "application/dicom+json";

/// The longest presigned URL lifetime S3 signs (7 days).
const MAX_PRESIGN_SECS: u64 = 7 * 24 * 60 * 60;

/// Days a restored copy of an archived object stays readable unless `days` says otherwise.
const DEFAULT_RESTORE_DAYS: u32 = 7;

/// What the DICOMweb routes need besides the route itself.
pub struct DicomWeb {
    pub archive: Arc<Archive>,
    /// Lifetime of a presigned URL when the request does not say.
    pub presign_expiry: Duration,
}

// ---------------------------------------------------------------------------------------
// STOW-RS
// ---------------------------------------------------------------------------------------

/// Store Instances Response failure reasons (PS3.18 Table 10.5.3-2 / PS3.4 C-STORE statuses).
mod reason {
    /// Refused: out of resources.
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class (also: not of the study the URL names).
    pub const MISMATCH: u16 = 0xA900;
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Processing failure (the archive could not store it now).
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// Duplicate SOP instance (policy `reject`).
    pub const DUPLICATE: u16 = 0x0111;
    /// Warning: elements discarded — the instance sent was discarded and the copy already
    /// stored under its SOP Instance UID kept (policy `keep-first`).
    pub const ELEMENTS_DISCARDED: u16 = 0xB006;
}

/// What became of one part.
struct PartResult {
    sop_class_uid: String,
    sop_instance_uid: String,
    study_instance_uid: String,
    series_instance_uid: String,
    outcome: PartOutcome,
}

enum PartOutcome {
    Stored,
    Warning(u16, String),
    Failed(u16, String),
}

/// `POST /dicomweb/studies`
pub async fn stow(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let result = store_request(&req, payload, &state, None).await;
    respond(&req, result)
}

/// `POST /dicomweb/studies/{study}`: every instance must belong to `{study}`.
pub async fn stow_study(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let study = segment(&req, "study");
    let result = store_request(&req, payload, &state, Some(study)).await;
    respond(&req, result)
}

async fn store_request(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &AppState,
    study: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let boundary = stow_boundary(req)?;
    let archive = &state.dicomweb.archive;
    let mut reader = MultipartReader::new(&boundary);
    let mut results = Vec::new();
    let mut current: Option<Part> = None;
    let mut parts_seen = 0usize;
    // Why reading stopped before the closing delimiter, if it did; `malformed` when it stopped
    // at something that is not multipart (rather than at the body's end).
    let mut broken: Option<String> = None;
    let mut malformed = false;
    'read: while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                broken = Some(format!("the request body could not be read: {e}"));
                malformed = true;
                break;
            }
        };
        reader.push(&chunk);
        loop {
            let event = match reader.next() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e.to_string());
                    malformed = true;
                    break 'read;
                }
            };
            match event {
                Event::Part(headers) => {
                    parts_seen += 1;
                    current = Some(Part::start(archive, headers.get("content-type")));
                }
                Event::Data(bytes) => {
                    if let Some(part) = current.as_mut() {
                        part.write(&bytes);
                    }
                }
                Event::PartEnd => {
                    if let Some(part) = current.take() {
                        results.push(part.store(archive, study.as_deref()).await);
                    }
                }
            }
        }
    }
    if broken.is_none() {
        if let Err(e) = reader.finish() {
            broken = Some(e.to_string());
        }
    }
    if let Some(problem) = broken {
        if parts_seen == 0 {
            return Err(ApiError::BadRequest(format!(
                "the STOW-RS body is not a multipart/related body with boundary {boundary:?}: {problem}"
            )));
        }
        // The part being read when the body broke off is refused; the ones before it stand.
        if malformed || current.take().is_some() || reader.mid_part() {
            results.push(PartResult::failed(reason::CANNOT_UNDERSTAND, format!("incomplete part: {problem}")));
        }
    }
    if results.is_empty() {
        return Err(ApiError::BadRequest("the STOW-RS request has no parts".into()));
    }
    Ok(store_response(req, &results, study.as_deref()))
}

/// The boundary of a STOW-RS request, or the 415/400 that explains what is accepted.
fn stow_boundary(req: &HttpRequest) -> Result<String, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let accepted =
        "STOW-RS accepts multipart/related; type=\"application/dicom\"; boundary=… with one DICOM Part 10 file per part";
    let media = MediaType::parse(content_type).filter(|m| m.essence == "multipart/related").ok_or_else(|| {
        ApiError::DicomUnsupportedMediaType(format!(
            "unsupported media type {:?}; {accepted}",
            if content_type.is_empty() { "(none)" } else { content_type }
        ))
    })?;
    if let Some(kind) = media.param("type") {
        if !kind.eq_ignore_ascii_case("application/dicom") {
            return Err(ApiError::DicomUnsupportedMediaType(format!(
                "multipart/related of type {kind:?} is not supported (metadata with separate bulk data is not); {accepted}"
            )));
        }
    }
    match media.param("boundary") {
        Some(boundary) if !boundary.is_empty() && boundary.len() <= 200 => Ok(boundary.to_string()),
        _ => Err(ApiError::BadRequest(format!("the Content-Type has no usable boundary parameter; {accepted}"))),
    }
}

/// A part being received: its staging file, or why it is refused.
enum Part {
    Staging(dicom_store::StagedWriter),
    Refused(PartResult),
}

impl Part {
    fn start(archive: &Archive, content_type: Option<&str>) -> Part {
        if let Some(content_type) = content_type {
            let essence = MediaType::parse(content_type).map(|m| m.essence).unwrap_or_default();
            if essence != "application/dicom" {
                return Part::Refused(PartResult::failed(
                    reason::CANNOT_UNDERSTAND,
                    format!("a part of type {content_type:?}; each part must be application/dicom"),
                ));
            }
        }
        match archive.staging().create() {
            Ok(writer) => Part::Staging(writer),
            Err(e) => Part::Refused(PartResult::from_error(&DicomStoreError::Staging(e), None)),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;
        if let Part::Staging(writer) = self {
            if let Err(e) = writer.write_all(bytes) {
                *self = Part::Refused(PartResult::from_error(&DicomStoreError::Staging(e), None));
            }
        }
    }

    async fn store(self, archive: &Archive, study: Option<&str>) -> PartResult {
        let writer = match self {
            Part::Staging(writer) => writer,
            Part::Refused(result) => return result,
        };
        let staged = match writer.finish() {
            Ok(staged) => staged,
            Err(e) => return PartResult::from_error(&DicomStoreError::Staging(e), None),
        };
        let expected = Expected { study_instance_uid: study, ..Expected::default() };
        match archive.store(&staged, expected).await {
            Ok(outcome) => {
                let instance = &outcome.instance;
                let result = PartResult {
                    sop_class_uid: instance.sop_class_uid.clone(),
                    sop_instance_uid: instance.sop_instance_uid.clone(),
                    study_instance_uid: instance.study_instance_uid.clone(),
                    series_instance_uid: instance.series_instance_uid.clone(),
                    outcome: PartOutcome::Stored,
                };
                match outcome.status {
                    StoreStatus::Stored | StoreStatus::AlreadyStored | StoreStatus::Replaced => result,
                    StoreStatus::KeptExisting => PartResult {
                        outcome: PartOutcome::Warning(
                            reason::ELEMENTS_DISCARDED,
                            "this SOP Instance UID is already stored with different content; the stored copy was kept and this one discarded".into(),
                        ),
                        ..result
                    },
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "stow-rs part refused");
                // Name the refused instance in the response when its header can be read.
                let path = staged.path().to_path_buf();
                let identity = web::block(move || dicom_json::identify(&path)).await.ok().and_then(Result::ok);
                PartResult::from_error(&e, identity.as_ref())
            }
        }
    }
}

impl PartResult {
    fn failed(code: u16, message: String) -> PartResult {
        PartResult {
            sop_class_uid: String::new(),
            sop_instance_uid: String::new(),
            study_instance_uid: String::new(),
            series_instance_uid: String::new(),
            outcome: PartOutcome::Failed(code, message),
        }
    }

    fn with_identity(identity: &dicom_json::Identity, outcome: PartOutcome) -> PartResult {
        PartResult {
            sop_class_uid: identity.sop_class_uid.clone(),
            sop_instance_uid: identity.sop_instance_uid.clone(),
            study_instance_uid: identity.study_instance_uid.clone(),
            series_instance_uid: String::new(),
            outcome,
        }
    }

    fn from_error(error: &DicomStoreError, identity: Option<&dicom_json::Identity>) -> PartResult {
        let code = match error.kind() {
            DicomErrorKind::InvalidObject => reason::CANNOT_UNDERSTAND,
            DicomErrorKind::SopClassMismatch => reason::MISMATCH,
            DicomErrorKind::Conflict => reason::DUPLICATE,
            DicomErrorKind::OutOfResources => reason::OUT_OF_RESOURCES,
            DicomErrorKind::InvalidQuery
            | DicomErrorKind::NotFound
            | DicomErrorKind::Archived
            | DicomErrorKind::Integrity
            | DicomErrorKind::Unavailable => reason::PROCESSING_FAILURE,
        };
        let outcome = PartOutcome::Failed(code, error.to_string());
        match identity {
            Some(identity) => PartResult::with_identity(identity, outcome),
            None => PartResult { outcome, ..PartResult::failed(code, String::new()) },
        }
    }
}

/// The Store Instances Response: 200 when every instance is stored without warning, 202 when
/// some failed or have warnings, 409 when none was stored.
fn store_response(req: &HttpRequest, results: &[PartResult], study: Option<&str>) -> HttpResponse {
    let base = dicomweb_base(req);
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    for result in results {
        let mut item = Map::new();
        if !result.sop_class_uid.is_empty() {
            item.insert("00081150".into(), json!({"vr": "UI", "Value": [result.sop_class_uid]}));
        }
        if !result.sop_instance_uid.is_empty() {
            item.insert("00081155".into(), json!({"vr": "UI", "Value": [result.sop_instance_uid]}));
        }
        match &result.outcome {
            PartOutcome::Failed(code, message) => {
                item.insert("00081197".into(), json!({"vr": "US", "Value": [code]}));
                item.insert("00000902".into(), json!({"vr": "LO", "Value": [message]}));
                failed.push(Value::Object(item));
            }
            outcome => {
                let url = format!(
                    "{base}/studies/{}/series/{}/instances/{}",
                    result.study_instance_uid, result.series_instance_uid, result.sop_instance_uid
                );
                item.insert("00081190".into(), json!({"vr": "UR", "Value": [url]}));
                if let PartOutcome::Warning(code, message) = outcome {
                    item.insert("00081196".into(), json!({"vr": "US", "Value": [code]}));
                    item.insert("00000902".into(), json!({"vr": "LO", "Value": [message]}));
                }
                referenced.push(Value::Object(item));
            }
        }
    }
    let warnings = results.iter().any(|r| matches!(r.outcome, PartOutcome::Warning(..)));
    let status = match (referenced.is_empty(), failed.is_empty() && !warnings) {
        (true, _) => StatusCode::CONFLICT,
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
    };
    let mut body = Map::new();
    let stored_studies: std::collections::BTreeSet<&str> =
        results.iter().filter(|r| !matches!(r.outcome, PartOutcome::Failed(..))).map(|r| r.study_instance_uid.as_str()).collect();
    let study = study.or_else(|| (stored_studies.len() == 1).then(|| *stored_studies.first().expect("one study")));
    if let (Some(study), false) = (study, referenced.is_empty()) {
        body.insert("00081190".into(), json!({"vr": "UR", "Value": [format!("{base}/studies/{study}")]}));
    }
    if !failed.is_empty() {
        body.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    if !referenced.is_empty() {
        body.insert("00081199".into(), json!({"vr": "SQ", "Value": referenced}));
    }
    dicom_json_response(status, &Value::Object(body))
}

// ---------------------------------------------------------------------------------------
// QIDO-RS
// ---------------------------------------------------------------------------------------

/// `GET /dicomweb/studies`
pub async fn search_studies(req: HttpRequest, state: State) -> HttpResponse {
    let result = search(&req, &state, QueryLevel::Study, &[]).await;
    respond(&req, result)
}

/// `GET /dicomweb/series`
pub async fn search_series(req: HttpRequest, state: State) -> HttpResponse {
    let result = search(&req, &state, QueryLevel::Series, &[]).await;
    respond(&req, result)
}

/// `GET /dicomweb/studies/{study}/series`
pub async fn search_study_series(req: HttpRequest, state: State) -> HttpResponse {
    let scope = [(tags::STUDY_INSTANCE_UID, segment(&req, "study"))];
    let result = search(&req, &state, QueryLevel::Series, &scope).await;
    respond(&req, result)
}

/// `GET /dicomweb/instances`
pub async fn search_instances(req: HttpRequest, state: State) -> HttpResponse {
    let result = search(&req, &state, QueryLevel::Instance, &[]).await;
    respond(&req, result)
}

/// `GET /dicomweb/studies/{study}/instances`
pub async fn search_study_instances(req: HttpRequest, state: State) -> HttpResponse {
    let scope = [(tags::STUDY_INSTANCE_UID, segment(&req, "study"))];
    let result = search(&req, &state, QueryLevel::Instance, &scope).await;
    respond(&req, result)
}

/// `GET /dicomweb/studies/{study}/series/{series}/instances`
pub async fn search_series_instances(req: HttpRequest, state: State) -> HttpResponse {
    let scope = [(tags::STUDY_INSTANCE_UID, segment(&req, "study")), (tags::SERIES_INSTANCE_UID, segment(&req, "series"))];
    let result = search(&req, &state, QueryLevel::Instance, &scope).await;
    respond(&req, result)
}

async fn search(
    req: &HttpRequest,
    state: &AppState,
    level: QueryLevel,
    scope: &[(Tag, String)],
) -> Result<HttpResponse, ApiError> {
    negotiate_json(req)?;
    let (query, warnings) = parse_qido(level, &query_params(req), scope)?;
    let matches = state.dicomweb.archive.query(&query).await?;
    let base = dicomweb_base(req);
    let body: Vec<Value> = matches
        .iter()
        .map(|found| {
            let mut object = dicom_json::attributes_to_json(&found.attributes());
            object["00081190"] = json!({"vr": "UR", "Value": [retrieve_url(&base, found)]});
            object
        })
        .collect();
    let mut response = dicom_json_response(StatusCode::OK, &Value::Array(body));
    for warning in warnings {
        let text = format!("299 tessera \"{}\"", warning.replace(['"', '\\'], "'"));
        if let Ok(value) = header::HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    Ok(response)
}

/// The query a QIDO-RS request asks for, and warnings about what it ignored. `scope` (the UIDs
/// of the URL) wins over parameters naming the same attribute.
fn parse_qido(
    level: QueryLevel,
    params: &[(String, String)],
    scope: &[(Tag, String)],
) -> Result<(DicomQuery, Vec<String>), ApiError> {
    let mut query = DicomQuery::new(level);
    let mut warnings = Vec::new();
    let number = |name: &str, value: &str| {
        value.trim().parse::<u32>().map_err(|_| ApiError::BadRequest(format!("{name}={value:?} is not a non-negative integer")))
    };
    for (name, value) in params {
        match name.as_str() {
            "limit" => query.limit = Some(number(name, value)?),
            "offset" => query.offset = number(name, value)?,
            "includefield" => {
                // Every match carries all the attributes the index has; others are not kept.
                for field in value.split(',').map(str::trim).filter(|f| !f.is_empty() && *f != "all") {
                    if attribute_tag(field).is_none() {
                        return Err(ApiError::BadRequest(format!(
                            "includefield {field:?} is not a DICOM attribute keyword or tag"
                        )));
                    }
                }
            }
            "fuzzymatching" => match value.as_str() {
                "false" => {}
                "true" => warnings.push("fuzzymatching is not supported; names were matched as given".to_string()),
                other => return Err(ApiError::BadRequest(format!("fuzzymatching={other:?} is not true or false"))),
            },
            _ => {
                let tag = attribute_tag(name).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "unknown query parameter {name:?}: not a DICOM attribute keyword or tag (e.g. PatientID or 00100020), \
                         nor limit, offset, includefield or fuzzymatching"
                    ))
                })?;
                if !query.add_match(tag, value)? {
                    warnings.push(format!("{name} is not a matching key of this archive and was ignored"));
                }
            }
        }
    }
    for (tag, value) in scope {
        query.add_match(*tag, value)?;
    }
    Ok((query, warnings))
}

/// A keyword (`PatientID`) or 8-hex-digit tag (`00100020`) as a tag.
fn attribute_tag(name: &str) -> Option<Tag> {
    dicom_json::parse_tag(name).or_else(|| StandardDataDictionary.by_name(name).map(|entry| entry.tag.inner()))
}

fn retrieve_url(base: &str, found: &QueryMatch) -> String {
    match found {
        QueryMatch::Study(study) => format!("{base}/studies/{}", study.study_instance_uid),
        QueryMatch::Series(series) => {
            format!("{base}/studies/{}/series/{}", series.study_instance_uid, series.series_instance_uid)
        }
        QueryMatch::Instance(instance) => instance_url(base, instance),
    }
}

fn instance_url(base: &str, instance: &IndexedInstance) -> String {
    format!(
        "{base}/studies/{}/series/{}/instances/{}",
        instance.study_instance_uid, instance.series_instance_uid, instance.sop_instance_uid
    )
}

// ---------------------------------------------------------------------------------------
// WADO-RS
// ---------------------------------------------------------------------------------------

/// `GET /dicomweb/studies/{study}`
pub async fn retrieve_study(req: HttpRequest, state: State) -> HttpResponse {
    let result = retrieve(&req, &state).await;
    respond(&req, result)
}

/// `GET /dicomweb/studies/{study}/series/{series}`
pub async fn retrieve_series(req: HttpRequest, state: State) -> HttpResponse {
    let result = retrieve(&req, &state).await;
    respond(&req, result)
}

/// `GET /dicomweb/studies/{study}/series/{series}/instances/{instance}`
pub async fn retrieve_instance(req: HttpRequest, state: State) -> HttpResponse {
    let result = retrieve(&req, &state).await;
    respond(&req, result)
}

/// The instances a WADO-RS URL names (by its `study`, `series`, `instance` segments), or 404.
async fn target_instances(req: &HttpRequest, state: &AppState) -> Result<Vec<IndexedInstance>, ApiError> {
    let study = segment(req, "study");
    let series = req.match_info().get("series").map(str::to_string);
    let instance = req.match_info().get("instance").map(str::to_string);
    let found = state.dicomweb.archive.instances(&study, series.as_deref(), instance.as_deref()).await?;
    if found.is_empty() {
        let mut what = format!("study {study}");
        if let Some(series) = series {
            what.push_str(&format!(", series {series}"));
        }
        if let Some(instance) = instance {
            what.push_str(&format!(", instance {instance}"));
        }
        return Err(ApiError::NotFound(format!("no stored instances of {what}")));
    }
    Ok(found)
}

/// The stored bytes of an instance; an archived one says how to restore it.
async fn read_instance(req: &HttpRequest, archive: &Archive, instance: &IndexedInstance) -> Result<web::Bytes, ApiError> {
    archive.read(instance).await.map_err(|source| {
        let hint = (source.kind() == DicomErrorKind::Archived).then(|| {
            format!(
                "POST {}/restore starts a restore (GLACIER: minutes to hours, DEEP_ARCHIVE: up to 48 hours); retry once it has completed",
                instance_url(&dicomweb_base(req), instance)
            )
        });
        ApiError::Dicom { source, hint }
    })
}

async fn retrieve(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    let wanted_syntax = negotiate_dicom(req)?;
    let instances = target_instances(req, state).await?;
    if let Some(syntax) = &wanted_syntax {
        if let Some(other) = instances.iter().find(|i| &i.transfer_syntax_uid != syntax) {
            return Err(ApiError::DicomNotAcceptable(format!(
                "instance {} is stored in transfer syntax {} and Tessera does not transcode; ask for transfer-syntax=* (or leave it out) to get every instance as stored",
                other.sop_instance_uid, other.transfer_syntax_uid
            )));
        }
    }
    let archive = state.dicomweb.archive.clone();
    // The first instance is read before answering, so a missing, archived or corrupt object
    // gets its status; later failures can only cut the stream short (and are logged).
    let first = read_instance(req, &archive, &instances[0]).await?;
    let boundary = multipart::new_boundary();
    let part_header = |instance: &IndexedInstance| {
        let content_type = format!("application/dicom; transfer-syntax={}", instance.transfer_syntax_uid);
        web::Bytes::from(multipart::part_header(&boundary, &content_type, &[]))
    };
    let mut head = vec![part_header(&instances[0]), first];
    if instances.len() == 1 {
        head.push(web::Bytes::from(multipart::closing(&boundary)));
    }
    let rest: Vec<(web::Bytes, IndexedInstance)> = instances.iter().skip(1).map(|i| (part_header(i), i.clone())).collect();
    let closing = web::Bytes::from(multipart::closing(&boundary));
    let rest_count = rest.len();
    let tail = futures::stream::iter(rest.into_iter().enumerate()).then(move |(n, (header, instance))| {
        let archive = archive.clone();
        let closing = closing.clone();
        async move {
            match archive.read(&instance).await {
                Ok(bytes) => {
                    let mut chunk = web::BytesMut::with_capacity(header.len() + bytes.len() + closing.len());
                    chunk.extend_from_slice(&header);
                    chunk.extend_from_slice(&bytes);
                    if n + 1 == rest_count {
                        chunk.extend_from_slice(&closing);
                    }
                    Ok::<_, actix_web::Error>(chunk.freeze())
                }
                Err(e) => {
                    tracing::error!(error = %e, sop_instance_uid = %instance.sop_instance_uid, "wado-rs retrieve cut short");
                    Err(actix_web::error::ErrorInternalServerError(e.to_string()))
                }
            }
        }
    });
    let body = futures::stream::iter(head.into_iter().map(Ok::<_, actix_web::Error>)).chain(tail);
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, format!("multipart/related; type=\"application/dicom\"; boundary={boundary}")))
        .streaming(body))
}

/// `GET …/metadata` at study, series or instance level.
pub async fn metadata(req: HttpRequest, state: State) -> HttpResponse {
    let result = async {
        negotiate_json(&req)?;
        let instances = target_instances(&req, &state).await?;
        let base = dicomweb_base(&req);
        let mut body = Vec::with_capacity(instances.len());
        for instance in &instances {
            let bytes = read_instance(&req, &state.dicomweb.archive, instance).await?;
            let url = instance_url(&base, instance);
            let json = web::block(move || {
                let object = dicom_json::read_part10(&bytes)?;
                let uri = |path: &[TagPathPart]| format!("{url}/bulkdata/{}", dicom_json::format_tag_path(path));
                Ok::<_, DicomStoreError>(dicom_json::dataset_to_json(&object, &uri))
            })
            .await
            .map_err(|e| stored_object_unreadable(instance, &e.to_string()))?
            .map_err(|e| stored_object_unreadable(instance, &e.to_string()))?;
            body.push(json);
        }
        Ok(dicom_json_response(StatusCode::OK, &Value::Array(body)))
    }
    .await;
    respond(&req, result)
}

/// `GET …/instances/{instance}/bulkdata/{tagpath}`: the value behind a BulkDataURI, as one
/// `application/octet-stream` part (little-endian), or one part per fragment for encapsulated
/// pixel data (without the Basic Offset Table).
pub async fn bulkdata(req: HttpRequest, state: State) -> HttpResponse {
    let result = async {
        negotiate_octets(&req)?;
        let text = segment(&req, "tagpath");
        let path = dicom_json::parse_tag_path(&text).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{text:?} is not a tag path (GGGGEEEE, or sequence tag, item index, tag, … joined by '.')"
            ))
        })?;
        let instance = target_instances(&req, &state).await?.remove(0);
        let bytes = read_instance(&req, &state.dicomweb.archive, &instance).await?;
        let found = web::block(move || dicom_json::read_part10(&bytes).map(|object| dicom_json::bulk_data(&object, &path)))
            .await
            .map_err(|e| stored_object_unreadable(&instance, &e.to_string()))?
            .map_err(|e| stored_object_unreadable(&instance, &e.to_string()))?;
        let parts = match found {
            Some(BulkData::Bytes(bytes)) => vec![bytes],
            Some(BulkData::Fragments(fragments)) => fragments,
            None => return Err(ApiError::NotFound(format!("instance {} has no bulk data at {text}", instance.sop_instance_uid))),
        };
        let boundary = multipart::new_boundary();
        let mut body = Vec::new();
        for part in &parts {
            body.extend(multipart::part_header(&boundary, "application/octet-stream", &[]));
            body.extend_from_slice(part);
        }
        body.extend(multipart::closing(&boundary));
        Ok(HttpResponse::Ok()
            .insert_header((
                header::CONTENT_TYPE,
                format!("multipart/related; type=\"application/octet-stream\"; boundary={boundary}"),
            ))
            .body(body))
    }
    .await;
    respond(&req, result)
}

/// A stored object the archive accepted but cannot read back: the server's fault.
fn stored_object_unreadable(instance: &IndexedInstance, problem: &str) -> ApiError {
    ApiError::Store(fhir_store::StoreError::Backend {
        message: format!("stored DICOM object {} cannot be read: {problem}", instance.sop_instance_uid),
        source: None,
    })
}

/// `GET …/instances/{instance}/presigned?expires=<seconds>`
pub async fn presigned(req: HttpRequest, state: State) -> HttpResponse {
    let result = async {
        let mut expires = state.dicomweb.presign_expiry;
        for (name, value) in query_params(&req) {
            match name.as_str() {
                "expires" => {
                    let secs = value.trim().parse::<u64>().ok().filter(|s| (1..=MAX_PRESIGN_SECS).contains(s)).ok_or_else(|| {
                        ApiError::BadRequest(format!("expires={value:?} must be a number of seconds from 1 to {MAX_PRESIGN_SECS}"))
                    })?;
                    expires = Duration::from_secs(secs);
                }
                other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?} (known: expires)"))),
            }
        }
        let instance = target_instances(&req, &state).await?.remove(0);
        match state.dicomweb.archive.presigned_url(&instance, expires).await? {
            Some(url) => Ok(HttpResponse::Ok().json(json!({ "url": url, "expiresIn": expires.as_secs() }))),
            None => Err(ApiError::Unsupported(format!(
                "presigned URLs need the S3 object store (TESSERA_S3_BUCKET); this server keeps DICOM objects in {}. Retrieve the instance with WADO-RS at {} instead",
                state.dicomweb.archive.objects().describe(),
                instance_url(&dicomweb_base(&req), &instance)
            ))),
        }
    }
    .await;
    respond(&req, result)
}

/// `POST …/instances/{instance}/restore?days=<n>`: asks the object store to restore an
/// archived instance; 202 while the restore runs, 200 when the instance is readable.
pub async fn restore(req: HttpRequest, state: State) -> HttpResponse {
    let result = async {
        let mut days = DEFAULT_RESTORE_DAYS;
        for (name, value) in query_params(&req) {
            match name.as_str() {
                "days" => {
                    days =
                        value.trim().parse::<u32>().ok().filter(|d| (1..=365).contains(d)).ok_or_else(|| {
                            ApiError::BadRequest(format!("days={value:?} must be a number of days from 1 to 365"))
                        })?
                }
                other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?} (known: days)"))),
            }
        }
        let instance = target_instances(&req, &state).await?.remove(0);
        let url = instance_url(&dicomweb_base(&req), &instance);
        Ok(match state.dicomweb.archive.request_restore(&instance, days).await? {
            RestoreState::InProgress => HttpResponse::Accepted().json(json!({
                "status": "in-progress",
                "days": days,
                "message": format!("restore requested; retrieve {url} once it has completed"),
            })),
            RestoreState::Available => HttpResponse::Ok().json(json!({
                "status": "available",
                "message": format!("the instance is readable at {url}"),
            })),
        })
    }
    .await;
    respond(&req, result)
}

// ---------------------------------------------------------------------------------------
// Media types and URLs
// ---------------------------------------------------------------------------------------

/// The media ranges of `Accept` with a q above 0; empty when there is no Accept header.
fn accept_ranges(req: &HttpRequest) -> Vec<MediaType> {
    let accept = req.headers().get_all(header::ACCEPT).filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    multipart::split_unquoted(&accept, ',')
        .into_iter()
        .filter(|r| !r.trim().is_empty())
        .filter_map(MediaType::parse)
        .filter(|m| m.param("q").and_then(|q| q.parse::<f32>().ok()).is_none_or(|q| q > 0.0))
        .collect()
}

/// WADO-RS instances: `multipart/related; type="application/dicom"`, `*/*` or no Accept.
/// Returns the transfer syntax asked for, None for "as stored".
fn negotiate_dicom(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let ranges = accept_ranges(req);
    if ranges.is_empty() {
        return Ok(None);
    }
    for range in &ranges {
        let wildcard = matches!(range.essence.as_str(), "*/*" | "multipart/*");
        let dicom = range.essence == "multipart/related"
            && range.param("type").is_none_or(|t| t.eq_ignore_ascii_case("application/dicom"));
        if wildcard || dicom {
            let syntax = range.param("transfer-syntax").filter(|s| *s != "*").map(str::to_string);
            return Ok(if wildcard { None } else { syntax });
        }
    }
    Err(ApiError::DicomNotAcceptable(
        "WADO-RS returns instances as multipart/related; type=\"application/dicom\" (in their stored transfer syntax); \
         rendered, bulk data and XML media types are not offered here"
            .into(),
    ))
}

/// QIDO-RS and metadata: DICOM JSON.
fn negotiate_json(req: &HttpRequest) -> Result<(), ApiError> {
    let ranges = accept_ranges(req);
    let ok = ranges.is_empty()
        || ranges
            .iter()
            .any(|r| matches!(r.essence.as_str(), "*/*" | "application/*" | "application/dicom+json" | "application/json"));
    if ok {
        Ok(())
    } else {
        Err(ApiError::DicomNotAcceptable(format!(
            "this resource is offered as {DICOM_JSON} only (application/dicom+xml is not supported)"
        )))
    }
}

/// Bulk data: `multipart/related; type="application/octet-stream"`.
fn negotiate_octets(req: &HttpRequest) -> Result<(), ApiError> {
    let ranges = accept_ranges(req);
    let ok = ranges.is_empty()
        || ranges.iter().any(|r| {
            matches!(r.essence.as_str(), "*/*" | "multipart/*")
                || (r.essence == "multipart/related"
                    && r.param("type").is_none_or(|t| t.eq_ignore_ascii_case("application/octet-stream")))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::DicomNotAcceptable(
            "bulk data is offered as multipart/related; type=\"application/octet-stream\" only".into(),
        ))
    }
}

fn dicom_json_response(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponseBuilder::new(status).insert_header((header::CONTENT_TYPE, DICOM_JSON)).body(body.to_string())
}

/// The DICOMweb base URL as the client addressed the server.
fn dicomweb_base(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}/dicomweb", info.scheme(), info.host())
}

/// A path segment of the route (empty when the route has none of that name).
fn segment(req: &HttpRequest, name: &str) -> String {
    req.match_info().get(name).unwrap_or_default().to_string()
}

impl From<MultipartError> for ApiError {
    fn from(error: MultipartError) -> Self {
        ApiError::BadRequest(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn qido_parameters_become_matching_keys() {
        let (query, warnings) = parse_qido(
            QueryLevel::Study,
            &params(&[
                ("PatientName", "DOE^J*"),
                ("00100020", "PAT1"),
                ("StudyDate", "20200101-"),
                ("limit", "5"),
                ("offset", "10"),
            ]),
            &[],
        )
        .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(query.patient_name, Some(dicom_store::TextMatch::Wildcard("DOE^J*".into())));
        assert_eq!(query.patient_id, Some(dicom_store::TextMatch::Exact("PAT1".into())));
        assert_eq!(query.study_date.as_ref().and_then(|d| d.from.as_deref()), Some("20200101"));
        assert_eq!((query.limit, query.offset), (Some(5), 10));
    }

    #[test]
    fn the_url_scope_wins_and_unsupported_attributes_are_warnings() {
        let scope = [(tags::STUDY_INSTANCE_UID, "1.2.3".to_string())];
        let (query, warnings) = parse_qido(
            QueryLevel::Series,
            &params(&[
                ("StudyInstanceUID", "9.9"),
                ("Rows", "512"),
                ("includefield", "all,PatientAge,00100010"),
                ("fuzzymatching", "true"),
            ]),
            &scope,
        )
        .unwrap();
        assert_eq!(query.study_instance_uid, vec!["1.2.3"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.starts_with("Rows")));
    }

    #[test]
    fn archive_failures_map_to_statuses_and_archived_objects_say_how_to_restore() {
        use dicom_store::object_store::{ObjectKey, ObjectStoreError};
        let key = || ObjectKey::new("dicom/P/1/2/3.dcm");
        let archived = ApiError::Dicom {
            source: ObjectStoreError::Archived { key: key(), storage_class: "DEEP_ARCHIVE".into() }.into(),
            hint: Some("POST http://h/dicomweb/studies/1/series/2/instances/3/restore starts a restore".into()),
        };
        assert_eq!(archived.status(), StatusCode::CONFLICT);
        let text = archived.to_operation_outcome().to_string();
        assert!(text.contains("DEEP_ARCHIVE") && text.contains("/restore"), "{text}");
        let status = |e: DicomStoreError| ApiError::from(e).status();
        let integrity = ObjectStoreError::Integrity { key: key(), expected: "a".into(), actual: "b".into() };
        assert_eq!(status(integrity.into()), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(ObjectStoreError::Unavailable("s3 down".into()).into()), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(ObjectStoreError::OutOfResources("disk full".into()).into()), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(status(ObjectStoreError::NotFound(key()).into()), StatusCode::NOT_FOUND);
        assert_eq!(status(DicomStoreError::InvalidQuery("bad".into())), StatusCode::BAD_REQUEST);
        assert_eq!(status(DicomStoreError::Conflict("1.2".into())), StatusCode::CONFLICT);
        // And in a STOW-RS answer, per part.
        let code = |e: DicomStoreError| match PartResult::from_error(&e, None).outcome {
            PartOutcome::Failed(code, _) => code,
            _ => unreachable!("an error is a failure"),
        };
        assert_eq!(code(DicomStoreError::InvalidObject("x".into())), 0xC000);
        assert_eq!(code(DicomStoreError::SopClassMismatch("x".into())), 0xA900);
        assert_eq!(code(DicomStoreError::Conflict("x".into())), 0x0111);
        assert_eq!(code(ObjectStoreError::OutOfResources("x".into()).into()), 0xA700);
        assert_eq!(code(ObjectStoreError::Unavailable("x".into()).into()), 0x0110);
    }

    #[test]
    fn bad_qido_parameters_are_400s() {
        let bad = |pairs: &[(&str, &str)]| parse_qido(QueryLevel::Study, &params(pairs), &[]).unwrap_err();
        for pairs in [
            &[("PatientNam", "x")][..],
            &[("limit", "-1")],
            &[("offset", "ten")],
            &[("StudyDate", "2020")],
            &[("includefield", "NoSuchKeyword")],
            &[("fuzzymatching", "maybe")],
        ] {
            let error = bad(pairs);
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{pairs:?}: {error}");
        }
        assert!(bad(&[("PatientNam", "x")]).to_string().contains("PatientNam"));
    }
}
