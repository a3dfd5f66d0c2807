//! Maps an HL7 v2 PID segment to a FHIR Patient (identifiers, names, birth date, gender,
//! addresses, telecom, death) and the key the pipeline finds it by.

use serde_json::{json, Map, Value};

use super::datatypes::{self, Clock, Ident};
use super::{tables, ResourceKey};
use crate::{Hl7Error, Segment};

/// A mapped PID: the Patient body and its identifiers (the key one first).
pub(crate) struct MappedPatient {
    pub body: Map<String, Value>,
    pub key: Ident,
}

impl MappedPatient {
    pub(crate) fn resource_key(&self) -> ResourceKey {
        ident_key(&self.key)
    }
}

/// An identifier as a pipeline key.
pub(crate) fn ident_key(ident: &Ident) -> ResourceKey {
    ResourceKey::Identifier {
        system: ident.system.clone(),
        value: ident.value.clone(),
    }
}

/// PID-3 identifiers (required), PID-5 names, PID-7 birth date, PID-8 gender (table 0001),
/// PID-11 addresses, PID-13/14 telecom, PID-29/30 death.
pub(crate) fn map_pid(pid: &Segment, clock: &Clock) -> Result<MappedPatient, Hl7Error> {
    let (idents, key) = datatypes::identifiers(pid, 3, "PID-3 patient identifier")?;
    let mut body = Map::new();
    body.insert("resourceType".into(), json!("Patient"));
    body.insert(
        "identifier".into(),
        idents.iter().map(|i| i.to_fhir(None)).collect(),
    );

    let names: Vec<Value> = pid
        .repetitions(5)
        .iter()
        .filter_map(datatypes::xpn)
        .collect();
    if !names.is_empty() {
        body.insert("name".into(), Value::Array(names));
    }

    let mut telecom: Vec<Value> = pid
        .repetitions(13)
        .iter()
        .filter_map(|r| datatypes::xtn(r, "home"))
        .collect();
    telecom.extend(
        pid.repetitions(14)
            .iter()
            .filter_map(|r| datatypes::xtn(r, "work")),
    );
    if !telecom.is_empty() {
        body.insert("telecom".into(), Value::Array(telecom));
    }

    if let Some(code) = datatypes::text(pid.value(8)) {
        let gender = tables::gender(code)
            .ok_or_else(|| Hl7Error::table_value(pid.location(8), "0001", code))?;
        body.insert("gender".into(), json!(gender));
    }

    if let Some(birth) = clock.dtm(pid.value(7), pid.location(7), "PID-7 date of birth")? {
        body.insert("birthDate".into(), json!(birth.to_fhir_date()));
    }

    let death = clock.datetime(pid, 29, "PID-29 date of death")?;
    match (death, datatypes::text(pid.value(30))) {
        (Some(when), _) => {
            body.insert("deceasedDateTime".into(), json!(when));
        }
        (None, Some("Y")) => {
            body.insert("deceasedBoolean".into(), json!(true));
        }
        (None, Some("N")) => {
            body.insert("deceasedBoolean".into(), json!(false));
        }
        (None, Some(other)) => return Err(Hl7Error::table_value(pid.location(30), "0136", other)),
        (None, None) => {}
    }

    let addresses: Vec<Value> = pid
        .repetitions(11)
        .iter()
        .filter_map(datatypes::xad)
        .collect();
    if !addresses.is_empty() {
        body.insert("address".into(), Value::Array(addresses));
    }

    let key = idents[key].clone();
    Ok(MappedPatient { body, key })
}
