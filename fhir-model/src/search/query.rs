//! Parsing of a search request into a `SearchQuery`: result parameters, then each search
//! parameter's modifier, comma-separated alternatives and typed predicate.

use super::date::{parse_range, DAY_MS};
use super::reference::{is_id, split_reference};
use super::registry::find_param;
use super::text::{normalize, split_unescaped, unescape};
use super::{
    Prefix, Filter, ParamType, Predicate, SearchParamDef, SearchQuery, TokenSystem,
    MAX_PAGE_SIZE,
};
use crate::{Issue, ModelError};

/// The `rule` of every issue raised here.
const RULE: &str = "search-parameter";

/// `now_ms` is the clock for `ap`; the public wrapper passes the real time, tests a fixed one.
pub(super) fn parse_search(
    resource_type: Option<&str>,
    params: &[(String, String)],
    strict: bool,
    now_ms: i64,
) -> Result<SearchQuery, ModelError> {
    let mut query = SearchQuery::all(resource_type);
    let mut issues = Vec::new();
    let mut saw_type = false;
    for (name, value) in params {
        match name.as_str() {
            // Output options, not search parameters: neither applied nor ignored.
            "_format" | "_pretty" => {}
            "_cursor" if value.is_empty() => {
                issues.push(Issue::error(name, RULE, "empty _cursor value"))
            }
            "_cursor" => query.cursor = Some(value.clone()),
            "_count" => match parse_count(value) {
                Some(count) => {
                    query.count = count;
                    // The last `_count` wins, and the self link should show the page size used.
                    query.applied.retain(|(n, _)| n != "_count");
                    query.applied.push((name.clone(), count.to_string()));
                }
                None => issues.push(Issue::error(
                    name,
                    RULE,
                    format!("_count must be a non-negative integer, got {value:?}"),
                )),
            },
            "_type" if resource_type.is_none() => {
                if saw_type {
                    issues.push(Issue::error(
                        name,
                        RULE,
                        "_type given more than once; list the types in one value",
                    ));
                    continue;
                }
                saw_type = true;
                match parse_types(value) {
                    Ok(types) => {
                        query.types = types;
                        query.applied.push((name.clone(), value.clone()));
                    }
                    Err(message) => issues.push(Issue::error(name, RULE, message)),
                }
            }
            _ => match parse_parameter(resource_type, name, value, now_ms) {
                Parsed::Filter(filter) => {
                    query.filters.push(filter);
                    query.applied.push((name.clone(), value.clone()));
                }
                Parsed::NotSupported(message) if strict => {
                    issues.push(Issue::error(name, RULE, message))
                }
                Parsed::NotSupported(_) => {
                    if !query.ignored.contains(name) {
                        query.ignored.push(name.clone());
                    }
                }
                Parsed::Malformed(message) => issues.push(Issue::error(name, RULE, message)),
            },
        }
    }
    if issues.is_empty() {
        Ok(query)
    } else {
        Err(ModelError::Search(issues))
    }
}

/// The outcome for one `name[:modifier]=value` pair.
enum Parsed {
    Filter(Filter),
    /// Unknown parameter or unsupported modifier: an error only under strict handling.
    NotSupported(String),
    /// A bad value: always an error.
    Malformed(String),
}

/// How a modifier changes the predicates of one parameter.
enum Modifier {
    None,
    Exact,
    /// A resource type on a reference parameter (`subject:Patient`).
    Type(String),
}

fn parse_parameter(resource_type: Option<&str>, name: &str, value: &str, now_ms: i64) -> Parsed {
    let (base, modifier) = match name.split_once(':') {
        Some((base, modifier)) => (base, Some(modifier)),
        None => (name, None),
    };
    let Some((_, def)) = find_param(resource_type, base) else {
        let scope = resource_type.map_or_else(|| "system-level search".to_string(), str::to_string);
        return Parsed::NotSupported(format!("unknown search parameter {base:?} for {scope}"));
    };
    let modifier = match parse_modifier(def, modifier) {
        Ok(modifier) => modifier,
        Err(message) => return Parsed::NotSupported(message),
    };
    if value.is_empty() {
        return Parsed::Malformed(format!("empty value for {name}"));
    }
    let mut any_of = Vec::new();
    for piece in split_unescaped(value, ',') {
        if piece.is_empty() {
            return Parsed::Malformed(format!("empty alternative in {value:?}"));
        }
        match predicate(def.kind, &modifier, piece, now_ms) {
            Ok(predicate) => any_of.push(predicate),
            Err(message) => return Parsed::Malformed(message),
        }
    }
    Parsed::Filter(Filter::Match {
        param: def.name.to_string(),
        any_of,
        negate: false,
    })
}

