//! The search table: requests over the official R4 examples with expected results written by
//! hand from the example files (every example of a type is loaded, so each set accounts for
//! all examples of that type), grouped by what they exercise.

use super::row::{found, refused, Row};

/// Extra resources stored next to the examples, for what no example carries at the top level
/// (`meta.tag` and `meta.source`).
pub const FIXTURES: &[&str] = &[
    r#"{"resourceType":"Basic","id":"tessera-tagged","meta":{"source":"http://tessera.test/source#load-1",
        "tag":[{"system":"http://tessera.test/tags","code":"search-suite"}],
        "security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]},
        "code":{"coding":[{"system":"http://tessera.test/basic","code":"tagged"}]}}"#,
    r#"{"resourceType":"Basic","id":"tessera-tagged-2","meta":{"source":"http://tessera.test/source#load-2",
        "tag":[{"system":"http://tessera.test/tags","code":"other"}]},
        "code":{"coding":[{"system":"http://tessera.test/basic","code":"tagged"}]}}"#,
];

/// Every Patient example with gender female.
pub const FEMALE_PATIENTS: &[&str] = &[
    "Patient/animal",
    "Patient/genetics-example1",
    "Patient/infant-mom",
    "Patient/infant-twin-1",
    "Patient/mom",
    "Patient/pat4",
    "Patient/proband",
];

/// The Observations whose subject is Patient/f001.
const F001_OBSERVATIONS: &[&str] = &[
    "Observation/ekg",
    "Observation/f001",
    "Observation/f002",
    "Observation/f003",
    "Observation/f004",
    "Observation/f005",
    "Observation/unsat",
];

/// The Observations whose subject is Patient/f201.
const F201_OBSERVATIONS: &[&str] =
    &["Observation/f202", "Observation/f203", "Observation/f204", "Observation/f205", "Observation/f206"];

/// The vital-sign Observations effective 1999-07-02.
const VITALS_1999: &[&str] = &[
    "Observation/bmi",
    "Observation/bmi-using-related",
    "Observation/body-height",
    "Observation/body-length",
    "Observation/body-temperature",
    "Observation/head-circumference",
    "Observation/heart-rate",
    "Observation/mbp",
    "Observation/respiratory-rate",
    "Observation/vitals-panel",
];

pub const STRINGS: &[Row] = &[
    found("family prefix, lower case", "GET Patient?family=chalmers", &["Patient/example"]),
    found("family prefix, upper case, partial", "GET Patient?family=CHAL", &["Patient/example"]),
    found("family matches a second (maiden) name", "GET Patient?family=windsor", &["Patient/example"]),
    found("family:exact with the exact case", "GET Patient?family:exact=Chalmers", &["Patient/example"]),
    found("family:exact is case-sensitive", "GET Patient?family:exact=chalmers", &[]),
    found("given prefix", "GET Patient?given=peter", &["Patient/example"]),
    found("name covers given and family", "GET Patient?name=eve", &["Patient/genetics-example1", "Patient/mom"]),
    found(
        "name prefix over three Solos",
        "GET Patient?name=solo",
        &["Patient/infant-mom", "Patient/infant-twin-1", "Patient/infant-twin-2"],
    ),
    found("name is a prefix match, not a substring", "GET Patient?name=olo", &[]),
    found(
        "name:contains finds a substring",
        "GET Patient?name:contains=olo",
        &["Patient/infant-mom", "Patient/infant-twin-1", "Patient/infant-twin-2"],
    ),
    found("name:contains inside a multi-word family", "GET Patient?name:contains=heuvel", &["Patient/f001"]),
    found("name matches HumanName.text in CJK", "GET Patient?name=张", &["Patient/ch-example"]),
    found("address-city prefix", "GET Patient?address-city=amsterdam", &["Patient/f001", "Patient/f201"]),
    found("address-city partial prefix", "GET Patient?address-city=pleasant", &["Patient/example"]),
    found("address-city:exact", "GET Patient?address-city:exact=PleasantVille", &["Patient/example"]),
    found("address-city:exact is case-sensitive", "GET Patient?address-city:exact=Pleasantville", &[]),
    found("address-postalcode", "GET Patient?address-postalcode=44130", &["Patient/xds"]),
    found("address-state", "GET Patient?address-state=vic", &["Patient/example"]),
    found("address-country", "GET Patient?address-country=nld", &["Patient/f001", "Patient/f201"]),
    found("address:contains in the line", "GET Patient?address:contains=erewhon", &["Patient/example"]),
    found(
        "Practitioner family prefix with spaces",
        "GET Practitioner?family=van",
        &["Practitioner/f001", "Practitioner/f006"],
    ),
    found(
        "Practitioner family:exact with spaces",
        "GET Practitioner?family:exact=van den Berk",
        &["Practitioner/f006"],
    ),
    found("Practitioner name matches HumanName.text", "GET Practitioner?name=dokter", &["Practitioner/f201"]),
    found("Practitioner given", "GET Practitioner?given=pieter", &["Practitioner/f002"]),
    found(
        "Practitioner address-city prefix",
        "GET Practitioner?address-city=den",
        &[
            "Practitioner/f001",
            "Practitioner/f002",
            "Practitioner/f006",
            "Practitioner/f007",
            "Practitioner/f201",
            "Practitioner/f202",
            "Practitioner/f203",
            "Practitioner/f204",
        ],
    ),
    found(
        "Organization name prefix",
        "GET Organization?name=burgers",
        &["Organization/f001", "Organization/f002", "Organization/f003"],
    ),
    found(
        "Organization name:contains",
        "GET Organization?name:contains=umc",
        &["Organization/f002", "Organization/f003", "Organization/f201", "Organization/f203"],
    ),
    found("Organization name covers alias", "GET Organization?name=abc", &["Organization/2"]),
    found(
        "Organization address-city",
        "GET Organization?address-city=den",
        &["Organization/f001", "Organization/f201"],
    ),
    found("Location name", "GET Location?name=south", &["Location/1", "Location/2"]),
    found("RelatedPerson name without accents", "GET RelatedPerson?name=benedicte", &["RelatedPerson/benedicte"]),
    found(
        "RelatedPerson name with accents, upper case",
        "GET RelatedPerson?name=BÉNÉDICTE",
        &["RelatedPerson/benedicte"],
    ),
    found("RelatedPerson name with accent ignored", "GET RelatedPerson?name=du marche", &["RelatedPerson/benedicte"]),
    found("Person name", "GET Person?name=chalmers", &["Person/example", "Person/grahame"]),
    found("Questionnaire title", "GET Questionnaire?title=glasgow", &["Questionnaire/gcs"]),
    found(
        "Questionnaire title:contains",
        "GET Questionnaire?title:contains=health",
        &["Questionnaire/bb", "Questionnaire/phq-9-questionnaire"],
    ),
    found(
        "Library title prefix",
        "GET Library?title=opioid",
        &[
            "Library/opioidcds-common",
            "Library/opioidcds-recommendation-04",
            "Library/opioidcds-recommendation-05",
            "Library/opioidcds-recommendation-07",
            "Library/opioidcds-recommendation-08",
            "Library/opioidcds-recommendation-10",
            "Library/opioidcds-recommendation-11",
        ],
    ),
    found(
        "Library title:exact",
        "GET Library?title:exact=FHIR Helpers",
        &["Library/library-fhir-helpers", "Library/library-fhir-helpers-predecessor"],
    ),
    found(
        "PlanDefinition title",
        "GET PlanDefinition?title=exclusive",
        &[
            "PlanDefinition/exclusive-breastfeeding-intervention-01",
            "PlanDefinition/exclusive-breastfeeding-intervention-02",
            "PlanDefinition/exclusive-breastfeeding-intervention-03",
            "PlanDefinition/exclusive-breastfeeding-intervention-04",
        ],
    ),
    found(
        "Measure title with a space",
        "GET Measure?title=exclusive breastfeeding",
        &["Measure/measure-exclusive-breastfeeding", "Measure/measure-predecessor-example"],
    ),
    found("Endpoint name", "GET Endpoint?name=pacs", &["Endpoint/example-iid", "Endpoint/example-wadors"]),
    found(
        "ActivityDefinition name",
        "GET ActivityDefinition?name=referral",
        &[
            "ActivityDefinition/referralPrimaryCareMentalHealth",
            "ActivityDefinition/referralPrimaryCareMentalHealth-initial",
        ],
    ),
    found(
        "Immunization lot-number",
        "GET Immunization?lot-number=AAJN11K",
        &["Immunization/example", "Immunization/subpotent"],
    ),
];

