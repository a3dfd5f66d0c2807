//! `DicomStoreError`: every way storing, finding or reading a DICOM object can fail.

use crate::object_store::ObjectStoreError;

/// Failures of the archive. The DIMSE layer turns them into C-STORE/C-FIND statuses, the server
/// into HTTP statuses; `kind()` is what both look at.
#[derive(Debug, thiserror::Error)]
pub enum DicomStoreError {
    /// The bytes are not a DICOM object we can read (truncated, not DICOM, missing UIDs).
    #[error("cannot understand the object: {0}")]
    InvalidObject(String),
    /// The dataset's SOP class is not the one it was sent as, or not a storage SOP class.
    #[error("dataset does not match its SOP class: {0}")]
    SopClassMismatch(String),
    /// The dataset belongs to another study than the one it was sent to.
    #[error("{0}")]
    StudyMismatch(String),
    /// The same SOP Instance UID is already stored with different bytes and the policy is to
    /// refuse the second copy.
    #[error("SOP instance {0} is already stored with different content")]
    Conflict(String),
    /// The query cannot be run as asked.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Object(#[from] ObjectStoreError),
    /// The index database failed.
    #[error("index: {0}")]
    Index(String),
    /// Local disk I/O outside the object store (staging files).
    #[error("staging: {0}")]
    Staging(#[from] std::io::Error),
}

/// What kind of failure, for status mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DicomErrorKind {
    InvalidObject,
    SopClassMismatch,
    Conflict,
    InvalidQuery,
    NotFound,
    /// Archived in a cold tier; a restore must be requested first.
    Archived,
    /// Stored bytes don't match their checksum.
    Integrity,
    /// Out of disk or storage quota.
    OutOfResources,
    /// The object store or index is unreachable or failing.
    Unavailable,
}

impl DicomStoreError {
    pub fn kind(&self) -> DicomErrorKind {
        match self {
            DicomStoreError::InvalidObject(_) => DicomErrorKind::InvalidObject,
            DicomStoreError::SopClassMismatch(_) | DicomStoreError::StudyMismatch(_) => DicomErrorKind::SopClassMismatch,
            DicomStoreError::Conflict(_) => DicomErrorKind::Conflict,
            DicomStoreError::InvalidQuery(_) => DicomErrorKind::InvalidQuery,
            DicomStoreError::NotFound(_) => DicomErrorKind::NotFound,
            DicomStoreError::Object(ObjectStoreError::NotFound(_)) => DicomErrorKind::NotFound,
            DicomStoreError::Object(ObjectStoreError::Archived { .. }) => DicomErrorKind::Archived,
            DicomStoreError::Object(ObjectStoreError::Integrity { .. }) => DicomErrorKind::Integrity,
            DicomStoreError::Object(ObjectStoreError::OutOfResources(_)) => DicomErrorKind::OutOfResources,
            DicomStoreError::Object(ObjectStoreError::Unavailable(_)) => DicomErrorKind::Unavailable,
            DicomStoreError::Staging(e) if matches!(e.raw_os_error(), Some(28) | Some(122)) => DicomErrorKind::OutOfResources,
            DicomStoreError::Staging(_) | DicomStoreError::Index(_) => DicomErrorKind::Unavailable,
        }
    }
}

impl From<sqlx::Error> for DicomStoreError {
    fn from(error: sqlx::Error) -> Self {
        DicomStoreError::Index(error.to_string())
    }
}
