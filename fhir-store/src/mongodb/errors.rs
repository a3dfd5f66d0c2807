//! What a MongoDB driver error means to the store: retry the transaction, retry the commit,
//! a duplicate key, an unreachable deployment (503), or a plain backend failure.

use mongodb::error::{Error, ErrorKind, WriteFailure, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};

use crate::StoreError;

/// Server error codes the store acts on.
pub(crate) mod code {
    pub(crate) const DUPLICATE_KEY: i32 = 11000;
    pub(crate) const WRITE_CONFLICT: i32 = 112;
    pub(crate) const NO_SUCH_TRANSACTION: i32 = 251;
    /// Codes of a deployment without a usable primary right now: `NotWritablePrimary`,
    /// `NotPrimaryNoSecondaryOk`, `NotPrimaryOrSecondary`, `PrimarySteppedDown`,
    /// `InterruptedAtShutdown`, `InterruptedDueToReplStateChange`, `ShutdownInProgress`,
    /// `HostUnreachable`, `HostNotFound`, `NetworkTimeout`, `SocketException`.
    pub(crate) const NO_PRIMARY: &[i32] = &[10107, 13435, 13436, 189, 11600, 11602, 91, 6, 7, 89, 9001];
}

/// The facts of a driver error the store decides on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) code: Option<i32>,
    pub(crate) labels: Vec<String>,
    /// No server could be reached or selected (network, DNS, pool cleared, selection timeout).
    pub(crate) unreachable: bool,
}

impl Facts {
    pub(crate) fn of(error: &Error) -> Facts {
        let (code, unreachable) = match error.kind.as_ref() {
            ErrorKind::Command(command) => (Some(command.code), false),
            ErrorKind::Write(WriteFailure::WriteError(write)) => (Some(write.code), false),
            ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => (Some(concern.code), false),
            ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. } => (None, true),
            _ => (None, false),
        };
        let mut labels: Vec<String> = error.labels().iter().cloned().collect();
        labels.sort_unstable();
        Facts { code, labels, unreachable }
    }

    fn has(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }
}

/// What to do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Abort and run the whole transaction again (`TransientTransactionError`, write conflict).
    RetryTransaction,
    /// Commit again: the commit may or may not have happened (`UnknownTransactionCommitResult`).
    RetryCommit,
    /// A unique index refused the write.
    DuplicateKey,
    /// The deployment cannot be reached or has no primary: 503, try later.
    Unavailable,
    /// Anything else: a backend failure.
    Failed,
}

pub(crate) fn classify(facts: &Facts) -> Class {
    if facts.has(UNKNOWN_TRANSACTION_COMMIT_RESULT) {
        Class::RetryCommit
    } else if facts.has(TRANSIENT_TRANSACTION_ERROR)
        || matches!(facts.code, Some(code::WRITE_CONFLICT) | Some(code::NO_SUCH_TRANSACTION))
    {
        Class::RetryTransaction
    } else if facts.code == Some(code::DUPLICATE_KEY) {
        Class::DuplicateKey
    } else if facts.unreachable || facts.code.is_some_and(|c| code::NO_PRIMARY.contains(&c)) {
        Class::Unavailable
    } else {
        Class::Failed
    }
}

/// Maps a driver error to a `StoreError` (`Unavailable` when the deployment cannot be reached,
/// else `Backend`), keeping it as the source.
pub(crate) fn store_error(context: &'static str) -> impl Fn(Error) -> StoreError {
    move |error| to_store_error(context, error)
}

pub(crate) fn to_store_error(context: &'static str, error: Error) -> StoreError {
    match classify(&Facts::of(&error)) {
        Class::Unavailable | Class::RetryTransaction | Class::RetryCommit => {
            StoreError::Unavailable { message: format!("{context}: MongoDB is not reachable"), source: Some(Box::new(error)) }
        }
        Class::DuplicateKey | Class::Failed => StoreError::backend(context, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreErrorKind;

    fn facts(code: Option<i32>, labels: &[&str], unreachable: bool) -> Facts {
        Facts { code, labels: labels.iter().map(|l| l.to_string()).collect(), unreachable }
    }

    #[test]
    fn transaction_errors_are_retried_as_the_driver_specifies() {
        assert_eq!(classify(&facts(Some(112), &["TransientTransactionError"], false)), Class::RetryTransaction);
        assert_eq!(classify(&facts(Some(112), &[], false)), Class::RetryTransaction);
        assert_eq!(classify(&facts(None, &["TransientTransactionError"], true)), Class::RetryTransaction);
        assert_eq!(classify(&facts(Some(251), &[], false)), Class::RetryTransaction);
        assert_eq!(classify(&facts(Some(50), &["UnknownTransactionCommitResult"], false)), Class::RetryCommit);
        // A commit error with both labels is retried as a commit first.
        let both = facts(Some(91), &["TransientTransactionError", "UnknownTransactionCommitResult"], false);
        assert_eq!(classify(&both), Class::RetryCommit);
    }

    #[test]
    fn duplicate_keys_outages_and_the_rest() {
        assert_eq!(classify(&facts(Some(11000), &[], false)), Class::DuplicateKey);
        assert_eq!(classify(&facts(None, &[], true)), Class::Unavailable);
        for code in [10107, 189, 91, 6, 89] {
            assert_eq!(classify(&facts(Some(code), &[], false)), Class::Unavailable, "code {code}");
        }
        assert_eq!(classify(&facts(Some(2), &[], false)), Class::Failed);
        assert_eq!(classify(&facts(None, &[], false)), Class::Failed);
    }

    #[test]
    fn driver_errors_map_to_store_error_kinds() {
        let io = Error::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
        assert!(Facts::of(&io).unreachable);
        let error = to_store_error("read resource", io);
        assert_eq!(error.kind(), StoreErrorKind::Unavailable);
        assert!(error.to_string().contains("read resource"), "{error}");
        let custom = Error::custom("odd");
        assert_eq!(Facts::of(&custom), Facts::default());
        assert_eq!(to_store_error("write", custom).kind(), StoreErrorKind::Backend);
    }
}