pub const TOKENS: &[Row] = &[
    found("gender code, counted", "GET Patient?gender=female&_summary=count", &[]).total(7),
    found("gender code, listed", "GET Patient?gender=female", FEMALE_PATIENTS),
    found(
        "gender with its implicit system",
        "GET Patient?gender=http://hl7.org/fhir/administrative-gender|male",
        &[
            "Patient/ch-example",
            "Patient/dicom",
            "Patient/example",
            "Patient/f001",
            "Patient/f201",
            "Patient/glossy",
            "Patient/infant-fetal",
            "Patient/infant-twin-2",
            "Patient/newborn",
            "Patient/pat1",
            "Patient/pat3",
            "Patient/xcda",
            "Patient/xds",
        ],
    ),
    found("gender with a wrong system", "GET Patient?gender=http://example.org/gender|male", &[]),
    found("gender other", "GET Patient?gender=other", &["Patient/pat2"]),
    found("gender:missing=true", "GET Patient?gender:missing=true", &["Patient/ihe-pcd"]),
    found(
        "gender:not includes resources without gender",
        "GET Patient?gender:not=male",
        &[
            "Patient/animal",
            "Patient/genetics-example1",
            "Patient/ihe-pcd",
            "Patient/infant-mom",
            "Patient/infant-twin-1",
            "Patient/mom",
            "Patient/pat2",
            "Patient/pat4",
            "Patient/proband",
        ],
    ),
    found("boolean active=true, counted", "GET Patient?active=true&_summary=count", &[]).total(17),
    found("boolean active=false", "GET Patient?active=false", &[]),
    found(
        "boolean active:missing=true",
        "GET Patient?active:missing=true",
        &[
            "Patient/infant-fetal",
            "Patient/infant-mom",
            "Patient/infant-twin-1",
            "Patient/infant-twin-2",
            "Patient/newborn",
        ],
    ),
    found(
        "identifier system|value",
        "GET Patient?identifier=urn:oid:1.2.36.146.595.217.0.1|12345",
        &["Patient/example"],
    ),
    found("identifier value in any system", "GET Patient?identifier=12345", &["Patient/example", "Patient/xcda"]),
    found(
        "identifier system| (any value)",
        "GET Patient?identifier=urn:oid:1.2.36.146.595.217.0.1|",
        &["Patient/ch-example", "Patient/example"],
    ),
    found("identifier |value (no system)", "GET Patient?identifier=|12345", &[]),
    found(
        "identifier:of-type MR (two systems carry an MR 12345)",
        "GET Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345",
        &["Patient/example", "Patient/xcda"],
    ),
    found(
        "identifier:of-type MR, other value",
        "GET Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|654321",
        &["Patient/pat1"],
    ),
    found(
        "identifier:of-type with a type the identifier does not have",
        "GET Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|DL|12345",
        &[],
    ),
    found(
        "Observation status",
        "GET Observation?status=cancelled",
        &["Observation/blood-pressure-cancel", "Observation/unsat"],
    ),
    found(
        "Observation status unknown",
        "GET Observation?status=unknown",
        &[
            "Observation/example-TPMT-haplotype-one",
            "Observation/example-TPMT-haplotype-two",
            "Observation/example-haplotype1",
            "Observation/example-haplotype2",
        ],
    ),
    found(
        "Observation code system|code",
        "GET Observation?code=http://loinc.org|85354-9",
        &["Observation/blood-pressure", "Observation/blood-pressure-cancel", "Observation/blood-pressure-dar"],
    ),
    found(
        "Observation code in a second coding",
        "GET Observation?code=http://snomed.info/sct|27113001",
        &["Observation/example"],
    ),
    found(
        "Observation category with system",
        "GET Observation?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        &[
            "Observation/bgpanel",
            "Observation/bloodgroup",
            "Observation/herd1",
            "Observation/map-sitting",
            "Observation/rhstatus",
        ],
    ),
    found(
        "Observation category code only",
        "GET Observation?category=exam",
        &["Observation/abdo-tender", "Observation/trachcare"],
    ),
    found(
        "code:text on CodeableConcept.text",
        "GET Observation?code:text=glasgow",
        &["Observation/gcs-qa", "Observation/glasgow"],
    ),
    found("Condition code:text", "GET Condition?code:text=asthma", &["Condition/example2"]),
    found("Condition clinical-status", "GET Condition?clinical-status=resolved", &["Condition/f201", "Condition/f202"]),
    found(
        "Condition clinical-status:not",
        "GET Condition?clinical-status:not=active",
        &["Condition/f201", "Condition/f202", "Condition/f204"],
    ),
    found(
        "Condition verification-status",
        "GET Condition?verification-status=differential",
        &["Condition/f204", "Condition/f205"],
    ),
    found(
        "Condition verification-status:missing",
        "GET Condition?verification-status:missing=true",
        &["Condition/family-history"],
    ),
    found(
        "Condition severity",
        "GET Condition?severity=http://snomed.info/sct|24484000",
        &["Condition/example", "Condition/f002", "Condition/f202", "Condition/f204"],
    ),
    found(
        "Condition code system| (any SNOMED code)",
        "GET Condition?code=http://snomed.info/sct|",
        &[
            "Condition/example",
            "Condition/f001",
            "Condition/f002",
            "Condition/f003",
            "Condition/f201",
            "Condition/f202",
            "Condition/f203",
            "Condition/f204",
            "Condition/f205",
            "Condition/family-history",
            "Condition/stroke",
        ],
    ),
    found("Encounter class", "GET Encounter?class=IMP", &["Encounter/emerg", "Encounter/example", "Encounter/f203"]),
    found("Encounter status", "GET Encounter?status=in-progress", &["Encounter/emerg", "Encounter/example"]),
    found("Immunization status", "GET Immunization?status=not-done", &["Immunization/notGiven"]),
    found("Immunization vaccine-code", "GET Immunization?vaccine-code=FLUVAX", &["Immunization/example"]),
    found(
        "AllergyIntolerance criticality",
        "GET AllergyIntolerance?criticality=high",
        &["AllergyIntolerance/example", "AllergyIntolerance/medication"],
    ),
    found(
        "Task status",
        "GET Task?status=requested",
        &["Task/fm-example1", "Task/fm-example2", "Task/fm-example3", "Task/fm-example4", "Task/fm-example5"],
    ),
    found("Task intent", "GET Task?intent=filler-order", &["Task/example2", "Task/example4"]),
    found("Location status", "GET Location?status=suspended", &["Location/2"]),
    found("Endpoint connection-type", "GET Endpoint?connection-type=dicom-wado-rs", &["Endpoint/example-wadors"]),
    found(
        "MedicationRequest status",
        "GET MedicationRequest?status=on-hold",
        &[
            "MedicationRequest/medrx0325",
            "MedicationRequest/medrx0326",
            "MedicationRequest/medrx0329",
            "MedicationRequest/medrx0334",
            "MedicationRequest/medrx0335",
        ],
    ),
    found(
        "MedicationRequest code (medication as CodeableConcept)",
        "GET MedicationRequest?code=884308",
        &["MedicationRequest/medrx0325", "MedicationRequest/medrx0334", "MedicationRequest/medrx0335"],
    ),
    found("ServiceRequest intent", "GET ServiceRequest?intent=reflex-order", &["ServiceRequest/ft4"]),
    found(
        "ServiceRequest intent, four",
        "GET ServiceRequest?intent=original-order",
        &["ServiceRequest/di", "ServiceRequest/example-pgx", "ServiceRequest/lipid", "ServiceRequest/og-example1"],
    ),
    found(
        "MedicationDispense status",
        "GET MedicationDispense?status=stopped",
        &["MedicationDispense/meddisp0313", "MedicationDispense/meddisp0317"],
    ),
    found(
        "MedicationAdministration status",
        "GET MedicationAdministration?status=on-hold",
        &["MedicationAdministration/medadminexample03"],
    ),
    found(
        "MedicationStatement status",
        "GET MedicationStatement?status=entered-in-error",
        &["MedicationStatement/example005"],
    ),
    found("Medication code", "GET Medication?code=317935006", &["Medication/med0316"]),
    found("Medication form", "GET Medication?form=385057009", &["Medication/med0304", "Medication/med0309"]),
    found("CarePlan intent", "GET CarePlan?intent=proposal", &["CarePlan/f201"]),
    found("Goal lifecycle-status", "GET Goal?lifecycle-status=on-hold", &["Goal/example"]),
    found("Specimen type", "GET Specimen?type=RANDU", &["Specimen/vma-urine"]),
    found(
        "Specimen accession (an Identifier)",
        "GET Specimen?accession=X352356",
        &["Specimen/101", "Specimen/vma-urine"],
    ),
    found("Group type", "GET Group?type=animal", &["Group/101", "Group/herd1"]),
    found("Appointment status", "GET Appointment?status=proposed", &["Appointment/examplereq"]),
    found("Slot status", "GET Slot?status=busy-tentative", &["Slot/2"]),
    found("Composition type", "GET Composition?type=http://loinc.org|11488-4", &["Composition/example"]),
    found("Bundle type", "GET Bundle?type=document", &["Bundle/father"]),
    found(
        "Bundle type message",
        "GET Bundle?type=message",
        &["Bundle/10bb101f-a121-4264-a920-67be9cb82c74", "Bundle/3a0707d3-549e-4467-b8b8-5a2ab3800efe"],
    ),
    found("Flag date (period) ge", "GET Flag?date=ge2016-06-01", &["Flag/example"]),
    found(
        "FamilyMemberHistory relationship",
        "GET FamilyMemberHistory?relationship=FTH",
        &["FamilyMemberHistory/father"],
    ),
    found("AuditEvent action", "GET AuditEvent?action=C", &["AuditEvent/example-error"]),
    found("AuditEvent outcome", "GET AuditEvent?outcome=8", &["AuditEvent/example-error"]),
    found("List code", "GET List?code=http://loinc.org|8670-2", &["List/f201", "List/genetic", "List/prognosis"]),
    found("DeviceRequest intent", "GET DeviceRequest?intent=instance-order", &["DeviceRequest/insulinpump"]),
    found(
        "QuestionnaireResponse status",
        "GET QuestionnaireResponse?status=in-progress",
        &["QuestionnaireResponse/ussg-fht-answers"],
    ),
    found("Invoice status", "GET Invoice?status=issued", &["Invoice/example"]),
    found("Contract status", "GET Contract?status=executed", &["Contract/C-2121"]),
    found("Substance code", "GET Substance?code=3092008", &["Substance/f202"]),
];

