//! HL7 v2 date/time values (DT, TM, DTM/TS): parsed with range checks and converted to FHIR
//! date, dateTime and instant text.
//!
//! A DTM is `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`; a TS is a DTM in its first
//! component (callers pass that component, not the `^precision` after it). A TM is
//! `HH[MM[SS[.S[S[S[S]]]]]][+/-ZZZZ]`.
//!
//! Time zones. FHIR requires a zone on every `dateTime` that carries a time, and HL7 lets a
//! value leave it out, meaning "the sender's local zone". This module never invents a zone:
//! - [`Dtm::or_offset`] fills in a zone the caller knows (the mapping passes the offset of
//!   MSH-7, the sender's clock, which is how v2 defines a missing offset);
//! - when there is still no zone, [`Dtm::to_fhir_datetime`] keeps only the date (the local
//!   calendar day is right whatever the zone), and [`Dtm::to_fhir_instant`] gives `None`.
//!
//! FHIR times are written to the second, so a value given to the hour or minute is padded with
//! zeros (`2024031512` becomes `2024-03-15T12:00:00`); fractions of a second are kept as written.

use std::fmt::Write as _;

/// What is wrong with a date/time value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmError {
    #[error("empty date/time")]
    Empty,
    #[error("{value:?} is not an HL7 date/time: {reason}")]
    Syntax { value: String, reason: &'static str },
    #[error("year 0000 out of range")]
    Year,
    #[error("month {0} out of range")]
    Month(u8),
    #[error("day {day} out of range for {year:04}-{month:02}")]
    Day { year: u16, month: u8, day: u8 },
    #[error("hour {0} out of range")]
    Hour(u8),
    #[error("minute {0} out of range")]
    Minute(u8),
    #[error("second {0} out of range")]
    Second(u8),
    #[error("time zone offset {0} out of range")]
    Offset(String),
}

/// How much of a date/time was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

/// A parsed DTM/TS/DT value. Parts beyond `precision` are absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtm {
    year: u16,
    month: Option<u8>,
    day: Option<u8>,
    hour: Option<u8>,
    minute: Option<u8>,
    second: Option<u8>,
    /// The digits after the decimal point, as written (1 to 4).
    fraction: Option<String>,
    /// Minutes east of UTC.
    offset: Option<i16>,
}

/// A parsed TM value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tm {
    hour: u8,
    minute: Option<u8>,
    second: Option<u8>,
    fraction: Option<String>,
    offset: Option<i16>,
}

/// Parses a DTM (or the first component of a TS, or a DT).
pub fn parse_dtm(text: &str) -> Result<Dtm, DtmError> {
    if text.is_empty() {
        return Err(DtmError::Empty);
    }
    let (main, offset) = split_offset(text, 1)?;
    let (digits, fraction) = split_fraction(text, main)?;
    if !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14) {
        return Err(syntax(
            text,
            "expected 4, 6, 8, 10, 12 or 14 digits before any fraction or offset",
        ));
    }
    if fraction.is_some() && digits.len() != 14 {
        return Err(syntax(text, "a fraction of a second needs the seconds"));
    }
    let part =
        |start: usize| -> Option<u8> { digits.get(start..start + 2).and_then(|p| p.parse().ok()) };
    let year: u16 = digits[..4].parse().map_err(|_| syntax(text, "bad year"))?;
    if year == 0 {
        return Err(DtmError::Year);
    }
    let dtm = Dtm {
        year,
        month: part(4),
        day: part(6),
        hour: part(8),
        minute: part(10),
        second: part(12),
        fraction,
        offset,
    };
    dtm.check()?;
    Ok(dtm)
}