fn parse_modifier(def: &SearchParamDef, modifier: Option<&str>) -> Result<Modifier, String> {
    match (def.kind, modifier) {
        (_, None) => Ok(Modifier::None),
        (ParamType::String, Some("exact")) => Ok(Modifier::Exact),
        (ParamType::Reference, Some(ty)) if crate::is_resource_type(ty) => {
            Ok(Modifier::Type(ty.to_string()))
        }
        (kind, Some(modifier)) => Err(format!(
            "unsupported modifier {modifier:?} on {} parameter {:?}",
            kind_name(kind),
            def.name
        )),
    }
}

fn kind_name(kind: ParamType) -> &'static str {
    kind.code()
}

/// One comma-separated alternative, still escaped, as a predicate.
fn predicate(
    kind: ParamType,
    modifier: &Modifier,
    piece: &str,
    now_ms: i64,
) -> Result<Predicate, String> {
    match kind {
        ParamType::String => {
            let text = unescape(piece);
            Ok(match modifier {
                Modifier::Exact => Predicate::StringExact(text),
                _ => Predicate::StringStartsWith(normalize(&text)),
            })
        }
        ParamType::Token => token_predicate(piece),
        ParamType::Date => date_predicate(&unescape(piece), now_ms),
        ParamType::Reference => {
            let type_modifier = match modifier {
                Modifier::Type(ty) => Some(ty.as_str()),
                _ => None,
            };
            reference_predicate(&unescape(piece), type_modifier)
        }
        other => Err(format!("{} parameters are not supported yet", kind_name(other))),
    }
}

/// `code`, `|code`, `system|code` or `system|`.
fn token_predicate(piece: &str) -> Result<Predicate, String> {
    let parts = split_unescaped(piece, '|');
    let (system, code) = match parts.as_slice() {
        [code] => (TokenSystem::Any, Some(unescape(code))),
        ["", ""] => return Err(format!("token {piece:?} has neither system nor code")),
        ["", code] => (TokenSystem::None, Some(unescape(code))),
        [system, ""] => (TokenSystem::Is(unescape(system)), None),
        [system, code] => (TokenSystem::Is(unescape(system)), Some(unescape(code))),
        _ => return Err(format!("token {piece:?} has more than one unescaped |")),
    };
    Ok(Predicate::Token { system, code })
}

fn date_predicate(value: &str, now_ms: i64) -> Result<Predicate, String> {
    let starts_with_letters =
        value.len() >= 2 && value.as_bytes()[..2].iter().all(u8::is_ascii_alphabetic);
    let (prefix, rest) = if starts_with_letters {
        let prefix = match &value[..2] {
            "eq" => Prefix::Eq,
            "ne" => Prefix::Ne,
            "gt" => Prefix::Gt,
            "lt" => Prefix::Lt,
            "ge" => Prefix::Ge,
            "le" => Prefix::Le,
            "sa" => Prefix::Sa,
            "eb" => Prefix::Eb,
            "ap" => Prefix::Ap,
            other => return Err(format!("unknown prefix {other:?} in {value:?}")),
        };
        (prefix, &value[2..])
    } else {
        (Prefix::Eq, value)
    };
    // An unencoded `+` in a query string decodes to a space, so `…T10:00:00 01:00` is what a
    // client sent as `+01:00`; a date has no other place for a space.
    let date = rest.replace(' ', "+");
    let (lo, hi) = parse_range(&date).ok_or_else(|| format!("invalid date {value:?}"))?;
    let (lo, hi) = if prefix == Prefix::Ap {
        widen(lo, hi, now_ms)
    } else {
        (lo, hi)
    };
    Ok(Predicate::Date { prefix, lo, hi })
}

/// Widens `[lo, hi)` for `ap` by 10% of its distance from now, at least one day, each side.
/// The distance is to the nearest edge, zero when now falls inside the range.
fn widen(lo: i64, hi: i64, now_ms: i64) -> (i64, i64) {
    let distance = if now_ms < lo {
        lo.saturating_sub(now_ms)
    } else if now_ms >= hi {
        now_ms.saturating_sub(hi)
    } else {
        0
    };
    let margin = (distance / 10).max(DAY_MS);
    (lo.saturating_sub(margin), hi.saturating_add(margin))
}

/// `123`, `Patient/123`, an absolute URL, or any of these under a type modifier.
fn reference_predicate(value: &str, type_modifier: Option<&str>) -> Result<Predicate, String> {
    let invalid = || format!("invalid reference {value:?}");
    let (target_type, target_id) = split_reference(value).ok_or_else(invalid)?;
    // A relative value with a slash that did not split (`Patient/`, `a/b/c`) is a typo, not
    // an opaque identifier; URLs and URNs that did not split are matched whole, as indexed.
    if target_type.is_none() && !value.contains(':') && (value.contains('/') || !is_id(value)) {
        return Err(invalid());
    }
    let target_type = match (type_modifier, target_type) {
        (Some(modifier), Some(ty)) if modifier != ty => {
            return Err(format!("reference {value:?} is not of type {modifier}"));
        }
        (Some(modifier), _) => Some(modifier.to_string()),
        (None, ty) => ty,
    };
    Ok(Predicate::Reference {
        target_type,
        target_id,
    })
}

