//! The object store contract the archive writes DICOM files to, and its two implementations:
//! a local directory (the default) and S3.

mod local;
mod s3;

pub use local::LocalObjectStore;
pub use s3::{LifecycleTiers, S3ObjectStore, S3Settings, ServerSideEncryption};

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// Where an object lives in the store, e.g. `dicom/PAT1/1.2.3/1.2.3.4/1.2.3.4.5.dcm`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// A key from an already key-safe string (see `ObjectKey::for_instance`).
    pub fn new(key: impl Into<String>) -> ObjectKey {
        ObjectKey(key.into())
    }

    /// The key of one instance: `dicom/{PatientID}/{Study}/{Series}/{SOP}.dcm`, each part made
    /// key-safe (see `key_safe`).
    pub fn for_instance(patient_id: &str, study_uid: &str, series_uid: &str, sop_instance_uid: &str) -> ObjectKey {
        ObjectKey(format!(
            "dicom/{}/{}/{}/{}.dcm",
            key_safe(patient_id),
            key_safe(study_uid),
            key_safe(series_uid),
            key_safe(sop_instance_uid)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One path segment that is safe as an S3 key part and a file name on every platform: ASCII
/// letters, digits, `.`, `-` and `_` are kept; every other byte becomes `%XX`; an empty value
/// (no PatientID) becomes `_`, and `.`/`..` are escaped so a segment never walks up a directory.
pub fn key_safe(value: &str) -> String {
    let value = value.trim();
    if value.is_empty() {
        return "_".to_string();
    }
    if value == "." || value == ".." {
        return value.replace('.', "%2E");
    }
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// What the store knows about one stored object without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    /// Lower-case hex SHA-256 of the object's bytes, as recorded when it was written.
    pub sha256: String,
    /// The storage class (`STANDARD`, `STANDARD_IA`, `GLACIER`, `DEEP_ARCHIVE`, …); `STANDARD`
    /// for the local store.
    pub storage_class: String,
}

/// A restore request's state for an archived object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreState {
    /// A restore was started now or is already running.
    InProgress,
    /// The object is readable (not archived, or already restored).
    Available,
}

/// Failures of an object store. `kind()` says how callers answer them.
#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("object {0} not found")]
    NotFound(ObjectKey),
    /// The object is in an archive tier and must be restored before it can be read.
    #[error("object {key} is archived in {storage_class}; request a restore and retry when it completes")]
    Archived { key: ObjectKey, storage_class: String },
    /// The bytes read do not hash to the SHA-256 recorded when they were written.
    #[error("object {key} failed verification: recorded SHA-256 {expected}, read {actual}")]
    Integrity { key: ObjectKey, expected: String, actual: String },
    /// The store is out of space or refused the write for lack of resources.
    #[error("object store out of resources: {0}")]
    OutOfResources(String),
    /// The store could not be reached or answered with an error.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
}

/// An object's bytes as read, with the SHA-256 (lower-case hex) computed over them while they
/// were verified, so a caller holding its own record compares instead of hashing again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectBytes {
    pub bytes: Bytes,
    pub sha256: String,
}

/// Stores whole objects under keys. Every method is safe to call concurrently.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores the file at `source` under `key`, with `sha256` (lower-case hex, of the file's
    /// bytes) in the object's metadata. Returns only once the object is durable. Overwrites an
    /// existing object under the same key.
    async fn put_file(&self, key: &ObjectKey, source: &Path, size: u64, sha256: &str) -> Result<(), ObjectStoreError>;

    /// Reads a whole object and verifies it against its recorded SHA-256: a mismatch is
    /// `Integrity`, never data. (An object whose record was lost outside Tessera, e.g. copied
    /// without xattrs, is returned with a warning; `Archive::read` checks every object against
    /// the index's SHA-256 as well, with the hash returned here.) An object in
    /// GLACIER/DEEP_ARCHIVE that is not restored is `Archived`.
    async fn get(&self, key: &ObjectKey) -> Result<ObjectBytes, ObjectStoreError>;

    /// Size, SHA-256 and storage class, or None when there is no such object.
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectHead>, ObjectStoreError>;

    /// A URL anyone can GET the object from until `expires_in` has passed; None when the store
    /// has no such thing (the local directory).
    async fn presigned_get(&self, key: &ObjectKey, expires_in: Duration) -> Result<Option<String>, ObjectStoreError>;

    /// Asks for an archived object to be restored for `days` days.
    async fn request_restore(&self, key: &ObjectKey, days: u32) -> Result<RestoreState, ObjectStoreError>;

    /// A short description for logs, e.g. `s3://bucket` or the directory.
    fn describe(&self) -> String;
}
