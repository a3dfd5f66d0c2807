//! Conversion between wire formats (FHIR JSON, FHIR XML) and the JSON value Tessera works on.

use fhirbolt::model::r4::Resource;
use fhirbolt::xml::Error as XmlError;
use serde_json::Value;

use crate::resource_types::{is_resource_type, resource_type_of};
use crate::validate::typed;
use crate::{Issue, ModelError};

/// A FHIR wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Xml,
}

/// Parses a resource body in `format` into FHIR JSON. XML goes through fhirbolt (element
/// model → JSON). Only syntax is checked here; `validate` checks content.
pub fn parse_resource(body: &[u8], format: Format) -> Result<Value, ModelError> {
    let resource = match format {
        Format::Json => serde_json::from_slice::<Value>(body)
            // serde_json's message ends with "at line L column C".
            .map_err(|e| ModelError::Syntax { format: "json", message: e.to_string() })?,
        Format::Xml => parse_xml(body)?,
    };
    resource_type_of(&resource)?;
    Ok(resource)
}

/// Serialises FHIR JSON in `format`. XML goes through fhirbolt.
///
/// XML is always written compactly, whatever `pretty` says: indenting would add whitespace
/// inside the XHTML narrative, where whitespace is content.
pub fn serialize_resource(resource: &Value, format: Format, pretty: bool) -> Result<Vec<u8>, ModelError> {
    match format {
        Format::Json => {
            let bytes = if pretty { serde_json::to_vec_pretty(resource) } else { serde_json::to_vec(resource) };
            // Serialising a `Value` into memory cannot fail; map it anyway rather than panic.
            bytes.map_err(|e| structure("", e.to_string()))
        }
        Format::Xml => {
            let resource_type = resource_type_of(resource)?;
            let typed = typed::to_typed(resource.clone())
                .map_err(|text| ModelError::Structure(vec![typed::issue(resource_type, &text, Some(resource))]))?;
            fhirbolt::xml::to_vec(&typed, None).map_err(|e| structure(resource_type, e.to_string()))
        }
    }
}

/// FHIR XML → typed R4 model (strict) → FHIR JSON. The typed model is the only route fhirbolt
/// offers, and strictness means an unknown element is reported here rather than dropped.
fn parse_xml(body: &[u8]) -> Result<Value, ModelError> {
    let typed: Resource = fhirbolt::xml::from_slice(body, typed::strict()).map_err(|e| xml_error(body, e))?;
    fhirbolt::json::to_json_value(typed, None).map_err(|e| structure("", e.to_string()))
}

/// Sorts fhirbolt's XML errors into malformed XML (`Syntax`), a root element naming no R4
/// resource (`UnknownResourceType`), and well-formed XML that is not a valid R4 resource
/// (`Structure`).
fn xml_error(body: &[u8], error: XmlError) -> ModelError {
    let text = error.to_string();
    match error {
        XmlError::InvalidXml(_)
        | XmlError::InvalidXmlAttribute(_)
        | XmlError::InvalidXmlVersion(_)
        | XmlError::InvalidXmlEncoding(_)
        | XmlError::InvalidXmlStandalone(_)
        | XmlError::InvalidXmlEvent(_)
        | XmlError::Utf8Error(_) => ModelError::Syntax { format: "xml", message: text },
        XmlError::InvalidXmlNamespace(..) | XmlError::InvalidFhirEvent { .. } | XmlError::Message(_) => {
            match root_element(body) {
                Some(root) if !is_resource_type(root) => ModelError::UnknownResourceType(root.to_string()),
                root => {
                    let expression = root.unwrap_or_default();
                    ModelError::Structure(vec![typed::issue(expression, &text, None)])
                }
            }
        }
    }
}

/// The local name of the document's root element, skipping the XML declaration, comments and
/// processing instructions. Used only to explain an error, so a rough scan is enough.
fn root_element(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let mut rest = text;
    loop {
        let start = rest.find('<')?;
        rest = &rest[start + 1..];
        if rest.starts_with('?') || rest.starts_with('!') {
            continue;
        }
        let end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
        let name = &rest[..end];
        // Drop a namespace prefix (`<fhir:Patient>`).
        return Some(name.rsplit(':').next().unwrap_or(name));
    }
}

fn structure(expression: &str, message: String) -> ModelError {
    ModelError::Structure(vec![Issue::error(expression, "structure", crate::validate::truncate(&message))])
}
