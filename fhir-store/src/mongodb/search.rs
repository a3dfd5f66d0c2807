//! Translation of a `SearchQuery`'s filters and sort keys into aggregation stages over
//! `resources`, with the semantics of the embedded store's SQL (`sqlite/search.rs`).
//!
//! Matching. The first stage is one `$match` holding the scope (`type`, `deleted: false`, the
//! keyset bound on `_id`) and every filter that needs no join. A value predicate is an
//! `$elemMatch` on its kind's array (see `layout.rs`) binding `p` and the value fields, so each
//! one is the bounds of one index led by `type` and `<array>.p`. Comma alternatives are an
//! `$or`; a predicate whose condition needs an OR across fields (`ne`, `ge`, `le`, a quantity's
//! code-or-unit) becomes several `$elemMatch`es in that `$or`, each seekable on its own, as the
//! SQL translation makes several leaves. `:not` is a `$nor` of the same, `:missing` a test of
//! `params`. No condition uses `$regex`, `$where` or `$expr`: `:contains` is a range on the
//! stored suffixes (`sfx`), and uri `:above` an `$in` of the value's prefixes.
//!
//! Joins. A chain is a `$lookup` from `refk.<param>` to the target's `_id`, a `_has` one from
//! `_id` to the source's `refk.<param>`; each runs the inner filter as its own pipeline
//! (recursively), stops at the first hit and keeps only `_id`, and a `$match` then keeps the
//! resources with a hit.
//!
//! Order. `_sort` computes one value per key (`_s<n>`: min ascending, max descending, of the
//! parameter's values, `lo` or `hi` for ordered kinds) and a missing flag (`_m<n>`) so that
//! resources without a value sort last either way; ties and the default order are `_id`
//! (type, then id).

use fhir_model::{Filter, ParamType, Predicate, Prefix, SearchQuery, SortKey, TokenSystem, UriMatch};
use mongodb::bson::{doc, Bson, Document};

use super::layout::{CONTAINS_WINDOW, RESOURCES};
use crate::components::MAX_COMPONENTS;
use crate::bounds::prefix_successor;

#[cfg(test)]
#[path = "search_snapshots.rs"]
mod snapshots;

/// Resource types a (sub)query covers; None = every type.
pub(crate) type Types = Option<Vec<String>>;

/// The types `query` covers.
pub(crate) fn scope_of(query: &SearchQuery) -> Types {
    match (&query.resource_type, query.types.as_slice()) {
        (Some(resource_type), _) => Some(vec![resource_type.clone()]),
        (None, []) => None,
        (None, types) => Some(types.to_vec()),
    }
}

/// The stages selecting the live resources of `types` that satisfy every filter, keyset-bounded
/// by `_id > after`: one `$match`, then a `$lookup` and a `$match` per chain or `_has`.
pub(crate) fn match_stages(filters: &[Filter], types: &Types, after: Option<&str>) -> Vec<Document> {
    let scope = match types {
        Some(types) => Some(one_or_in(types)),
        None if !filters.is_empty() => Some(Bson::Document(doc! { "$in": fhir_model::resource_types() })),
        None => None,
    };
    let filters: Vec<&Filter> = filters.iter().collect();
    Joins::default().stages(&filters, scope, after)
}

/// The stages ordering the matches by `sort`, values missing last, then by `_id` ascending.
/// Keys without an order of their own (composite, special, unknown parameters) are skipped.
pub(crate) fn sort_stages(sort: &[SortKey], types: &Types) -> Vec<Document> {
    let mut values = Document::new();
    let mut order = Document::new();
    let mut n = 0;
    for key in sort {
        let Some(value) = sort_value(key, types) else { continue };
        let (s, m) = (format!("_s{n}"), format!("_m{n}"));
        let missing = doc! { "$cond": [{ "$eq": [{ "$ifNull": [value.clone(), Bson::Null] }, Bson::Null] }, 1, 0] };
        values.insert(s.clone(), value);
        values.insert(m.clone(), missing);
        order.insert(m, 1);
        order.insert(s, if key.descending { -1 } else { 1 });
        n += 1;
    }
    order.insert("_id", 1);
    if values.is_empty() {
        return vec![doc! { "$sort": order }];
    }
    vec![doc! { "$addFields": values }, doc! { "$sort": order }]
}