pub const DATES: &[Row] = &[
    found("birthdate day", "GET Patient?birthdate=1974-12-25", &["Patient/ch-example", "Patient/example"]),
    found("birthdate month precision", "GET Patient?birthdate=1974-12", &["Patient/ch-example", "Patient/example"]),
    found(
        "birthdate year precision",
        "GET Patient?birthdate=2017",
        &["Patient/infant-twin-1", "Patient/infant-twin-2", "Patient/newborn"],
    ),
    found("birthdate eq prefix", "GET Patient?birthdate=eq1982-08-02", &["Patient/pat4"]),
    found("birthdate lt", "GET Patient?birthdate=lt1945", &["Patient/f001", "Patient/glossy", "Patient/xcda"]),
    found(
        "birthdate le on a boundary day",
        "GET Patient?birthdate=le1944-11-17",
        &["Patient/f001", "Patient/glossy", "Patient/xcda"],
    ),
    found(
        "birthdate gt",
        "GET Patient?birthdate=gt2010-03-23",
        &["Patient/infant-twin-1", "Patient/infant-twin-2", "Patient/newborn"],
    ),
    found(
        "birthdate ge on a boundary day",
        "GET Patient?birthdate=ge2010-03-23",
        &["Patient/animal", "Patient/infant-twin-1", "Patient/infant-twin-2", "Patient/newborn"],
    ),
    found("birthdate sa", "GET Patient?birthdate=sa2017-05-15", &["Patient/newborn"]),
    found("birthdate eb", "GET Patient?birthdate=eb1956-05-27", &["Patient/f001", "Patient/glossy", "Patient/xcda"]),
    found(
        "birthdate ne, counted (patients without birthDate do not match)",
        "GET Patient?birthdate=ne1973-05-31&_summary=count",
        &[],
    )
    .total(15),
    found(
        "birthdate ap (±10% of the distance from today)",
        "GET Patient?birthdate=ap1974-12-25",
        &["Patient/ch-example", "Patient/example", "Patient/genetics-example1", "Patient/mom"],
    ),
    found(
        "birthdate range by two parameters",
        "GET Patient?birthdate=ge1960&birthdate=lt1970",
        &["Patient/f201", "Patient/proband"],
    ),
    found(
        "Observation date day",
        "GET Observation?date=2012-09-17",
        &["Observation/blood-pressure", "Observation/blood-pressure-cancel", "Observation/blood-pressure-dar"],
    ),
    found("Observation date day, ten vital signs", "GET Observation?date=1999-07-02", VITALS_1999),
    found("Observation date eb", "GET Observation?date=eb2000", VITALS_1999),
    found("Observation date le", "GET Observation?date=le1999-07-02", VITALS_1999),
    found(
        "Observation date to the second, UTC",
        "GET Observation?date=2014-12-11T04:44:16Z",
        &["Observation/alcohol-type", "Observation/gcs-qa", "Observation/glasgow"],
    ),
    found(
        "Observation date to the second in another zone",
        "GET Observation?date=2017-05-03T19:54:26Z",
        &["Observation/656"],
    ),
    found(
        "Observation date with an offset in the search value",
        "GET Observation?date=2017-05-03T15:54:26-04:00",
        &["Observation/656"],
    ),
    found(
        "Observation date day window by ge and lt",
        "GET Observation?date=ge2018-03-11&date=lt2018-03-12",
        &[
            "Observation/bgpanel",
            "Observation/bloodgroup",
            "Observation/rhstatus",
            "Observation/trachcare",
            // An effectivePeriod from 2013-04-02 without an end is ongoing: it matches both.
            "Observation/f001",
        ],
    ),
    found(
        "Observation date sa over Periods (one open-ended)",
        "GET Observation?date=sa2018-03-12",
        &["Observation/abdo-tender", "Observation/map-sitting"],
    ),
    found(
        "Observation date ap with code",
        "GET Observation?date=ap2012-09-17&code=85354-9",
        &["Observation/blood-pressure", "Observation/blood-pressure-cancel", "Observation/blood-pressure-dar"],
    ),
    found("Encounter date month contains the whole Period", "GET Encounter?date=2013-03", &["Encounter/f203"]),
    found("Encounter date eq day inside a longer Period does not match", "GET Encounter?date=2013-03-15", &[]),
    found("Encounter date ge", "GET Encounter?date=ge2015", &["Encounter/emerg", "Encounter/home"]),
    found("Encounter date ap on a Period", "GET Encounter?date=ap2013-03-15&class=IMP", &["Encounter/f203"]),
    found("Condition onset-date month", "GET Condition?onset-date=2013-03", &["Condition/f203", "Condition/f204"]),
    found(
        "Condition onset-date ge",
        "GET Condition?onset-date=ge2013-01-01",
        &["Condition/f201", "Condition/f203", "Condition/f204"],
    ),
    found("Condition onset-date lt year", "GET Condition?onset-date=lt2011", &["Condition/stroke"]),
    found(
        "Condition onset-date le on a boundary day",
        "GET Condition?onset-date=le2011-08-05",
        &["Condition/f001", "Condition/f002", "Condition/stroke"],
    ),
    found("Condition onset-date sa", "GET Condition?onset-date=sa2013-03-09", &["Condition/f201", "Condition/f204"]),
    found(
        "Condition onset-date eb month",
        "GET Condition?onset-date=eb2011-06",
        &["Condition/f002", "Condition/stroke"],
    ),
    found("Condition abatement-date", "GET Condition?abatement-date=2013-03-20", &["Condition/f204"]),
    found("Condition recorded-date", "GET Condition?recorded-date=2013-03-11", &["Condition/f203", "Condition/f204"]),
    found(
        "MedicationRequest authoredon day",
        "GET MedicationRequest?authoredon=2015-03-01",
        &["MedicationRequest/medrx002"],
    ),
    found(
        "MedicationRequest authoredon gt",
        "GET MedicationRequest?authoredon=gt2015-01-15",
        &["MedicationRequest/medrx002"],
    ),
    found(
        "MedicationRequest authoredon ne, counted",
        "GET MedicationRequest?authoredon=ne2015-03-01&_summary=count",
        &[],
    )
    .total(39),
    found("Immunization date", "GET Immunization?date=2013-01-10", &["Immunization/example", "Immunization/notGiven"]),
    found(
        "RiskAssessment date instant precision",
        "GET RiskAssessment?date=2014-07-19T16:04:00Z",
        &["RiskAssessment/cardiac"],
    ),
    found("Slot start instant", "GET Slot?start=2013-12-25T09:15:00Z", &["Slot/example"]),
    found("Slot start ge instant", "GET Slot?start=ge2013-12-25T09:30:00Z", &["Slot/2", "Slot/3"]),
    found("Appointment date", "GET Appointment?date=2013-12-10", &["Appointment/example"]),
    found("Appointment date lt", "GET Appointment?date=lt2013-12-10", &["Appointment/2docs"]),
    found(
        "AuditEvent date day",
        "GET AuditEvent?date=2013-06-20",
        &["AuditEvent/example-login", "AuditEvent/example-logout", "AuditEvent/example-rest"],
    ),
    found("AuditEvent date ge year", "GET AuditEvent?date=ge2017", &["AuditEvent/example-error"]),
    found("AuditEvent date gt year means after that year", "GET AuditEvent?date=gt2017", &[]),
    found(
        "QuestionnaireResponse authored across zones",
        "GET QuestionnaireResponse?authored=2013-02-19",
        &["QuestionnaireResponse/3141", "QuestionnaireResponse/bb"],
    ),
    found(
        "QuestionnaireResponse authored lt",
        "GET QuestionnaireResponse?authored=lt2010",
        &["QuestionnaireResponse/ussg-fht-answers"],
    ),
    found("NutritionOrder datetime, counted", "GET NutritionOrder?datetime=2014-09-17&_summary=count", &[]).total(13),
    found("Composition date", "GET Composition?date=2012-01-04", &["Composition/example"]),
    found("Bundle timestamp", "GET Bundle?timestamp=2013-05-28T22:12:21Z", &["Bundle/father"]),
    found(
        "Consent date year",
        "GET Consent?date=2016",
        &[
            "Consent/consent-example-basic",
            "Consent/consent-example-pkb",
            "Consent/consent-example-signature",
            "Consent/consent-example-smartonfhir",
        ],
    ),
    found(
        "DiagnosticReport date",
        "GET DiagnosticReport?date=2012-12-01",
        &["DiagnosticReport/f201", "DiagnosticReport/ultrasound"],
    ),
    found("DiagnosticReport issued lt", "GET DiagnosticReport?issued=lt2009", &["DiagnosticReport/102"]),
    found(
        "MedicationDispense whenhandedover",
        "GET MedicationDispense?whenhandedover=2015-06-26",
        &[
            "MedicationDispense/meddisp0304",
            "MedicationDispense/meddisp0308",
            "MedicationDispense/meddisp0314",
            "MedicationDispense/meddisp0315",
            "MedicationDispense/meddisp0317",
        ],
    ),
    found(
        "MedicationStatement effective",
        "GET MedicationStatement?effective=2014-02-01",
        &["MedicationStatement/example003", "MedicationStatement/example006"],
    ),
    found(
        "ServiceRequest authored",
        "GET ServiceRequest?authored=2017-03-05",
        &["ServiceRequest/ambulation", "ServiceRequest/colon-biopsy", "ServiceRequest/colonoscopy"],
    ),
];

