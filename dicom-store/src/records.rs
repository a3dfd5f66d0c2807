//! What the index knows about studies, series and instances, and how each record reads as
//! DICOM attributes (the one list both C-FIND responses and QIDO-RS JSON are built from).

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;

use crate::object_store::ObjectKey;

/// One DICOM attribute with its values as strings (numbers in their decimal form, person names
/// in DICOM `^` form). An empty `values` is an attribute present without a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub tag: Tag,
    pub vr: VR,
    pub values: Vec<String>,
}

impl Attribute {
    fn new(tag: Tag, vr: VR, value: &str) -> Attribute {
        let values = if value.is_empty() { Vec::new() } else { vec![value.to_string()] };
        Attribute { tag, vr, values }
    }

    fn many(tag: Tag, vr: VR, values: &[String]) -> Attribute {
        Attribute { tag, vr, values: values.to_vec() }
    }

    fn number(tag: Tag, vr: VR, value: Option<i64>) -> Attribute {
        Attribute { tag, vr, values: value.map(|v| v.to_string()).into_iter().collect() }
    }
}

/// Everything indexed about one stored instance: the patient/study/series attributes it carries
/// and where its bytes are. This is what one C-STORE or STOW-RS part adds to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedInstance {
    pub patient_id: String,
    /// Issuer of Patient ID (0010,0021), empty when absent.
    pub issuer_of_patient_id: String,
    pub patient_name: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_instance_uid: String,
    pub study_date: String,
    pub study_time: String,
    pub accession_number: String,
    pub study_description: String,
    pub study_id: String,
    pub referring_physician_name: String,
    pub series_instance_uid: String,
    pub modality: String,
    pub series_number: Option<i64>,
    pub series_description: String,
    pub body_part_examined: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub instance_number: Option<i64>,
    pub transfer_syntax_uid: String,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub number_of_frames: Option<i64>,
    pub object_key: ObjectKey,
    /// Lower-case hex SHA-256 of the stored Part 10 file.
    pub sha256: String,
    pub size: u64,
    /// RFC 3339 time the instance was stored.
    pub stored_at: String,
}

/// A study as QIDO-RS and C-FIND at STUDY level see it: its first instance's study attributes
/// plus what is computed over all its instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StudyRecord {
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient_name: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_instance_uid: String,
    pub study_date: String,
    pub study_time: String,
    pub accession_number: String,
    pub study_description: String,
    pub study_id: String,
    pub referring_physician_name: String,
    /// Distinct modalities of its series, sorted.
    pub modalities_in_study: Vec<String>,
    pub number_of_series: i64,
    pub number_of_instances: i64,
}

/// A series at SERIES level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesRecord {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub modality: String,
    pub series_number: Option<i64>,
    pub series_description: String,
    pub body_part_examined: String,
    pub number_of_instances: i64,
}

/// One row of a query's answer, at the query's level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryMatch {
    Study(StudyRecord),
    Series(SeriesRecord),
    Instance(IndexedInstance),
}

/// One study with its series and their instances, in series/instance number order: what the
/// ImagingStudy mapper reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StudySnapshot {
    pub study: StudyRecord,
    pub series: Vec<(SeriesRecord, Vec<IndexedInstance>)>,
}

impl StudyRecord {
    pub fn attributes(&self) -> Vec<Attribute> {
        vec![
            Attribute::new(tags::STUDY_DATE, VR::DA, &self.study_date),
            Attribute::new(tags::STUDY_TIME, VR::TM, &self.study_time),
            Attribute::new(tags::ACCESSION_NUMBER, VR::SH, &self.accession_number),
            Attribute::many(tags::MODALITIES_IN_STUDY, VR::CS, &self.modalities_in_study),
            Attribute::new(tags::REFERRING_PHYSICIAN_NAME, VR::PN, &self.referring_physician_name),
            Attribute::new(tags::STUDY_DESCRIPTION, VR::LO, &self.study_description),
            Attribute::new(tags::PATIENT_NAME, VR::PN, &self.patient_name),
            Attribute::new(tags::PATIENT_ID, VR::LO, &self.patient_id),
            Attribute::new(tags::ISSUER_OF_PATIENT_ID, VR::LO, &self.issuer_of_patient_id),
            Attribute::new(tags::PATIENT_BIRTH_DATE, VR::DA, &self.patient_birth_date),
            Attribute::new(tags::PATIENT_SEX, VR::CS, &self.patient_sex),
            Attribute::new(tags::STUDY_INSTANCE_UID, VR::UI, &self.study_instance_uid),
            Attribute::new(tags::STUDY_ID, VR::SH, &self.study_id),
            Attribute::number(tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, Some(self.number_of_series)),
            Attribute::number(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, Some(self.number_of_instances)),
        ]
    }
}