/// The aggregation expression of one sort key's value, or None when it has no order.
fn sort_value(key: &SortKey, types: &Types) -> Option<Bson> {
    match key.param.as_str() {
        "_id" => return Some(Bson::String("$id".into())),
        "_lastUpdated" => return Some(Bson::String("$lastUpdated".into())),
        _ => {}
    }
    let ordered = if key.descending { "hi" } else { "lo" };
    let (array, field) = match param_kind(&key.param, types)? {
        ParamType::String => ("str", "n"),
        ParamType::Token => ("tok", "c"),
        ParamType::Date => ("date", ordered),
        ParamType::Number => ("num", ordered),
        ParamType::Quantity => ("qty", ordered),
        ParamType::Reference => ("ref", "i"),
        ParamType::Uri => ("uri", "v"),
        ParamType::Composite | ParamType::Special => return None,
    };
    // The parameter name is data here, not a field path: `$literal` keeps a `$` in it inert.
    let values = doc! {
        "$map": {
            "input": {
                "$filter": { "input": format!("${array}"), "as": "e", "cond": { "$eq": ["$$e.p", { "$literal": &key.param }] } },
            },
            "as": "e",
            "in": format!("$$e.{field}"),
        },
    };
    let aggregate = if key.descending { "$max" } else { "$min" };
    Some(Bson::Document(doc! { aggregate: values }))
}

/// The registry type of `param` within `types` (the common parameters included).
fn param_kind(param: &str, types: &Types) -> Option<ParamType> {
    let candidates: Vec<&str> = match types {
        Some(types) => types.iter().map(String::as_str).collect(),
        None => vec!["Resource"],
    };
    candidates.into_iter().find_map(|t| fhir_model::find_search_parameter(t, param)).map(|def| def.kind)
}

/// A `type` condition: the name for one type, `$in` for several.
fn one_or_in(types: &[String]) -> Bson {
    match types {
        [one] => Bson::String(one.clone()),
        several => Bson::Document(doc! { "$in": several.to_vec() }),
    }
}

/// A condition no document satisfies (an empty OR; a join on an impossible field name).
fn nothing() -> Document {
    doc! { "_id": { "$in": [] } }
}

/// Whether `name` can be used as a field name under `refk.`. R4 codes always can; a name
/// with a `.` or a leading `$` would address another field, so its joins match nothing.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('.') && !name.starts_with('$') && !name.contains('\0')
}

// ----- conditions ------------------------------------------------------------------------------

/// An AND of conditions as one document: each condition's fields go in directly unless a field
/// is already taken, and the colliding conditions go into `$and`.
#[derive(Default)]
struct Conjunction {
    merged: Document,
    colliding: Vec<Document>,
}

impl Conjunction {
    fn push(&mut self, condition: Document) {
        if condition.len() == 1 {
            if let Some(Bson::Array(parts)) = condition.get("$and") {
                for part in parts {
                    if let Bson::Document(part) = part {
                        self.push(part.clone());
                    }
                }
                return;
            }
        }
        if condition.keys().any(|key| self.merged.contains_key(key)) {
            self.colliding.push(condition);
        } else {
            self.merged.extend(condition);
        }
    }

    fn finish(self) -> Document {
        let Conjunction { mut merged, colliding } = self;
        if !colliding.is_empty() {
            merged.insert("$and", colliding);
        }
        merged
    }
}