pub const NUMBERS_QUANTITIES: &[Row] = &[
    found("probability eq", "GET RiskAssessment?probability=0.02", &["RiskAssessment/cardiac"]),
    found("probability gt", "GET RiskAssessment?probability=gt0.01", &["RiskAssessment/cardiac"]),
    found("probability lt", "GET RiskAssessment?probability=lt0.0003", &["RiskAssessment/genetic"]),
    found(
        "probability ge",
        "GET RiskAssessment?probability=ge0.0015",
        &["RiskAssessment/cardiac", "RiskAssessment/genetic"],
    ),
    found(
        "probability eq at full precision, two resources",
        "GET RiskAssessment?probability=0.000368",
        &["RiskAssessment/genetic", "RiskAssessment/riskexample"],
    ),
    found(
        "variant-start eq",
        "GET MolecularSequence?variant-start=13116",
        &[
            "MolecularSequence/fda-example",
            "MolecularSequence/fda-vcf-comparison",
            "MolecularSequence/fda-vcfeval-comparison",
        ],
    ),
    found(
        "variant-start lt",
        "GET MolecularSequence?variant-start=lt10",
        &["MolecularSequence/coord-0-base", "MolecularSequence/coord-1-base"],
    ),
    found(
        "variant-end ge",
        "GET MolecularSequence?variant-end=ge128273726",
        &[
            "MolecularSequence/graphic-example-1",
            "MolecularSequence/graphic-example-3",
            "MolecularSequence/sequence-complex-variant",
        ],
    ),
    found(
        "window-start eq 0",
        "GET MolecularSequence?window-start=0",
        &["MolecularSequence/coord-0-base", "MolecularSequence/graphic-example-2"],
    ),
    found(
        "probability sa",
        "GET RiskAssessment?probability=sa0.0016",
        &["RiskAssessment/cardiac", "RiskAssessment/genetic"],
    ),
    found(
        "probability ne",
        "GET RiskAssessment?probability=ne0.02",
        &["RiskAssessment/genetic", "RiskAssessment/riskexample"],
    ),
    found("value-quantity plain number", "GET Observation?value-quantity=185", &["Observation/example"]),
    found("value-quantity number||code", "GET Observation?value-quantity=185||[lb_av]", &["Observation/example"]),
    found(
        "value-quantity number|system|code",
        "GET Observation?value-quantity=185|http://unitsofmeasure.org|[lb_av]",
        &["Observation/example"],
    ),
    found(
        "value-quantity in kg matches a value in [lb_av] (UCUM)",
        "GET Observation?value-quantity=ap84|http://unitsofmeasure.org|kg",
        &["Observation/example"],
    ),
    found(
        "value-quantity in g matches a value in [lb_av] (UCUM)",
        "GET Observation?value-quantity=ap84000|http://unitsofmeasure.org|g",
        &["Observation/example"],
    ),
    found(
        "value-quantity gt in mm over cm and [in_i]",
        "GET Observation?value-quantity=gt200|http://unitsofmeasure.org|mm",
        &["Observation/body-height", "Observation/body-length", "Observation/head-circumference"],
    ),
    found(
        "value-quantity lt in mm",
        "GET Observation?value-quantity=lt300|http://unitsofmeasure.org|mm",
        &["Observation/body-length"],
    ),
    found(
        "value-quantity mm[Hg]",
        "GET Observation?value-quantity=80|http://unitsofmeasure.org|mm[Hg]",
        &["Observation/mbp"],
    ),
    found(
        "value-quantity lt in kPa over mm[Hg] and kPa (UCUM)",
        "GET Observation?value-quantity=lt10|http://unitsofmeasure.org|kPa",
        &["Observation/f003", "Observation/map-sitting"],
    ),
    found(
        "value-quantity Cel gt",
        "GET Observation?value-quantity=gt38|http://unitsofmeasure.org|Cel",
        &["Observation/f202"],
    ),
    found(
        "value-quantity ge without unit",
        "GET Observation?value-quantity=ge100",
        &["Observation/656", "Observation/example", "Observation/f204"],
    ),
    found("value-quantity decimal with unit code", "GET Observation?value-quantity=6.3||mmol/L", &["Observation/f001"]),
    found(
        "value-quantity {score}",
        "GET Observation?value-quantity=13||{score}",
        &["Observation/gcs-qa", "Observation/glasgow"],
    ),
    found("value-quantity wrong unit", "GET Observation?value-quantity=185||kg", &[]),
    found("Encounter length quantity gt", "GET Encounter?length=gt100", &["Encounter/f001", "Encounter/f002"]),
    found("Condition onset-age quantity", "GET Condition?onset-age=52", &["Condition/f202"]),
];

