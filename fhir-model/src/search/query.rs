//! Parsing of a search request into a `SearchQuery`: result parameters (`_sort`, `_include`,
//! `_total`...), then each search parameter's chain or `_has`, modifier, comma-separated
//! alternatives and typed predicate.

use super::date::{parse_range, DAY_MS};
use super::number::{approximate, parse_decimal};
use super::quantity::canonical_range;
use super::reference::{is_id, split_reference};
use super::registry::{find_param, unsupported_reason};
use super::text::{normalize, split_unescaped, unescape};
use super::ucum::UCUM;
use super::{
    Filter, Include, ParamType, Predicate, Prefix, SearchParamDef, SearchQuery, SortKey, Summary,
    TokenSystem, TotalMode, UriMatch, MAX_PAGE_SIZE,
};
use crate::{is_resource_type, Issue, ModelError};

/// The `rule` of every issue raised here.
const RULE: &str = "search-parameter";

/// Why one `name=value` pair was not applied.
enum Problem {
    /// Unknown parameter or unsupported modifier: an error only under strict handling.
    NotSupported(String),
    /// A bad value: always an error.
    Malformed(String),
}

use Problem::{Malformed, NotSupported};

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
    // At system level, `_type` decides which parameters exist wherever it appears in the query:
    // those every listed type has (with the same type), not only the common ones.
    let listed_types: Vec<String> = match resource_type {
        Some(_) => Vec::new(),
        None => params
            .iter()
            .find(|(name, _)| name == "_type")
            .and_then(|(_, value)| parse_types(value).ok())
            .unwrap_or_default(),
    };
    let scope = resource_type.or(listed_types.first().map(String::as_str));
    for (name, value) in params {
        let outcome: Result<(), Problem> = match name.as_str() {
            // Output options, not search parameters: neither applied nor ignored.
            "_format" | "_pretty" => continue,
            "_cursor" if value.is_empty() => Err(Malformed("empty _cursor value".into())),
            "_cursor" => {
                query.cursor = Some(value.clone());
                continue;
            }
            "_count" => match parse_count(value) {
                Some(count) => {
                    query.count = count;
                    // The last `_count` wins, and the self link should show the page size used.
                    query.applied.retain(|(n, _)| n != "_count");
                    query.applied.push((name.clone(), count.to_string()));
                    continue;
                }
                None => Err(Malformed(format!(
                    "_count must be a non-negative integer, got {value:?}"
                ))),
            },
            "_type" if resource_type.is_none() => {
                if saw_type {
                    Err(Malformed(
                        "_type given more than once; list the types in one value".into(),
                    ))
                } else {
                    saw_type = true;
                    parse_types(value).map(|types| query.types = types)
                }
            }
            "_sort" => parse_sort(scope, value)
                .and_then(|keys| shared_by_all(&listed_types, keys.iter().map(|k| k.param.as_str()), keys.clone()))
                .map(|keys| query.sort.extend(keys)),
            "_total" => parse_total(value).map(|total| query.total = total),
            "_summary" => parse_summary(value).map(|summary| query.summary = Some(summary)),
            "_elements" => parse_elements(value).map(|elements| {
                for e in elements {
                    if !query.elements.contains(&e) {
                        query.elements.push(e);
                    }
                }
            }),
            "_contained" | "_containedType" => Err(NotSupported(format!(
                "unsupported parameter {name}: contained resources are not searched"
            ))),
            _ if is_include(name) => {
                let (kind, modifier) = name.split_once(':').unwrap_or((name, ""));
                let iterate = match modifier {
                    "" => Ok(false),
                    // `recurse` is the STU3 spelling of `iterate`.
                    "iterate" | "recurse" => Ok(true),
                    other => Err(NotSupported(format!("unsupported modifier {other:?} on {kind}"))),
                };
                iterate
                    .and_then(|iterate| parse_include(value, iterate))
                    .map(|include| {
                        if kind == "_include" {
                            query.includes.push(include);
                        } else {
                            query.revincludes.push(include);
                        }
                    })
            }
            _ => parse_parameter(scope, name, value, now_ms)
                .and_then(|filter| shared_by_all(&listed_types, std::iter::once(base_name(name)), filter))
                .map(|filter| query.filters.push(filter)),
        };
        match outcome {
            Ok(()) => query.applied.push((name.clone(), value.clone())),
            Err(NotSupported(message)) if strict => issues.push(Issue::error(name, RULE, message)),
            Err(NotSupported(_)) => {
                if !query.ignored.contains(name) {
                    query.ignored.push(name.clone());
                }
            }
            Err(Malformed(message)) => issues.push(Issue::error(name, RULE, message)),
        }
    }
    if issues.is_empty() {
        Ok(query)
    } else {
        Err(ModelError::Search(issues))
    }
}

