//! Tests of the wire formats: JSON and XML parsing, serialisation and round trips over the
//! official R4 examples.

mod common;
use common::corpus;


use fhir_model::{parse_resource, serialize_resource, Format, ModelError};
use serde_json::{json, Value};


fn xml_round_trip(value: &Value) -> Value {
    let xml = serialize_resource(value, Format::Xml, false).expect("serialises as xml");
    parse_resource(&xml, Format::Xml).expect("xml reads back")
}

#[test]
fn every_patient_and_observation_example_survives_json_xml_json() {
    let examples: Vec<_> = corpus()
        .into_iter()
        .filter(|(name, _)| name.starts_with("Patient-") || name.starts_with("Observation-"))
        .collect();
    // Guards against the corpus silently going missing, which would make this test vacuous.
    assert_eq!(examples.len(), 86, "expected all 86 Patient and Observation examples");
    for (name, original) in examples {
        let back = xml_round_trip(&original);
        assert_eq!(back, original, "{name} changed in the xml round trip");
    }
}

#[test]
fn transaction_bundle_survives_json_xml_json() {
    let (_, bundle) = corpus().into_iter().find(|(n, _)| n == "Bundle-bundle-transaction.json").expect("bundle example");
    assert_eq!(xml_round_trip(&bundle), bundle);
}

fn observation_with_value(value: &str) -> Vec<u8> {
    format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"text":"x"}},"valueQuantity":{{"value":{value},"unit":"kg"}}}}"#
    )
    .into_bytes()
}

#[test]
fn decimal_text_survives_json_round_trip() {
    let value = parse_resource(&observation_with_value("1.50"), Format::Json).unwrap();
    assert_eq!(value["valueQuantity"]["value"].to_string(), "1.50");
    for pretty in [false, true] {
        let bytes = serialize_resource(&value, Format::Json, pretty).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("1.50"), "{text}");
    }
}