pub const REFERENCES: &[Row] = &[
    found("subject Type/id", "GET Observation?subject=Patient/f001", F001_OBSERVATIONS),
    found("subject bare id", "GET Observation?subject=f201", F201_OBSERVATIONS),
    found(
        "subject:Type modifier",
        "GET Observation?subject:Patient=727127",
        &[
            "Observation/example-diplotype1",
            "Observation/example-haplotype1",
            "Observation/example-haplotype2",
            "Observation/example-phenotype",
        ],
    ),
    found("subject to a Group", "GET Observation?subject=Group/herd1", &["Observation/herd1"]),
    found("subject:Group", "GET Observation?subject:Group=herd1", &["Observation/herd1"]),
    found("patient, counted", "GET Observation?patient=Patient/example&_summary=count", &[]).total(30),
    found("reference to a Group is not a patient", "GET Observation?patient=herd1", &[]),
    found("absolute URL reference", "GET Person?link=http://www.goodhealth.com/Practitioner/98574", &["Person/pd"]),
    found(
        "reference:identifier",
        "GET Claim?patient:identifier=http://www.jurisdiction.com/nationalId|123AB345",
        &["Claim/100154"],
    ),
    found(
        "reference:identifier on Task.owner",
        "GET Task?owner:identifier=http://nationalinsurers.com/identifiers|12345",
        &[
            "Task/fm-example1",
            "Task/fm-example2",
            "Task/fm-example3",
            "Task/fm-example4",
            "Task/fm-example5",
            "Task/fm-example6",
        ],
    ),
    found(
        "reference:identifier on Task.focus",
        "GET Task?focus:identifier=http://happyvalley.com/claim|1500",
        &["Task/fm-example1", "Task/fm-example5", "Task/fm-example6"],
    ),
    found(
        "reference:identifier on Observation.basedOn",
        "GET Observation?based-on:identifier=https://acme.org/identifiers|1234",
        &["Observation/blood-pressure"],
    ),
    found(
        "Encounter service-provider:missing",
        "GET Encounter?service-provider:missing=true",
        &["Encounter/emerg", "Encounter/example", "Encounter/home", "Encounter/xcda"],
    ),
    found(
        "Condition encounter:missing",
        "GET Condition?encounter:missing=true",
        &[
            "Condition/example",
            "Condition/example2",
            "Condition/f202",
            "Condition/f205",
            "Condition/family-history",
            "Condition/stroke",
        ],
    ),
    found(
        "Condition asserter:Practitioner",
        "GET Condition?asserter:Practitioner=f201",
        &["Condition/f201", "Condition/f203", "Condition/f204", "Condition/f205"],
    ),
    found(
        "MedicationRequest medication reference",
        "GET MedicationRequest?medication=Medication/med0316",
        &["MedicationRequest/medrx002"],
    ),
    found(
        "AllergyIntolerance patient",
        "GET AllergyIntolerance?patient=Patient/mom",
        &["AllergyIntolerance/nka", "AllergyIntolerance/nkda"],
    ),
    found(
        "Organization partof",
        "GET Organization?partof=Organization/f001",
        &["Organization/f002", "Organization/f003"],
    ),
    found("Location partof", "GET Location?partof=1", &["Location/2"]),
    found("RiskAssessment condition", "GET RiskAssessment?condition=Condition/stroke", &["RiskAssessment/prognosis"]),
    found(
        "Encounter participant by id",
        "GET Encounter?participant=Practitioner/f201",
        &["Encounter/f201", "Encounter/f202", "Encounter/f203"],
    ),
    found(
        "Coverage beneficiary",
        "GET Coverage?beneficiary=Patient/5",
        &["Coverage/7546D", "Coverage/7547E", "Coverage/SP1234"],
    ),
    found(
        "Consent patient",
        "GET Consent?patient=Patient/f001",
        &[
            "Consent/consent-example-Emergency",
            "Consent/consent-example-Out",
            "Consent/consent-example-basic",
            "Consent/consent-example-grantor",
            "Consent/consent-example-notAuthor",
            "Consent/consent-example-notOrg",
            "Consent/consent-example-notThem",
            "Consent/consent-example-notThis",
            "Consent/consent-example-notTime",
        ],
    ),
    found(
        "absolute URL subject",
        "GET ServiceRequest?subject=https://fhir.orionhealth.com/blaze/fhir/Patient/77662",
        &["ServiceRequest/myringotomy"],
    ),
    found("Specimen subject Group", "GET Specimen?subject=Group/herd1", &["Specimen/pooled-serum"]),
    found(
        "FamilyMemberHistory patient bare id",
        "GET FamilyMemberHistory?patient=example",
        &["FamilyMemberHistory/father"],
    ),
    found(
        "Procedure subject",
        "GET Procedure?subject=Patient/f001",
        &["Procedure/f001", "Procedure/f002", "Procedure/f003", "Procedure/f004"],
    ),
    found(
        "CarePlan subject",
        "GET CarePlan?subject=Patient/f201",
        &["CarePlan/f201", "CarePlan/f202", "CarePlan/f203"],
    ),
];

