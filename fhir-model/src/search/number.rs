//! Decimal numbers as written (in a resource or a search value) and the range of values their
//! significant digits stand for: `100` is `[99.5, 100.5)`, `1.50` is `[1.495, 1.505)`.

/// A decimal with its implicit precision range `[lo, hi)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Decimal {
    pub(crate) value: f64,
    pub(crate) lo: f64,
    pub(crate) hi: f64,
}

/// Parses `-?digits[.digits][(e|E)[+-]digits]` (the JSON number grammar, which is also the
/// FHIR search grammar for numbers) into its value and precision range: half a unit of the
/// last written digit each side. With an exponent the last digit is that of the mantissa, so
/// `1e2` is one significant figure, `[50, 150)`, and `1.0e2` is `[95, 105)`. None for
/// anything else, including values outside the range of `f64`.
pub(crate) fn parse_decimal(text: &str) -> Option<Decimal> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || (mantissa.contains('.') && !all_digits(frac_part)) {
        return None;
    }
    let exponent: i32 = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if !all_digits(digits) || digits.len() > 5 {
                return None;
            }
            e.parse().ok()?
        }
    };
    let value: f64 = text.parse().ok()?;
    // The written digits as one integer M and the power of ten of its last digit, so the value
    // is M·10^scale and its range is (10M ∓ 5)·10^(scale-1). Building those bounds as decimal
    // text and parsing them once keeps them the nearest doubles to the exact bounds, rather than
    // accumulating the error of a subtraction.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let scale = exponent - i32::try_from(frac_part.len()).ok()?;
    let upper: f64 = format!("{}5e{}", digits, scale - 1).parse().ok()?;
    let lower: f64 = if digits.is_empty() {
        -upper
    } else {
        format!("{}5e{}", decrement(digits), scale - 1).parse().ok()?
    };
    if !value.is_finite() || !upper.is_finite() {
        return None;
    }
    let (lo, hi) = if negative { (-upper, -lower) } else { (lower, upper) };
    // Seventeen significant digits (a double printed in full, `66.89999999999999`) are finer
    // than a double: both bounds round to the value itself. The range is then the value's
    // neighbours, so it stays non-empty and every comparison still sees a range.
    let (lo, hi) = if lo < hi { (lo, hi) } else { (value.next_down(), value.next_up()) };
    Some(Decimal { value, lo, hi })
}

/// `digits - 1` for a non-empty run of ASCII digits without leading zeros, as text (`100` →
/// `99`, `1` → ``; an empty result reads as zero in front of the appended `5`).
fn decrement(digits: &str) -> String {
    let mut bytes = digits.as_bytes().to_vec();
    for b in bytes.iter_mut().rev() {
        if *b == b'0' {
            *b = b'9';
        } else {
            *b -= 1;
            break;
        }
    }
    let text = String::from_utf8(bytes).unwrap_or_default();
    text.trim_start_matches('0').to_string()
}

/// `[lo, hi)` widened for `ap` by a tenth of the value's magnitude on each side.
pub(crate) fn approximate(d: Decimal) -> (f64, f64) {
    let margin = d.value.abs() / 10.0;
    (d.lo - margin, d.hi + margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> (f64, f64) {
        let d = parse_decimal(text).unwrap_or_else(|| panic!("{text}"));
        (d.lo, d.hi)
    }

    #[test]
    fn precision_comes_from_the_written_digits() {
        assert_eq!(range("100"), (99.5, 100.5));
        assert_eq!(range("100.00"), (99.995, 100.005));
        assert_eq!(range("1.50"), (1.495, 1.505));
        assert_eq!(range("0"), (-0.5, 0.5));
        assert_eq!(range("0.0"), (-0.05, 0.05));
        assert_eq!(range("0.10"), (0.095, 0.105));
        assert_eq!(range("007"), (6.5, 7.5));
        assert_eq!(range("-1.50"), (-1.505, -1.495));
        assert_eq!(range("1e2"), (50.0, 150.0));
        assert_eq!(range("1.0e2"), (95.0, 105.0));
        assert_eq!(range("1.5E-3"), (0.00145, 0.00155));
        assert_eq!(range("25E+1"), (245.0, 255.0));
        assert_eq!(range("10"), (9.5, 10.5));
        assert_eq!(parse_decimal("72.5").unwrap().value, 72.5);
    }

    #[test]
    fn a_full_precision_double_keeps_a_non_empty_range() {
        let (lo, hi) = range("66.89999999999999");
        assert!(lo < 66.89999999999999 && 66.89999999999999 < hi, "{lo} {hi}");
        assert!(hi - lo < 1e-13);
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        for bad in [
            "", "-", "+1", ".5", "5.", "1..2", "1e", "1e+", "abc", "1,5", "0x10", "1e99999", "NaN",
            "inf", " 1", "1 ", "1e400",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn ap_widens_by_a_tenth_of_the_value() {
        let (lo, hi) = approximate(parse_decimal("100").unwrap());
        assert_eq!((lo, hi), (89.5, 110.5));
        let (lo, hi) = approximate(parse_decimal("-100").unwrap());
        assert_eq!((lo, hi), (-110.5, -89.5));
    }
}
