//! `_summary` and `_elements`: cutting a resource down to the elements a client asked for, and
//! tagging it `SUBSETTED` as R4 requires of any resource returned incomplete.

use serde_json::{json, Value};

use crate::search::{mandatory_elements, summary_elements};
use crate::Summary;

/// The R4 code system and code a subsetted resource is tagged with.
const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
const SUBSETTED_CODE: &str = "SUBSETTED";

/// Elements every subset keeps: what makes the resource identifiable and versioned.
const ALWAYS_KEPT: &[&str] = &["resourceType", "id", "meta"];

/// Cuts `resource` (FHIR JSON of `resource_type`) down as `_summary` and `_elements` ask:
/// `_summary=true` keeps the elements the base definition marks as summary; `text` keeps
/// `text` and the mandatory elements; `data` drops `text`; `_elements` keeps the listed
/// top-level elements and the mandatory ones. `false`, `count` (which returns no resources) and
/// no option at all leave it whole. A resource that lost anything is tagged `SUBSETTED`.
/// `_summary` wins over `_elements` when both are given, as the spec leaves the combination
/// undefined and summary is the stronger request.
pub fn subset_resource(resource_type: &str, resource: &mut Value, summary: Option<Summary>, elements: &[String]) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let mandatory = mandatory_elements(resource_type);
    let before = object.len();
    match summary {
        Some(Summary::True) => {
            let summary = summary_elements(resource_type);
            object.retain(|k, _| ALWAYS_KEPT.contains(&k.as_str()) || named(summary, k) || named(mandatory, k));
        }
        Some(Summary::Text) => {
            object.retain(|k, _| ALWAYS_KEPT.contains(&k.as_str()) || k == "text" || named(mandatory, k));
        }
        Some(Summary::Data) => {
            object.remove("text");
        }
        Some(Summary::False | Summary::Count) => {}
        None if elements.is_empty() => {}
        None => {
            object.retain(|k, _| {
                ALWAYS_KEPT.contains(&k.as_str())
                    || named(mandatory, k)
                    || elements.iter().any(|e| element_matches(e, k))
            });
        }
    }
    if object.len() < before {
        tag_subsetted(resource);
    }
}

/// Whether the JSON key `key` is one of `elements`.
fn named(elements: &[&str], key: &str) -> bool {
    elements.iter().any(|e| element_matches(e, key))
}

/// Whether the JSON key `key` is the element `element` names: itself, or one of its choice
/// forms (`value` names `valueQuantity`), or its primitive extension (`_birthDate`).
fn element_matches(element: &str, key: &str) -> bool {
    let key = key.strip_prefix('_').unwrap_or(key);
    key == element || key.strip_prefix(element).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
}

fn tag_subsetted(resource: &mut Value) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let tags = meta.entry("tag").or_insert_with(|| json!([]));
    let Some(tags) = tags.as_array_mut() else {
        return;
    };
    let present = tags.iter().any(|t| {
        t.get("system").and_then(Value::as_str) == Some(SUBSETTED_SYSTEM)
            && t.get("code").and_then(Value::as_str) == Some(SUBSETTED_CODE)
    });
    if !present {
        tags.push(json!({"system": SUBSETTED_SYSTEM, "code": SUBSETTED_CODE}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"versionId": "1"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "active": true,
            "name": [{"family": "Chalmers"}],
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": []},
            "deceasedBoolean": false,
            "maritalStatus": {"text": "M"},
            "photo": [{"title": "p"}]
        })
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    fn subsetted(v: &Value) -> bool {
        v["meta"]["tag"].as_array().is_some_and(|t| t.iter().any(|t| t["code"] == SUBSETTED_CODE))
    }

    #[test]
    fn summary_true_keeps_summary_elements_and_tags() {
        let mut p = patient();
        subset_resource("Patient", &mut p, Some(Summary::True), &[]);
        // maritalStatus, photo and text are not summary elements of Patient.
        assert_eq!(keys(&p), vec!["resourceType", "id", "meta", "active", "name", "birthDate", "_birthDate", "deceasedBoolean"]);
        assert!(subsetted(&p));
    }

    #[test]
    fn summary_text_and_data() {
        let mut p = patient();
        subset_resource("Patient", &mut p, Some(Summary::Text), &[]);
        assert_eq!(keys(&p), vec!["resourceType", "id", "meta", "text"]);
        let mut p = patient();
        subset_resource("Patient", &mut p, Some(Summary::Data), &[]);
        assert!(p.get("text").is_none() && p.get("photo").is_some() && subsetted(&p));
    }

    #[test]
    fn elements_keep_choice_forms_and_mandatory_elements() {
        let mut p = patient();
        subset_resource("Patient", &mut p, None, &["deceased".to_string(), "birthDate".to_string()]);
        assert_eq!(keys(&p), vec!["resourceType", "id", "meta", "birthDate", "_birthDate", "deceasedBoolean"]);
        assert!(subsetted(&p));
        // Observation.status and .code are mandatory (1..1) and stay.
        let mut o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1}, "note": []});
        subset_resource("Observation", &mut o, None, &["value".to_string()]);
        assert_eq!(keys(&o), vec!["resourceType", "status", "code", "valueQuantity", "meta"]);
    }

    #[test]
    fn nothing_removed_means_no_tag() {
        let mut p = patient();
        subset_resource("Patient", &mut p, Some(Summary::False), &[]);
        assert!(!subsetted(&p));
        let mut p = json!({"resourceType": "Patient", "id": "x"});
        subset_resource("Patient", &mut p, Some(Summary::Data), &[]);
        assert_eq!(p, json!({"resourceType": "Patient", "id": "x"}));
    }
}
