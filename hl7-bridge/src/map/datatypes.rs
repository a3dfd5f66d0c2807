//! HL7 v2 data types to FHIR data types: CX and EI to Identifier, HD to a system URI, XPN to
//! HumanName, XAD to Address, XTN to ContactPoint, CWE to CodeableConcept, NM to decimal, and
//! the located date/time conversions the segment mappers share.

use serde_json::{json, Map, Value};

use super::tables;
use crate::datetime::{parse_dtm, Dtm};
use crate::{is_null, Hl7Error, Location, Repetition, Segment};

/// The prefix of the system URI built for an assigning authority known only by its namespace
/// id (HD-1), e.g. `urn:tessera:v2-authority:HOSP`.
pub(crate) const AUTHORITY_PREFIX: &str = "urn:tessera:v2-authority:";

/// `Some(text)` for a real value: not empty and not the HL7 explicit null `""` (which asks to
/// delete the value; leaving it out of a replacing write does exactly that).
pub(crate) fn text(value: &str) -> Option<&str> {
    let value = value.trim();
    (!value.is_empty() && !is_null(value)).then_some(value)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The identifier system for an assigning authority (HD: namespace id, universal id, its type):
/// an ISO universal id becomes `urn:oid:`, a UUID `urn:uuid:`, a URI/URL stays as it is, and
/// anything else is named by [`AUTHORITY_PREFIX`] and the namespace id (or the universal id).
pub(crate) fn authority_system(
    namespace: &str,
    universal: &str,
    universal_type: &str,
) -> Option<String> {
    if let Some(uid) = text(universal) {
        match universal_type.trim() {
            "ISO" => {
                return Some(if uid.starts_with("urn:oid:") {
                    uid.to_string()
                } else {
                    format!("urn:oid:{uid}")
                })
            }
            "UUID" => {
                let lower = uid.to_ascii_lowercase();
                return Some(if lower.starts_with("urn:uuid:") {
                    lower
                } else {
                    format!("urn:uuid:{lower}")
                });
            }
            "URI" | "URL" => return Some(uid.to_string()),
            _ => {}
        }
    }
    text(namespace)
        .or(text(universal))
        .map(|name| format!("{AUTHORITY_PREFIX}{}", encode(name)))
}

/// An identifier with its system, as found in CX, EI and MRG fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ident {
    pub system: Option<String>,
    pub value: String,
    /// CX-5 (table 0203), when given.
    pub type_code: Option<String>,
}

impl Ident {
    /// FHIR Identifier JSON, with `use` when given.
    pub(crate) fn to_fhir(&self, use_: Option<&str>) -> Value {
        let mut out = Map::new();
        if let Some(use_) = use_ {
            out.insert("use".into(), json!(use_));
        }
        if let Some(code) = &self.type_code {
            let mut coding = Map::new();
            coding.insert("system".into(), json!(tables::V2_0203));
            coding.insert("code".into(), json!(code));
            if let Some(display) = tables::identifier_type_display(code) {
                coding.insert("display".into(), json!(display));
            }
            out.insert("type".into(), json!({ "coding": [coding] }));
        }
        if let Some(system) = &self.system {
            out.insert("system".into(), json!(system));
        }
        out.insert("value".into(), json!(self.value));
        Value::Object(out)
    }
}

/// CX: ID (1), assigning authority (4, HD), identifier type (5).
pub(crate) fn cx(rep: &Repetition) -> Option<Ident> {
    let value = text(rep.component(1))?;
    Some(Ident {
        system: authority_system(
            rep.subcomponent(4, 1),
            rep.subcomponent(4, 2),
            rep.subcomponent(4, 3),
        ),
        value: value.to_string(),
        type_code: text(rep.component(5)).map(str::to_string),
    })
}

/// EI: entity id (1), namespace id (2), universal id (3), universal id type (4).
pub(crate) fn ei(rep: &Repetition) -> Option<Ident> {
    let value = text(rep.component(1))?;
    Some(Ident {
        system: authority_system(rep.component(2), rep.component(3), rep.component(4)),
        value: value.to_string(),
        type_code: None,
    })
}

/// Every identifier of a repeating CX field; the first one with type MR is the key, else the
/// first one. Errors with 101 when there is none.
pub(crate) fn identifiers(
    segment: &Segment,
    field: usize,
    what: &str,
) -> Result<(Vec<Ident>, usize), Hl7Error> {
    let idents: Vec<Ident> = segment.repetitions(field).iter().filter_map(cx).collect();
    if idents.is_empty() {
        return Err(Hl7Error::missing(segment.location(field), what));
    }
    let key = idents
        .iter()
        .position(|i| i.type_code.as_deref() == Some("MR"))
        .unwrap_or(0);
    Ok((idents, key))
}

