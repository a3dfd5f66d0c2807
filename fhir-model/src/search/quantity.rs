//! Quantities for search: the index values of a Quantity (and its profiles Age, Duration,
//! Distance, Count, SimpleQuantity), a Money or a Range, and the canonical UCUM form both
//! indexing and search values are brought to when their unit converts.

use serde_json::{Map, Value};

use super::number::{parse_decimal, Decimal};
use super::ucum::{canonical, UCUM};
use super::IndexValue;

/// The code system of `Money.currency` (ISO 4217), used as the quantity's system.
pub(crate) const CURRENCY: &str = "urn:iso:std:iso:4217";

/// The quantity entries of one selected item: the value as written and, when its unit is UCUM
/// (or has a code and no system) and converts, the same value in the canonical unit. A Range
/// is one entry from the low bound of `low` to the high bound of `high` (open where missing).
/// Anything without a numeric value yields nothing.
pub(crate) fn quantity_values(value: &Value) -> Vec<IndexValue> {
    let Some(object) = value.as_object() else {
        return Vec::new();
    };
    if object.contains_key("low") || object.contains_key("high") {
        return range_values(object);
    }
    let Some(written) = Written::of(object) else {
        return Vec::new();
    };
    written.entries(written.number.lo, written.number.hi)
}

fn range_values(object: &Map<String, Value>) -> Vec<IndexValue> {
    let bound = |key: &str| object.get(key).and_then(Value::as_object).and_then(Written::of);
    let (low, high) = (bound("low"), bound("high"));
    let unit = match (&low, &high) {
        (Some(l), Some(h)) if (&l.system, &l.code) != (&h.system, &h.code) => return Vec::new(),
        (Some(l), _) => l,
        (None, Some(h)) => h,
        (None, None) => return Vec::new(),
    };
    let lo = low.as_ref().map_or(f64::MIN, |l| l.number.lo);
    let hi = high.as_ref().map_or(f64::MAX, |h| h.number.hi);
    if lo >= hi {
        return Vec::new();
    }
    unit.entries(lo, hi)
}

/// A Quantity or Money as written in the resource.
struct Written {
    number: Decimal,
    system: Option<String>,
    code: Option<String>,
    unit: Option<String>,
}

