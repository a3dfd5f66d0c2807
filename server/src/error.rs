//! The one mapping from an error kind to an HTTP status and an OperationOutcome.

use actix_web::http::StatusCode;
use dicom_store::{DicomErrorKind, DicomStoreError};
use fhir_model::{Issue, IssueSeverity, ModelError};
use fhir_store::{StoreError, StoreErrorKind};
use serde_json::{json, Value};

/// Everything a FHIR interaction can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{resource_type}/{id} was deleted")]
    Gone { resource_type: String, id: String, version: u64 },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type {0}; use application/fhir+json or application/fhir+xml")]
    UnsupportedMediaType(String),
    #[error("cannot produce {0}; this server produces application/fhir+json and application/fhir+xml")]
    NotAcceptable(String),
    #[error("{0} is not implemented by this server")]
    NotImplemented(String),
    /// A database the request needs (a projection's) is unreachable; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A DICOM archive failure; `hint` tells the client what to do about it (e.g. how to
    /// restore an archived object).
    #[error("{source}{}", .hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
    Dicom { source: DicomStoreError, hint: Option<String> },
    /// A DICOMweb request or response media type the server does not handle; the message says
    /// what it does handle.
    #[error("{0}")]
    DicomUnsupportedMediaType(String),
    #[error("{0}")]
    DicomNotAcceptable(String),
    /// A feature this deployment does not have (e.g. presigned URLs on a local object store).
    #[error("{0}")]
    Unsupported(String),
    /// An error inside a bundle entry, with the entry's index for the message.
    #[error("entry {index}: {source}")]
    InEntry { index: usize, source: Box<ApiError> },
}

