//! How both backends store one component of a composite search value: three text slots and
//! a range, by value kind, for at most `MAX_COMPONENTS` components per tuple. Each backend's
//! search translation reads the slots back with this layout.

use fhir_model::IndexValue;

/// The most components a composite tuple keeps (R4's largest composites have three).
pub(crate) const MAX_COMPONENTS: usize = 3;

/// One component as `(a, b, c, lo, hi)`: text slots `a`/`b`/`c` (`""` when absent) and the
/// range `lo`/`hi` (0 for kinds without one).
pub(crate) fn component_slots(value: &IndexValue) -> (&str, &str, &str, f64, f64) {
    fn text(value: &Option<String>) -> &str {
        value.as_deref().unwrap_or("")
    }
    match value {
        IndexValue::String { normalized, exact } => (normalized, exact, "", 0.0, 0.0),
        IndexValue::Token { system, code } => (text(system), code, "", 0.0, 0.0),
        IndexValue::TokenText { normalized } => (normalized, "", "", 0.0, 0.0),
        IndexValue::IdentifierOfType { type_system, type_code, value } => (text(type_system), type_code, value, 0.0, 0.0),
        // Epoch milliseconds are exact in an f64 up to 2^53 (year 287,396); the open ends of a
        // period (i64::MIN/MAX) stay below/above every real instant.
        IndexValue::Date { lo, hi } => ("", "", "", *lo as f64, *hi as f64),
        IndexValue::Number { lo, hi } => ("", "", "", *lo, *hi),
        IndexValue::Quantity { system, code, unit, lo, hi, .. } => (text(system), text(code), text(unit), *lo, *hi),
        IndexValue::Reference { target_type, target_id, url } => (text(target_type), target_id, url, 0.0, 0.0),
        IndexValue::ReferenceIdentifier { system, value } => (text(system), value, "", 0.0, 0.0),
        IndexValue::Uri(value) => ("", value, "", 0.0, 0.0),
        IndexValue::Composite(_) => ("", "", "", 0.0, 0.0),
    }
}
