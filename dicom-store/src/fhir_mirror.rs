//! The FHIR mirror: keeps one ImagingStudy per study in the FHIR store, linked to its Patient.
