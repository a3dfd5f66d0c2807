//! FHIR `date`, `dateTime` and `instant` values, at any of their precisions, as the range of
//! epoch milliseconds they cover.

use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

pub(crate) const DAY_MS: i64 = 86_400_000;

/// Parses `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or `YYYY-MM-DDThh:mm[:ss[.fff…]][Z|±hh:mm]` into
/// `[lo, hi)` epoch milliseconds UTC covering its precision: `2013-02` is the whole of February
/// 2013, `…T10:00:00.5Z` is 100 ms. Without a timezone the time is taken as UTC. Minute
/// precision is not valid FHIR but clients send it in searches, and its meaning is plain.
/// None for anything malformed or out of range.
pub(crate) fn parse_range(text: &str) -> Option<(i64, i64)> {
    let b = text.as_bytes();
    let year = i32::try_from(digits(b, 0, 4)?).ok()?;
    if b.len() == 4 {
        let first = Date::from_calendar_date(year, Month::January, 1).ok()?;
        let last = Date::from_calendar_date(year, Month::December, 31).ok()?;
        // The end is the day after the last day rather than 1 January of the next year,
        // which would overflow the calendar for 9999.
        return Some((day_start(first), day_start(last) + DAY_MS));
    }
    expect(b, 4, b'-')?;
    let month = Month::try_from(u8::try_from(digits(b, 5, 2)?).ok()?).ok()?;
    if b.len() == 7 {
        let first = Date::from_calendar_date(year, month, 1).ok()?;
        let last = Date::from_calendar_date(year, month, month.length(year)).ok()?;
        return Some((day_start(first), day_start(last) + DAY_MS));
    }
    expect(b, 7, b'-')?;
    let date = Date::from_calendar_date(year, month, u8::try_from(digits(b, 8, 2)?).ok()?).ok()?;
    if b.len() == 10 {
        let lo = day_start(date);
        return Some((lo, lo + DAY_MS));
    }

    expect(b, 10, b'T')?;
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    let mut pos = 16;
    let (mut second, mut fraction_ms, mut width) = (0, 0, 60_000);
    if b.get(pos) == Some(&b':') {
        second = digits(b, pos + 1, 2)?;
        pos += 3;
        width = 1_000;
        if b.get(pos) == Some(&b'.') {
            let count = b[pos + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if count == 0 {
                return None;
            }
            // Digits beyond milliseconds are dropped: the index resolution is 1 ms.
            let kept = count.min(3);
            let scale = 10_i64.pow(3 - kept as u32);
            fraction_ms = digits(b, pos + 1, kept)? * scale;
            width = scale;
            pos += 1 + count;
        }
    }
    let offset = parse_offset(&text[pos..])?;
    let time = Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    let lo = PrimitiveDateTime::new(date, time)
        .assume_offset(offset)
        .unix_timestamp()
        * 1000
        + fraction_ms;
    Some((lo, lo + width))
}

/// `""` (UTC), `Z`, or `+hh:mm` / `-hh:mm`.
fn parse_offset(text: &str) -> Option<UtcOffset> {
    let b = text.as_bytes();
    match b.first() {
        None | Some(b'Z') if b.len() <= 1 => Some(UtcOffset::UTC),
        Some(sign @ (b'+' | b'-')) if b.len() == 6 => {
            expect(b, 3, b':')?;
            let hours = i8::try_from(digits(b, 1, 2)?).ok()?;
            let minutes = i8::try_from(digits(b, 4, 2)?).ok()?;
            if minutes > 59 || hours > 14 {
                return None;
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
        }
        _ => None,
    }
}

fn day_start(date: Date) -> i64 {
    date.midnight().assume_utc().unix_timestamp() * 1000
}

/// The number written by exactly `count` ASCII digits at `at`.
fn digits(b: &[u8], at: usize, count: usize) -> Option<i64> {
    let slice = b.get(at..at + count)?;
    slice.iter().try_fold(0_i64, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

fn expect(b: &[u8], at: usize, byte: u8) -> Option<()> {
    (b.get(at) == Some(&byte)).then_some(())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn ms(dt: time::OffsetDateTime) -> i64 {
        (dt.unix_timestamp_nanos() / 1_000_000) as i64
    }

    #[test]
    fn each_precision_covers_its_whole_span() {
        assert_eq!(
            parse_range("2013"),
            Some((
                ms(datetime!(2013-01-01 0:00 UTC)),
                ms(datetime!(2014-01-01 0:00 UTC))
            ))
        );
        assert_eq!(
            parse_range("2013-02"),
            Some((
                ms(datetime!(2013-02-01 0:00 UTC)),
                ms(datetime!(2013-03-01 0:00 UTC))
            ))
        );
        assert_eq!(
            parse_range("2012-02"),
            Some((
                ms(datetime!(2012-02-01 0:00 UTC)),
                ms(datetime!(2012-03-01 0:00 UTC))
            ))
        );
        assert_eq!(
            parse_range("2013-12"),
            Some((
                ms(datetime!(2013-12-01 0:00 UTC)),
                ms(datetime!(2014-01-01 0:00 UTC))
            ))
        );
        assert_eq!(
            parse_range("2012-02-29"),
            Some((
                ms(datetime!(2012-02-29 0:00 UTC)),
                ms(datetime!(2012-03-01 0:00 UTC))
            ))
        );
        let t = ms(datetime!(2013-01-14 10:00 +01:00));
        assert_eq!(
            parse_range("2013-01-14T10:00:00+01:00"),
            Some((t, t + 1000))
        );
        assert_eq!(parse_range("2013-01-14T09:00:00Z"), Some((t, t + 1000)));
        assert_eq!(parse_range("2013-01-14T09:00:00"), Some((t, t + 1000)));
        assert_eq!(parse_range("2013-01-14T09:00Z"), Some((t, t + 60_000)));
        assert_eq!(
            parse_range("2013-01-14T09:00:00.5Z"),
            Some((t + 500, t + 600))
        );
        assert_eq!(
            parse_range("2013-01-14T09:00:00.123Z"),
            Some((t + 123, t + 124))
        );
        assert_eq!(
            parse_range("2013-01-14T09:00:00.123456Z"),
            Some((t + 123, t + 124))
        );
        assert_eq!(
            parse_range("2013-01-14T06:30:00-02:30"),
            Some((t, t + 1000))
        );
        assert_eq!(
            parse_range("9999"),
            Some((
                ms(datetime!(9999-01-01 0:00 UTC)),
                ms(datetime!(9999-12-31 0:00 UTC)) + DAY_MS
            ))
        );
    }

    #[test]
    fn malformed_values_are_rejected() {
        for bad in [
            "",
            "13",
            "2013-2",
            "2013-13",
            "2013-02-29",
            "2013-00",
            "2013-01-32",
            "2013/01/01",
            "2013-01-01T",
            "2013-01-01T25:00:00Z",
            "2013-01-01T10:60Z",
            "2013-01-01T10:00:00.Z",
            "2013-01-01T10:00:00+1:00",
            "2013-01-01T10:00:00+15:00",
            "2013-01-01T10:00:00ZZ",
            "2013-01-01 10:00:00",
            "２０１３",
            "2013-01-01x",
        ] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
    }
}
