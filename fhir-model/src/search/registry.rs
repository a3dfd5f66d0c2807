//! The table of supported search parameters and the code systems implied by required bindings.
//!
//! Each row is the R4 SearchParameter as published: its type, code and FHIRPath expression,
//! verbatim, including the other resource types of a shared parameter (`clinical-date` and the
//! like). Extraction interprets that expression, so adding a parameter is adding a row; nothing
//! else in the crate names a parameter. A test checks that every expression compiles.

use std::sync::OnceLock;

use super::fhirpath::Expression;
use super::{ParamType, SearchParamDef};

/// Builds one row, so that the table below reads as data rather than as struct syntax.
const fn def(
    resource_type: &'static str,
    name: &'static str,
    kind: ParamType,
    expression: &'static str,
    documentation: &'static str,
) -> SearchParamDef {
    SearchParamDef {
        resource_type,
        name,
        kind,
        expression,
        targets: &[],
        components: &[],
        url: "",
        documentation,
    }
}

/// R4 `clinical-patient`, shared by most clinical resources; only the Observation branch is
/// registered for now, but the expression stays whole so the next types need no edit here.
const CLINICAL_PATIENT: &str = "AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | \
CareTeam.subject.where(resolve() is Patient) | ClinicalImpression.subject.where(resolve() is Patient) | \
Composition.subject.where(resolve() is Patient) | Condition.subject.where(resolve() is Patient) | \
Consent.patient | DetectedIssue.patient | DeviceRequest.subject.where(resolve() is Patient) | \
DeviceUseStatement.subject | DiagnosticReport.subject.where(resolve() is Patient) | \
DocumentManifest.subject.where(resolve() is Patient) | DocumentReference.subject.where(resolve() is Patient) | \
Encounter.subject.where(resolve() is Patient) | EpisodeOfCare.patient | FamilyMemberHistory.patient | \
Flag.subject.where(resolve() is Patient) | Goal.subject.where(resolve() is Patient) | \
ImagingStudy.subject.where(resolve() is Patient) | Immunization.patient | \
List.subject.where(resolve() is Patient) | MedicationAdministration.subject.where(resolve() is Patient) | \
MedicationDispense.subject.where(resolve() is Patient) | MedicationRequest.subject.where(resolve() is Patient) | \
MedicationStatement.subject.where(resolve() is Patient) | NutritionOrder.patient | \
Observation.subject.where(resolve() is Patient) | Procedure.subject.where(resolve() is Patient) | \
RiskAssessment.subject.where(resolve() is Patient) | ServiceRequest.subject.where(resolve() is Patient) | \
SupplyDelivery.patient | VisionPrescription.patient";

/// R4 `clinical-code`.
const CLINICAL_CODE: &str = "AllergyIntolerance.code | AllergyIntolerance.reaction.substance | Condition.code | \
(DeviceRequest.code as CodeableConcept) | DiagnosticReport.code | FamilyMemberHistory.condition.code | \
List.code | Medication.code | (MedicationAdministration.medication as CodeableConcept) | \
(MedicationDispense.medication as CodeableConcept) | (MedicationRequest.medication as CodeableConcept) | \
(MedicationStatement.medication as CodeableConcept) | Observation.code | Procedure.code | ServiceRequest.code";

/// R4 `clinical-date`.
const CLINICAL_DATE: &str = "AllergyIntolerance.recordedDate | CarePlan.period | CareTeam.period | \
ClinicalImpression.date | Composition.date | Consent.dateTime | DiagnosticReport.effective | \
Encounter.period | EpisodeOfCare.period | FamilyMemberHistory.date | Flag.period | Immunization.occurrence | \
List.date | Observation.effective | Procedure.performed | (RiskAssessment.occurrence as dateTime) | \
SupplyRequest.authoredOn";

/// Every supported parameter. Rows for one resource type stay together, common ones first.
pub(super) static SEARCH_PARAMETERS: &[SearchParamDef] = &[
    def(
        "Resource",
        "_id",
        ParamType::Token,
        "Resource.id",
        "Logical id of this artifact",
    ),
    def(
        "Resource",
        "_lastUpdated",
        ParamType::Date,
        "Resource.meta.lastUpdated",
        "When the resource version last changed",
    ),
    def(
        "Patient",
        "identifier",
        ParamType::Token,
        "Patient.identifier",
        "A patient identifier",
    ),
    def(
        "Patient",
        "name",
        ParamType::String,
        "Patient.name",
        "A portion of any part of a name: text, family, given, prefix or suffix",
    ),
    def(
        "Patient",
        "family",
        ParamType::String,
        "Patient.name.family | Practitioner.name.family",
        "A portion of the family name of the patient",
    ),
    def(
        "Patient",
        "given",
        ParamType::String,
        "Patient.name.given | Practitioner.name.given",
        "A portion of the given name of the patient",
    ),
    def(
        "Patient",
        "birthdate",
        ParamType::Date,
        "Patient.birthDate | Person.birthDate | RelatedPerson.birthDate",
        "The patient's date of birth",
    ),
    def(
        "Patient",
        "gender",
        ParamType::Token,
        "Patient.gender | Person.gender | Practitioner.gender | RelatedPerson.gender",
        "Gender of the patient",
    ),
    def(
        "Observation",
        "subject",
        ParamType::Reference,
        "Observation.subject",
        "The subject that the observation is about",
    ),
    def(
        "Observation",
        "patient",
        ParamType::Reference,
        CLINICAL_PATIENT,
        "The subject that the observation is about (if patient)",
    ),
    def(
        "Observation",
        "code",
        ParamType::Token,
        CLINICAL_CODE,
        "The code of the observation type",
    ),
    def(
        "Observation",
        "category",
        ParamType::Token,
        "Observation.category",
        "The classification of the type of observation",
    ),
    def(
        "Observation",
        "date",
        ParamType::Date,
        CLINICAL_DATE,
        "Obtained date/time. If the obtained element is a period, a date that falls in the period",
    ),
    def(
        "Observation",
        "status",
        ParamType::Token,
        "Observation.status",
        "The status of the observation",
    ),
];

