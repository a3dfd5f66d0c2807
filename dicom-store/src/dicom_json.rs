//! DICOM JSON (PS3.18 F.2): attributes and whole datasets as JSON, bulk data as BulkDataURIs.