/// `value` when every parameter in `names` means the same (exists, with the same type) for all
/// of `types` (a system-level `_type` list; the first type is the one it was parsed for).
fn shared_by_all<'n, T>(types: &[String], names: impl Iterator<Item = &'n str>, value: T) -> Result<T, Problem> {
    let Some((first, others)) = types.split_first() else {
        return Ok(value);
    };
    for name in names {
        // `_has` is checked against each source type when the store resolves it.
        if name == "_has" {
            continue;
        }
        let kind = find_param(Some(first), name).map(|(_, def)| def.kind);
        for other in others {
            if find_param(Some(other), name).map(|(_, def)| def.kind) != kind {
                return Err(NotSupported(format!(
                    "search parameter {name:?} is not defined alike for every type in _type ({first} and {other} differ)"
                )));
            }
        }
    }
    Ok(value)
}

/// The parameter a query key names: `subject` for `subject:Patient.name`, `_has` for reverse
/// chains.
fn base_name(name: &str) -> &str {
    if name.starts_with("_has:") {
        return "_has";
    }
    let head = name.split('.').next().unwrap_or(name);
    head.split(':').next().unwrap_or(head)
}

fn is_include(name: &str) -> bool {
    let base = name.split(':').next().unwrap_or(name);
    base == "_include" || base == "_revinclude"
}

/// How a modifier changes the predicates of one parameter.
#[derive(Debug, Clone, PartialEq)]
enum Modifier {
    None,
    Missing,
    Exact,
    Contains,
    Text,
    Not,
    OfType,
    /// A resource type on a reference parameter (`subject:Patient`).
    Type(String),
    Identifier,
    Above,
    Below,
}

/// One `name[:modifier]=value` search parameter for `scope` (None: system level), including
/// chains (`subject:Patient.name`) and reverse chains (`_has:Observation:patient:code`).
fn parse_parameter(
    scope: Option<&str>,
    name: &str,
    value: &str,
    now_ms: i64,
) -> Result<Filter, Problem> {
    if let Some(rest) = name.strip_prefix("_has:") {
        return parse_has(scope, name, rest, value, now_ms);
    }
    if let Some((head, rest)) = name.split_once('.') {
        return parse_chain(scope, head, rest, value, now_ms);
    }
    let (base, modifier) = match name.split_once(':') {
        Some((base, modifier)) => (base, Some(modifier)),
        None => (name, None),
    };
    let def = known_param(scope, base)?;
    let modifier = parse_modifier(def, modifier).map_err(NotSupported)?;
    if value.is_empty() {
        return Err(Malformed(format!("empty value for {name}")));
    }
    if modifier == Modifier::Missing {
        let missing = match value {
            "true" => true,
            "false" => false,
            other => {
                return Err(Malformed(format!(
                    ":missing takes true or false, got {other:?}"
                )))
            }
        };
        return Ok(Filter::Missing {
            param: def.name.to_string(),
            missing,
        });
    }
    let mut any_of = Vec::new();
    for piece in split_unescaped(value, ',') {
        if piece.is_empty() {
            return Err(Malformed(format!("empty alternative in {value:?}")));
        }
        any_of.push(predicate(def, def.kind, &modifier, piece, now_ms).map_err(Malformed)?);
    }
    Ok(Filter::Match {
        param: def.name.to_string(),
        any_of,
        negate: modifier == Modifier::Not,
    })
}

/// The supported reference parameter `name` of `source` (for `_has` and includes).
fn reference_param(source: &str, name: &str) -> Result<&'static SearchParamDef, Problem> {
    let def = known_param(Some(source), name)?;
    if def.kind != ParamType::Reference {
        return Err(NotSupported(format!(
            "parameter {name:?} of {source} is not a reference parameter"
        )));
    }
    Ok(def)
}

