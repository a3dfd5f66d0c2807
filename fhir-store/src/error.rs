//! The error type of `fhir-store`.

/// What kind of failure a `StoreError` is; the server maps each kind to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// An `expected_version` did not match the current version (HTTP 409/412).
    VersionConflict,
    /// A create named an id that already exists (HTTP 409).
    AlreadyExists,
    /// A conditional operation's search matched more than one resource (HTTP 412).
    MultipleMatches,
    /// The search cannot be executed (bad cursor) (HTTP 400).
    InvalidQuery,
    /// The backend failed (I/O, database error, closed) (HTTP 500).
    Backend,
    /// The backend cannot be reached right now (no primary, network down); retrying later may
    /// succeed (HTTP 503).
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("version conflict on {resource_type}/{id}: expected version {expected}, current {current:?}")]
    VersionConflict { resource_type: String, id: String, expected: u64, current: Option<u64> },
    #[error("{resource_type}/{id} already exists")]
    AlreadyExists { resource_type: String, id: String },
    #[error("conditional {operation} matched {count} resources")]
    MultipleMatches { operation: &'static str, count: usize },
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("storage backend failed: {message}")]
    Backend { message: String, #[source] source: Option<Box<dyn std::error::Error + Send + Sync>> },
    #[error("storage backend unavailable: {message}")]
    Unavailable { message: String, #[source] source: Option<Box<dyn std::error::Error + Send + Sync>> },
}

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::VersionConflict { .. } => StoreErrorKind::VersionConflict,
            StoreError::AlreadyExists { .. } => StoreErrorKind::AlreadyExists,
            StoreError::MultipleMatches { .. } => StoreErrorKind::MultipleMatches,
            StoreError::InvalidQuery(_) => StoreErrorKind::InvalidQuery,
            StoreError::Backend { .. } => StoreErrorKind::Backend,
            StoreError::Unavailable { .. } => StoreErrorKind::Unavailable,
        }
    }

    pub fn backend(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend { message: message.into(), source: Some(Box::new(source)) }
    }
}