#[test]
fn decimal_text_survives_xml_both_ways() {
    // serde_json keeps a number's digits but writes every exponent with a sign (`1.0e2` is
    // kept as `1.0e+2`); the precision, which is what FHIR cares about, is unchanged.
    for (written, kept) in [("1.50", "1.50"), ("0.0010", "0.0010"), ("100", "100"), ("-3.000", "-3.000"), ("1.0e2", "1.0e+2")] {
        let value = parse_resource(&observation_with_value(written), Format::Json).unwrap();
        let xml = String::from_utf8(serialize_resource(&value, Format::Xml, true).unwrap()).unwrap();
        assert!(xml.contains(&format!(r#"<value value="{kept}"/>"#)), "{written}: {xml}");
        let back = parse_resource(xml.as_bytes(), Format::Xml).unwrap();
        assert_eq!(back["valueQuantity"]["value"].to_string(), kept);
        assert_eq!(back, value);
    }
}

#[test]
fn narrative_whitespace_survives_xml_both_ways() {
    let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n  <p>Peter <b>James</b> Chalmers</p>\n  <!-- kept -->\n</div>";
    let value = json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
    let xml = serialize_resource(&value, Format::Xml, false).unwrap();
    assert!(String::from_utf8_lossy(&xml).contains(div));
    let back = parse_resource(&xml, Format::Xml).unwrap();
    assert_eq!(back["text"]["div"], div);

    let xml = format!(r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>{div}</text></Patient>"#);
    let from_xml = parse_resource(xml.as_bytes(), Format::Xml).unwrap();
    assert_eq!(from_xml, value);
}

#[test]
fn malformed_narrative_in_xml_is_a_syntax_error() {
    let xml = r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>x</b></div></text></Patient>"#;
    let err = parse_resource(xml.as_bytes(), Format::Xml).unwrap_err();
    assert!(matches!(err, ModelError::Syntax { format: "xml", .. }), "{err:?}");
}

#[test]
fn xml_patient_reads_as_fhir_json() {
    let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
        <Patient xmlns="http://hl7.org/fhir">
          <id value="p1"/>
          <active value="true"/>
          <name><family value="Chalmers"/><given value="Peter"/><given value="James"/></name>
          <birthDate value="1974-12-25"><extension url="http://example.org/x"><valueString value="y"/></extension></birthDate>
        </Patient>"#;
    let value = parse_resource(xml, Format::Xml).unwrap();
    assert_eq!(
        value,
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "active": true,
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
        })
    );
}

#[test]
fn malformed_json_is_a_syntax_error_with_its_position() {
    let err = parse_resource(br#"{"resourceType": "Patient", "active": tru}"#, Format::Json).unwrap_err();
    match err {
        ModelError::Syntax { format, message } => {
            assert_eq!(format, "json");
            assert!(message.contains("line 1 column"), "{message}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn json_that_is_not_a_resource_object_is_a_structure_error() {
    for body in [&br#"[1, 2]"#[..], br#"{"active": true}"#, br#"{"resourceType": 7}"#] {
        let err = parse_resource(body, Format::Json).unwrap_err();
        assert!(matches!(err, ModelError::Structure(_)), "{err:?}");
    }
}

#[test]
fn unknown_resource_type_in_json_is_reported_as_such() {
    let err = parse_resource(br#"{"resourceType": "Spaceship"}"#, Format::Json).unwrap_err();
    assert!(matches!(err, ModelError::UnknownResourceType(ref t) if t == "Spaceship"), "{err:?}");
}

#[test]
fn malformed_xml_is_a_syntax_error() {
    let bodies: [&[u8]; 3] = [
        br#"<Patient xmlns="http://hl7.org/fhir"><active value="true"></Patient>"#,
        br#"<Patient xmlns="http://hl7.org/fhir"><active value="true/></Patient>"#,
        b"not xml at all <",
    ];
    for body in bodies {
        let err = parse_resource(body, Format::Xml).unwrap_err();
        assert!(matches!(err, ModelError::Syntax { format: "xml", .. }), "{}: {err:?}", String::from_utf8_lossy(body));
    }
}

#[test]
fn truncated_or_empty_xml_is_a_syntax_error() {
    // quick-xml accepts a document that stops with elements open; Tessera must not, or a body
    // cut short after any `>` would be stored as a smaller resource.
    let bodies: [&[u8]; 4] = [
        br#"<Patient xmlns="http://hl7.org/fhir"><active value="true"/>"#,
        br#"<Patient xmlns="http://hl7.org/fhir"><name><family value="X"/></name>"#,
        b"",
        br#"<Patient xmlns="http://hl7.org/fhir"/><Patient xmlns="http://hl7.org/fhir"/>"#,
    ];
    for body in bodies {
        let err = parse_resource(body, Format::Xml).unwrap_err();
        assert!(matches!(err, ModelError::Syntax { format: "xml", .. }), "{}: {err:?}", String::from_utf8_lossy(body));
    }
}

#[test]
fn xml_is_compact_unless_pretty_is_asked_for() {
    let value = json!({"resourceType": "Patient", "active": true, "name": [{"family": "Chalmers"}]});
    let compact = String::from_utf8(serialize_resource(&value, Format::Xml, false).unwrap()).unwrap();
    let pretty = String::from_utf8(serialize_resource(&value, Format::Xml, true).unwrap()).unwrap();
    assert!(compact.contains(r#"<Patient xmlns="http://hl7.org/fhir"><active value="true"/><name>"#), "{compact}");
    assert!(pretty.contains("\n  <active"), "{pretty}");
    for xml in [compact, pretty] {
        assert_eq!(parse_resource(xml.as_bytes(), Format::Xml).unwrap(), value);
    }
}

#[test]
fn malformed_narrative_in_json_cannot_be_written_as_xml() {
    let value = json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>unclosed</div>"}});
    let err = serialize_resource(&value, Format::Xml, false).unwrap_err();
    let ModelError::Structure(issues) = &err else { panic!("expected a structure error, got {err:?}") };
    assert_eq!(issues[0].expression, "Patient.text.div", "{issues:?}");
}

#[test]
fn unknown_xml_element_is_a_structure_error_naming_it() {
    let xml = br#"<Patient xmlns="http://hl7.org/fhir"><active value="true"/><favouriteColour value="red"/></Patient>"#;
    let err = parse_resource(xml, Format::Xml).unwrap_err();
    let ModelError::Structure(issues) = &err else { panic!("expected a structure error, got {err:?}") };
    assert!(issues.iter().any(|i| i.message.contains("favouriteColour")), "{issues:?}");
}

#[test]
fn unknown_xml_root_is_an_unknown_resource_type() {
    let err = parse_resource(br#"<Spaceship xmlns="http://hl7.org/fhir"><id value="x"/></Spaceship>"#, Format::Xml).unwrap_err();
    assert!(matches!(err, ModelError::UnknownResourceType(ref t) if t == "Spaceship"), "{err:?}");
}

#[test]
fn json_that_fhirbolt_rejects_cannot_be_written_as_xml() {
    let value = json!({"resourceType": "Patient", "favouriteColour": "red"});
    let err = serialize_resource(&value, Format::Xml, false).unwrap_err();
    let ModelError::Structure(issues) = &err else { panic!("expected a structure error, got {err:?}") };
    assert_eq!(issues[0].expression, "Patient.favouriteColour");
}

#[test]
fn json_with_an_empty_array_cannot_be_written_as_xml() {
    // fhirbolt 0.4 panics on an empty array; serialisation must report it instead.
    let err = serialize_resource(&json!({"resourceType": "Patient", "name": []}), Format::Xml, false).unwrap_err();
    let ModelError::Structure(issues) = &err else { panic!("expected a structure error, got {err:?}") };
    assert_eq!(issues[0].expression, "Patient.name");
}