/// Parses a TM value.
pub fn parse_tm(text: &str) -> Result<Tm, DtmError> {
    if text.is_empty() {
        return Err(DtmError::Empty);
    }
    let (main, offset) = split_offset(text, 0)?;
    let (digits, fraction) = split_fraction(text, main)?;
    if !matches!(digits.len(), 2 | 4 | 6) {
        return Err(syntax(
            text,
            "expected 2, 4 or 6 digits before any fraction or offset",
        ));
    }
    if fraction.is_some() && digits.len() != 6 {
        return Err(syntax(text, "a fraction of a second needs the seconds"));
    }
    let part =
        |start: usize| -> Option<u8> { digits.get(start..start + 2).and_then(|p| p.parse().ok()) };
    let hour = part(0).ok_or_else(|| syntax(text, "bad hour"))?;
    let tm = Tm {
        hour,
        minute: part(2),
        second: part(4),
        fraction,
        offset,
    };
    check_time(Some(tm.hour), tm.minute, tm.second)?;
    Ok(tm)
}

fn syntax(text: &str, reason: &'static str) -> DtmError {
    DtmError::Syntax {
        value: text.to_string(),
        reason,
    }
}

/// Splits `+ZZZZ`/`-ZZZZ` off the end; a sign before `min_start` is not an offset.
fn split_offset(text: &str, min_start: usize) -> Result<(&str, Option<i16>), DtmError> {
    let Some(at) = text.find(['+', '-']) else {
        return Ok((text, None));
    };
    if at < min_start {
        return Err(syntax(text, "unexpected sign"));
    }
    let zone = &text[at + 1..];
    if zone.len() != 4 || !zone.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax(text, "a time zone offset is a sign and four digits"));
    }
    let hours: i16 = zone[..2].parse().map_err(|_| syntax(text, "bad offset"))?;
    let minutes: i16 = zone[2..].parse().map_err(|_| syntax(text, "bad offset"))?;
    if minutes > 59 || hours * 60 + minutes > 14 * 60 {
        return Err(DtmError::Offset(text[at..].to_string()));
    }
    let total = hours * 60 + minutes;
    Ok((
        &text[..at],
        Some(if text[at..].starts_with('-') {
            -total
        } else {
            total
        }),
    ))
}

/// Splits `.S[S[S[S]]]` off; checks that the rest is digits.
fn split_fraction<'a>(text: &str, main: &'a str) -> Result<(&'a str, Option<String>), DtmError> {
    let (digits, fraction) = match main.split_once('.') {
        Some((digits, fraction)) => {
            if fraction.is_empty()
                || fraction.len() > 4
                || !fraction.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(syntax(text, "a fraction of a second is 1 to 4 digits"));
            }
            (digits, Some(fraction.to_string()))
        }
        None => (main, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax(
            text,
            "only digits are allowed before any fraction or offset",
        ));
    }
    Ok((digits, fraction))
}