/// The supported parameter `name` of `scope`, or why it cannot be used.
fn known_param(scope: Option<&str>, name: &str) -> Result<&'static SearchParamDef, Problem> {
    let Some((_, def)) = find_param(scope, name) else {
        let scope = scope.map_or_else(|| "system-level search".to_string(), str::to_string);
        return Err(NotSupported(format!(
            "unknown search parameter {name:?} for {scope}"
        )));
    };
    match unsupported_reason(def) {
        Some(reason) => Err(NotSupported(format!(
            "search parameter {name:?} is not supported: {reason}"
        ))),
        None => Ok(def),
    }
}

/// `ref[:Type].rest`: the reference parameter `ref` points to a resource that matches `rest`.
/// Without a type modifier the targets are those of `ref`'s definition that have the chained
/// parameter; they must agree on its type, since one value is parsed for all of them.
fn parse_chain(
    scope: Option<&str>,
    head: &str,
    rest: &str,
    value: &str,
    now_ms: i64,
) -> Result<Filter, Problem> {
    let (base, modifier) = match head.split_once(':') {
        Some((base, modifier)) => (base, Some(modifier)),
        None => (head, None),
    };
    let def = known_param(scope, base)?;
    if def.kind != ParamType::Reference {
        return Err(NotSupported(format!(
            "cannot chain {base:?}: it is a {} parameter, and only reference parameters chain",
            def.kind.code()
        )));
    }
    let chained = rest.split([':', '.']).next().unwrap_or(rest);
    let has_param = |ty: &str| chained == "_has" || find_param(Some(ty), chained).is_some();
    let targets: Vec<&str> = match modifier {
        Some(ty) if is_resource_type(ty) => {
            check_target(def, ty).map_err(NotSupported)?;
            vec![ty]
        }
        Some(other) => {
            return Err(NotSupported(format!(
                "unsupported modifier {other:?} in the chain {head}.{rest}"
            )))
        }
        None => def.targets.to_vec(),
    };
    let targets: Vec<&str> = targets.into_iter().filter(|t| has_param(t)).collect();
    let Some(first) = targets.first() else {
        return Err(NotSupported(format!(
            "unknown search parameter {chained:?} for the targets of {base:?}"
        )));
    };
    let kind_of = |ty: &str| find_param(Some(ty), chained).map(|(_, d)| d.kind);
    if targets.iter().any(|t| kind_of(t) != kind_of(first)) {
        return Err(NotSupported(format!(
            "{chained:?} has different types on the targets of {base:?} ({}); add a type \
             modifier such as {base}:{first}",
            targets.join(", ")
        )));
    }
    let inner = parse_parameter(Some(first), rest, value, now_ms)?;
    Ok(Filter::Chain {
        param: def.name.to_string(),
        target_types: targets.into_iter().map(str::to_string).collect(),
        inner: Box::new(inner),
    })
}

/// `Type:ref:rest` after `_has:`: some `Type` whose reference parameter `ref` points here
/// matches `rest` (itself possibly another `_has`).
fn parse_has(
    scope: Option<&str>,
    name: &str,
    rest: &str,
    value: &str,
    now_ms: i64,
) -> Result<Filter, Problem> {
    let parts: Vec<&str> = rest.splitn(3, ':').collect();
    let [source, reference, inner] = parts.as_slice() else {
        return Err(Malformed(format!(
            "reverse chain {name} must have the form _has:Type:reference:parameter"
        )));
    };
    if source.is_empty() || reference.is_empty() || inner.is_empty() {
        return Err(Malformed(format!(
            "reverse chain {name} must have the form _has:Type:reference:parameter"
        )));
    }
    if !is_resource_type(source) {
        return Err(NotSupported(format!(
            "unknown resource type {source:?} in {name}"
        )));
    }
    let def = reference_param(source, reference)?;
    if let Some(scope) = scope {
        check_target(def, scope).map_err(NotSupported)?;
    }
    let inner = parse_parameter(Some(source), inner, value, now_ms)?;
    Ok(Filter::Has {
        source_type: source.to_string(),
        reference_param: def.name.to_string(),
        inner: Box::new(inner),
    })
}