impl Written {
    fn of(object: &Map<String, Value>) -> Option<Written> {
        // With serde_json's `arbitrary_precision`, a number's text is its digits as written.
        let number = match object.get("value")? {
            Value::Number(n) => parse_decimal(&n.to_string())?,
            _ => return None,
        };
        let text = |key: &str| {
            object
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let (system, code) = match (text("currency"), text("code")) {
            (Some(currency), None) => (Some(CURRENCY.to_string()), Some(currency)),
            (_, code) => (text("system"), code),
        };
        Some(Written {
            number,
            system,
            code,
            unit: text("unit"),
        })
    }

    fn entries(&self, lo: f64, hi: f64) -> Vec<IndexValue> {
        let mut out = vec![IndexValue::Quantity {
            system: self.system.clone(),
            code: self.code.clone(),
            unit: self.unit.clone(),
            lo,
            hi,
            canonical: false,
        }];
        if let Some((code, lo, hi)) = canonical_range(self.system.as_deref(), self.code.as_deref(), lo, hi) {
            out.push(IndexValue::Quantity {
                system: Some(UCUM.to_string()),
                unit: Some(code.clone()),
                code: Some(code),
                lo,
                hi,
                canonical: true,
            });
        }
        out
    }
}

/// The canonical unit and the range `[lo, hi)` converted to it, when `code` is a UCUM unit
/// (system UCUM, or no system at all) that converts. Open bounds (`f64::MIN`/`MAX`) stay open.
pub(crate) fn canonical_range(
    system: Option<&str>,
    code: Option<&str>,
    lo: f64,
    hi: f64,
) -> Option<(String, f64, f64)> {
    if !matches!(system, None | Some(UCUM)) {
        return None;
    }
    let unit = canonical(code?)?;
    let convert = |v: f64| {
        if v == f64::MIN || v == f64::MAX {
            v
        } else {
            unit.convert(v)
        }
    };
    let (lo, hi) = (convert(lo), convert(hi));
    // A range only a few doubles wide (a value written with all 17 digits) can collapse to one
    // value once converted and rounded; it then becomes that value's neighbours, as in
    // `number.rs`, so it still compares as a range.
    let (lo, hi) = if lo < hi { (lo, hi) } else { (lo.next_down(), lo.next_up()) };
    (lo.is_finite() && hi.is_finite()).then_some((unit.code, lo, hi))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A quantity as written.
    fn q(system: Option<&str>, code: Option<&str>, unit: Option<&str>, lo: f64, hi: f64) -> IndexValue {
        quantity(system, code, unit, lo, hi, false)
    }

    /// The converted entry, in the canonical unit.
    fn converted(code: &str, lo: f64, hi: f64) -> IndexValue {
        quantity(Some(UCUM), Some(code), Some(code), lo, hi, true)
    }

    fn quantity(system: Option<&str>, code: Option<&str>, unit: Option<&str>, lo: f64, hi: f64, canonical: bool) -> IndexValue {
        IndexValue::Quantity {
            system: system.map(str::to_string),
            code: code.map(str::to_string),
            unit: unit.map(str::to_string),
            lo,
            hi,
            canonical,
        }
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_ucum_quantity_is_also_indexed_in_its_canonical_unit() {
        let weight = parse(r#"{"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}"#);
        assert_eq!(
            quantity_values(&weight),
            vec![
                q(Some(UCUM), Some("kg"), Some("kg"), 72.45, 72.55),
                converted("g", 72450.0, 72550.0),
            ]
        );
        // A code without a system is read as UCUM too.
        let bp = parse(r#"{"value": 120, "code": "mm[Hg]"}"#);
        assert_eq!(
            quantity_values(&bp),
            vec![
                q(None, Some("mm[Hg]"), None, 119.5, 120.5),
                converted("Pa", 15931.979, 16065.301),
            ]
        );
    }

    #[test]
    fn other_systems_and_unknown_units_are_kept_as_written() {
        let other = parse(r#"{"value": 3, "system": "http://snomed.info/sct", "code": "258684004"}"#);
        assert_eq!(
            quantity_values(&other),
            vec![q(Some("http://snomed.info/sct"), Some("258684004"), None, 2.5, 3.5)]
        );
        let unit_only = parse(r#"{"value": 3.0, "unit": "tablets"}"#);
        assert_eq!(quantity_values(&unit_only), vec![q(None, None, Some("tablets"), 2.95, 3.05)]);
        assert_eq!(quantity_values(&json!({"unit": "kg"})), vec![]);
        assert_eq!(quantity_values(&json!({"value": "12", "code": "kg"})), vec![]);
        assert_eq!(quantity_values(&json!("12 kg")), vec![]);
    }

    #[test]
    fn money_uses_the_currency_as_code() {
        let money = parse(r#"{"value": 100.50, "currency": "EUR"}"#);
        assert_eq!(
            quantity_values(&money),
            vec![q(Some(CURRENCY), Some("EUR"), None, 100.495, 100.505)]
        );
    }

    #[test]
    fn a_range_spans_from_low_to_high() {
        let range = parse(
            r#"{"low": {"value": 1, "system": "http://unitsofmeasure.org", "code": "g"},
                "high": {"value": 2, "system": "http://unitsofmeasure.org", "code": "g"}}"#,
        );
        assert_eq!(
            quantity_values(&range),
            vec![
                q(Some(UCUM), Some("g"), None, 0.5, 2.5),
                converted("g", 0.5, 2.5),
            ]
        );
        let open = parse(r#"{"low": {"value": 5, "unit": "mg"}}"#);
        assert_eq!(quantity_values(&open), vec![q(None, None, Some("mg"), 4.5, f64::MAX)]);
        let mixed = parse(r#"{"low": {"value": 5, "code": "mg"}, "high": {"value": 6, "code": "g"}}"#);
        assert_eq!(quantity_values(&mixed), vec![]);
    }
}