pub const URIS: &[Row] = &[
    found(
        "Questionnaire url exact",
        "GET Questionnaire?url=http://hl7.org/fhir/Questionnaire/gcs",
        &["Questionnaire/gcs"],
    ),
    found("url exact does not match a prefix", "GET Questionnaire?url=http://hl7.org/fhir/Questionnaire", &[]),
    found(
        "Questionnaire url:above",
        "GET Questionnaire?url:above=http://hl7.org/fhir/Questionnaire/gcs/extra",
        &["Questionnaire/gcs"],
    ),
    found(
        "PlanDefinition url shared by two versions",
        "GET PlanDefinition?url=http://example.org/PlanDefinition/zika-virus-intervention",
        &["PlanDefinition/zika-virus-intervention", "PlanDefinition/zika-virus-intervention-initial"],
    ),
    found(
        "PlanDefinition url and version",
        "GET PlanDefinition?url=http://example.org/PlanDefinition/zika-virus-intervention&version=2.0.0",
        &["PlanDefinition/zika-virus-intervention"],
    ),
    found(
        "PlanDefinition url:below",
        "GET PlanDefinition?url:below=http://hl7.org/fhir/ig/opioid-cds",
        &[
            "PlanDefinition/opioidcds-04",
            "PlanDefinition/opioidcds-05",
            "PlanDefinition/opioidcds-07",
            "PlanDefinition/opioidcds-08",
            "PlanDefinition/opioidcds-10",
            "PlanDefinition/opioidcds-11",
        ],
    ),
    found(
        "Library url:below",
        "GET Library?url:below=http://motivemi.com/artifacts",
        &["Library/suiciderisk-orderset-logic"],
    ),
    found(
        "ActivityDefinition url:below",
        "GET ActivityDefinition?url:below=http://example.org/ActivityDefinition",
        &[
            "ActivityDefinition/administer-zika-virus-exposure-assessment",
            "ActivityDefinition/provide-mosquito-prevention-advice",
            "ActivityDefinition/serum-dengue-virus-igm",
            "ActivityDefinition/serum-zika-dengue-virus-igm",
        ],
    ),
    found("Measure url", "GET Measure?url=http://ohie.org/Measure/hiv-indicators", &["Measure/hiv-indicators"]),
    found(
        "_profile",
        "GET Observation?_profile=http://hl7.org/fhir/StructureDefinition/vitalsigns",
        &[
            "Observation/blood-pressure",
            "Observation/blood-pressure-cancel",
            "Observation/blood-pressure-dar",
            "Observation/bmi",
            "Observation/body-height",
            "Observation/body-length",
            "Observation/body-temperature",
            "Observation/head-circumference",
            "Observation/heart-rate",
            "Observation/respiratory-rate",
            "Observation/satO2",
            "Observation/vitals-panel",
        ],
    ),
    found(
        "_profile on another type",
        "GET Questionnaire?_profile=http://hl7.org/fhir/StructureDefinition/cqf-questionnaire",
        &["Questionnaire/phq-9-questionnaire"],
    ),
    found("_source", "GET Basic?_source=http://tessera.test/source#load-1", &["Basic/tessera-tagged"]),
];

pub const COMPOSITES: &[Row] = &[
    found(
        "code-value-quantity lt",
        "GET Observation?code-value-quantity=http://loinc.org|8867-4$lt50",
        &["Observation/heart-rate"],
    ),
    found("code-value-quantity gt, no match", "GET Observation?code-value-quantity=http://loinc.org|8867-4$gt50", &[]),
    found(
        "component-code-value-quantity gt",
        "GET Observation?component-code-value-quantity=http://loinc.org|8480-6$gt100",
        &["Observation/blood-pressure", "Observation/blood-pressure-dar"],
    ),
    found(
        "component-code-value-quantity with unit",
        "GET Observation?component-code-value-quantity=http://loinc.org|8462-4$60|http://unitsofmeasure.org|mm[Hg]",
        &["Observation/blood-pressure"],
    ),
    found(
        "component composite holds on one component, not across two",
        "GET Observation?component-code-value-quantity=http://loinc.org|8480-6$lt100",
        &[],
    ),
    found(
        "combo-code-value-quantity on the value",
        "GET Observation?combo-code-value-quantity=http://loinc.org|8867-4$44",
        &["Observation/heart-rate"],
    ),
    found(
        "combo-code-value-quantity on a component",
        "GET Observation?combo-code-value-quantity=http://loinc.org|8480-6$107",
        &["Observation/blood-pressure", "Observation/blood-pressure-dar"],
    ),
    found(
        "code-value-concept",
        "GET Observation?code-value-concept=http://loinc.org|883-9$http://snomed.info/sct|112144000",
        &["Observation/bloodgroup", "Observation/rhstatus"],
    ),
    found(
        "code-value-concept codes only",
        "GET Observation?code-value-concept=55233-1$10828004",
        &["Observation/example-genetics-1", "Observation/example-genetics-2"],
    ),
    found(
        "code-value-date",
        "GET Observation?code-value-date=http://loinc.org|8665-2$2016-12",
        &["Observation/date-lastmp"],
    ),
    found(
        "component-code-value-concept",
        "GET Observation?component-code-value-concept=http://loinc.org|32401-2$LA6724-4",
        &["Observation/10minute-apgar-score"],
    ),
    found(
        "combo-code-value-concept",
        "GET Observation?combo-code-value-concept=883-9$112144000",
        &["Observation/bloodgroup", "Observation/rhstatus"],
    ),
];