impl SeriesRecord {
    pub fn attributes(&self) -> Vec<Attribute> {
        vec![
            Attribute::new(tags::MODALITY, VR::CS, &self.modality),
            Attribute::new(tags::SERIES_DESCRIPTION, VR::LO, &self.series_description),
            Attribute::new(tags::BODY_PART_EXAMINED, VR::CS, &self.body_part_examined),
            Attribute::new(tags::STUDY_INSTANCE_UID, VR::UI, &self.study_instance_uid),
            Attribute::new(tags::SERIES_INSTANCE_UID, VR::UI, &self.series_instance_uid),
            Attribute::number(tags::SERIES_NUMBER, VR::IS, self.series_number),
            Attribute::number(tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, Some(self.number_of_instances)),
        ]
    }
}

impl IndexedInstance {
    /// Its own attributes and its patient's, study's and series' (without the study and series
    /// aggregates, which one instance does not know): a QIDO-RS search for all instances answers
    /// with those, and a C-FIND SCU may ask an IMAGE-level query for PatientID or Modality.
    pub fn attributes(&self) -> Vec<Attribute> {
        const AGGREGATES: [Tag; 4] = [
            tags::MODALITIES_IN_STUDY,
            tags::NUMBER_OF_STUDY_RELATED_SERIES,
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        ];
        let mut attributes: Vec<Attribute> = self
            .study_record()
            .attributes()
            .into_iter()
            .chain(self.series_record().attributes())
            .filter(|a| !AGGREGATES.contains(&a.tag))
            .chain([
                Attribute::new(tags::SOP_CLASS_UID, VR::UI, &self.sop_class_uid),
                Attribute::new(tags::SOP_INSTANCE_UID, VR::UI, &self.sop_instance_uid),
                Attribute::new(tags::AVAILABLE_TRANSFER_SYNTAX_UID, VR::UI, &self.transfer_syntax_uid),
                Attribute::number(tags::INSTANCE_NUMBER, VR::IS, self.instance_number),
                Attribute::number(tags::ROWS, VR::US, self.rows),
                Attribute::number(tags::COLUMNS, VR::US, self.columns),
                Attribute::number(tags::NUMBER_OF_FRAMES, VR::IS, self.number_of_frames),
            ])
            .collect();
        attributes.sort_by_key(|a| a.tag);
        attributes.dedup_by_key(|a| a.tag);
        attributes
    }

    /// The study-level record of this one instance.
    fn study_record(&self) -> StudyRecord {
        StudyRecord {
            patient_id: self.patient_id.clone(),
            issuer_of_patient_id: self.issuer_of_patient_id.clone(),
            patient_name: self.patient_name.clone(),
            patient_birth_date: self.patient_birth_date.clone(),
            patient_sex: self.patient_sex.clone(),
            study_instance_uid: self.study_instance_uid.clone(),
            study_date: self.study_date.clone(),
            study_time: self.study_time.clone(),
            accession_number: self.accession_number.clone(),
            study_description: self.study_description.clone(),
            study_id: self.study_id.clone(),
            referring_physician_name: self.referring_physician_name.clone(),
            modalities_in_study: Vec::new(),
            number_of_series: 1,
            number_of_instances: 1,
        }
    }

    /// The series-level record of this one instance.
    fn series_record(&self) -> SeriesRecord {
        SeriesRecord {
            study_instance_uid: self.study_instance_uid.clone(),
            series_instance_uid: self.series_instance_uid.clone(),
            modality: self.modality.clone(),
            series_number: self.series_number,
            series_description: self.series_description.clone(),
            body_part_examined: self.body_part_examined.clone(),
            number_of_instances: 1,
        }
    }
}

impl QueryMatch {
    /// The attributes this match answers with, sorted by tag.
    pub fn attributes(&self) -> Vec<Attribute> {
        let mut attributes = match self {
            QueryMatch::Study(study) => study.attributes(),
            QueryMatch::Series(series) => series.attributes(),
            QueryMatch::Instance(instance) => instance.attributes(),
        };
        attributes.sort_by_key(|a| a.tag);
        attributes
    }
}
