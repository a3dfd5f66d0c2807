//! The ImagingStudy mapper: one study's index snapshot as a FHIR R4 ImagingStudy.

use serde_json::Value;

use crate::StudySnapshot;

pub fn imaging_study_resource(snapshot: &StudySnapshot, patient_reference: &str, dicomweb_base_url: &str) -> Value {
    let _ = (snapshot, patient_reference, dicomweb_base_url);
    todo!()
}
