//! DICOM JSON (PS3.18 F.2): attributes and whole datasets as JSON, bulk data as BulkDataURIs,
//! and the way back from a BulkDataURI's tag path to the element's bytes.
//!
//! Values follow F.2.3: PN as `{"Alphabetic", "Ideographic", "Phonetic"}` objects; IS, DS, US,
//! UL, UV, SS, SL, SV, FL and FD as JSON numbers (a value that is not a number is kept as a
//! string rather than dropped; non-finite floats are the strings `NaN`, `INF`, `-INF`); AT as
//! `GGGGEEEE`; an empty value in a multi-valued attribute as `null`; an attribute without a
//! value has no `"Value"`. Group length elements (`gggg,0000`) are left out, as F.2 says.
//!
//! Binary values (OB, OD, OF, OL, OV, OW, UN) of at most [`INLINE_BINARY_MAX`] bytes are
//! written inline (`InlineBinary`, base64 of the little-endian bytes); larger ones, every pixel
//! data element (Pixel Data, Float and Double Float Pixel Data) and every encapsulated value
//! get a `BulkDataURI` built by the caller from the element's [`TagPathPart`]s, so the
//! metadata of an image never carries its pixels.

use std::path::Path;

use base64::Engine;
use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use serde_json::{json, Map, Number, Value};

use crate::{Attribute, DicomStoreError};

/// Binary values up to this many bytes are written as `InlineBinary`; longer ones (and all
/// pixel data) as a `BulkDataURI`.
pub const INLINE_BINARY_MAX: usize = 64;

/// One step from a dataset's root to an element: the element's tag and, for a step into a
/// sequence, the (0-based) item. Every step but the last has an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TagPathPart {
    pub tag: Tag,
    pub item: Option<u32>,
}

/// A tag path as one URL segment: tags (`GGGGEEEE`, upper-case hex) and item indices
/// alternating, joined by `.`, e.g. `7FE00010` or `00400275.0.00081030`.
pub fn format_tag_path(path: &[TagPathPart]) -> String {
    let mut out = String::new();
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(&tag_key(part.tag));
        if let Some(item) = part.item {
            out.push_str(&format!(".{item}"));
        }
    }
    out
}

/// Reads a tag path written by [`format_tag_path`]; None when it is not one.
pub fn parse_tag_path(text: &str) -> Option<Vec<TagPathPart>> {
    let steps: Vec<&str> = text.split('.').collect();
    if steps.len().is_multiple_of(2) {
        return None;
    }
    let mut path = Vec::new();
    for pair in steps.chunks(2) {
        let tag = parse_tag(pair[0])?;
        let item = match pair.get(1) {
            Some(index) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => Some(index.parse().ok()?),
            Some(_) => return None,
            None => None,
        };
        path.push(TagPathPart { tag, item });
    }
    Some(path)
}

/// `GGGGEEEE` (8 hex digits, either case) as a tag.
pub fn parse_tag(text: &str) -> Option<Tag> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let group = u16::from_str_radix(&text[..4], 16).ok()?;
    let element = u16::from_str_radix(&text[4..], 16).ok()?;
    Some(Tag(group, element))
}

/// The DICOM JSON key of a tag: 8 upper-case hex digits.
pub fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// The attributes of an index record (QIDO-RS) as one DICOM JSON object.
pub fn attributes_to_json(attributes: &[Attribute]) -> Value {
    let mut object = Map::new();
    for attribute in attributes {
        let mut entry = Map::new();
        entry.insert("vr".into(), json!(attribute.vr.to_string()));
        let values: Vec<Value> = attribute.values.iter().map(|v| text_value(attribute.vr, v)).collect();
        if values.iter().any(|v| !v.is_null()) {
            entry.insert("Value".into(), Value::Array(values));
        }
        object.insert(tag_key(attribute.tag), Value::Object(entry));
    }
    Value::Object(object)
}

/// A whole dataset as DICOM JSON (WADO-RS metadata). `bulk_data_uri` makes the URI of the
/// element at a tag path.
pub fn dataset_to_json(obj: &InMemDicomObject, bulk_data_uri: &dyn Fn(&[TagPathPart]) -> String) -> Value {
    let mut path = Vec::new();
    dataset_json(obj, &mut path, bulk_data_uri)
}

