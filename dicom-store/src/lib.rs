//! The DICOM archive: receives objects over DIMSE (C-STORE) and DICOMweb (STOW-RS), keeps them
//! in an object store with their SHA-256, indexes studies/series/instances for C-FIND and
//! QIDO-RS, and mirrors each study into the FHIR store as an ImagingStudy.

mod archive;
pub mod dicom_json;
mod dimse;
mod error;
mod fhir_mirror;
mod imaging_study;
mod index;
mod parse;
pub mod object_store;
mod query;
mod records;
mod staging;

pub use archive::{Archive, ArchiveConfig, ConflictPolicy, Expected, StoreOutcome, StoreStatus};
pub use dimse::{DimseConfig, DimseServer};
pub use error::{DicomErrorKind, DicomStoreError};
pub use imaging_study::{imaging_study_id, imaging_study_resource};
pub use query::{DateRange, DicomQuery, QueryLevel, TextMatch};
pub use records::{Attribute, IndexedInstance, QueryMatch, SeriesRecord, StudyRecord, StudySnapshot};
pub use staging::{StagedFile, StagedWriter, StagingArea};