fn all_of(conditions: Vec<Document>) -> Document {
    let mut and = Conjunction::default();
    for condition in conditions {
        and.push(condition);
    }
    and.finish()
}

/// The condition of a filter that needs no join.
fn match_condition(param: &str, any_of: &[Predicate], negate: bool) -> Option<Document> {
    let alternatives: Vec<Document> = any_of.iter().flat_map(|predicate| conditions(param, predicate)).collect();
    match (negate, alternatives.len()) {
        (false, 0) => Some(nothing()),
        (false, 1) => alternatives.into_iter().next(),
        (false, _) => Some(doc! { "$or": alternatives }),
        // Not any of nothing: every resource.
        (true, 0) => None,
        (true, _) => Some(doc! { "$nor": alternatives }),
    }
}

/// The alternative conditions (OR-ed) of one predicate of parameter `param`, each `$elemMatch`es
/// on one array with `p` bound.
fn conditions(param: &str, predicate: &Predicate) -> Vec<Document> {
    let (array, alternatives) = leaves(predicate, Fields::Plain);
    alternatives
        .into_iter()
        .map(|elements| {
            let mut matches: Vec<Document> = elements
                .into_iter()
                .map(|body| {
                    let mut element = doc! { "p": param };
                    element.extend(body);
                    doc! { array: { "$elemMatch": element } }
                })
                .collect();
            match matches.len() {
                1 => matches.pop().unwrap_or_default(),
                _ => doc! { "$and": matches },
            }
        })
        .collect()
}

/// Where a predicate's fields are: the element of its own array, or component `n` of a `cmp`
/// element (`c<n>.a` … `c<n>.hi`, the slots of `components::component_slots`).
#[derive(Clone, Copy)]
enum Fields {
    Plain,
    Component(usize),
}

impl Fields {
    /// The field of `logical`, a field name of the predicate's own array.
    fn name(self, predicate: &Predicate, logical: &str) -> String {
        let Fields::Component(n) = self else { return logical.to_string() };
        let slot = match (predicate, logical) {
            (_, "lo") => "lo",
            (_, "hi") => "hi",
            (Predicate::IdentifierOfType { .. }, "v") => "c",
            (_, "n" | "s" | "ts" | "t") => "a",
            (_, "e" | "c" | "tc" | "i" | "v") => "b",
            (_, "u") => "c",
            _ => "a",
        };
        format!("c{n}.{slot}")
    }
}