fn dataset_json(obj: &InMemDicomObject, path: &mut Vec<TagPathPart>, uri: &dyn Fn(&[TagPathPart]) -> String) -> Value {
    let mut object = Map::new();
    for element in obj.iter() {
        let tag = element.header().tag;
        if tag.element() == 0x0000 {
            continue; // group length
        }
        path.push(TagPathPart { tag, item: None });
        object.insert(tag_key(tag), Value::Object(element_json(element, path, uri)));
        path.pop();
    }
    Value::Object(object)
}

fn element_json(
    element: &InMemElement,
    path: &mut Vec<TagPathPart>,
    uri: &dyn Fn(&[TagPathPart]) -> String,
) -> Map<String, Value> {
    let vr = element.vr();
    let mut entry = Map::new();
    entry.insert("vr".into(), json!(vr.to_string()));
    match element.value() {
        DicomValue::Sequence(sequence) => {
            let mut items = Vec::new();
            for (index, item) in sequence.items().iter().enumerate() {
                if let Some(last) = path.last_mut() {
                    last.item = Some(index as u32);
                }
                items.push(dataset_json(item, path, uri));
            }
            if let Some(last) = path.last_mut() {
                last.item = None;
            }
            if !items.is_empty() {
                entry.insert("Value".into(), Value::Array(items));
            }
        }
        DicomValue::PixelSequence(_) => {
            entry.insert("BulkDataURI".into(), json!(uri(path)));
        }
        DicomValue::Primitive(value) => {
            if matches!(value, PrimitiveValue::Empty) {
                return entry;
            }
            if is_binary(vr) || is_pixel_data(element.header().tag) {
                let bytes = little_endian_bytes(value);
                if bytes.is_empty() {
                } else if bytes.len() <= INLINE_BINARY_MAX && !is_pixel_data(element.header().tag) {
                    entry.insert("InlineBinary".into(), json!(base64::engine::general_purpose::STANDARD.encode(&bytes)));
                } else {
                    entry.insert("BulkDataURI".into(), json!(uri(path)));
                }
                return entry;
            }
            let values = primitive_values(vr, value);
            if values.iter().any(|v| !v.is_null()) {
                entry.insert("Value".into(), Value::Array(values));
            }
        }
    }
    entry
}

fn is_binary(vr: VR) -> bool {
    matches!(vr, VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN)
}

fn is_pixel_data(tag: Tag) -> bool {
    matches!(tag, tags::PIXEL_DATA | tags::FLOAT_PIXEL_DATA | tags::DOUBLE_FLOAT_PIXEL_DATA)
}

/// The JSON values of a decoded (non-binary) value.
fn primitive_values(vr: VR, value: &PrimitiveValue) -> Vec<Value> {
    fn numbers<T: Copy>(values: &[T], to_json: impl Fn(T) -> Value) -> Vec<Value> {
        values.iter().map(|v| to_json(*v)).collect()
    }
    match value {
        PrimitiveValue::Empty => Vec::new(),
        PrimitiveValue::U8(v) => numbers(v, |x| json!(x)),
        PrimitiveValue::U16(v) => numbers(v, |x| json!(x)),
        PrimitiveValue::I16(v) => numbers(v, |x| json!(x)),
        PrimitiveValue::U32(v) => numbers(v, |x| json!(x)),
        PrimitiveValue::I32(v) => numbers(v, |x| json!(x)),
        PrimitiveValue::U64(v) => numbers(v, |x| json!(x)),
        PrimitiveValue::I64(v) => numbers(v, |x| json!(x)),
        PrimitiveValue::F32(v) => numbers(v, |x| float(f64::from(x))),
        PrimitiveValue::F64(v) => numbers(v, float),
        PrimitiveValue::Tags(v) => numbers(v, |t| json!(tag_key(t))),
        other => other.to_multi_str().iter().map(|text| text_value(vr, text)).collect(),
    }
}