/// XPN: family (1), given (2), further given names (3), suffix (4), prefix (5), degree (6),
/// name type (7, table 0200).
pub(crate) fn xpn(rep: &Repetition) -> Option<Value> {
    let mut name = Map::new();
    if let Some(use_) = tables::name_use(rep.component(7).trim()) {
        name.insert("use".into(), json!(use_));
    }
    if let Some(family) = text(rep.component(1)) {
        name.insert("family".into(), json!(family));
    }
    let given: Vec<&str> = [2, 3]
        .iter()
        .filter_map(|&c| text(rep.component(c)))
        .collect();
    if !given.is_empty() {
        name.insert("given".into(), json!(given));
    }
    if let Some(prefix) = text(rep.component(5)) {
        name.insert("prefix".into(), json!([prefix]));
    }
    let suffix: Vec<&str> = [4, 6]
        .iter()
        .filter_map(|&c| text(rep.component(c)))
        .collect();
    if !suffix.is_empty() {
        name.insert("suffix".into(), json!(suffix));
    }
    let has_name = ["family", "given", "prefix", "suffix"]
        .iter()
        .any(|k| name.contains_key(*k));
    has_name.then_some(Value::Object(name))
}

/// XAD: street (1), other designation (2), city (3), state (4), postal code (5), country (6),
/// address type (7, table 0190), county (9).
pub(crate) fn xad(rep: &Repetition) -> Option<Value> {
    let mut address = Map::new();
    let (use_, type_) = tables::address_type(rep.component(7).trim());
    if let Some(use_) = use_ {
        address.insert("use".into(), json!(use_));
    }
    if let Some(type_) = type_ {
        address.insert("type".into(), json!(type_));
    }
    let lines: Vec<&str> = [1, 2]
        .iter()
        .filter_map(|&c| text(rep.component(c)))
        .collect();
    let mut has_content = !lines.is_empty();
    if !lines.is_empty() {
        address.insert("line".into(), json!(lines));
    }
    for (component, element) in [
        (3, "city"),
        (9, "district"),
        (4, "state"),
        (5, "postalCode"),
        (6, "country"),
    ] {
        if let Some(value) = text(rep.component(component)) {
            address.insert(element.into(), json!(value));
            has_content = true;
        }
    }
    has_content.then_some(Value::Object(address))
}

/// XTN: legacy number (1), use code (2, table 0201), equipment type (3, table 0202), email (4),
/// country (5), area (6), local number (7), extension (8), unformatted number (12).
/// `default_use` is the field's meaning (PID-13 home, PID-14 work); a cellular phone is `mobile`.
pub(crate) fn xtn(rep: &Repetition, default_use: &str) -> Option<Value> {
    let equipment = rep.component(3).trim();
    let use_code = rep.component(2).trim();
    let email = matches!(equipment, "Internet" | "X.400") || use_code == "NET";
    let (system, value) = if email {
        (
            "email",
            text(rep.component(4))
                .or(text(rep.component(1)))?
                .to_string(),
        )
    } else {
        let system = match equipment {
            "FX" => "fax",
            "BP" => "pager",
            "MD" | "TDD" | "TTY" => "other",
            _ => "phone",
        };
        let value = match text(rep.component(12)).or(text(rep.component(1))) {
            Some(number) => number.to_string(),
            None => {
                let local = text(rep.component(7))?;
                let mut number = String::new();
                if let Some(country) = text(rep.component(5)) {
                    number.push_str(&format!("+{country} "));
                }
                if let Some(area) = text(rep.component(6)) {
                    number.push_str(&format!("({area}) "));
                }
                number.push_str(local);
                if let Some(extension) = text(rep.component(8)) {
                    number.push_str(&format!(" ext. {extension}"));
                }
                number
            }
        };
        (system, value)
    };
    let use_ = if equipment == "CP" {
        "mobile"
    } else {
        default_use
    };
    Some(json!({ "system": system, "value": value, "use": use_ }))
}

/// A CWE/CE/CNE to a CodeableConcept: the primary (1-3) and alternate (4-6) codings, with the
/// original text (9) as text; a concept with only a text keeps it as text.
pub(crate) fn codeable_concept(rep: &Repetition) -> Option<Value> {
    let mut codings = Vec::new();
    for (code, display, system) in [(1, 2, 3), (4, 5, 6)] {
        if let Some(coding) = coding(
            rep.component(code),
            rep.component(display),
            rep.component(system),
        ) {
            codings.push(coding);
        }
    }
    let mut concept = Map::new();
    if !codings.is_empty() {
        concept.insert("coding".into(), Value::Array(codings));
    }
    let text_value = text(rep.component(9)).or_else(|| {
        // A concept sent as text alone (CWE-2 without a code) keeps that text.
        text(rep.component(1))
            .is_none()
            .then(|| text(rep.component(2)))
            .flatten()
    });
    if let Some(t) = text_value {
        concept.insert("text".into(), json!(t));
    }
    (!concept.is_empty()).then_some(Value::Object(concept))
}