/// Whether reference parameter `def` may point to a `ty`. A definition without targets
/// (none published) accepts any type.
fn check_target(def: &SearchParamDef, ty: &str) -> Result<(), String> {
    if def.targets.is_empty() || def.targets.contains(&ty) {
        Ok(())
    } else {
        Err(format!(
            "reference parameter {:?} of {} cannot point to a {ty} (its targets are {})",
            def.name,
            def.resource_type,
            def.targets.join(", ")
        ))
    }
}

fn parse_modifier(def: &SearchParamDef, modifier: Option<&str>) -> Result<Modifier, String> {
    use ParamType as T;
    Ok(match (def.kind, modifier) {
        (_, None) => Modifier::None,
        (_, Some("missing")) => Modifier::Missing,
        (T::String, Some("exact")) => Modifier::Exact,
        (T::String, Some("contains")) => Modifier::Contains,
        (T::Token, Some("text")) => Modifier::Text,
        (T::Token, Some("not")) => Modifier::Not,
        (T::Token, Some("of-type")) if is_identifier_param(def) => Modifier::OfType,
        (T::Reference, Some("identifier")) => Modifier::Identifier,
        (T::Reference, Some(ty)) if is_resource_type(ty) => {
            check_target(def, ty)?;
            Modifier::Type(ty.to_string())
        }
        (T::Uri, Some("above")) => Modifier::Above,
        (T::Uri, Some("below")) => Modifier::Below,
        (kind, Some(modifier)) => {
            return Err(format!(
                "unsupported modifier {modifier:?} on {} parameter {:?}",
                kind.code(),
                def.name
            ))
        }
    })
}

/// Whether a token parameter searches Identifiers, where `:of-type` applies: every R4
/// parameter that does selects an element named `identifier`.
fn is_identifier_param(def: &SearchParamDef) -> bool {
    def.expression
        .split('|')
        .any(|branch| branch.trim().trim_end_matches(')').ends_with(".identifier"))
}

/// One comma-separated alternative, still escaped, as a predicate of type `kind` (the
/// parameter's own, or a composite component's).
fn predicate(
    def: &SearchParamDef,
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
                Modifier::Contains => Predicate::StringContains(normalize(&text)),
                _ => Predicate::StringStartsWith(normalize(&text)),
            })
        }
        ParamType::Token => match modifier {
            Modifier::Text => Ok(Predicate::TokenText(normalize(&unescape(piece)))),
            Modifier::OfType => of_type_predicate(piece),
            _ => token_predicate(piece),
        },
        ParamType::Date => date_predicate(&unescape(piece), now_ms),
        ParamType::Number => number_predicate(&unescape(piece)),
        ParamType::Quantity => quantity_predicate(piece),
        ParamType::Reference => match modifier {
            Modifier::Identifier => reference_identifier_predicate(piece),
            Modifier::Type(ty) => reference_predicate(&unescape(piece), Some(ty)),
            _ => reference_predicate(&unescape(piece), None),
        },
        ParamType::Uri => Ok(Predicate::Uri {
            value: unescape(piece),
            mode: match modifier {
                Modifier::Above => UriMatch::Above,
                Modifier::Below => UriMatch::Below,
                _ => UriMatch::Exact,
            },
        }),
        ParamType::Composite => composite_predicate(def, piece, now_ms),
        ParamType::Special => Err(format!("special parameter {} cannot be searched", def.name)),
    }
}