/// Elements of type `code` with a required binding to a single code system. A plain code found
/// at one of these paths is indexed with that system, so `gender=<that system>|male` matches as
/// well as `gender=male`. Keyed by element, not by parameter, because the binding belongs to
/// the element and every parameter reaching it should agree.
static CODE_SYSTEMS: &[(&str, &str)] = &[
    (
        "Patient.gender",
        "http://hl7.org/fhir/administrative-gender",
    ),
    (
        "Observation.status",
        "http://hl7.org/fhir/observation-status",
    ),
];

/// The parameter `name` for `resource_type` (None: system level, common parameters only).
pub(super) fn find_param(
    resource_type: Option<&str>,
    name: &str,
) -> Option<(usize, &'static SearchParamDef)> {
    let own = resource_type.filter(|rt| *rt != "Resource");
    SEARCH_PARAMETERS.iter().enumerate().find(|(_, p)| {
        p.name == name && (p.resource_type == "Resource" || Some(p.resource_type) == own)
    })
}

/// The parameters that apply to a resource of `resource_type`, with their table index.
pub(super) fn params_for(
    resource_type: &str,
) -> impl Iterator<Item = (usize, &'static SearchParamDef)> + '_ {
    SEARCH_PARAMETERS
        .iter()
        .enumerate()
        .filter(move |(_, p)| p.resource_type == "Resource" || p.resource_type == resource_type)
}

/// The compiled expression of row `index`, compiled once per process. None only for a row whose
/// expression does not compile, which the tests below rule out for the shipped table.
pub(super) fn expression(index: usize) -> Option<&'static Expression> {
    static COMPILED: OnceLock<Vec<Option<Expression>>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            SEARCH_PARAMETERS
                .iter()
                .map(|p| Expression::compile(p.expression).ok())
                .collect()
        })
        .get(index)?
        .as_ref()
}

/// The compiled relative expression of component `component` of composite row `index`,
/// compiled once per process, evaluated from each item the row's own expression selects.
pub(super) fn component_expression(index: usize, component: usize) -> Option<&'static Expression> {
    static COMPILED: OnceLock<Vec<Vec<Option<Expression>>>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            SEARCH_PARAMETERS
                .iter()
                .map(|p| {
                    p.components
                        .iter()
                        .map(|c| Expression::compile_relative(c.expression).ok())
                        .collect()
                })
                .collect()
        })
        .get(index)?
        .get(component)?
        .as_ref()
}

/// Why row `def` does not work, or None when it does.
pub(super) fn unsupported_reason(def: &SearchParamDef) -> Option<String> {
    if def.kind == ParamType::Special {
        return Some("special parameters are not supported".to_string());
    }
    if def.expression.trim().is_empty() {
        return Some("the definition has no expression".to_string());
    }
    if let Err(e) = Expression::compile(def.expression) {
        return Some(e);
    }
    if def.kind == ParamType::Composite && def.components.is_empty() {
        return Some("composite parameter without components".to_string());
    }
    def.components.iter().find_map(|c| {
        Expression::compile_relative(c.expression)
            .err()
            .map(|e| format!("component {}: {e}", c.name))
    })
}

/// The code system implied for a plain code at `element_path` (`Patient.gender`), if any.
pub(super) fn implicit_code_system(element_path: &str) -> Option<&'static str> {
    CODE_SYSTEMS
        .iter()
        .find(|(path, _)| *path == element_path)
        .map(|(_, system)| *system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_expression_compiles_and_covers_its_resource_type() {
        for p in SEARCH_PARAMETERS {
            let expr = Expression::compile(p.expression)
                .unwrap_or_else(|e| panic!("{}.{}: {e}", p.resource_type, p.name));
            assert!(
                expr.applies_to(p.resource_type),
                "{}.{} has no branch for its own type",
                p.resource_type,
                p.name
            );
        }
    }

    #[test]
    fn names_are_unique_per_resource_type() {
        for (i, a) in SEARCH_PARAMETERS.iter().enumerate() {
            for b in &SEARCH_PARAMETERS[i + 1..] {
                assert!(
                    !(a.name == b.name
                        && (a.resource_type == b.resource_type || a.resource_type == "Resource")),
                    "{} declared twice for {}",
                    a.name,
                    b.resource_type
                );
            }
        }
    }
}