/// One Coding from code, display and a table 0396 system name.
pub(crate) fn coding(code: &str, display: &str, system: &str) -> Option<Value> {
    let code = text(code)?;
    let mut coding = Map::new();
    if let Some(uri) = tables::coding_system(system.trim()) {
        coding.insert("system".into(), json!(uri));
    }
    coding.insert("code".into(), json!(code));
    if let Some(display) = text(display) {
        coding.insert("display".into(), json!(display));
    }
    Some(Value::Object(coding))
}

/// XCN: a display "prefix given middle family suffix" for a person named by id and name.
pub(crate) fn xcn_display(rep: &Repetition) -> Option<String> {
    let parts: Vec<&str> = [6, 3, 4, 2, 5]
        .iter()
        .filter_map(|&c| text(rep.component(c)))
        .collect();
    if parts.is_empty() {
        text(rep.component(1)).map(str::to_string)
    } else {
        Some(parts.join(" "))
    }
}

/// PL: a display of point of care (1), room (2), bed (3) and facility (4).
pub(crate) fn pl_display(rep: &Repetition) -> Option<String> {
    let parts: Vec<&str> = [1, 2, 3, 4]
        .iter()
        .filter_map(|&c| text(rep.subcomponent(c, 1)))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// An HL7 NM as FHIR decimal JSON (the text kept exactly, under serde_json's
/// arbitrary_precision): the sign `+` and leading zeros dropped, `.5` read as `0.5`.
pub(crate) fn decimal(value: &str) -> Option<Value> {
    let value = value.trim();
    let (negative, digits) = match value.as_bytes().first()? {
        b'-' => (true, &value[1..]),
        b'+' => (false, &value[1..]),
        _ => (false, value),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    if !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.unwrap_or("").bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if int.is_empty() && frac.is_none_or(str::is_empty) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if let Some(frac) = frac.filter(|f| !f.is_empty()) {
        out.push('.');
        out.push_str(frac);
    }
    serde_json::from_str::<serde_json::Number>(&out)
        .ok()
        .map(Value::Number)
}

/// Dates and times of one message: the sender's zone (the offset of MSH-7) applies to values
/// that carry none, as v2 defines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub sender_offset: Option<i16>,
}

impl Clock {
    /// Parses the DTM/TS (first component) at `location`; `None` when empty.
    pub(crate) fn dtm(
        &self,
        value: &str,
        location: Location,
        what: &str,
    ) -> Result<Option<Dtm>, Hl7Error> {
        let Some(value) = text(value) else {
            return Ok(None);
        };
        parse_dtm(value)
            .map(|d| Some(d.or_offset(self.sender_offset)))
            .map_err(|e| Hl7Error::data_type(location, format!("{what}: {e}")))
    }

    /// FHIR dateTime of field `n` of `segment` (first repetition, component 1).
    pub(crate) fn datetime(
        &self,
        segment: &Segment,
        n: usize,
        what: &str,
    ) -> Result<Option<String>, Hl7Error> {
        Ok(self
            .dtm(segment.value(n), segment.location(n), what)?
            .map(|d| d.to_fhir_datetime()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nm_values_become_fhir_decimals() {
        for (nm, fhir) in [
            ("5", "5"),
            ("+5", "5"),
            ("-0.50", "-0.50"),
            ("007.5", "7.5"),
            (".5", "0.5"),
            ("5.", "5"),
            ("000", "0"),
            (" 12 ", "12"),
        ] {
            assert_eq!(
                decimal(nm).map(|v| v.to_string()).as_deref(),
                Some(fhir),
                "{nm}"
            );
        }
        for bad in ["", "-", ".", "1e5", "1,5", "abc", "1.2.3", "--1"] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn authorities_become_systems() {
        assert_eq!(
            authority_system("", "1.2.3", "ISO").as_deref(),
            Some("urn:oid:1.2.3")
        );
        assert_eq!(
            authority_system("X", "ABC-DEF", "UUID").as_deref(),
            Some("urn:uuid:abc-def")
        );
        assert_eq!(
            authority_system("X", "http://h.org/id", "URI").as_deref(),
            Some("http://h.org/id")
        );
        assert_eq!(
            authority_system("General Hosp", "", "").as_deref(),
            Some("urn:tessera:v2-authority:General%20Hosp")
        );
        assert_eq!(authority_system("", "", ""), None);
    }
}