/// `a$b`: one value per component, each parsed as its component's type.
fn composite_predicate(
    def: &SearchParamDef,
    piece: &str,
    now_ms: i64,
) -> Result<Predicate, String> {
    let parts = split_unescaped(piece, '$');
    if parts.len() != def.components.len() {
        return Err(format!(
            "composite value {piece:?} needs {} values separated by $ for {}",
            def.components.len(),
            def.name
        ));
    }
    let mut predicates = Vec::with_capacity(parts.len());
    for (part, component) in parts.into_iter().zip(def.components) {
        if part.is_empty() {
            return Err(format!("empty component {} in {piece:?}", component.name));
        }
        if component.kind == ParamType::Composite {
            return Err(format!("composite component {} cannot be searched", component.name));
        }
        predicates.push(predicate(def, component.kind, &Modifier::None, part, now_ms)?);
    }
    Ok(Predicate::Composite(predicates))
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

/// `:of-type`: `type-system|type-code|value`, all three required.
fn of_type_predicate(piece: &str) -> Result<Predicate, String> {
    match split_unescaped(piece, '|').as_slice() {
        [system, code, value] if !system.is_empty() && !code.is_empty() && !value.is_empty() => {
            Ok(Predicate::IdentifierOfType {
                type_system: unescape(system),
                type_code: unescape(code),
                value: unescape(value),
            })
        }
        _ => Err(format!(
            ":of-type value {piece:?} must be type-system|type-code|value"
        )),
    }
}

/// `:identifier` on a reference: token syntax over `Reference.identifier`, a value required.
fn reference_identifier_predicate(piece: &str) -> Result<Predicate, String> {
    match token_predicate(piece)? {
        Predicate::Token {
            system,
            code: Some(value),
        } => Ok(Predicate::ReferenceIdentifier { system, value }),
        _ => Err(format!(":identifier value {piece:?} has no identifier value")),
    }
}

/// A leading comparison prefix (two letters), `eq` when there is none.
fn split_prefix(value: &str) -> Result<(Prefix, &str), String> {
    let starts_with_letters =
        value.len() >= 2 && value.as_bytes()[..2].iter().all(u8::is_ascii_alphabetic);
    if !starts_with_letters {
        return Ok((Prefix::Eq, value));
    }
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
    Ok((prefix, &value[2..]))
}

fn date_predicate(value: &str, now_ms: i64) -> Result<Predicate, String> {
    let (prefix, rest) = split_prefix(value)?;
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

/// `[prefix]number`: the range of the number as written, widened for `ap`.
fn number_predicate(value: &str) -> Result<Predicate, String> {
    let (prefix, rest) = split_prefix(value)?;
    let number = parse_decimal(rest).ok_or_else(|| format!("invalid number {value:?}"))?;
    let (lo, hi) = if prefix == Prefix::Ap {
        approximate(number)
    } else {
        (number.lo, number.hi)
    };
    Ok(Predicate::Number { prefix, lo, hi })
}

/// `[prefix]number`, `[prefix]number|system|code` or `[prefix]number||code`, still escaped.
/// A UCUM unit (system UCUM or empty) that converts is brought to the canonical unit, as the
/// index does, so `70|http://unitsofmeasure.org|kg` finds `70000 g`.
fn quantity_predicate(piece: &str) -> Result<Predicate, String> {
    let parts = split_unescaped(piece, '|');
    let non_empty = |s: &str| Some(unescape(s)).filter(|s| !s.is_empty());
    let (number, system, code) = match parts.as_slice() {
        [number] => (unescape(number), None, None),
        [number, system, code] => (unescape(number), non_empty(system), non_empty(code)),
        _ => {
            return Err(format!(
                "quantity {piece:?} must be number, number|system|code or number||code"
            ))
        }
    };
    if system.is_some() && code.is_none() {
        return Err(format!("quantity {piece:?} has a system but no unit code"));
    }
    let (prefix, rest) = split_prefix(&number)?;
    let decimal = parse_decimal(rest).ok_or_else(|| format!("invalid quantity {piece:?}"))?;
    let (lo, hi) = if prefix == Prefix::Ap {
        approximate(decimal)
    } else {
        (decimal.lo, decimal.hi)
    };
    Ok(
        match canonical_range(system.as_deref(), code.as_deref(), lo, hi) {
            Some((unit, lo, hi)) => Predicate::Quantity {
                prefix,
                lo,
                hi,
                system: Some(UCUM.to_string()),
                code: Some(unit),
            },
            None => Predicate::Quantity {
                prefix,
                lo,
                hi,
                system,
                code,
            },
        },
    )
}

/// `123`, `Patient/123`, an absolute URL, or any of these under a type modifier. A URL or URN
/// that does not split into type and id is matched whole.
fn reference_predicate(value: &str, type_modifier: Option<&str>) -> Result<Predicate, String> {
    let invalid = || format!("invalid reference {value:?}");
    let (target_type, target_id) = split_reference(value).ok_or_else(invalid)?;
    if target_type.is_none() {
        if value.contains(':') {
            return Ok(Predicate::ReferenceUrl(value.to_string()));
        }
        // A relative value with a slash that did not split (`Patient/`, `a/b/c`) is a typo, not
        // an opaque identifier.
        if value.contains('/') || !is_id(value) {
            return Err(invalid());
        }
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

/// `_sort=a,-b`: each key a sortable parameter of the type (common ones at system level).
fn parse_sort(scope: Option<&str>, value: &str) -> Result<Vec<SortKey>, Problem> {
    let mut keys = Vec::new();
    for key in value.split(',') {
        let (param, descending) = match key.strip_prefix('-') {
            Some(param) => (param, true),
            None => (key, false),
        };
        if param.is_empty() {
            return Err(Malformed(format!("empty sort key in {value:?}")));
        }
        let def = known_param(scope, param)?;
        if matches!(def.kind, ParamType::Composite | ParamType::Special) {
            return Err(NotSupported(format!(
                "cannot sort by {} parameter {param:?}",
                def.kind.code()
            )));
        }
        keys.push(SortKey {
            param: def.name.to_string(),
            descending,
        });
    }
    Ok(keys)
}

/// `*`, `Type:param` or `Type:param:TargetType` (`param` may be `*`), where `param` is a
/// reference parameter of `Type`. A bare `*` follows every reference of every type.
fn parse_include(value: &str, iterate: bool) -> Result<Include, Problem> {
    if value == "*" {
        return Ok(Include {
            source_type: "*".to_string(),
            param: "*".to_string(),
            target_type: None,
            iterate,
        });
    }
    let parts: Vec<&str> = value.split(':').collect();
    let (source, param, target) = match parts.as_slice() {
        [source, param] => (*source, *param, None),
        [source, param, target] => (*source, *param, Some(*target)),
        _ => {
            return Err(Malformed(format!(
                "include {value:?} must be Type:parameter or Type:parameter:TargetType"
            )))
        }
    };
    if !is_resource_type(source) {
        return Err(Malformed(format!("unknown resource type {source:?} in {value:?}")));
    }
    if let Some(target) = target {
        if !is_resource_type(target) {
            return Err(Malformed(format!("unknown resource type {target:?} in {value:?}")));
        }
    }
    if param != "*" {
        let def = reference_param(source, param)?;
        if let Some(target) = target {
            check_target(def, target).map_err(Malformed)?;
        }
    }
    Ok(Include {
        source_type: source.to_string(),
        param: param.to_string(),
        target_type: target.map(str::to_string),
        iterate,
    })
}

fn parse_total(value: &str) -> Result<TotalMode, Problem> {
    match value {
        "none" => Ok(TotalMode::None),
        "estimate" => Ok(TotalMode::Estimate),
        "accurate" => Ok(TotalMode::Accurate),
        other => Err(Malformed(format!(
            "_total must be none, estimate or accurate, got {other:?}"
        ))),
    }
}

fn parse_summary(value: &str) -> Result<Summary, Problem> {
    match value {
        "true" => Ok(Summary::True),
        "false" => Ok(Summary::False),
        "text" => Ok(Summary::Text),
        "data" => Ok(Summary::Data),
        "count" => Ok(Summary::Count),
        other => Err(Malformed(format!(
            "_summary must be true, false, text, data or count, got {other:?}"
        ))),
    }
}

/// `_elements=a,b`: top-level element names.
fn parse_elements(value: &str) -> Result<Vec<String>, Problem> {
    value
        .split(',')
        .map(str::trim)
        .map(|e| {
            let mut chars = e.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                Ok(e.to_string())
            } else {
                Err(Malformed(format!(
                    "_elements entry {e:?} is not a top-level element name"
                )))
            }
        })
        .collect()
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
fn parse_types(value: &str) -> Result<Vec<String>, Problem> {
    let mut types: Vec<String> = Vec::new();
    for ty in value.split(',').map(str::trim) {
        if ty.is_empty() {
            return Err(Malformed(format!("empty resource type in _type {value:?}")));
        }
        if !is_resource_type(ty) {
            return Err(Malformed(format!("unknown resource type {ty:?} in _type")));
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
