//! Alert threshold rules: which measurement values raise an alert, and how severe it is.
//! Pure; the relational projection writes the alerts these rules produce.

use std::fmt;

use crate::mapping::Measurement;
use crate::vitals::VitalSign;
use crate::ProjectionError;

/// The `alerts.severity` values, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        [Severity::Low, Severity::Medium, Severity::High, Severity::Critical].into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Comparison {
    Below,
    AtMost,
    Above,
    AtLeast,
}

/// `kind op threshold : severity`, e.g. `spo2<90:critical`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub kind: VitalSign,
    comparison: Comparison,
    pub threshold: f64,
    pub severity: Severity,
}

impl AlertRule {
    pub fn matches(&self, measurement: &Measurement) -> bool {
        measurement.kind == self.kind
            && match self.comparison {
                Comparison::Below => measurement.value < self.threshold,
                Comparison::AtMost => measurement.value <= self.threshold,
                Comparison::Above => measurement.value > self.threshold,
                Comparison::AtLeast => measurement.value >= self.threshold,
            }
    }
}

impl fmt::Display for AlertRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.comparison {
            Comparison::Below => "<",
            Comparison::AtMost => "<=",
            Comparison::Above => ">",
            Comparison::AtLeast => ">=",
        };
        write!(f, "{}{}{}:{}", self.kind.name(), op, self.threshold, self.severity.as_str())
    }
}

/// The configured rules. A measurement matching several raises one alert, at the highest
/// severity among them.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules(Vec<AlertRule>);

/// The rules used when none are configured.
pub const DEFAULT_ALERT_RULES: &str = "spo2<90:critical,spo2<94:medium,heart_rate>130:high,heart_rate<40:high,\
respiratory_rate>30:high,respiratory_rate<8:high,bp_systolic>180:critical,bp_systolic<90:medium,\
bp_diastolic>120:critical,temperature>=39.5:medium,temperature<35:medium";

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules::parse(DEFAULT_ALERT_RULES).expect("the default rules parse")
    }
}

impl AlertRules {
    /// Parses comma-separated rules such as `spo2<90:critical,heart_rate>130:high`. An empty
    /// text means no rules.
    pub fn parse(text: &str) -> Result<AlertRules, ProjectionError> {
        let mut rules = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |why: &str| ProjectionError::Config(format!("alert rule {item:?}: {why} (expected e.g. spo2<90:critical)"));
            let (condition, severity) = item.rsplit_once(':').ok_or_else(|| bad("no :severity"))?;
            let severity = Severity::parse(severity.trim()).ok_or_else(|| bad("severity must be low, medium, high or critical"))?;
            let at = condition.find(['<', '>']).ok_or_else(|| bad("no < or >"))?;
            let (name, rest) = condition.split_at(at);
            let (comparison, number) = if let Some(n) = rest.strip_prefix("<=") {
                (Comparison::AtMost, n)
            } else if let Some(n) = rest.strip_prefix(">=") {
                (Comparison::AtLeast, n)
            } else if let Some(n) = rest.strip_prefix('<') {
                (Comparison::Below, n)
            } else {
                (Comparison::Above, &rest[1..])
            };
            let names: Vec<_> = VitalSign::ALL.iter().map(|v| v.name()).collect();
            let kind = VitalSign::from_name(name.trim()).ok_or_else(|| bad(&format!("unknown measurement type (known: {})", names.join(", "))))?;
            let threshold = number.trim().parse::<f64>().ok().filter(|n| n.is_finite()).ok_or_else(|| bad("threshold is not a number"))?;
            rules.push(AlertRule { kind, comparison, threshold, severity });
        }
        Ok(AlertRules(rules))
    }

    /// The most severe rule the measurement breaks, if any.
    pub fn evaluate(&self, measurement: &Measurement) -> Option<&AlertRule> {
        self.0.iter().filter(|rule| rule.matches(measurement)).max_by_key(|rule| rule.severity)
    }

    pub fn rules(&self) -> &[AlertRule] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn measurement(kind: VitalSign, value: f64) -> Measurement {
        Measurement {
            observation_id: "o".into(),
            observation_version: 1,
            kind,
            value,
            measured_at: OffsetDateTime::UNIX_EPOCH,
            patient_id: None,
            device_id: None,
        }
    }

    #[test]
    fn the_most_severe_matching_rule_wins() {
        let rules = AlertRules::default();
        assert_eq!(rules.evaluate(&measurement(VitalSign::Spo2, 85.0)).map(|r| r.severity), Some(Severity::Critical));
        assert_eq!(rules.evaluate(&measurement(VitalSign::Spo2, 92.0)).map(|r| r.severity), Some(Severity::Medium));
        assert_eq!(rules.evaluate(&measurement(VitalSign::Spo2, 97.0)), None);
        assert_eq!(rules.evaluate(&measurement(VitalSign::HeartRate, 131.0)).map(|r| r.severity), Some(Severity::High));
        assert_eq!(rules.evaluate(&measurement(VitalSign::HeartRate, 130.0)), None);
        assert_eq!(rules.evaluate(&measurement(VitalSign::Temperature, 39.5)).map(|r| r.to_string()), Some("temperature>=39.5:medium".into()));
    }

    #[test]
    fn malformed_rules_are_refused_with_the_reason() {
        for (text, why) in [("spo2<90", "severity"), ("pulse>1:high", "unknown measurement type"), ("spo2<x:low", "not a number"), ("spo2=1:low", "no < or >")] {
            let err = AlertRules::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert_eq!(AlertRules::parse("").unwrap().rules().len(), 0);
    }
}
