//! The errors of `hl7-bridge`: what went wrong with a message, coded by HL7 table 0357 and
//! located in the message, so that it can be reported in an ERR segment.

use crate::message::Location;

/// HL7 table 0357 (message error condition codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    SegmentSequence,
    RequiredFieldMissing,
    DataType,
    TableValueNotFound,
    ValueTooLong,
    UnsupportedMessageType,
    UnsupportedEventCode,
    UnsupportedProcessingId,
    UnsupportedVersionId,
    UnknownKeyIdentifier,
    DuplicateKeyIdentifier,
    ApplicationRecordLocked,
    ApplicationInternalError,
}

impl ErrorCode {
    /// The table 0357 code, e.g. `101`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "100",
            ErrorCode::RequiredFieldMissing => "101",
            ErrorCode::DataType => "102",
            ErrorCode::TableValueNotFound => "103",
            ErrorCode::ValueTooLong => "104",
            ErrorCode::UnsupportedMessageType => "200",
            ErrorCode::UnsupportedEventCode => "201",
            ErrorCode::UnsupportedProcessingId => "202",
            ErrorCode::UnsupportedVersionId => "203",
            ErrorCode::UnknownKeyIdentifier => "204",
            ErrorCode::DuplicateKeyIdentifier => "205",
            ErrorCode::ApplicationRecordLocked => "206",
            ErrorCode::ApplicationInternalError => "207",
        }
    }

    /// The table 0357 display text.
    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::ValueTooLong => "Value too long",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKeyIdentifier => "Unknown key identifier",
            ErrorCode::DuplicateKeyIdentifier => "Duplicate key identifier",
            ErrorCode::ApplicationRecordLocked => "Application record locked",
            ErrorCode::ApplicationInternalError => "Application internal error",
        }
    }

    /// Whether the error rejects the message as a whole (AR/CR) rather than its content
    /// (AE/CE): the header names something this receiver does not take.
    pub fn rejects(self) -> bool {
        matches!(
            self,
            ErrorCode::UnsupportedMessageType
                | ErrorCode::UnsupportedEventCode
                | ErrorCode::UnsupportedProcessingId
                | ErrorCode::UnsupportedVersionId
        )
    }
}

/// One problem with one message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} ({}){}: {message}", code.text(), code.code(), location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
pub struct Hl7Error {
    pub code: ErrorCode,
    /// Where the bad value is; None when the message as a whole is at fault.
    pub location: Option<Location>,
    /// A sentence for the sender's interface engineer.
    pub message: String,
}

impl Hl7Error {
    pub fn new(code: ErrorCode, location: Option<Location>, message: impl Into<String>) -> Hl7Error {
        Hl7Error { code, location, message: message.into() }
    }

    /// A required value is missing at `location`.
    pub fn missing(location: Location, what: &str) -> Hl7Error {
        Hl7Error::new(ErrorCode::RequiredFieldMissing, Some(location), format!("{what} is required"))
    }

    /// The value at `location` is not of its data type.
    pub fn data_type(location: Location, message: impl Into<String>) -> Hl7Error {
        Hl7Error::new(ErrorCode::DataType, Some(location), message)
    }

    /// The value at `location` is not in the HL7 table it must come from.
    pub fn table_value(location: Location, table: &str, value: &str) -> Hl7Error {
        Hl7Error::new(ErrorCode::TableValueNotFound, Some(location), format!("{value:?} is not a value of HL7 table {table}"))
    }
}
