//! The HL7 v2 code tables the mapping translates, each to its FHIR code, following the
//! ConceptMaps of the v2-to-FHIR IG; rows the IG leaves open are decided here, with the reason.

/// `http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation`.
pub(crate) const V3_INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
/// `http://terminology.hl7.org/CodeSystem/v2-0078`, for the table 0078 rows v3 does not hold.
pub(crate) const V2_0078: &str = "http://terminology.hl7.org/CodeSystem/v2-0078";
pub(crate) const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
pub(crate) const V2_0004: &str = "http://terminology.hl7.org/CodeSystem/v2-0004";
pub(crate) const V3_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub(crate) const LOINC: &str = "http://loinc.org";
pub(crate) const SNOMED: &str = "http://snomed.info/sct";
pub(crate) const MDC: &str = "urn:iso:std:iso:11073:10101";
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";

/// Table 0001 (administrative sex) to FHIR `AdministrativeGender`. A (ambiguous) and N (not
/// applicable) become `other`, as in the IG's ConceptMap.
pub(crate) fn gender(code: &str) -> Option<&'static str> {
    Some(match code {
        "F" => "female",
        "M" => "male",
        "O" | "A" | "N" => "other",
        "U" => "unknown",
        _ => return None,
    })
}

/// Table 0078 (interpretation codes) to a coding: (system, code, display). Rows the v3
/// ObservationInterpretation code system has keep their code there; the IG leaves AC, HM, OBX,
/// QCF and TOX unmapped (they are not in the v3 value set), so they stay v2-0078 codings rather
/// than being lost.
pub(crate) fn interpretation(code: &str) -> Option<(&'static str, &'static str, &'static str)> {
    let v3 = |code: &'static str, display: &'static str| Some((V3_INTERPRETATION, code, display));
    let v2 = |code: &'static str, display: &'static str| Some((V2_0078, code, display));
    match code {
        "<" => v3("<", "Off scale low"),
        ">" => v3(">", "Off scale high"),
        "A" => v3("A", "Abnormal"),
        "AA" => v3("AA", "Critical abnormal"),
        "AC" => v2("AC", "Anti-complementary substances present"),
        "B" => v3("B", "Better"),
        "CAR" => v3("CAR", "Carrier"),
        "D" => v3("D", "Significant change down"),
        "DET" => v3("DET", "Detected"),
        "E" => v3("E", "Equivocal"),
        "EX" => v3("EX", "outside threshold"),
        "EXP" => v3("EXP", "Expected"),
        "H" => v3("H", "High"),
        "HH" => v3("HH", "Critical high"),
        "HM" => v2("HM", "Hold for Medical Review"),
        "HU" => v3("HU", "Significantly high"),
        "HX" => v3("HX", "above high threshold"),
        "I" => v3("I", "Intermediate"),
        "IE" => v3("IE", "Insufficient evidence"),
        "IND" => v3("IND", "Indeterminate"),
        "L" => v3("L", "Low"),
        "LL" => v3("LL", "Critical low"),
        "LU" => v3("LU", "Significantly low"),
        "LX" => v3("LX", "below low threshold"),
        "MS" => v3("MS", "moderately susceptible"),
        "N" => v3("N", "Normal"),
        "NCL" => v3("NCL", "No CLSI defined breakpoint"),
        "ND" => v3("ND", "Not detected"),
        "NEG" => v3("NEG", "Negative"),
        "NR" => v3("NR", "Non-reactive"),
        "NS" => v3("NS", "Non-susceptible"),
        "OBX" => v2("OBX", "Interpretation qualifiers in separate OBX segments"),
        "POS" => v3("POS", "Positive"),
        "QCF" => v2("QCF", "Quality Control Failure"),
        "R" => v3("R", "Resistant"),
        "RR" => v3("RR", "Reactive"),
        "S" => v3("S", "Susceptible"),
        "SDD" => v3("SDD", "Susceptible-dose dependent"),
        "SYN-R" => v3("SYN-R", "Synergy - resistant"),
        "SYN-S" => v3("SYN-S", "Synergy - susceptible"),
        "TOX" => v2("TOX", "Cytotoxic substance present"),
        "U" => v3("U", "Significant change up"),
        "UNE" => v3("UNE", "Unexpected"),
        "VS" => v3("VS", "very susceptible"),
        "W" => v3("W", "Worse"),
        "WR" => v3("WR", "Weakly reactive"),
        _ => None,
    }
}

/// Table 0085 (observation result status) to FHIR `ObservationStatus`. The IG maps A, C, D, F,
/// P, S, W and X; the other rows are decided here:
/// B (appended) → `amended` (R4 Observation has no `appended`); I (specimen in lab) and
/// O (order detail only) → `registered` (no result yet); R (entered, not verified) →
/// `preliminary`; N (not asked) → `cancelled` (the observation was not sought); U (status
/// changed to final) and V (verified) → `final`.
pub(crate) fn observation_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "A" | "B" => "amended",
        "C" => "corrected",
        "D" | "W" => "entered-in-error",
        "F" | "U" | "V" => "final",
        "I" | "O" => "registered",
        "N" | "X" => "cancelled",
        "P" | "R" | "S" => "preliminary",
        _ => return None,
    })
}