pub const COMMON: &[Row] = &[
    found("_id", "GET Patient?_id=pat1", &["Patient/pat1"]),
    found("_id list", "GET Patient?_id=pat1,pat2,does-not-exist", &["Patient/pat1", "Patient/pat2"]),
    found("_id on an id shared across types", "GET Organization?_id=f001", &["Organization/f001"]),
    found("_lastUpdated gt a past date, counted", "GET Patient?_lastUpdated=gt2000-01-01&_summary=count", &[])
        .total(22),
    found("_lastUpdated lt a past date", "GET Patient?_lastUpdated=lt2000-01-01", &[]),
    found("_lastUpdated with _id", "GET Condition?_lastUpdated=ge2001&_id=stroke", &["Condition/stroke"]),
    found("_tag system|code", "GET Basic?_tag=http://tessera.test/tags|search-suite", &["Basic/tessera-tagged"]),
    found("_tag code only", "GET Basic?_tag=other", &["Basic/tessera-tagged-2"]),
    found("_tag:missing=false", "GET Basic?_tag:missing=false", &["Basic/tessera-tagged", "Basic/tessera-tagged-2"]),
    found(
        "_security",
        "GET Condition?_security=http://terminology.hl7.org/CodeSystem/v3-ActCode|TBOO",
        &["Condition/f202"],
    ),
    found("_security on the fixture", "GET Basic?_security=R", &["Basic/tessera-tagged"]),
    found("_source without fragment does not match", "GET Basic?_source=http://tessera.test/source", &[]),
];

pub const CHAINS: &[Row] = &[
    found("chain subject:Patient.family", "GET Observation?subject:Patient.family=bor", F201_OBSERVATIONS),
    found(
        "chain patient.identifier",
        "GET Observation?patient.identifier=urn:oid:2.16.840.1.113883.2.4.6.3|738472983",
        F001_OBSERVATIONS,
    ),
    found(
        "chain on Condition subject name",
        "GET Condition?patient.family=van",
        &["Condition/f001", "Condition/f002", "Condition/f003"],
    ),
    found("chain to Practitioner", "GET Encounter?participant:Practitioner.family=versteegh", &["Encounter/f002"]),
    found(
        "chain depth 2: subject's organization name",
        "GET Observation?subject:Patient.organization.name=burgers",
        F001_OBSERVATIONS,
    ),
    found(
        "chain depth 2 on Encounter",
        "GET Encounter?subject:Patient.organization.name=artis",
        &["Encounter/f201", "Encounter/f202", "Encounter/f203"],
    ),
    found(
        "chain depth 2 to Organization/1",
        "GET Condition?subject:Patient.organization.name=gastro",
        &["Condition/example", "Condition/example2", "Condition/family-history", "Condition/stroke"],
    ),
    found("chain with no match", "GET Observation?subject:Patient.family=nobody", &[]),
    found(
        "chain on MedicationRequest requester",
        "GET MedicationRequest?requester:Practitioner.name=heps&_summary=count",
        &[],
    )
    .total(40),
];

pub const HAS: &[Row] = &[
    found("_has Observation code", "GET Patient?_has:Observation:patient:code=85354-9", &["Patient/example"]),
    found(
        "_has Condition clinical-status",
        "GET Patient?_has:Condition:subject:clinical-status=resolved",
        &["Patient/f201"],
    ),
    found("_has Encounter class", "GET Practitioner?_has:Encounter:practitioner:class=IMP", &["Practitioner/f201"]),
    found(
        "_has AllergyIntolerance",
        "GET Patient?_has:AllergyIntolerance:patient:criticality=high",
        &["Patient/example"],
    ),
    found("_has nested", "GET Patient?_has:Encounter:subject:_has:Condition:encounter:code=368009", &["Patient/f001"]),
    found("_has with no match", "GET Patient?_has:Observation:patient:code=http://loinc.org|0000-0", &[]),
    found(
        "_has and a plain parameter",
        "GET Patient?_has:Observation:subject:status=cancelled&gender=male",
        &["Patient/example", "Patient/f001"],
    ),
];

pub const OR_AND: &[Row] = &[
    found(
        "comma is OR on tokens",
        "GET Observation?status=cancelled,preliminary",
        &["Observation/blood-pressure-cancel", "Observation/unsat", "Observation/vp-oyster"],
    ),
    found(
        "comma is OR on strings",
        "GET Patient?family=donald,notsowell",
        &["Patient/pat1", "Patient/pat2", "Patient/pat3", "Patient/pat4"],
    ),
    found("repeated parameter is AND", "GET Patient?family=donald&given=d", &["Patient/pat1", "Patient/pat2"]),
    found("repeated parameter with modifiers is AND", "GET Patient?given=duck&given:exact=D", &["Patient/pat2"]),
    found("OR and AND together", "GET Patient?family=donald,notsowell&gender=male", &["Patient/pat1", "Patient/pat3"]),
    found(
        "OR on references",
        "GET Observation?subject=Patient/f001,Group/herd1&status=cancelled",
        &["Observation/unsat"],
    ),
    found("OR on dates", "GET Patient?birthdate=1944-11-17,1960-03-13", &["Patient/f001", "Patient/f201"]),
    found(
        "AND across types of parameter",
        "GET Condition?subject=Patient/f201&clinical-status=active&onset-date=ge2013-03",
        &["Condition/f203"],
    ),
];

pub const INCLUDES: &[Row] = &[
    found("_include subject", "GET Condition?_id=f001&_include=Condition:subject", &["Condition/f001"])
        .including(&["Patient/f001"]),
    found(
        "_include with target type",
        "GET Condition?_id=f201&_include=Condition:asserter:Practitioner",
        &["Condition/f201"],
    )
    .including(&["Practitioner/f201"]),
    found(
        "_include with a target type that does not apply",
        "GET Condition?_id=f201&_include=Condition:asserter:Patient",
        &["Condition/f201"],
    ),
    found("_include=*", "GET Encounter?_id=f001&_include=*", &["Encounter/f001"]).including(&[
        "Organization/f001",
        "Patient/f001",
        "Practitioner/f002",
    ]),
    found(
        "_include:iterate",
        "GET Encounter?_id=f003&_include=Encounter:subject&_include:iterate=Patient:organization",
        &["Encounter/f003"],
    )
    .including(&["Organization/f001", "Patient/f001"]),
    found(
        "_include the same target twice gives it once",
        "GET Observation?_id=f001,f002&_include=Observation:subject",
        &["Observation/f001", "Observation/f002"],
    )
    .including(&["Patient/f001"]),
    found(
        "_include medication",
        "GET MedicationRequest?_id=medrx002&_include=MedicationRequest:medication",
        &["MedicationRequest/medrx002"],
    )
    .including(&["Medication/med0316"]),
    found("_revinclude", "GET Patient?_id=f201&_revinclude=Condition:subject", &["Patient/f201"]).including(&[
        "Condition/f201",
        "Condition/f202",
        "Condition/f203",
        "Condition/f204",
        "Condition/f205",
    ]),
    found("_revinclude partof", "GET Organization?_id=f001&_revinclude=Organization:partof", &["Organization/f001"])
        .including(&["Organization/f002", "Organization/f003"]),
    found(
        "_revinclude:iterate",
        "GET Patient?_id=f001&_revinclude=Encounter:subject&_revinclude:iterate=Condition:encounter",
        &["Patient/f001"],
    )
    .including(&[
        "Condition/f001",
        "Condition/f002",
        "Condition/f003",
        "Encounter/f001",
        "Encounter/f002",
        "Encounter/f003",
    ]),
    found(
        "_include and _revinclude together",
        "GET Encounter?_id=f203&_include=Encounter:service-provider&_revinclude=Condition:encounter",
        &["Encounter/f203"],
    )
    .including(&["Condition/f203", "Condition/f204", "Organization/2"]),
];

