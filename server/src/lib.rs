//! The Tessera server: settings, telemetry, the FHIR REST API, DICOMweb and start-up wiring. The only
//! crate that knows actix-web, and the one place where an error becomes an HTTP status.

mod bundle;
mod capability;
mod dicomweb;
mod error;
mod fhir_http;
mod hl7;
mod openapi;
mod projections;
mod routes;
mod search;
mod settings;
mod stats;
mod startup;
mod telemetry;

pub use openapi::registered_routes;
pub use settings::{DicomConflict, S3Encryption, Settings, SettingsError};
pub use projections::Projections;
pub use startup::{Application, StartupError};
pub use telemetry::{init_telemetry, TelemetryGuard};