/// The array of `predicate` and its alternatives (OR-ed), each a list of element conditions
/// without `p` that must all hold, each on some element (more than one only for a long
/// `:contains`). An empty element condition asks only for a value of the parameter.
fn leaves(predicate: &Predicate, fields: Fields) -> (&'static str, Vec<Vec<Document>>) {
    let f = |logical: &str| fields.name(predicate, logical);
    let one = |body: Document| vec![vec![body]];
    let each = |bodies: Vec<Document>| bodies.into_iter().map(|body| vec![body]).collect();
    match predicate {
        Predicate::StringStartsWith(prefix) => ("str", one(prefix_range(&f("n"), prefix))),
        Predicate::StringExact(value) => ("str", one(eq(&f("e"), value))),
        Predicate::StringContains(needle) => match fields {
            Fields::Plain => contains(needle),
            // The parser makes only prefix matches of composite string components, and a
            // component keeps no suffixes to find another text in: nothing matches.
            Fields::Component(_) => ("cmp", one(never(&f("n")))),
        },
        Predicate::Token { system, code } => {
            let mut body = Document::new();
            if let Some(code) = code {
                body.insert(f("c"), code.as_str());
            }
            if let Some(system) = token_system(system) {
                body.insert(f("s"), system);
            }
            ("tok", one(body))
        }
        Predicate::TokenText(prefix) => ("ttx", one(prefix_range(&f("n"), prefix))),
        Predicate::IdentifierOfType { type_system, type_code, value } => {
            let mut body = eq(&f("v"), value);
            body.insert(f("tc"), type_code.as_str());
            body.insert(f("ts"), type_system.as_str());
            ("oft", one(body))
        }
        Predicate::Date { prefix, lo, hi } => {
            // Plain dates are Int64 epoch ms; composite components keep every range as Double.
            let (lo, hi) = match fields {
                Fields::Plain => (Bson::Int64(*lo), Bson::Int64(*hi)),
                Fields::Component(_) => (Bson::Double(*lo as f64), Bson::Double(*hi as f64)),
            };
            ("date", each(ranges(*prefix, &f("lo"), &f("hi"), lo, hi)))
        }
        Predicate::Number { prefix, lo, hi } => {
            ("num", each(ranges(*prefix, &f("lo"), &f("hi"), Bson::Double(*lo), Bson::Double(*hi))))
        }
        Predicate::Quantity { prefix, lo, hi, system, code } => {
            let units: Vec<Document> = match (system, code) {
                (Some(system), Some(code)) => {
                    let mut body = eq(&f("c"), code);
                    body.insert(f("s"), system.as_str());
                    vec![body]
                }
                (None, Some(code)) => vec![eq(&f("c"), code), eq(&f("u"), code)],
                (Some(system), None) => vec![eq(&f("s"), system)],
                // No unit: the values as written, whatever their unit; the converted entries
                // would compare 16.2 kg/m2 as 16,200. (Composite components keep no such flag.)
                (None, None) => match fields {
                    Fields::Plain => vec![doc! { "cn": false }],
                    Fields::Component(_) => vec![Document::new()],
                },
            };
            let ranges = ranges(*prefix, &f("lo"), &f("hi"), Bson::Double(*lo), Bson::Double(*hi));
            let mut out = Vec::new();
            for unit in &units {
                for range in &ranges {
                    out.push(vec![all_of(vec![unit.clone(), range.clone()])]);
                }
            }
            ("qty", out)
        }
        Predicate::Reference { target_type, target_id } => {
            let mut body = eq(&f("i"), target_id);
            if let Some(target_type) = target_type {
                body.insert(f("t"), target_type.as_str());
            }
            ("ref", one(body))
        }
        Predicate::ReferenceUrl(url) => ("ref", one(eq(&f("u"), url))),
        Predicate::ReferenceIdentifier { system, value } => {
            let mut body = eq(&f("v"), value);
            if let Some(system) = token_system(system) {
                body.insert(f("s"), system);
            }
            ("rid", one(body))
        }
        Predicate::Uri { value, mode } => {
            let field = f("v");
            let body = match mode {
                UriMatch::Exact => eq(&field, value),
                UriMatch::Below => prefix_range(&field, value),
                UriMatch::Above => {
                    // The indexed uri is a prefix of the search value: one of its prefixes.
                    let prefixes: Vec<&str> = value.char_indices().map(|(i, c)| &value[..i + c.len_utf8()]).collect();
                    doc! { field: { "$in": prefixes } }
                }
            };
            ("uri", one(body))
        }
        Predicate::Composite(components) => match fields {
            Fields::Plain => ("cmp", composite(components)),
            // Composites do not nest (the parser refuses a composite component).
            Fields::Component(n) => ("cmp", one(never(&format!("c{n}.a")))),
        },
    }
}

/// `:contains`: the needle starts one of the stored suffixes (cut to `CONTAINS_WINDOW`
/// characters). A longer needle asks for each of its windows of that length, overlapping by
/// half, and its last one — every one of them occurs in a value that contains the needle, so
/// nothing is missed, though windows found at unrelated places may let a value through that
/// does not contain it.
fn contains(needle: &str) -> (&'static str, Vec<Vec<Document>>) {
    let chars: Vec<char> = needle.chars().collect();
    if chars.is_empty() {
        // Every text contains the empty one, even the empty text, which has no suffixes.
        return ("str", vec![vec![Document::new()]]);
    }
    let windows = windows(&chars);
    ("sfx", vec![windows.iter().map(|window| prefix_range("s", window)).collect()])
}

