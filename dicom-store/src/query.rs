//! `DicomQuery`: the matching keys C-FIND and QIDO-RS support, parsed once from DICOM matching
//! strings (wildcards, date ranges, UID lists) whatever protocol they came in.

use dicom_core::Tag;
use dicom_dictionary_std::tags;

use crate::DicomStoreError;

/// The level a query answers at (Study Root information model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryLevel {
    Study,
    Series,
    Instance,
}

impl QueryLevel {
    /// From a C-FIND QueryRetrieveLevel value (`STUDY`, `SERIES`, `IMAGE`/`INSTANCE`).
    pub fn from_dicom(value: &str) -> Result<QueryLevel, DicomStoreError> {
        match value.trim().to_ascii_uppercase().as_str() {
            "STUDY" => Ok(QueryLevel::Study),
            "SERIES" => Ok(QueryLevel::Series),
            "IMAGE" | "INSTANCE" => Ok(QueryLevel::Instance),
            other => Err(DicomStoreError::InvalidQuery(format!("unsupported QueryRetrieveLevel {other:?}"))),
        }
    }
}

/// A single-value match: exact, or with `*`/`?` wildcards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextMatch {
    Exact(String),
    /// A pattern with `*` (any run) and `?` (one character).
    Wildcard(String),
}

impl TextMatch {
    fn parse(value: &str) -> Option<TextMatch> {
        let value = value.trim();
        if value.is_empty() || value == "*" {
            return None; // universal match
        }
        if value.contains(['*', '?']) {
            Some(TextMatch::Wildcard(value.to_string()))
        } else {
            Some(TextMatch::Exact(value.to_string()))
        }
    }

    /// The SQL LIKE pattern for this match, with `\` as escape.
    pub fn like_pattern(&self) -> String {
        let source = match self {
            TextMatch::Exact(v) | TextMatch::Wildcard(v) => v,
        };
        let mut out = String::with_capacity(source.len());
        for c in source.chars() {
            match (c, self) {
                ('*', TextMatch::Wildcard(_)) => out.push('%'),
                ('?', TextMatch::Wildcard(_)) => out.push('_'),
                ('%' | '_' | '\\', _) => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        out
    }
}

/// A date range `YYYYMMDD-YYYYMMDD`, open at either end, or one date. Dates compare as strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateRange {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl DateRange {
    fn parse(value: &str) -> Result<Option<DateRange>, DicomStoreError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let (from, to) = match value.split_once('-') {
            Some((from, to)) => (from.trim(), to.trim()),
            None => (value, value),
        };
        let check = |d: &str| -> Result<Option<String>, DicomStoreError> {
            // YYYYMMDD, or the pre-3.0 YYYY.MM.DD form.
            let digits: String = d.chars().filter(|c| *c != '.').collect();
            if d.is_empty() {
                Ok(None)
            } else if digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(Some(digits))
            } else {
                Err(DicomStoreError::InvalidQuery(format!("{value:?} is not a DICOM date or date range (YYYYMMDD[-YYYYMMDD])")))
            }
        };
        let range = DateRange { from: check(from)?, to: check(to)? };
        if range.from.is_none() && range.to.is_none() {
            return Err(DicomStoreError::InvalidQuery(format!("{value:?} is not a date range")));
        }
        Ok(Some(range))
    }
}

/// A query against the index. Empty fields match everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DicomQuery {
    pub level: QueryLevel,
    pub patient_id: Option<TextMatch>,
    /// Matched case-insensitively, with wildcards, against the whole name and, for an exact
    /// value, as a prefix of any name component.
    pub patient_name: Option<TextMatch>,
    pub study_date: Option<DateRange>,
    pub accession_number: Option<TextMatch>,
    /// Studies having a series of any of these modalities.
    pub modalities_in_study: Vec<String>,
    pub study_instance_uid: Vec<String>,
    pub series_instance_uid: Vec<String>,
    pub sop_instance_uid: Vec<String>,
    pub modality: Option<TextMatch>,
    pub limit: Option<u32>,
    pub offset: u32,
}

