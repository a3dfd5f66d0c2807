//! The vital signs the projections know: the LOINC codes that identify each one, the name it
//! has in `measurements.type` and as a time-series field, and its UCUM unit.

/// One kind of vital-sign measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VitalSign {
    HeartRate,
    Spo2,
    Temperature,
    BpSystolic,
    BpDiastolic,
    BpMean,
    RespiratoryRate,
    BodyWeight,
    BodyHeight,
    Bmi,
}

/// (kind, name, LOINC codes, canonical UCUM unit). The first code is the one `$stats`
/// answers for the kind; the others are accepted synonyms (e.g. SpO2 by pulse oximetry).
const TABLE: &[(VitalSign, &str, &[&str], &str)] = &[
    (VitalSign::HeartRate, "heart_rate", &["8867-4"], "/min"),
    (VitalSign::Spo2, "spo2", &["59408-5", "2708-6"], "%"),
    (VitalSign::Temperature, "temperature", &["8310-5", "8331-1", "8332-9", "8328-7"], "Cel"),
    (VitalSign::BpSystolic, "bp_systolic", &["8480-6"], "mm[Hg]"),
    (VitalSign::BpDiastolic, "bp_diastolic", &["8462-4"], "mm[Hg]"),
    (VitalSign::BpMean, "bp_mean", &["8478-0"], "mm[Hg]"),
    (VitalSign::RespiratoryRate, "respiratory_rate", &["9279-1"], "/min"),
    (VitalSign::BodyWeight, "body_weight", &["29463-7", "3141-9"], "kg"),
    (VitalSign::BodyHeight, "body_height", &["8302-2"], "cm"),
    (VitalSign::Bmi, "bmi", &["39156-5"], "kg/m2"),
];

/// The LOINC code of a blood-pressure panel, whose components are the measurements.
pub const BP_PANEL_CODES: &[&str] = &["85354-9", "55284-4", "35094-2"];

pub const LOINC: &str = "http://loinc.org";

impl VitalSign {
    pub const ALL: [VitalSign; 10] = [
        VitalSign::HeartRate,
        VitalSign::Spo2,
        VitalSign::Temperature,
        VitalSign::BpSystolic,
        VitalSign::BpDiastolic,
        VitalSign::BpMean,
        VitalSign::RespiratoryRate,
        VitalSign::BodyWeight,
        VitalSign::BodyHeight,
        VitalSign::Bmi,
    ];

    fn row(self) -> &'static (VitalSign, &'static str, &'static [&'static str], &'static str) {
        TABLE.iter().find(|row| row.0 == self).expect("every VitalSign has a row")
    }

    /// The name in `measurements.type`, as a time-series field and in alert rules.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The LOINC codes meaning this vital sign, the preferred one first.
    pub fn loinc_codes(self) -> &'static [&'static str] {
        self.row().2
    }

    /// The UCUM unit values are stored in.
    pub fn unit(self) -> &'static str {
        self.row().3
    }

    pub fn from_name(name: &str) -> Option<VitalSign> {
        TABLE.iter().find(|row| row.1 == name).map(|row| row.0)
    }

    pub fn from_loinc(code: &str) -> Option<VitalSign> {
        TABLE.iter().find(|row| row.2.contains(&code)).map(|row| row.0)
    }

    /// `value` in `unit` (a UCUM code) converted to this sign's unit; None when the unit is
    /// not one this sign can be measured in.
    pub fn to_canonical(self, value: f64, unit: &str) -> Option<f64> {
        if unit == self.unit() {
            return Some(value);
        }
        let converted = match (self, unit) {
            (VitalSign::HeartRate | VitalSign::RespiratoryRate, "{beats}/min" | "{breaths}/min" | "1/min") => value,
            (VitalSign::Temperature, "[degF]") => (value - 32.0) * 5.0 / 9.0,
            (VitalSign::Temperature, "K") => value - 273.15,
            (VitalSign::BodyWeight, "g") => value / 1000.0,
            (VitalSign::BodyWeight, "[lb_av]") => value * 0.453_592_37,
            (VitalSign::BodyHeight, "m") => value * 100.0,
            (VitalSign::BodyHeight, "[in_i]") => value * 2.54,
            (VitalSign::Bmi, "kg/m^2") => value,
            _ => return None,
        };
        Some(converted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sign_has_a_unique_name_and_codes() {
        let mut names: Vec<_> = VitalSign::ALL.iter().map(|v| v.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), VitalSign::ALL.len());
        for sign in VitalSign::ALL {
            assert_eq!(VitalSign::from_name(sign.name()), Some(sign));
            for code in sign.loinc_codes() {
                assert_eq!(VitalSign::from_loinc(code), Some(sign));
            }
        }
    }

    #[test]
    fn units_convert_to_the_canonical_one() {
        assert_eq!(VitalSign::Temperature.to_canonical(98.6, "[degF]").map(|v| (v * 10.0).round()), Some(370.0));
        assert_eq!(VitalSign::BodyHeight.to_canonical(1.8, "m"), Some(180.0));
        assert_eq!(VitalSign::HeartRate.to_canonical(72.0, "/min"), Some(72.0));
        assert_eq!(VitalSign::HeartRate.to_canonical(72.0, "kg"), None);
    }
}