fn check_time(hour: Option<u8>, minute: Option<u8>, second: Option<u8>) -> Result<(), DtmError> {
    if let Some(h) = hour.filter(|h| *h > 23) {
        return Err(DtmError::Hour(h));
    }
    if let Some(m) = minute.filter(|m| *m > 59) {
        return Err(DtmError::Minute(m));
    }
    if let Some(s) = second.filter(|s| *s > 59) {
        return Err(DtmError::Second(s));
    }
    Ok(())
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

fn write_offset(out: &mut String, offset: i16) {
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.unsigned_abs();
    let _ = write!(out, "{sign}{:02}:{:02}", abs / 60, abs % 60);
}

impl Dtm {
    fn check(&self) -> Result<(), DtmError> {
        if let Some(month) = self.month {
            if !(1..=12).contains(&month) {
                return Err(DtmError::Month(month));
            }
            if let Some(day) = self.day {
                if day == 0 || day > days_in_month(self.year, month) {
                    return Err(DtmError::Day {
                        year: self.year,
                        month,
                        day,
                    });
                }
            }
        }
        check_time(self.hour, self.minute, self.second)
    }

    pub fn precision(&self) -> Precision {
        match (self.month, self.day, self.hour, self.minute, self.second) {
            (None, ..) => Precision::Year,
            (_, None, ..) => Precision::Month,
            (_, _, None, ..) => Precision::Day,
            (_, _, _, None, _) => Precision::Hour,
            (_, _, _, _, None) => Precision::Minute,
            _ => Precision::Second,
        }
    }

    /// The time zone offset in minutes east of UTC, when the value has one.
    pub fn offset(&self) -> Option<i16> {
        self.offset
    }

    /// The same value with `offset` as its zone when it names none itself (see the module
    /// documentation: a missing offset means the sender's zone).
    pub fn or_offset(mut self, offset: Option<i16>) -> Dtm {
        if self.offset.is_none() {
            self.offset = offset;
        }
        self
    }

    /// FHIR `date`: the value to at most day precision.
    pub fn to_fhir_date(&self) -> String {
        let mut out = format!("{:04}", self.year);
        if let Some(month) = self.month {
            let _ = write!(out, "-{month:02}");
            if let Some(day) = self.day {
                let _ = write!(out, "-{day:02}");
            }
        }
        out
    }

    /// FHIR `dateTime` at the value's precision; a value with a time but no zone keeps only
    /// its date (see the module documentation).
    pub fn to_fhir_datetime(&self) -> String {
        match (self.hour, self.offset) {
            (Some(hour), Some(offset)) => {
                let mut out = self.to_fhir_date();
                let _ = write!(
                    out,
                    "T{hour:02}:{:02}:{:02}",
                    self.minute.unwrap_or(0),
                    self.second.unwrap_or(0)
                );
                if let Some(fraction) = &self.fraction {
                    let _ = write!(out, ".{fraction}");
                }
                write_offset(&mut out, offset);
                out
            }
            _ => self.to_fhir_date(),
        }
    }

    /// FHIR `instant`: only for a value given to the second with a zone.
    pub fn to_fhir_instant(&self) -> Option<String> {
        (self.precision() == Precision::Second && self.offset.is_some())
            .then(|| self.to_fhir_datetime())
    }
}

impl Tm {
    /// FHIR `time` (`hh:mm:ss[.f]`). FHIR times have no zone, so an offset is dropped: a TM
    /// value is a time of day as read on the sender's clock.
    pub fn to_fhir_time(&self) -> String {
        let mut out = format!(
            "{:02}:{:02}:{:02}",
            self.hour,
            self.minute.unwrap_or(0),
            self.second.unwrap_or(0)
        );
        if let Some(fraction) = &self.fraction {
            let _ = write!(out, ".{fraction}");
        }
        out
    }

    /// The time zone offset in minutes east of UTC, when the value has one.
    pub fn offset(&self) -> Option<i16> {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_precision_converts_to_fhir() {
        let cases = [
            ("2024", "2024", "2024", Precision::Year),
            ("202403", "2024-03", "2024-03", Precision::Month),
            ("20240315", "2024-03-15", "2024-03-15", Precision::Day),
            (
                "2024031512+0100",
                "2024-03-15",
                "2024-03-15T12:00:00+01:00",
                Precision::Hour,
            ),
            (
                "202403151230-0500",
                "2024-03-15",
                "2024-03-15T12:30:00-05:00",
                Precision::Minute,
            ),
            (
                "20240315123045+0000",
                "2024-03-15",
                "2024-03-15T12:30:45+00:00",
                Precision::Second,
            ),
            (
                "20240315123045.1234+0530",
                "2024-03-15",
                "2024-03-15T12:30:45.1234+05:30",
                Precision::Second,
            ),
        ];
        for (hl7, date, datetime, precision) in cases {
            let dtm = parse_dtm(hl7).unwrap();
            assert_eq!(dtm.precision(), precision, "{hl7}");
            assert_eq!(dtm.to_fhir_date(), date, "{hl7}");
            assert_eq!(dtm.to_fhir_datetime(), datetime, "{hl7}");
        }
    }

    #[test]
    fn a_time_without_zone_keeps_its_date_unless_a_zone_is_supplied() {
        let dtm = parse_dtm("20240315123045").unwrap();
        assert_eq!(dtm.to_fhir_datetime(), "2024-03-15");
        assert_eq!(dtm.to_fhir_instant(), None);
        let zoned = dtm.or_offset(Some(-300));
        assert_eq!(zoned.to_fhir_datetime(), "2024-03-15T12:30:45-05:00");
        assert_eq!(
            zoned.to_fhir_instant().as_deref(),
            Some("2024-03-15T12:30:45-05:00")
        );
        // A value's own zone wins over the default.
        let own = parse_dtm("20240315123045+0200")
            .unwrap()
            .or_offset(Some(-300));
        assert_eq!(own.offset(), Some(120));
    }

    #[test]
    fn instant_needs_seconds_and_zone() {
        assert_eq!(
            parse_dtm("202403151230+0000").unwrap().to_fhir_instant(),
            None
        );
        assert_eq!(
            parse_dtm("20240315123000+0000")
                .unwrap()
                .to_fhir_instant()
                .as_deref(),
            Some("2024-03-15T12:30:00+00:00")
        );
    }

    #[test]
    fn leap_years_are_respected() {
        assert!(parse_dtm("20240229").is_ok());
        assert!(parse_dtm("20000229").is_ok());
        assert_eq!(
            parse_dtm("20230229"),
            Err(DtmError::Day {
                year: 2023,
                month: 2,
                day: 29
            })
        );
        assert_eq!(
            parse_dtm("19000229"),
            Err(DtmError::Day {
                year: 1900,
                month: 2,
                day: 29
            })
        );
        assert_eq!(
            parse_dtm("20240431"),
            Err(DtmError::Day {
                year: 2024,
                month: 4,
                day: 31
            })
        );
    }

    #[test]
    fn out_of_range_parts_are_named() {
        assert_eq!(
            parse_dtm("202413").unwrap_err().to_string(),
            "month 13 out of range"
        );
        assert_eq!(parse_dtm("202400").unwrap_err(), DtmError::Month(0));
        assert_eq!(
            parse_dtm("20240100").unwrap_err(),
            DtmError::Day {
                year: 2024,
                month: 1,
                day: 0
            }
        );
        assert_eq!(parse_dtm("2024010124").unwrap_err(), DtmError::Hour(24));
        assert_eq!(parse_dtm("202401012360").unwrap_err(), DtmError::Minute(60));
        assert_eq!(
            parse_dtm("20240101235960").unwrap_err(),
            DtmError::Second(60)
        );
        assert_eq!(parse_dtm("0000").unwrap_err(), DtmError::Year);
        assert_eq!(
            parse_dtm("20240101+1401").unwrap_err(),
            DtmError::Offset("+1401".into())
        );
        assert_eq!(
            parse_dtm("20240101-1500").unwrap_err(),
            DtmError::Offset("-1500".into())
        );
        assert_eq!(
            parse_dtm("20240101+0160").unwrap_err(),
            DtmError::Offset("+0160".into())
        );
        assert!(parse_dtm("20240101+1400").is_ok());
    }

    #[test]
    fn malformed_values_are_syntax_errors() {
        for bad in [
            "",
            "24",
            "20241",
            "2024-03-15",
            "20240315T1200",
            "202403151230.5",
            "20240315123045.",
            "20240315123045.12345",
            "20240315+01",
            "2024031512+01:00",
            "-2024",
            "２０２４",
            "2024 ",
        ] {
            assert!(parse_dtm(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_dtm(""), Err(DtmError::Empty));
    }

    #[test]
    fn tm_values_convert_to_fhir_time() {
        assert_eq!(parse_tm("08").unwrap().to_fhir_time(), "08:00:00");
        assert_eq!(parse_tm("0830").unwrap().to_fhir_time(), "08:30:00");
        assert_eq!(
            parse_tm("083015.25+0100").unwrap().to_fhir_time(),
            "08:30:15.25"
        );
        assert_eq!(parse_tm("083015+0100").unwrap().offset(), Some(60));
        assert_eq!(parse_tm("2400"), Err(DtmError::Hour(24)));
        assert_eq!(parse_tm("0860"), Err(DtmError::Minute(60)));
        assert!(parse_tm("083").is_err());
        assert!(parse_tm("08:30").is_err());
    }
}