impl DicomQuery {
    pub fn new(level: QueryLevel) -> DicomQuery {
        DicomQuery {
            level,
            patient_id: None,
            patient_name: None,
            study_date: None,
            accession_number: None,
            modalities_in_study: Vec::new(),
            study_instance_uid: Vec::new(),
            series_instance_uid: Vec::new(),
            sop_instance_uid: Vec::new(),
            modality: None,
            limit: None,
            offset: 0,
        }
    }

    /// The tags `add_match` understands as matching keys.
    pub const MATCHING_TAGS: &'static [Tag] = &[
        tags::PATIENT_ID,
        tags::PATIENT_NAME,
        tags::STUDY_DATE,
        tags::ACCESSION_NUMBER,
        tags::MODALITIES_IN_STUDY,
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
        tags::MODALITY,
    ];

    /// Adds a matching key from its DICOM matching string. Returns Ok(false) for a tag that is
    /// not a supported matching key (callers return it without matching on it); an empty
    /// value is universal matching.
    pub fn add_match(&mut self, tag: Tag, value: &str) -> Result<bool, DicomStoreError> {
        let list = |value: &str| -> Vec<String> {
            value.split(['\\', ',']).map(|v| v.trim().to_string()).filter(|v| !v.is_empty() && v != "*").collect()
        };
        match tag {
            tags::PATIENT_ID => self.patient_id = TextMatch::parse(value),
            tags::PATIENT_NAME => self.patient_name = TextMatch::parse(value),
            tags::STUDY_DATE => self.study_date = DateRange::parse(value)?,
            tags::ACCESSION_NUMBER => self.accession_number = TextMatch::parse(value),
            tags::MODALITIES_IN_STUDY => self.modalities_in_study = list(value),
            tags::STUDY_INSTANCE_UID => self.study_instance_uid = list(value),
            tags::SERIES_INSTANCE_UID => self.series_instance_uid = list(value),
            tags::SOP_INSTANCE_UID => self.sop_instance_uid = list(value),
            tags::MODALITY => self.modality = TextMatch::parse(value),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_like_patterns_and_literals_are_escaped() {
        assert_eq!(TextMatch::parse("DOE^J*").unwrap().like_pattern(), "DOE^J%");
        assert_eq!(TextMatch::parse("A?C").unwrap().like_pattern(), "A_C");
        assert_eq!(TextMatch::parse("50%_off").unwrap().like_pattern(), "50\\%\\_off");
        assert_eq!(TextMatch::parse("*"), None);
        assert_eq!(TextMatch::parse("  "), None);
    }

    #[test]
    fn date_ranges_open_at_either_end() {
        let r = |v: &str| DateRange::parse(v).unwrap().unwrap();
        assert_eq!(r("20200101-20201231"), DateRange { from: Some("20200101".into()), to: Some("20201231".into()) });
        assert_eq!(r("-20201231"), DateRange { from: None, to: Some("20201231".into()) });
        assert_eq!(r("20200101-"), DateRange { from: Some("20200101".into()), to: None });
        assert_eq!(r("20200101"), DateRange { from: Some("20200101".into()), to: Some("20200101".into()) });
        assert!(DateRange::parse("2020").is_err());
        assert!(DateRange::parse("-").is_err());
    }

    #[test]
    fn uid_lists_split_on_backslash_and_comma() {
        let mut q = DicomQuery::new(QueryLevel::Study);
        assert!(q.add_match(tags::STUDY_INSTANCE_UID, "1.2\\1.3,1.4").unwrap());
        assert_eq!(q.study_instance_uid, vec!["1.2", "1.3", "1.4"]);
        assert!(!q.add_match(tags::ROWS, "512").unwrap());
    }
}