/// A non-negative decimal integer, capped to `MAX_PAGE_SIZE`. Too many digits for `usize` is
/// still a well-formed count, so it is capped rather than rejected.
fn parse_count(value: &str) -> Option<usize> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        value
            .parse::<usize>()
            .unwrap_or(usize::MAX)
            .min(MAX_PAGE_SIZE),
    )
}

/// The comma-separated resource types of `_type`, each checked against R4.
fn parse_types(value: &str) -> Result<Vec<String>, String> {
    let mut types: Vec<String> = Vec::new();
    for ty in value.split(',').map(str::trim) {
        if ty.is_empty() {
            return Err(format!("empty resource type in _type {value:?}"));
        }
        if !crate::is_resource_type(ty) {
            return Err(format!("unknown resource type {ty:?} in _type"));
        }
        if !types.iter().any(|t| t == ty) {
            types.push(ty.to_string());
        }
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn ms(dt: time::OffsetDateTime) -> i64 {
        (dt.unix_timestamp_nanos() / 1_000_000) as i64
    }

    fn date(value: &str, now: i64) -> Predicate {
        date_predicate(value, now).unwrap()
    }

    #[test]
    fn ap_widens_by_a_tenth_of_the_distance_from_now() {
        let now = ms(datetime!(2025-01-01 0:00 UTC));
        let (lo, hi) = (
            ms(datetime!(2015-01-01 0:00 UTC)),
            ms(datetime!(2015-01-02 0:00 UTC)),
        );
        let margin = (now - hi) / 10;
        assert!(margin > 300 * DAY_MS);
        assert_eq!(
            date("ap2015-01-01", now),
            Predicate::Date {
                prefix: Prefix::Ap,
                lo: lo - margin,
                hi: hi + margin
            }
        );

        // In the future the distance is to the start.
        let (lo, hi) = (
            ms(datetime!(2035-01-01 0:00 UTC)),
            ms(datetime!(2035-01-02 0:00 UTC)),
        );
        let margin = (lo - now) / 10;
        assert_eq!(
            date("ap2035-01-01", now),
            Predicate::Date {
                prefix: Prefix::Ap,
                lo: lo - margin,
                hi: hi + margin
            }
        );
    }

    #[test]
    fn ap_widens_by_at_least_a_day() {
        let now = ms(datetime!(2025-06-15 12:00 UTC));
        let (lo, hi) = (
            ms(datetime!(2025-01-01 0:00 UTC)),
            ms(datetime!(2026-01-01 0:00 UTC)),
        );
        assert_eq!(
            date("ap2025", now),
            Predicate::Date {
                prefix: Prefix::Ap,
                lo: lo - DAY_MS,
                hi: hi + DAY_MS
            }
        );
        let t = ms(datetime!(2025-06-15 11:00 UTC));
        assert_eq!(
            date("ap2025-06-15T11:00:00Z", now),
            Predicate::Date {
                prefix: Prefix::Ap,
                lo: t - DAY_MS,
                hi: t + 1000 + DAY_MS
            }
        );
    }

    #[test]
    fn other_prefixes_are_not_widened() {
        let now = ms(datetime!(2025-01-01 0:00 UTC));
        let (lo, hi) = (
            ms(datetime!(2015-01-01 0:00 UTC)),
            ms(datetime!(2015-01-02 0:00 UTC)),
        );
        assert_eq!(
            date("ne2015-01-01", now),
            Predicate::Date {
                prefix: Prefix::Ne,
                lo,
                hi
            }
        );
    }

    #[test]
    fn plus_decoded_as_space_is_read_as_plus() {
        let t = ms(datetime!(2013-01-14 10:00 +01:00));
        assert_eq!(
            date("ge2013-01-14T10:00:00 01:00", 0),
            Predicate::Date {
                prefix: Prefix::Ge,
                lo: t,
                hi: t + 1000
            }
        );
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("0"), Some(0));
        assert_eq!(parse_count("007"), Some(7));
        assert_eq!(parse_count("1000"), Some(1000));
        assert_eq!(parse_count("1001"), Some(MAX_PAGE_SIZE));
        assert_eq!(parse_count("99999999999999999999999"), Some(MAX_PAGE_SIZE));
        for bad in ["", "-1", "+1", "1.5", "ten", " 5"] {
            assert_eq!(parse_count(bad), None, "{bad}");
        }
    }
}