pub const SORT_PAGING: &[Row] = &[
    found(
        "_sort by birthdate",
        "GET Patient?_id=f001,f201,example,pat4,infant-mom&_sort=birthdate",
        &["Patient/f001", "Patient/f201", "Patient/example", "Patient/pat4", "Patient/infant-mom"],
    )
    .in_order(),
    found(
        "_sort descending",
        "GET Patient?_id=f001,f201,example,pat4,infant-mom&_sort=-birthdate",
        &["Patient/infant-mom", "Patient/pat4", "Patient/example", "Patient/f201", "Patient/f001"],
    )
    .in_order(),
    found(
        "_sort by family then -birthdate",
        "GET Patient?_id=pat3,pat4,pat1,mom,f201&_sort=family,-birthdate",
        &["Patient/f201", "Patient/pat1", "Patient/mom", "Patient/pat4", "Patient/pat3"],
    )
    .in_order(),
    found(
        "_sort by a token then a date",
        "GET Patient?_id=infant-twin-1,infant-twin-2,newborn,animal&_sort=gender,-birthdate",
        &["Patient/infant-twin-1", "Patient/animal", "Patient/newborn", "Patient/infant-twin-2"],
    )
    .in_order(),
    found(
        "_sort by Observation date",
        "GET Observation?_id=656,heart-rate,satO2,date-lastmp&_sort=date",
        &["Observation/heart-rate", "Observation/satO2", "Observation/date-lastmp", "Observation/656"],
    )
    .in_order(),
    found(
        "_sort by _id",
        "GET Location?_sort=_id",
        &["Location/1", "Location/2", "Location/amb", "Location/hl7", "Location/ph", "Location/ukp"],
    )
    .in_order(),
    found("_count pages through every match once", "GET Patient?gender=female&_count=3", FEMALE_PATIENTS),
    found(
        "_count=1 pages over a sorted set",
        "GET Condition?subject=Patient/f201&_count=1&_sort=-onset-date",
        &["Condition/f201", "Condition/f204", "Condition/f203", "Condition/f202", "Condition/f205"],
    ),
    found(
        "_count pages with _total=accurate",
        "GET Observation?patient=Patient/f001&_count=2&_total=accurate",
        F001_OBSERVATIONS,
    )
    .total(7),
];

pub const RESULT_CONTROL: &[Row] = &[
    found("_total=accurate", "GET Observation?subject=Patient/f201&_total=accurate", F201_OBSERVATIONS).total(5),
    found("_total=none has no total", "GET Observation?subject=Patient/f201&_total=none", F201_OBSERVATIONS)
        .without_total(),
    found("_summary=count over a date", "GET Observation?date=1999-07-02&_summary=count", &[]).total(10),
    found("_summary=count with no match", "GET Patient?family=nobody-by-this-name&_summary=count", &[]).total(0),
    found(
        "_count=0 gives the total only",
        "GET Observation?code=http://loinc.org|85354-9&_count=0&_total=accurate",
        &[],
    )
    .total(3),
    found(
        "_summary=true still finds the same matches",
        "GET Patient?family=donald&_summary=true",
        &["Patient/pat1", "Patient/pat2"],
    ),
    found(
        "_elements still finds the same matches",
        "GET Patient?family=notsowell&_elements=birthDate",
        &["Patient/pat3", "Patient/pat4"],
    ),
];

pub const POST_AND_SYSTEM: &[Row] = &[
    found("POST _search as a form", "POST Patient/_search?family=chalmers", &["Patient/example"]),
    found(
        "POST _search with a token system",
        "POST Observation/_search?code=http://loinc.org|85354-9&status=final",
        &["Observation/blood-pressure", "Observation/blood-pressure-dar"],
    ),
    found("POST _search with a date prefix", "POST Condition/_search?onset-date=lt2011", &["Condition/stroke"]),
    found(
        "POST _search with _include",
        "POST Condition/_search?_id=f001&_include=Condition:subject",
        &["Condition/f001"],
    )
    .including(&["Patient/f001"]),
    found(
        "system search over _type with name",
        "GET ?_type=Patient,Practitioner&name=pieter",
        &["Patient/f001", "Practitioner/f002"],
    ),
    found(
        "system search _id across types",
        "GET ?_id=f201",
        &[
            "CarePlan/f201",
            "Condition/f201",
            "DiagnosticReport/f201",
            "Encounter/f201",
            "List/f201",
            "Organization/f201",
            "Patient/f201",
            "Practitioner/f201",
            "Procedure/f201",
            "Questionnaire/f201",
            "QuestionnaireResponse/f201",
            "Substance/f201",
        ],
    ),
    found(
        "system search _id restricted by _type",
        "GET ?_type=Patient,Organization&_id=f201",
        &["Organization/f201", "Patient/f201"],
    ),
    found("POST system search", "POST _search?_type=Patient&family=bor", &["Patient/f201"]),
];

pub const ERRORS: &[Row] = &[
    refused("malformed date", "GET Patient?birthdate=1974-13-45", 400),
    refused("date with an unknown prefix", "GET Patient?birthdate=xx1974", 400),
    refused("malformed number", "GET RiskAssessment?probability=abc", 400),
    refused("number with an unknown prefix", "GET RiskAssessment?probability=zz0.5", 400),
    refused("malformed quantity", "GET Observation?value-quantity=heavy||kg", 400),
    refused("unknown parameter, strict", "GET Patient?nonsense-param=1", 400).strict().mentioning("nonsense-param"),
    refused("unknown modifier, strict", "GET Patient?family:sideways=x", 400).strict(),
    refused("chain through a non-reference parameter, strict", "GET Patient?gender.name=x", 400).strict(),
    refused("_include of an unknown parameter, strict", "GET Patient?_include=Patient:nothing", 400).strict(),
    refused("_sort by an unknown parameter, strict", "GET Patient?_sort=nonsense-param", 400).strict(),
    refused("negative _count", "GET Patient?_count=-1", 400),
    refused("_summary with an unknown value", "GET Patient?_summary=maybe", 400),
    found("unknown parameter, lenient, is ignored", "GET Patient?nonsense-param=1&family=bor", &["Patient/f201"]),
];