/// The windows a needle of `chars` is looked up by: itself when it fits, else those of
/// `CONTAINS_WINDOW` characters starting every half window, and the last one.
fn windows(chars: &[char]) -> Vec<String> {
    if chars.len() <= CONTAINS_WINDOW {
        return vec![chars.iter().collect()];
    }
    let step = (CONTAINS_WINDOW / 2).max(1);
    let last = chars.len() - CONTAINS_WINDOW;
    let mut starts: Vec<usize> = (0..=last).step_by(step).collect();
    if starts.last() != Some(&last) {
        starts.push(last);
    }
    let mut out: Vec<String> = Vec::new();
    for start in starts {
        let window: String = chars[start..start + CONTAINS_WINDOW].iter().collect();
        if !out.contains(&window) {
            out.push(window);
        }
    }
    out
}

/// A composite predicate on `cmp`: one alternative per alternative of the first component (each
/// seekable on `cmp.c1.b`), with the later components' alternatives OR-ed inside each.
fn composite(components: &[Predicate]) -> Vec<Vec<Document>> {
    let mut rest = Vec::new();
    for (i, component) in components.iter().enumerate().skip(1).take(MAX_COMPONENTS - 1) {
        let (_, alternatives) = leaves(component, Fields::Component(i + 1));
        let bodies: Vec<Document> = alternatives.into_iter().map(all_of).collect();
        // An alternative without a condition makes the whole OR no condition.
        if bodies.iter().any(Document::is_empty) {
            continue;
        }
        match bodies.len() {
            1 => rest.extend(bodies),
            _ => rest.push(doc! { "$or": bodies }),
        }
    }
    let first: Vec<Document> = match components.first() {
        Some(first) => leaves(first, Fields::Component(1)).1.into_iter().map(all_of).collect(),
        None => vec![Document::new()],
    };
    first.into_iter().map(|body| vec![all_of(std::iter::once(body).chain(rest.iter().cloned()).collect())]).collect()
}

fn eq(field: &str, value: &str) -> Document {
    doc! { field: value }
}

fn never(field: &str) -> Document {
    doc! { field: { "$in": [] } }
}

/// `TokenSystem` as the stored `s`: None for any system, `""` for none.
fn token_system(system: &TokenSystem) -> Option<&str> {
    match system {
        TokenSystem::Any => None,
        TokenSystem::None => Some(""),
        TokenSystem::Is(system) => Some(system),
    }
}

/// `field` starts with `prefix`, as a range: [prefix, successor(prefix)). BSON strings compare
/// by their UTF-8 bytes, which is code point order, so this is exactly "starts with"; an empty
/// prefix is no condition.
fn prefix_range(field: &str, prefix: &str) -> Document {
    if prefix.is_empty() {
        return Document::new();
    }
    let mut range = doc! { "$gte": prefix };
    if let Some(upper) = prefix_successor(prefix) {
        range.insert("$lt", upper);
    }
    doc! { field: range }
}

