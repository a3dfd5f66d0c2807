//! HL7 v2 bridge: receives v2 messages over MLLP, parses them safely (around `hl7-parser`),
//! maps ADT and ORU to FHIR R4 resources, commits the raw message and the resources in one
//! atomic store write, and only then answers with the ACK.

mod ack;
mod error;
mod message;
mod parse;
mod receiver;
mod record;

pub mod datetime;
pub mod map;
pub mod mllp;

pub use ack::{build_ack, AckCode, AckMode, Condition, Verdict};
pub use receiver::{Receipt, Receiver, ReceiverOptions, UnmappedMessages};
pub use record::{log_search_params, ReceivedMessage, Status, CONTROL_ID_SYSTEM};
pub use error::{ErrorCode, Hl7Error};
pub use parse::{decode_escapes, encode_escapes, parse, sniff_header, RawHeader};
pub use message::{is_null, Charset, Component, Delimiters, Field, Location, Message, Repetition, Segment};