/// One value given as text, in the JSON form its VR has.
fn text_value(vr: VR, text: &str) -> Value {
    let text = text.trim_end_matches(['\0', ' ']);
    let text = if matches!(vr, VR::LT | VR::ST | VR::UT) { text } else { text.trim_start() };
    if text.is_empty() {
        return Value::Null;
    }
    match vr {
        VR::PN => person_name(text),
        VR::IS | VR::SS | VR::SL | VR::SV | VR::US | VR::UL | VR::UV => {
            let digits = text.strip_prefix('+').unwrap_or(text);
            match digits.parse::<i128>() {
                Ok(n) => serde_json::from_str::<Number>(&n.to_string()).map(Value::Number).unwrap_or_else(|_| json!(text)),
                Err(_) => json!(text),
            }
        }
        VR::DS | VR::FL | VR::FD => decimal(text),
        _ => json!(text),
    }
}

/// A decimal string as a JSON number: its own text when that is valid JSON (keeping its
/// precision), else its value; a string when it is not a number at all.
fn decimal(text: &str) -> Value {
    let is_json_number = {
        let body = text.strip_prefix('-').unwrap_or(text);
        let (mantissa, exponent) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let (int, frac) = mantissa.split_once('.').map_or((mantissa, None), |(i, f)| (i, Some(f)));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        digits(int)
            && (int == "0" || !int.starts_with('0'))
            && frac.is_none_or(digits)
            && exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
    };
    if is_json_number {
        if let Ok(number) = serde_json::from_str::<Number>(text) {
            return Value::Number(number);
        }
    }
    match text.parse::<f64>() {
        Ok(x) => float(x),
        Err(_) => json!(text),
    }
}

fn float(x: f64) -> Value {
    if x.is_nan() {
        json!("NaN")
    } else if x.is_infinite() {
        json!(if x > 0.0 { "INF" } else { "-INF" })
    } else {
        Number::from_f64(x).map(Value::Number).unwrap_or(Value::Null)
    }
}

/// `Family^Given=Ideographic=Phonetic` as a PN object; empty groups are left out.
fn person_name(text: &str) -> Value {
    let mut name = Map::new();
    for (group, key) in text.split('=').zip(["Alphabetic", "Ideographic", "Phonetic"]) {
        let group = group.trim_end_matches('^');
        if !group.is_empty() {
            name.insert(key.into(), json!(group));
        }
    }
    if name.is_empty() {
        Value::Null
    } else {
        Value::Object(name)
    }
}

/// A value's bytes as Explicit VR Little Endian encodes them, whatever the file's byte order.
fn little_endian_bytes(value: &PrimitiveValue) -> Vec<u8> {
    fn each<T: Copy, const N: usize>(values: &[T], to_le: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(|v| to_le(*v)).collect()
    }
    match value {
        PrimitiveValue::U8(v) => v.to_vec(),
        PrimitiveValue::U16(v) => each(v, u16::to_le_bytes),
        PrimitiveValue::I16(v) => each(v, i16::to_le_bytes),
        PrimitiveValue::U32(v) => each(v, u32::to_le_bytes),
        PrimitiveValue::I32(v) => each(v, i32::to_le_bytes),
        PrimitiveValue::U64(v) => each(v, u64::to_le_bytes),
        PrimitiveValue::I64(v) => each(v, i64::to_le_bytes),
        PrimitiveValue::F32(v) => each(v, f32::to_le_bytes),
        PrimitiveValue::F64(v) => each(v, f64::to_le_bytes),
        PrimitiveValue::Tags(v) => v.iter().flat_map(|t| [t.group().to_le_bytes(), t.element().to_le_bytes()].concat()).collect(),
        other => other.to_bytes().into_owned(),
    }
}

/// The bytes behind a BulkDataURI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BulkData {
    /// A native value, little-endian.
    Bytes(Vec<u8>),
    /// Encapsulated pixel data: its fragments in order, without the Basic Offset Table.
    Fragments(Vec<Vec<u8>>),
}

/// The value at `path`, as a BulkDataURI serves it; None when the path names no element with
/// a value (or a sequence).
pub fn bulk_data(obj: &InMemDicomObject, path: &[TagPathPart]) -> Option<BulkData> {
    let (last, steps) = path.split_last()?;
    let mut current = obj;
    for step in steps {
        let items = current.element(step.tag).ok()?.items()?;
        current = items.get(step.item? as usize)?;
    }
    if last.item.is_some() {
        return None;
    }
    match current.element(last.tag).ok()?.value() {
        DicomValue::Primitive(value) => Some(BulkData::Bytes(little_endian_bytes(value))),
        DicomValue::PixelSequence(sequence) => Some(BulkData::Fragments(sequence.fragments().to_vec())),
        DicomValue::Sequence(_) => None,
    }
}