/// The interval semantics of `Predicate` (the indexed range `[lo, hi)` in fields `lo`, `hi`;
/// the searched one `[search_lo, search_hi)`) as alternatives, each bounded on one index.
fn ranges(prefix: Prefix, lo: &str, hi: &str, search_lo: Bson, search_hi: Bson) -> Vec<Document> {
    let one = |field: &str, op: &str, value: &Bson| {
        let mut condition = Document::new();
        condition.insert(op, value.clone());
        let mut body = Document::new();
        body.insert(field, condition);
        body
    };
    // `lo <= search_hi` follows from the other two terms for any well-formed range; it is
    // spelled out so the bounds on `lo` are closed on both sides.
    let eq = || {
        let mut body = Document::new();
        body.insert(lo, doc! { "$gte": search_lo.clone(), "$lte": search_hi.clone() });
        body.insert(hi, doc! { "$lte": search_hi.clone() });
        body
    };
    let gt = || one(hi, "$gt", &search_hi);
    let lt = || one(lo, "$lt", &search_lo);
    match prefix {
        Prefix::Eq => vec![eq()],
        Prefix::Ne => vec![lt(), gt()],
        Prefix::Gt => vec![gt()],
        Prefix::Lt => vec![lt()],
        Prefix::Ge => vec![gt(), eq()],
        Prefix::Le => vec![lt(), eq()],
        Prefix::Sa => vec![one(lo, "$gte", &search_hi)],
        Prefix::Eb => vec![one(hi, "$lte", &search_lo)],
        Prefix::Ap => {
            let mut body = one(lo, "$lt", &search_hi);
            body.insert(hi, doc! { "$gt": search_lo.clone() });
            vec![body]
        }
    }
}

// ----- stages ----------------------------------------------------------------------------------

/// Builds the stages of a (sub)query; numbers the `$lookup` outputs `_j0`, `_j1`… across the
/// whole pipeline, nested ones included.
#[derive(Default)]
struct Joins {
    next: usize,
}

impl Joins {
    /// The first `$match` (`scope` as the `type` condition, live only, `_id > after`, every
    /// filter without a join), then per chain or `_has` a `$lookup` and a `$match` on its hit.
    fn stages(&mut self, filters: &[&Filter], scope: Option<Bson>, after: Option<&str>) -> Vec<Document> {
        let mut first = Conjunction::default();
        if let Some(scope) = scope {
            first.push(doc! { "type": scope });
        }
        first.push(doc! { "deleted": false });
        if let Some(after) = after {
            first.push(doc! { "_id": { "$gt": after } });
        }
        let mut joins = Vec::new();
        for filter in filters {
            match filter {
                Filter::Match { param, any_of, negate } => {
                    if let Some(condition) = match_condition(param, any_of, *negate) {
                        first.push(condition);
                    }
                }
                Filter::Missing { param, missing } => {
                    first.push(if *missing { doc! { "params": { "$ne": param } } } else { doc! { "params": param } });
                }
                Filter::Chain { param, target_types, inner } => {
                    if !is_field_name(param) {
                        first.push(nothing());
                        continue;
                    }
                    let scope = match target_types.as_slice() {
                        [] => Bson::Document(doc! { "$in": fhir_model::resource_types() }),
                        targets => one_or_in(targets),
                    };
                    joins.extend(self.join(format!("refk.{param}"), "_id".to_string(), inner, scope));
                }
                Filter::Has { source_type, reference_param, inner } => {
                    if !is_field_name(reference_param) {
                        first.push(nothing());
                        continue;
                    }
                    let scope = Bson::String(source_type.clone());
                    joins.extend(self.join("_id".to_string(), format!("refk.{reference_param}"), inner, scope));
                }
            }
        }
        let mut stages = vec![doc! { "$match": first.finish() }];
        stages.extend(joins);
        stages
    }

    /// A `$lookup` of the first live resource of `scope` satisfying `inner` whose `foreign`
    /// field equals the `local` one, and the `$match` keeping the resources that have one.
    fn join(&mut self, local: String, foreign: String, inner: &Filter, scope: Bson) -> [Document; 2] {
        let name = format!("_j{}", self.next);
        self.next += 1;
        let mut pipeline = self.stages(&[inner], Some(scope), None);
        pipeline.push(doc! { "$limit": 1 });
        pipeline.push(doc! { "$project": { "_id": 1 } });
        let lookup = doc! {
            "$lookup": { "from": RESOURCES, "localField": local, "foreignField": foreign, "pipeline": pipeline, "as": &name },
        };
        [lookup, doc! { "$match": { format!("{name}.0"): { "$exists": true } } }]
    }
}
