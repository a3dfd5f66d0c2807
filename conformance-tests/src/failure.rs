//! Why a case failed: one message that says what was expected and what came back.

use std::fmt;

/// A failed expectation, or a request that could not be made at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFailure {
    message: String,
}

/// What every case returns.
pub type CaseResult = Result<(), CaseFailure>;

impl CaseFailure {
    pub fn new(message: impl Into<String>) -> Self {
        CaseFailure { message: message.into() }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with what the case was doing, e.g. `update 2: ...`.
    pub fn context(self, what: impl fmt::Display) -> Self {
        CaseFailure { message: format!("{what}: {}", self.message) }
    }
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CaseFailure {}

/// Returns a `CaseFailure` from the enclosing function, formatted like `format!`.
macro_rules! fail {
    ($($arg:tt)+) => {
        return Err($crate::failure::CaseFailure::new(format!($($arg)+)))
    };
}

/// Fails the case with the formatted message unless the condition holds.
macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            fail!($($arg)+);
        }
    };
}