/// Reads a whole Part 10 object (with or without its 128-byte preamble) from its bytes.
pub fn read_part10(bytes: &[u8]) -> Result<DefaultDicomObject, DicomStoreError> {
    OpenFileOptions::new()
        .from_reader(bytes)
        .map_err(|e| DicomStoreError::InvalidObject(format!("cannot read the stored object: {e}")))
}

/// The identifying UIDs of a Part 10 file, read without its pixel data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
}

/// Reads the UIDs of the Part 10 file at `path` (stopping before Pixel Data). An empty string
/// for a UID the dataset does not have; an error for a file that is not DICOM.
pub fn identify(path: &Path) -> Result<Identity, DicomStoreError> {
    let object = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| DicomStoreError::InvalidObject(e.to_string()))?;
    let text = |tag: Tag| -> String {
        object
            .element(tag)
            .ok()
            .and_then(|e| e.to_str().ok().map(|s| s.trim_end_matches(['\0', ' ']).to_string()))
            .unwrap_or_default()
    };
    let meta = object.meta();
    let uid = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
    let mut identity = Identity {
        sop_class_uid: text(tags::SOP_CLASS_UID),
        sop_instance_uid: text(tags::SOP_INSTANCE_UID),
        study_instance_uid: text(tags::STUDY_INSTANCE_UID),
    };
    if identity.sop_class_uid.is_empty() {
        identity.sop_class_uid = uid(&meta.media_storage_sop_class_uid);
    }
    if identity.sop_instance_uid.is_empty() {
        identity.sop_instance_uid = uid(&meta.media_storage_sop_instance_uid);
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::{DataSetSequence, PixelFragmentSequence};
    use dicom_core::{DataElement, Length};
    use dicom_object::meta::FileMetaTableBuilder;

    fn element(tag: Tag, vr: VR, value: PrimitiveValue) -> InMemElement {
        DataElement::new(tag, vr, value)
    }

    fn str_element(tag: Tag, vr: VR, value: &str) -> InMemElement {
        element(tag, vr, PrimitiveValue::from(value))
    }

    fn uri(path: &[TagPathPart]) -> String {
        format!("bulk/{}", format_tag_path(path))
    }

    fn sample() -> InMemDicomObject {
        let item = InMemDicomObject::from_element_iter([
            str_element(tags::REFERENCED_SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
            element(tags::ICON_IMAGE_SEQUENCE, VR::SQ, PrimitiveValue::Empty),
            element(Tag(0x0009, 0x1010), VR::OB, PrimitiveValue::U8(vec![7u8; 200].into())),
        ]);
        let mut obj = InMemDicomObject::from_element_iter([
            str_element(tags::PATIENT_NAME, VR::PN, "Doe^Jane=山田^花子"),
            str_element(tags::PATIENT_ID, VR::LO, "PAT-1 "),
            str_element(tags::STUDY_DATE, VR::DA, "20240131"),
            element(
                tags::IMAGE_TYPE,
                VR::CS,
                PrimitiveValue::Strs(vec!["ORIGINAL".to_string(), String::new(), "AXIAL".to_string()].into()),
            ),
            str_element(tags::SERIES_NUMBER, VR::IS, " 7"),
            element(tags::PIXEL_SPACING, VR::DS, PrimitiveValue::Strs(vec!["0.5".to_string(), "+.25".to_string()].into())),
            element(tags::ROWS, VR::US, PrimitiveValue::U16(vec![512u16].into())),
            element(tags::REAL_WORLD_VALUE_FIRST_VALUE_MAPPED, VR::SS, PrimitiveValue::I16(vec![-3i16].into())),
            element(tags::FRAME_INCREMENT_POINTER, VR::AT, PrimitiveValue::Tags(vec![tags::FRAME_TIME].into())),
            element(tags::ACCESSION_NUMBER, VR::SH, PrimitiveValue::Empty),
            element(Tag(0x0010, 0x0000), VR::UL, PrimitiveValue::U32(vec![99u32].into())),
            element(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(vec![1u16, 0x0203].into())),
            element(Tag(0x0009, 0x0010), VR::LO, PrimitiveValue::from("TESSERA")),
            element(Tag(0x0009, 0x1011), VR::OB, PrimitiveValue::U8(vec![1u8, 2, 3].into())),
        ]);
        obj.put(DataElement::new(
            tags::REFERENCED_IMAGE_SEQUENCE,
            VR::SQ,
            DicomValue::from(DataSetSequence::new(vec![InMemDicomObject::new_empty(), item], Length::UNDEFINED)),
        ));
        obj
    }

    #[test]
    fn dataset_values_take_their_json_forms() {
        let json = dataset_to_json(&sample(), &uri);
        assert_eq!(json["00100010"], json!({"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane", "Ideographic": "山田^花子"}]}));
        assert_eq!(json["00100020"], json!({"vr": "LO", "Value": ["PAT-1"]}));
        assert_eq!(json["00080020"], json!({"vr": "DA", "Value": ["20240131"]}));
        assert_eq!(json["00080008"], json!({"vr": "CS", "Value": ["ORIGINAL", null, "AXIAL"]}));
        assert_eq!(json["00200011"], json!({"vr": "IS", "Value": [7]}));
        assert_eq!(json["00280030"]["Value"].to_string(), "[0.5,0.25]");
        assert_eq!(json["00280010"], json!({"vr": "US", "Value": [512]}));
        assert_eq!(json["00409216"], json!({"vr": "SS", "Value": [-3]}));
        assert_eq!(json["00280009"], json!({"vr": "AT", "Value": ["00181063"]}));
        assert_eq!(json["00080050"], json!({"vr": "SH"}), "an empty attribute has no Value");
        assert!(json.get("00100000").is_none(), "group lengths are left out");
        assert_eq!(json["00090010"], json!({"vr": "LO", "Value": ["TESSERA"]}));
    }

    #[test]
    fn binary_values_are_inline_when_small_and_bulk_data_otherwise() {
        let json = dataset_to_json(&sample(), &uri);
        assert_eq!(json["7FE00010"], json!({"vr": "OW", "BulkDataURI": "bulk/7FE00010"}), "pixel data is always bulk data");
        assert_eq!(json["00091011"], json!({"vr": "OB", "InlineBinary": "AQID"}));
        let items = json["00081140"]["Value"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], json!({}));
        assert_eq!(items[1]["00081150"], json!({"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]}));
        assert_eq!(items[1]["00880200"], json!({"vr": "SQ"}));
        assert_eq!(items[1]["00091010"], json!({"vr": "OB", "BulkDataURI": "bulk/00081140.1.00091010"}));
    }

    #[test]
    fn bulk_data_uris_lead_back_to_the_bytes() {
        let obj = sample();
        let path = parse_tag_path("00081140.1.00091010").unwrap();
        assert_eq!(bulk_data(&obj, &path), Some(BulkData::Bytes(vec![7u8; 200])));
        // OW is served little-endian whatever the host or file byte order.
        assert_eq!(bulk_data(&obj, &parse_tag_path("7fe00010").unwrap()), Some(BulkData::Bytes(vec![1, 0, 3, 2])));
        assert_eq!(bulk_data(&obj, &parse_tag_path("00081140.5.00091010").unwrap()), None);
        assert_eq!(bulk_data(&obj, &parse_tag_path("00081140").unwrap()), None, "a sequence is not bulk data");
        assert_eq!(bulk_data(&obj, &parse_tag_path("00201041").unwrap()), None);
        for bad in ["", "7FE0001", "7FE00010.0", "00081140.x.00091010", "00081140..00091010", "zzzzzzzz"] {
            assert_eq!(parse_tag_path(bad), None, "{bad:?}");
        }
        let path = vec![
            TagPathPart { tag: tags::REFERENCED_IMAGE_SEQUENCE, item: Some(3) },
            TagPathPart { tag: tags::PIXEL_DATA, item: None },
        ];
        assert_eq!(parse_tag_path(&format_tag_path(&path)), Some(path));
    }

    #[test]
    fn encapsulated_pixel_data_is_bulk_data_of_fragments() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            DicomValue::from(PixelFragmentSequence::new(vec![0u32], vec![vec![1u8, 2], vec![3u8, 4, 5, 6]])),
        ));
        let json = dataset_to_json(&obj, &uri);
        assert_eq!(json["7FE00010"], json!({"vr": "OB", "BulkDataURI": "bulk/7FE00010"}));
        assert_eq!(
            bulk_data(&obj, &[TagPathPart { tag: tags::PIXEL_DATA, item: None }]),
            Some(BulkData::Fragments(vec![vec![1, 2], vec![3, 4, 5, 6]]))
        );
    }

    #[test]
    fn index_attributes_become_dicom_json() {
        let attributes = vec![
            Attribute { tag: tags::PATIENT_NAME, vr: VR::PN, values: vec!["Doe^John".into()] },
            Attribute { tag: tags::MODALITIES_IN_STUDY, vr: VR::CS, values: vec!["CT".into(), "MR".into()] },
            Attribute { tag: tags::NUMBER_OF_STUDY_RELATED_INSTANCES, vr: VR::IS, values: vec!["12".into()] },
            Attribute { tag: tags::ROWS, vr: VR::US, values: vec!["512".into()] },
            Attribute { tag: tags::ACCESSION_NUMBER, vr: VR::SH, values: vec![] },
            Attribute { tag: tags::SLICE_THICKNESS, vr: VR::DS, values: vec!["1.25".into()] },
            Attribute { tag: tags::STUDY_DESCRIPTION, vr: VR::LO, values: vec!["not a number".into()] },
        ];
        let json = attributes_to_json(&attributes);
        assert_eq!(
            json,
            json!({
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]},
                "00080061": {"vr": "CS", "Value": ["CT", "MR"]},
                "00201208": {"vr": "IS", "Value": [12]},
                "00280010": {"vr": "US", "Value": [512]},
                "00080050": {"vr": "SH"},
                "00180050": {"vr": "DS", "Value": [1.25]},
                "00081030": {"vr": "LO", "Value": ["not a number"]},
            })
        );
        // A number-typed value that is not a number is kept as text rather than lost.
        assert_eq!(text_value(VR::IS, "12a"), json!("12a"));
        assert_eq!(decimal("+1.5E+3").to_string(), "1500.0");
        assert_eq!(float(f64::NEG_INFINITY), json!("-INF"));
        assert_eq!(decimal("-0.0").to_string(), "-0.0");
    }

    #[test]
    fn a_written_part10_file_is_read_back_and_identified() {
        let mut obj = sample();
        obj.put(element(tags::SPECIFIC_CHARACTER_SET, VR::CS, PrimitiveValue::from("ISO_IR 192")));
        obj.put(str_element(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.7"));
        obj.put(str_element(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5"));
        obj.put(str_element(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"));
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax("1.2.840.10008.1.2.1")
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
            .media_storage_sop_instance_uid("1.2.3.4.5")
            .build()
            .unwrap();
        let file = obj.with_exact_meta(meta);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dcm");
        file.write_to_file(&path).unwrap();

        let identity = identify(&path).unwrap();
        assert_eq!(
            identity,
            Identity {
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.7".into(),
                sop_instance_uid: "1.2.3.4.5".into(),
                study_instance_uid: "1.2.3".into()
            }
        );
        let bytes = std::fs::read(&path).unwrap();
        let read = read_part10(&bytes).unwrap();
        let json = dataset_to_json(&read, &uri);
        assert_eq!(json["00100010"]["Value"][0], json!({"Alphabetic": "Doe^Jane", "Ideographic": "山田^花子"}));
        assert_eq!(bulk_data(&read, &parse_tag_path("7FE00010").unwrap()), Some(BulkData::Bytes(vec![1, 0, 3, 2])));

        std::fs::write(&path, b"not dicom at all").unwrap();
        assert!(matches!(identify(&path), Err(DicomStoreError::InvalidObject(_))));
        assert!(matches!(read_part10(&bytes[..200]), Err(DicomStoreError::InvalidObject(_))));
    }
}
