//! Reading a staged Part 10 file's identifying attributes, and the checks an object must pass
//! before it is stored: the whole dataset must parse (a truncated file fails here), its UIDs must
//! be present and agree with the file meta group.

use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};

use crate::object_store::ObjectKey;
use crate::{DicomStoreError, IndexedInstance};

/// Reads the file's meta group and attributes and returns the index row it would get (the
/// storage fields `object_key`, `size` and `stored_at` are filled in here too; `sha256` is left
/// empty for the archive, which hashes the file while this parses it).
pub(crate) fn read_instance(path: &Path, size: u64) -> Result<IndexedInstance, DicomStoreError> {
    // The whole dataset, pixel data included: only a complete parse proves the file is not cut
    // short. One object per association is in memory at a time.
    let object = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| DicomStoreError::InvalidObject(e.to_string()))?;
    let meta = object.meta();
    let text = |tag: Tag| text_of(&object, tag);
    let number = |tag: Tag| text_of(&object, tag).split('\\').next().and_then(|v| v.trim().parse::<i64>().ok());
    let unsigned = |tag: Tag| {
        object.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<u16>().ok()).map(i64::from)
    };

    let sop_class_uid = required_uid(&object, tags::SOP_CLASS_UID)?;
    let sop_instance_uid = required_uid(&object, tags::SOP_INSTANCE_UID)?;
    let study_instance_uid = required_uid(&object, tags::STUDY_INSTANCE_UID)?;
    let series_instance_uid = required_uid(&object, tags::SERIES_INSTANCE_UID)?;
    let meta_class = trim_uid(meta.media_storage_sop_class_uid());
    let meta_instance = trim_uid(meta.media_storage_sop_instance_uid());
    if meta_class != sop_class_uid {
        return Err(DicomStoreError::SopClassMismatch(format!(
            "the file meta says SOP class {meta_class} but the dataset is {sop_class_uid}"
        )));
    }
    if meta_instance != sop_instance_uid {
        return Err(DicomStoreError::InvalidObject(format!(
            "the file meta says SOP instance {meta_instance} but the dataset is {sop_instance_uid}"
        )));
    }
    let patient_id = text(tags::PATIENT_ID);
    let object_key = ObjectKey::for_instance(&patient_id, &study_instance_uid, &series_instance_uid, &sop_instance_uid);
    Ok(IndexedInstance {
        issuer_of_patient_id: text(tags::ISSUER_OF_PATIENT_ID),
        patient_name: text(tags::PATIENT_NAME),
        patient_birth_date: text(tags::PATIENT_BIRTH_DATE),
        patient_sex: text(tags::PATIENT_SEX),
        study_date: text(tags::STUDY_DATE),
        study_time: text(tags::STUDY_TIME),
        accession_number: text(tags::ACCESSION_NUMBER),
        study_description: text(tags::STUDY_DESCRIPTION),
        study_id: text(tags::STUDY_ID),
        referring_physician_name: text(tags::REFERRING_PHYSICIAN_NAME),
        modality: text(tags::MODALITY),
        series_number: number(tags::SERIES_NUMBER),
        series_description: text(tags::SERIES_DESCRIPTION),
        body_part_examined: text(tags::BODY_PART_EXAMINED),
        instance_number: number(tags::INSTANCE_NUMBER),
        transfer_syntax_uid: trim_uid(meta.transfer_syntax()),
        rows: unsigned(tags::ROWS),
        columns: unsigned(tags::COLUMNS),
        number_of_frames: number(tags::NUMBER_OF_FRAMES),
        patient_id,
        study_instance_uid,
        series_instance_uid,
        sop_class_uid,
        sop_instance_uid,
        object_key,
        sha256: String::new(),
        size,
        stored_at: now_rfc3339(),
    })
}

fn trim_uid(uid: &str) -> String {
    uid.trim_end_matches(['\0', ' ']).to_string()
}

/// A string attribute's value with DICOM padding removed; empty when absent or not text.
fn text_of(object: &DefaultDicomObject, tag: Tag) -> String {
    match object.element_opt(tag) {
        Ok(Some(element)) => element.to_str().map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string()).unwrap_or_default(),
        _ => String::new(),
    }
}

fn required_uid(object: &DefaultDicomObject, tag: Tag) -> Result<String, DicomStoreError> {
    let value = trim_uid(&text_of(object, tag));
    let valid = !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if valid {
        Ok(value)
    } else if value.is_empty() {
        Err(DicomStoreError::InvalidObject(format!("the dataset has no {}", tag_name(tag))))
    } else {
        Err(DicomStoreError::InvalidObject(format!("{} {value:?} is not a valid UID", tag_name(tag))))
    }
}

fn tag_name(tag: Tag) -> &'static str {
    match tag {
        tags::SOP_CLASS_UID => "SOPClassUID (0008,0016)",
        tags::SOP_INSTANCE_UID => "SOPInstanceUID (0008,0018)",
        tags::STUDY_INSTANCE_UID => "StudyInstanceUID (0020,000D)",
        tags::SERIES_INSTANCE_UID => "SeriesInstanceUID (0020,000E)",
        _ => "attribute",
    }
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
