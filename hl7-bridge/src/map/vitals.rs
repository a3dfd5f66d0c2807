//! Vital signs from devices: IEEE 11073 MDC observation codes and units (and the common text
//! units devices send) to the LOINC codes and UCUM units of the FHIR vital-signs profile.
//!
//! An MDC-coded OBX becomes a vital sign only when its unit is one the sign is measured in;
//! otherwise it stays an ordinary Observation under its MDC code. A LOINC-coded vital sign has
//! no such way out: its unit must be understood, since validation would reject it otherwise.

use super::tables::{LOINC, MDC};

/// One vital sign: its LOINC code and display, and the UCUM unit it is measured in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct VitalSign {
    pub loinc: &'static str,
    pub display: &'static str,
    pub unit: &'static str,
}

pub(crate) const HEART_RATE: VitalSign = VitalSign {
    loinc: "8867-4",
    display: "Heart rate",
    unit: "/min",
};
pub(crate) const RESPIRATORY_RATE: VitalSign = VitalSign {
    loinc: "9279-1",
    display: "Respiratory rate",
    unit: "/min",
};
pub(crate) const OXYGEN_SATURATION: VitalSign = VitalSign {
    loinc: "2708-6",
    display: "Oxygen saturation in Arterial blood",
    unit: "%",
};
pub(crate) const PULSE_OXIMETRY: VitalSign = VitalSign {
    loinc: "59408-5",
    display: "Oxygen saturation in Arterial blood by Pulse oximetry",
    unit: "%",
};
pub(crate) const BODY_TEMPERATURE: VitalSign = VitalSign {
    loinc: "8310-5",
    display: "Body temperature",
    unit: "Cel",
};
pub(crate) const SYSTOLIC: VitalSign = VitalSign {
    loinc: "8480-6",
    display: "Systolic blood pressure",
    unit: "mm[Hg]",
};
pub(crate) const DIASTOLIC: VitalSign = VitalSign {
    loinc: "8462-4",
    display: "Diastolic blood pressure",
    unit: "mm[Hg]",
};
pub(crate) const MEAN_PRESSURE: VitalSign = VitalSign {
    loinc: "8478-0",
    display: "Mean blood pressure",
    unit: "mm[Hg]",
};

/// The blood pressure panel a systolic and diastolic pair becomes.
pub(crate) const BP_PANEL_CODE: &str = "85354-9";
pub(crate) const BP_PANEL_DISPLAY: &str = "Blood pressure panel with all children optional";

/// The vital sign an MDC code (numeric, or its reference id) names. Pulse rates from an
/// oximeter are heart rates for the profile; invasive (arterial) and non-invasive pressures
/// map to the same LOINC codes, which do not name a method.
pub(crate) fn from_mdc(code: &str) -> Option<&'static VitalSign> {
    Some(match code {
        "147842"
        | "MDC_ECG_HEART_RATE"
        | "149530"
        | "MDC_PULS_OXIM_PULS_RATE"
        | "149546"
        | "MDC_PULS_RATE" => &HEART_RATE,
        "151562" | "MDC_RESP_RATE" => &RESPIRATORY_RATE,
        "150456" | "MDC_PULS_OXIM_SAT_O2" => &PULSE_OXIMETRY,
        "150364" | "MDC_TEMP_BODY" | "188496" | "MDC_TEMP_TYMP" | "150344" | "MDC_TEMP" => {
            &BODY_TEMPERATURE
        }
        "150021" | "MDC_PRESS_BLD_NONINV_SYS" | "150017" | "MDC_PRESS_BLD_ART_SYS" => &SYSTOLIC,
        "150022" | "MDC_PRESS_BLD_NONINV_DIA" | "150018" | "MDC_PRESS_BLD_ART_DIA" => &DIASTOLIC,
        "150023" | "MDC_PRESS_BLD_NONINV_MEAN" | "150019" | "MDC_PRESS_BLD_ART_MEAN" => {
            &MEAN_PRESSURE
        }
        _ => return None,
    })
}

/// The vital sign a LOINC code names.
pub(crate) fn from_loinc(code: &str) -> Option<&'static VitalSign> {
    [
        &HEART_RATE,
        &RESPIRATORY_RATE,
        &OXYGEN_SATURATION,
        &PULSE_OXIMETRY,
        &BODY_TEMPERATURE,
        &SYSTOLIC,
        &DIASTOLIC,
        &MEAN_PRESSURE,
    ]
    .into_iter()
    .find(|v| v.loinc == code)
}

/// The vital sign a coded OBX-3 names: (sign, the code was MDC rather than LOINC).
pub(crate) fn from_code(
    system_uri: Option<&str>,
    code: &str,
) -> Option<(&'static VitalSign, bool)> {
    match system_uri {
        Some(LOINC) => from_loinc(code).map(|v| (v, false)),
        Some(MDC) => from_mdc(code).map(|v| (v, true)),
        _ => None,
    }
}

/// The UCUM code for a unit as devices send it: MDC dimension codes (numeric or reference
/// id), UCUM itself, and the usual text spellings.
pub(crate) fn ucum_unit(code: &str, text: &str) -> Option<&'static str> {
    [code, text]
        .into_iter()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .find_map(|unit| {
            Some(match unit {
                "264864"
                | "MDC_DIM_BEAT_PER_MIN"
                | "/min"
                | "bpm"
                | "beats/min"
                | "{beats}/min"
                | "1/min"
                | "min-1" => "/min",
                "264928" | "MDC_DIM_RESP_PER_MIN" | "breaths/min" | "{breaths}/min" | "rpm" => {
                    "/min"
                }
                "262688" | "MDC_DIM_PERCENT" | "%" | "percent" => "%",
                "266016" | "MDC_DIM_MMHG" | "mm[Hg]" | "mmHg" | "mm Hg" => "mm[Hg]",
                "268192" | "MDC_DIM_DEGC" | "Cel" | "degC" | "C" | "°C" => "Cel",
                "266560" | "MDC_DIM_FAHR" | "[degF]" | "degF" | "F" | "°F" => "[degF]",
                _ => return None,
            })
        })
}

/// Whether `unit` (UCUM) is one `sign` may be given in: its own, or Fahrenheit for a
/// temperature.
pub(crate) fn unit_fits(sign: &VitalSign, unit: &str) -> bool {
    unit == sign.unit || (sign.unit == "Cel" && unit == "[degF]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mdc_units_and_text_units_become_ucum() {
        assert_eq!(ucum_unit("264864", "MDC_DIM_BEAT_PER_MIN"), Some("/min"));
        assert_eq!(ucum_unit("", "bpm"), Some("/min"));
        assert_eq!(ucum_unit("262688", ""), Some("%"));
        assert_eq!(ucum_unit("266016", ""), Some("mm[Hg]"));
        assert_eq!(ucum_unit("268192", ""), Some("Cel"));
        assert_eq!(ucum_unit("F", ""), Some("[degF]"));
        assert_eq!(ucum_unit("kg", ""), None);
        assert!(unit_fits(&BODY_TEMPERATURE, "[degF]"));
        assert!(!unit_fits(&HEART_RATE, "%"));
    }
}