impl From<projections::ProjectionError> for ApiError {
    fn from(error: projections::ProjectionError) -> Self {
        match error {
            projections::ProjectionError::Config(message) => ApiError::BadRequest(message),
            projections::ProjectionError::Store(e) => ApiError::Store(e),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<DicomStoreError> for ApiError {
    fn from(source: DicomStoreError) -> Self {
        ApiError::Dicom { source, hint: None }
    }
}

/// The HTTP status of each DICOM archive failure.
pub fn dicom_status(kind: DicomErrorKind) -> StatusCode {
    match kind {
        DicomErrorKind::InvalidObject | DicomErrorKind::SopClassMismatch | DicomErrorKind::InvalidQuery => StatusCode::BAD_REQUEST,
        DicomErrorKind::NotFound => StatusCode::NOT_FOUND,
        // Another copy is stored, or the object waits in a cold tier until restored.
        DicomErrorKind::Conflict | DicomErrorKind::Archived => StatusCode::CONFLICT,
        // Stored bytes that fail their checksum are the server's fault, never served.
        DicomErrorKind::Integrity => StatusCode::INTERNAL_SERVER_ERROR,
        DicomErrorKind::OutOfResources => StatusCode::INSUFFICIENT_STORAGE,
        DicomErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Model(e) => match e {
                ModelError::Syntax { .. } | ModelError::Structure(_) | ModelError::Search(_) => StatusCode::BAD_REQUEST,
                ModelError::Rule(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ModelError::UnknownResourceType(_) => StatusCode::NOT_FOUND,
            },
            ApiError::Store(e) => match e.kind() {
                StoreErrorKind::VersionConflict | StoreErrorKind::AlreadyExists => StatusCode::CONFLICT,
                StoreErrorKind::MultipleMatches => StatusCode::PRECONDITION_FAILED,
                StoreErrorKind::InvalidQuery => StatusCode::BAD_REQUEST,
                StoreErrorKind::Backend => StatusCode::INTERNAL_SERVER_ERROR,
                StoreErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Dicom { source, .. } => dicom_status(source.kind()),
            ApiError::DicomUnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::DicomNotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::InEntry { source, .. } => source.status(),
        }
    }

    /// A version conflict caused by a client's `If-Match` is 412, not 409.
    pub fn from_if_match(error: StoreError) -> ApiError {
        match error {
            StoreError::VersionConflict { .. } => ApiError::PreconditionFailed(error.to_string()),
            other => ApiError::Store(other),
        }
    }

    /// The OperationOutcome that explains this error.
    pub fn to_operation_outcome(&self) -> Value {
        if self.status().is_server_error() && self.status() != StatusCode::NOT_IMPLEMENTED {
            tracing::error!(error = %self, "request failed inside the server");
        }
        let issues = match self {
            ApiError::Model(e) => e.issues().iter().map(|i| issue_json(i, model_issue_code(e))).collect(),
            ApiError::InEntry { index, source } => {
                let mut outcome = source.to_operation_outcome();
                if let Some(list) = outcome["issue"].as_array_mut() {
                    for issue in list {
                        let text = issue["diagnostics"].as_str().unwrap_or_default().to_string();
                        issue["diagnostics"] = Value::String(format!("entry {index}: {text}"));
                    }
                }
                return outcome;
            }
            other => vec![issue_json(&Issue::error("", other.rule(), other.to_string()), other.issue_code())],
        };
        json!({ "resourceType": "OperationOutcome", "issue": issues })
    }

    fn rule(&self) -> &'static str {
        match self {
            ApiError::Store(e) => match e.kind() {
                StoreErrorKind::VersionConflict => "version-conflict",
                StoreErrorKind::AlreadyExists => "already-exists",
                StoreErrorKind::MultipleMatches => "multiple-matches",
                StoreErrorKind::InvalidQuery => "invalid-cursor",
                StoreErrorKind::Backend => "storage",
                StoreErrorKind::Unavailable => "storage-unavailable",
            },
            ApiError::Gone { .. } => "deleted",
            ApiError::PayloadTooLarge { .. } => "body-size-limit",
            ApiError::Dicom { source, .. } => match source.kind() {
                DicomErrorKind::InvalidObject => "dicom-invalid-object",
                DicomErrorKind::SopClassMismatch => "dicom-sop-class-mismatch",
                DicomErrorKind::Conflict => "dicom-conflict",
                DicomErrorKind::InvalidQuery => "dicom-query",
                DicomErrorKind::NotFound => "dicom-not-found",
                DicomErrorKind::Archived => "dicom-archived",
                DicomErrorKind::Integrity => "dicom-integrity",
                DicomErrorKind::OutOfResources => "dicom-out-of-resources",
                DicomErrorKind::Unavailable => "dicom-unavailable",
            },
            ApiError::DicomUnsupportedMediaType(_) | ApiError::DicomNotAcceptable(_) | ApiError::Unsupported(_) => "dicomweb",
            _ => "http",
        }
    }

    /// The OperationOutcome.issue.code (value set issue-type).
    fn issue_code(&self) -> &'static str {
        match self.status() {
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::GONE => "deleted",
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "too-long",
            StatusCode::INSUFFICIENT_STORAGE => "transient",
            StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::NOT_ACCEPTABLE
            | StatusCode::NOT_IMPLEMENTED => {
                "not-supported"
            }
            StatusCode::SERVICE_UNAVAILABLE => "transient",
            s if s.is_server_error() && s != StatusCode::NOT_IMPLEMENTED => "exception",
            _ => "invalid",
        }
    }
}

fn model_issue_code(error: &ModelError) -> &'static str {
    match error {
        ModelError::Syntax { .. } | ModelError::Structure(_) => "structure",
        ModelError::Rule(_) => "business-rule",
        ModelError::Search(_) => "invalid",
        ModelError::UnknownResourceType(_) => "not-supported",
    }
}

fn issue_json(issue: &Issue, code: &str) -> Value {
    let severity = match issue.severity {
        IssueSeverity::Error => "error",
        IssueSeverity::Warning => "warning",
    };
    let mut value = json!({
        "severity": severity,
        "code": code,
        "details": {
            "coding": [{ "system": "https://tessera.health/fhir/rules", "code": issue.rule }],
            "text": issue.message,
        },
        "diagnostics": format!("{}: {}", issue.rule, issue.message),
    });
    if !issue.expression.is_empty() {
        value["expression"] = json!([issue.expression]);
    }
    value
}

/// An OperationOutcome with one informational issue, for successful deletes and
/// `Prefer: return=OperationOutcome`.
pub fn information_outcome(message: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "information", "code": "informational", "diagnostics": message }]
    })
}