/// The `data-absent-reason` an OBX without a value gets from its status: N (not asked) and
/// X (results cannot be obtained); other statuses leave the reason unsaid.
pub(crate) fn absent_reason(status: &str) -> Option<&'static str> {
    match status {
        "N" => Some("not-asked"),
        "X" => Some("error"),
        _ => None,
    }
}

/// Table 0123 (result status) to FHIR `DiagnosticReportStatus`, after the IG's ConceptMap.
/// Decided here: A (some results available) → `partial`; M (corrected, not final) →
/// `corrected`; N (procedure completed, results pending) → `registered`. Y and Z ("no order",
/// "no patient") describe a query answer, not a result, and are not mapped.
pub(crate) fn report_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "O" | "I" | "S" | "N" => "registered",
        "A" | "R" => "partial",
        "P" => "preliminary",
        "C" | "M" => "corrected",
        "F" => "final",
        "X" => "cancelled",
        _ => return None,
    })
}

/// Table 0004 (patient class) to `Encounter.class`: (system, code, display). E, I, O and P
/// map to v3 ActCode as in the IG; the others keep their v2-0004 code.
pub(crate) fn patient_class(code: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match code {
        "E" => (V3_ACT_CODE, "EMER", "emergency"),
        "I" => (V3_ACT_CODE, "IMP", "inpatient encounter"),
        "O" => (V3_ACT_CODE, "AMB", "ambulatory"),
        "P" => (V3_ACT_CODE, "PRENC", "pre-admission"),
        "R" => (V2_0004, "R", "Recurring patient"),
        "B" => (V2_0004, "B", "Obstetrics"),
        "C" => (V2_0004, "C", "Commercial Account"),
        "N" => (V2_0004, "N", "Not Applicable"),
        "U" => (V2_0004, "U", "Unknown"),
        _ => return None,
    })
}

/// Table 0200 (name type) to `HumanName.use`; rows without a FHIR counterpart give `None`.
pub(crate) fn name_use(code: &str) -> Option<&'static str> {
    Some(match code {
        "L" | "R" => "official",
        "D" => "usual",
        "M" => "maiden",
        "N" => "nickname",
        "BAD" => "old",
        "MSK" => "anonymous",
        "NAV" | "TEMP" => "temp",
        _ => return None,
    })
}

/// Table 0190 (address type) to (`Address.use`, `Address.type`).
pub(crate) fn address_type(code: &str) -> (Option<&'static str>, Option<&'static str>) {
    match code {
        "H" => (Some("home"), None),
        "B" | "O" => (Some("work"), None),
        "C" => (Some("temp"), None),
        "BA" => (Some("old"), None),
        "M" => (None, Some("postal")),
        "SH" => (None, Some("physical")),
        _ => (None, None),
    }
}

/// Table 0203 (identifier type): the display of the rows the mapping commonly meets.
pub(crate) fn identifier_type_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "MR" => "Medical record number",
        "PI" => "Patient internal identifier",
        "PT" => "Patient external identifier",
        "SS" => "Social Security number",
        "DL" => "Driver's license number",
        "PPN" => "Passport number",
        "AN" => "Account number",
        "VN" => "Visit number",
        "NI" => "National unique individual identifier",
        "PN" => "Person number",
        "FILL" => "Filler Identifier",
        "PLAC" => "Placer Identifier",
        _ => return None,
    })
}

/// Table 0396 (coding system) to the FHIR code system URI. Local codes (`L`, `99zzz`) and
/// systems without a known URI give `None`: the code and display are kept without a system
/// rather than under an invented one.
pub(crate) fn coding_system(name: &str) -> Option<String> {
    let uri = match name {
        "LN" | "LOINC" => LOINC,
        "SCT" | "SNM" | "SNM3" | "SCT2" => SNOMED,
        "MDC" => MDC,
        "UCUM" => UCUM,
        "I9" | "I9C" => "http://hl7.org/fhir/sid/icd-9-cm",
        "I10" => "http://hl7.org/fhir/sid/icd-10",
        "I10C" => "http://hl7.org/fhir/sid/icd-10-cm",
        "RXNORM" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "C4" | "CPT" => "http://www.ama-assn.org/go/cpt",
        "NDC" => "http://hl7.org/fhir/sid/ndc",
        "CVX" => "http://hl7.org/fhir/sid/cvx",
        _ => {
            // HL7nnnn names a v2 table; its code system lives under terminology.hl7.org.
            let table = name.strip_prefix("HL7")?;
            if table.len() == 4 && table.bytes().all(|b| b.is_ascii_digit()) {
                return Some(format!("http://terminology.hl7.org/CodeSystem/v2-{table}"));
            }
            return None;
        }
    };
    Some(uri.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_unknown_coding_systems_have_no_uri() {
        assert_eq!(coding_system("L"), None);
        assert_eq!(coding_system("99ABC"), None);
        assert_eq!(coding_system("HL7123"), None);
        assert_eq!(
            coding_system("HL70078").as_deref(),
            Some("http://terminology.hl7.org/CodeSystem/v2-0078")
        );
    }
}
