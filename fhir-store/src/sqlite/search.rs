//! Translates a `SearchQuery` into SQL over the index tables, and runs it: matches, sorting,
//! paging, `_total` and `_include`/`_revinclude`.
//!
//! Plan. Every filter has two SQL forms: a *check*, a boolean condition on a given `rid`
//! (`EXISTS (SELECT 1 FROM idx_token INDEXED BY idx_token_owner WHERE rid = m.rid AND pid IN (…)
//! AND code = ?)`, a seek on the table's `(rid, pid)` owner index; `INDEXED BY` because without
//! statistics SQLite may prefer the value index when it has as many equality terms, and then
//! walks every resource with that value for each candidate), and, for filters that can enumerate their matches, a
//! *driver*, a `SELECT rid` that seeks the value index (`pid, value…, rid`). One filter drives:
//! the most selective positive match, found by cheap capped `count(*)` probes of every
//! candidate in one statement; chains and `_has` drive only when no plain match can. Every
//! other filter is checked per candidate. Without any driver (only `:not`, `:missing`, or no
//! filters) the candidates are the type's rows of `resources`, in key order.
//!
//! - Comma alternatives: OR inside the check, UNION in the driver. A predicate whose SQL would
//!   need an OR across value columns (date `ne`, `ge`, `le`; a quantity's code-or-unit) becomes
//!   several leaves, so each stays a seek.
//! - `:not` is `NOT EXISTS`, `:missing` an `EXISTS` on the owner index without a value.
//! - A chain is an `EXISTS` over the resource's reference rows joined to the target's
//!   `resources` row, with the inner filter checked on the target's rid (recursively); driving,
//!   the inner filter's driver is joined back through the reference value index. `_has` is the
//!   mirror image: reference rows of the source type pointing at this resource's (type, id).
//!
//! Order and paging. The default order is the resource key `rid` (creation order), paged by a
//! keyset cursor on it: a resource keeps its rid for life, so a page boundary is stable under
//! concurrent writes, and a single-value driver already yields rids in order (its index ends
//! with `rid`), so a first page of a large match set stops after `_count` rows instead of
//! sorting them all. A `_sort` search
//! materialises its ordered match list (rids, at most `SNAPSHOT_CAP`) on the first page in a
//! per-store, bounded, expiring snapshot (`Snapshots`) and pages through it with a cursor of
//! snapshot id + offset; later pages load the current bodies of their slice (a resource deleted
//! since is left out), so nothing is repeated or skipped whatever is written between pages. An
//! unknown or expired snapshot is `InvalidQuery`. Sort values per resource: string — min/max
//! normalised text; token — min/max code; date, number, quantity — min `lo` ascending, max
//! `hi` descending; reference — min/max target id; `_id`, `_lastUpdated` from `resources`.
//! Resources without a value sort last either way, ties by (type, id).
//!
//! `_total`: `accurate` and `estimate` count exactly (`count(*)` over the driver, index-only
//! when one filter alone decides); `none` does not count. A page size of 0 runs no page query.
//! Includes are per page: reference targets of the page (`_include`) and referrers of it
//! (`_revinclude`), then with `:iterate` of what was included, up to `INCLUDE_DEPTH` rounds and
//! `MAX_INCLUDED` resources.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fhir_model::{Filter, Include, ParamType, Predicate, Prefix, SearchQuery, TokenSystem, TotalMode, UriMatch};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Row, Sqlite, SqliteConnection};

use super::schema::INDEX_TABLES;
use super::{backend, current_from_row};
use crate::bounds::prefix_successor;
use crate::components::MAX_COMPONENTS;
use crate::paging::{fingerprint, CursorKey, INCLUDE_DEPTH, MAX_INCLUDED, SNAPSHOT_CAP, SNAPSHOT_TTL_SECS};
use crate::{SearchPage, StoreError, StoredResource};

/// How long a sorted search's snapshot stays usable.
const SNAPSHOT_TTL: Duration = Duration::from_secs(SNAPSHOT_TTL_SECS);
/// Most snapshots kept, and most rids over all of them (about 16 MB).
const MAX_SNAPSHOTS: usize = 256;
const MAX_SNAPSHOT_RIDS: usize = 2_000_000;
/// Rows counted at most per candidate when choosing the driving filter.
const PROBE_LIMIT: i64 = 256;

/// A value to bind to one `?` of generated SQL.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Bind {
    Text(String),
    Int(i64),
    Real(f64),
}

/// Generated SQL and its parameters, in `?` order.
#[derive(Debug, Default, Clone)]
pub(super) struct Sql {
    pub(super) text: String,
    pub(super) binds: Vec<Bind>,
}

impl Sql {
    fn new(text: &str) -> Self {
        Sql { text: text.to_string(), binds: Vec::new() }
    }

    pub(super) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    pub(super) fn text(&mut self, value: &str) {
        self.text.push('?');
        self.binds.push(Bind::Text(value.to_string()));
    }

    pub(super) fn int(&mut self, value: i64) {
        self.text.push('?');
        self.binds.push(Bind::Int(value));
    }

    fn append(&mut self, other: Sql) {
        self.text.push_str(&other.text);
        self.binds.extend(other.binds);
    }

    /// `(?, ?, …)` of integers; `(NULL)` when empty, which matches nothing.
    fn int_list(&mut self, values: &[i64]) {
        self.push("(");
        if values.is_empty() {
            self.push("NULL");
        }
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.int(*value);
        }
        self.push(")");
    }

    fn text_list(&mut self, values: &[String]) {
        self.push("(");
        if values.is_empty() {
            self.push("NULL");
        }
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.text(value);
        }
        self.push(")");
    }

    /// Joins `parts` with `separator`, each in parentheses.
    fn joined(parts: Vec<Sql>, separator: &str) -> Sql {
        let mut sql = Sql::default();
        for (i, part) in parts.into_iter().enumerate() {
            if i > 0 {
                sql.push(separator);
            }
            sql.push("(");
            sql.append(part);
            sql.push(")");
        }
        sql
    }

    pub(super) fn query(&self) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.text.clone()));
        for bind in &self.binds {
            query = match bind {
                Bind::Text(value) => query.bind(value.clone()),
                Bind::Int(value) => query.bind(*value),
                Bind::Real(value) => query.bind(*value),
            };
        }
        query
    }
}


/// Where the next page starts: after a resource key `rid` (encoded `r<rid>`), or in a snapshot.
pub(super) type Cursor = crate::paging::Cursor<i64>;

impl CursorKey for i64 {
    const TAG: char = 'r';

    fn to_text(&self) -> String {
        self.to_string()
    }

    fn from_text(text: &str) -> Option<i64> {
        text.bytes().all(|b| b.is_ascii_digit()).then(|| text.parse().ok()).flatten()
    }
}

// ----- sorted-search snapshots -----------------------------------------------------------------

/// The ordered matches of one sorted search, as of its first page.
struct Snapshot {
    id: String,
    /// The query it answers (filters, types, sort), so a cursor cannot be replayed elsewhere.
    fingerprint: String,
    rids: Vec<i64>,
    total: Option<u64>,
    created: Instant,
}

/// The sorted-search snapshots of one store: bounded in number and size, expiring.
#[derive(Default)]
pub(super) struct Snapshots {
    entries: Mutex<VecDeque<std::sync::Arc<Snapshot>>>,
}

impl Snapshots {
    fn insert(&self, snapshot: Snapshot) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.push_back(std::sync::Arc::new(snapshot));
        let mut size: usize = entries.iter().map(|s| s.rids.len()).sum();
        while entries.len() > MAX_SNAPSHOTS || size > MAX_SNAPSHOT_RIDS {
            match entries.pop_front() {
                Some(evicted) => size -= evicted.rids.len(),
                None => break,
            }
        }
    }

    fn get(&self, id: &str) -> Option<std::sync::Arc<Snapshot>> {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.retain(|s| s.created.elapsed() < SNAPSHOT_TTL);
        entries.iter().find(|s| s.id == id).cloned()
    }
}


// ----- scope and parameters --------------------------------------------------------------------

/// Resource types a (sub)query covers; None = every type.
type Types = Option<Vec<String>>;

fn scope_of(query: &SearchQuery) -> Types {
    match (&query.resource_type, query.types.as_slice()) {
        (Some(resource_type), _) => Some(vec![resource_type.clone()]),
        (None, []) => None,
        (None, types) => Some(types.to_vec()),
    }
}

fn types_of(list: &[String]) -> Types {
    (!list.is_empty()).then(|| list.to_vec())
}

/// The interned `params` rows the query needs: name → [(resource type, pid)].
#[derive(Default)]
pub(super) struct Params {
    by_name: HashMap<String, Vec<(String, i64)>>,
}

impl Params {
    fn pids(&self, name: &str, types: &Types) -> Vec<i64> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(resource_type, _)| types.as_ref().is_none_or(|types| types.contains(resource_type)))
            .map(|(_, pid)| *pid)
            .collect()
    }
}

fn filter_params<'a>(filter: &'a Filter, names: &mut HashSet<&'a str>) {
    match filter {
        Filter::Match { param, .. } | Filter::Missing { param, .. } => {
            names.insert(param);
        }
        Filter::Chain { param, inner, .. } => {
            names.insert(param);
            filter_params(inner, names);
        }
        Filter::Has { reference_param, inner, .. } => {
            names.insert(reference_param);
            filter_params(inner, names);
        }
    }
}

async fn load_params(conn: &mut SqliteConnection, query: &SearchQuery) -> Result<Params, StoreError> {
    let mut names = HashSet::new();
    for filter in &query.filters {
        filter_params(filter, &mut names);
    }
    for key in &query.sort {
        names.insert(key.param.as_str());
    }
    for include in query.includes.iter().chain(&query.revincludes) {
        names.insert(include.param.as_str());
    }
    let mut params = Params::default();
    if names.is_empty() {
        return Ok(params);
    }
    let names: Vec<String> = names.into_iter().map(str::to_string).collect();
    let mut sql = Sql::new("SELECT name, resource_type, pid FROM params WHERE name IN ");
    sql.text_list(&names);
    let rows = sql.query().fetch_all(&mut *conn).await.map_err(backend("read search parameters"))?;
    for row in rows {
        let get = backend("decode search parameter");
        let name: String = row.try_get(0).map_err(&get)?;
        params.by_name.entry(name).or_default().push((row.try_get(1).map_err(&get)?, row.try_get(2).map_err(&get)?));
    }
    Ok(params)
}

/// The registry type of `param` within `types` (the common parameters included).
fn param_kind(param: &str, types: &Types) -> Option<ParamType> {
    let candidates: Vec<&str> = match types {
        Some(types) => types.iter().map(String::as_str).collect(),
        None => vec!["Resource"],
    };
    candidates.into_iter().find_map(|t| fhir_model::find_search_parameter(t, param)).map(|def| def.kind)
}

/// The index tables holding values of a parameter of `kind` (all of them when unknown).
fn tables_of(kind: Option<ParamType>) -> Vec<&'static str> {
    match kind {
        Some(ParamType::String) => vec!["idx_string"],
        Some(ParamType::Token) => vec!["idx_token", "idx_token_text", "idx_of_type"],
        Some(ParamType::Date) => vec!["idx_date"],
        Some(ParamType::Number) => vec!["idx_number"],
        Some(ParamType::Quantity) => vec!["idx_quantity"],
        Some(ParamType::Reference) => vec!["idx_reference", "idx_reference_identifier"],
        Some(ParamType::Uri) => vec!["idx_uri"],
        Some(ParamType::Composite) => vec!["idx_composite"],
        Some(ParamType::Special) => Vec::new(),
        None => INDEX_TABLES.to_vec(),
    }
}

// ----- predicates ------------------------------------------------------------------------------

/// How a predicate's logical columns are named: the plain index tables use their own column
/// names; a composite component `n` uses `cn_a`, `cn_b`, `cn_c`, `cn_lo`, `cn_hi` (the layout
/// of `components::component_slots`).
#[derive(Clone, Copy)]
enum Columns {
    Plain,
    Component(usize),
}

impl Columns {
    fn name(self, predicate: &Predicate, logical: &'static str) -> String {
        let Columns::Component(n) = self else { return logical.to_string() };
        let slot = match (predicate, logical) {
            (_, "lo") => "lo",
            (_, "hi") => "hi",
            (Predicate::IdentifierOfType { .. }, "value") => "c",
            (_, "normalized" | "system" | "type_system" | "target_type") => "a",
            (_, "exact" | "code" | "type_code" | "target_id" | "value") => "b",
            (_, "unit" | "url") => "c",
            _ => "a",
        };
        format!("c{n}_{slot}")
    }
}

/// The index table and the value condition(s) of one predicate; several leaves are OR-ed,
/// each one seekable on its own.
fn leaves(predicate: &Predicate, columns: Columns) -> (&'static str, Vec<Sql>) {
    let col = |logical| columns.name(predicate, logical);
    let eq = |sql: &mut Sql, logical: &'static str, value: &str| {
        if !sql.text.is_empty() {
            sql.push(" AND ");
        }
        sql.push(&format!("{} = ", col(logical)));
        sql.text(value);
    };
    let mut sql = Sql::default();
    match predicate {
        Predicate::StringStartsWith(prefix) => ("idx_string", vec![prefix_range(&col("normalized"), prefix)]),
        Predicate::StringExact(value) => {
            eq(&mut sql, "exact", value);
            ("idx_string", vec![sql])
        }
        Predicate::StringContains(value) => {
            sql.push(&format!("instr({}, ", col("normalized")));
            sql.text(value);
            sql.push(") > 0");
            ("idx_string", vec![sql])
        }
        Predicate::Token { system, code } => {
            if let Some(code) = code {
                eq(&mut sql, "code", code);
            }
            match system {
                TokenSystem::Any => {}
                TokenSystem::None => eq(&mut sql, "system", ""),
                TokenSystem::Is(system) => eq(&mut sql, "system", system),
            }
            ("idx_token", vec![sql])
        }
        Predicate::TokenText(prefix) => ("idx_token_text", vec![prefix_range(&col("normalized"), prefix)]),
        Predicate::IdentifierOfType { type_system, type_code, value } => {
            eq(&mut sql, "value", value);
            eq(&mut sql, "type_code", type_code);
            eq(&mut sql, "type_system", type_system);
            ("idx_of_type", vec![sql])
        }
        Predicate::Date { prefix, lo, hi } => {
            ("idx_date", ranges(*prefix, &col("lo"), &col("hi"), Bind::Int(*lo), Bind::Int(*hi)))
        }
        Predicate::Number { prefix, lo, hi } => {
            ("idx_number", ranges(*prefix, &col("lo"), &col("hi"), Bind::Real(*lo), Bind::Real(*hi)))
        }
        Predicate::Quantity { prefix, lo, hi, system, code } => {
            let units: Vec<Sql> = match (system, code) {
                (Some(system), Some(code)) => {
                    eq(&mut sql, "code", code);
                    eq(&mut sql, "system", system);
                    vec![sql]
                }
                (None, Some(code)) => {
                    let mut by_unit = Sql::default();
                    eq(&mut sql, "code", code);
                    eq(&mut by_unit, "unit", code);
                    vec![sql, by_unit]
                }
                (Some(system), None) => {
                    eq(&mut sql, "system", system);
                    vec![sql]
                }
                // No unit: the values as written, whatever their unit; the converted entries
                // would compare 16.2 kg/m2 as 16,200. (Composite rows keep no such flag.)
                (None, None) => {
                    if matches!(columns, Columns::Plain) {
                        sql.push("canonical = 0");
                    }
                    vec![sql]
                }
            };
            let ranges = ranges(*prefix, &col("lo"), &col("hi"), Bind::Real(*lo), Bind::Real(*hi));
            let mut out = Vec::new();
            for unit in &units {
                for range in &ranges {
                    out.push(and(vec![unit.clone(), range.clone()]));
                }
            }
            ("idx_quantity", out)
        }
        Predicate::Reference { target_type, target_id } => {
            eq(&mut sql, "target_id", target_id);
            if let Some(target_type) = target_type {
                eq(&mut sql, "target_type", target_type);
            }
            ("idx_reference", vec![sql])
        }
        Predicate::ReferenceUrl(url) => {
            eq(&mut sql, "url", url);
            ("idx_reference", vec![sql])
        }
        Predicate::ReferenceIdentifier { system, value } => {
            eq(&mut sql, "value", value);
            match system {
                TokenSystem::Any => {}
                TokenSystem::None => eq(&mut sql, "system", ""),
                TokenSystem::Is(system) => eq(&mut sql, "system", system),
            }
            ("idx_reference_identifier", vec![sql])
        }
        Predicate::Uri { value, mode } => {
            let column = col("value");
            match mode {
                UriMatch::Exact => eq(&mut sql, "value", value),
                UriMatch::Below => sql = prefix_range(&column, value),
                UriMatch::Above => {
                    // The indexed uri is a prefix of the search value: one of its prefixes.
                    let prefixes: Vec<String> = value
                        .char_indices()
                        .map(|(i, c)| value[..i + c.len_utf8()].to_string())
                        .collect();
                    sql.push(&format!("{column} IN "));
                    sql.text_list(&prefixes);
                }
            }
            ("idx_uri", vec![sql])
        }
        Predicate::Composite(components) => {
            // The first component's leaves stay separate (each can seek `(pid, c1_b, c1_a)`); the
            // later components' alternatives are OR-ed inside each.
            let mut rest = Vec::new();
            for (i, component) in components.iter().enumerate().skip(1).take(MAX_COMPONENTS - 1) {
                let (_, alternatives) = leaves(component, Columns::Component(i + 1));
                rest.push(or(alternatives));
            }
            let first = match components.first() {
                Some(first) => leaves(first, Columns::Component(1)).1,
                None => vec![Sql::default()],
            };
            let out = first.into_iter().map(|leaf| and(std::iter::once(leaf).chain(rest.iter().cloned()).collect())).collect();
            ("idx_composite", out)
        }
    }
}

/// `column` starts with `prefix`, as a range: [prefix, successor(prefix)). UTF-8 byte order
/// equals code point order, so this is exactly "starts with"; an empty prefix is no condition.
fn prefix_range(column: &str, prefix: &str) -> Sql {
    let mut sql = Sql::default();
    if !prefix.is_empty() {
        sql.push(&format!("{column} >= "));
        sql.text(prefix);
        if let Some(upper) = prefix_successor(prefix) {
            sql.push(&format!(" AND {column} < "));
            sql.text(&upper);
        }
    }
    sql
}

/// AND of the non-empty parts; empty when all are.
fn and(parts: Vec<Sql>) -> Sql {
    let parts: Vec<Sql> = parts.into_iter().filter(|p| !p.text.is_empty()).collect();
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    Sql::joined(parts, " AND ")
}

/// OR of the parts; empty (no condition) when any part is empty.
fn or(parts: Vec<Sql>) -> Sql {
    if parts.iter().any(|p| p.text.is_empty()) {
        return Sql::default();
    }
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    Sql::joined(parts, " OR ")
}

/// The interval semantics of `Predicate` (the indexed range `[lo, hi)` in columns `lo_col`,
/// `hi_col`; the searched one `[search_lo, search_hi)`), as seekable leaves.
fn ranges(prefix: Prefix, lo_col: &str, hi_col: &str, search_lo: Bind, search_hi: Bind) -> Vec<Sql> {
    let one = |parts: &[(&str, &str, &Bind)]| {
        let mut sql = Sql::default();
        for (i, (column, op, value)) in parts.iter().enumerate() {
            if i > 0 {
                sql.push(" AND ");
            }
            sql.push(&format!("{column} {op} ?"));
            sql.binds.push((*value).clone());
        }
        sql
    };
    let (lo, hi) = (&search_lo, &search_hi);
    // `lo <= search_hi` follows from the other two terms for any well-formed range; it is
    // spelled out so the seek on `(pid, lo)` is bounded on both sides.
    let eq = || one(&[(lo_col, ">=", lo), (lo_col, "<=", hi), (hi_col, "<=", hi)]);
    let gt = || one(&[(hi_col, ">", hi)]);
    let lt = || one(&[(lo_col, "<", lo)]);
    match prefix {
        Prefix::Eq => vec![eq()],
        Prefix::Ne => vec![lt(), gt()],
        Prefix::Gt => vec![gt()],
        Prefix::Lt => vec![lt()],
        Prefix::Ge => vec![gt(), eq()],
        Prefix::Le => vec![lt(), eq()],
        Prefix::Sa => vec![one(&[(lo_col, ">=", hi)])],
        Prefix::Eb => vec![one(&[(hi_col, "<=", lo)])],
        Prefix::Ap => vec![one(&[(lo_col, "<", hi), (hi_col, ">", lo)])],
    }
}

/// The leaves of `any_of`, grouped by table (a parameter's predicates normally share one).
fn leaves_by_table(any_of: &[Predicate]) -> Vec<(&'static str, Vec<Sql>)> {
    let mut groups: Vec<(&'static str, Vec<Sql>)> = Vec::new();
    for predicate in any_of {
        let (table, leaves) = leaves(predicate, Columns::Plain);
        match groups.iter_mut().find(|(t, _)| *t == table) {
            Some((_, existing)) => existing.extend(leaves),
            None => groups.push((table, leaves)),
        }
    }
    groups
}

// ----- filters ---------------------------------------------------------------------------------

/// Builds checks and drivers; numbers the table aliases of nested subqueries.
struct Planner<'a> {
    params: &'a Params,
    aliases: usize,
}

impl Planner<'_> {
    fn alias(&mut self, base: &str) -> String {
        self.aliases += 1;
        format!("{base}{}", self.aliases)
    }

    /// A boolean condition: the resource `rid` (an SQL expression) satisfies `filter`.
    fn check(&mut self, filter: &Filter, rid: &str, types: &Types) -> Sql {
        match filter {
            Filter::Match { param, any_of, negate } => {
                let pids = self.params.pids(param, types);
                let mut exists = Vec::new();
                for (table, leaves) in leaves_by_table(any_of) {
                    let mut sql = Sql::new(&format!("EXISTS (SELECT 1 FROM {table} INDEXED BY {table}_owner WHERE rid = {rid} AND pid IN "));
                    sql.int_list(&pids);
                    let condition = or(leaves);
                    if !condition.text.is_empty() {
                        sql.push(" AND (");
                        sql.append(condition);
                        sql.push(")");
                    }
                    sql.push(")");
                    exists.push(sql);
                }
                let any = if exists.is_empty() { Sql::new("0") } else { Sql::joined(exists, " OR ") };
                if *negate {
                    let mut sql = Sql::new("NOT (");
                    sql.append(any);
                    sql.push(")");
                    sql
                } else {
                    any
                }
            }
            Filter::Missing { param, missing } => {
                let pids = self.params.pids(param, types);
                let exists: Vec<Sql> = tables_of(param_kind(param, types))
                    .into_iter()
                    .map(|table| {
                        let mut sql = Sql::new(&format!("EXISTS (SELECT 1 FROM {table} INDEXED BY {table}_owner WHERE rid = {rid} AND pid IN "));
                        sql.int_list(&pids);
                        sql.push(")");
                        sql
                    })
                    .collect();
                let any = if exists.is_empty() { Sql::new("0") } else { Sql::joined(exists, " OR ") };
                let mut sql = Sql::new(if *missing { "NOT (" } else { "(" });
                sql.append(any);
                sql.push(")");
                sql
            }
            Filter::Chain { param, target_types, inner } => {
                let (re, tr) = (self.alias("ref"), self.alias("tr"));
                let targets = types_of(target_types);
                let pids = self.params.pids(param, types);
                let mut sql = Sql::new(&format!(
                    "EXISTS (SELECT 1 FROM idx_reference AS {re} INDEXED BY idx_reference_owner CROSS JOIN resources AS {tr} \
                     ON {tr}.resource_type = {re}.target_type AND {tr}.id = {re}.target_id \
                     WHERE {re}.rid = {rid} AND {re}.pid IN "
                ));
                sql.int_list(&pids);
                if let Some(targets) = &targets {
                    sql.push(&format!(" AND {tr}.resource_type IN "));
                    sql.text_list(targets);
                }
                sql.push(&format!(" AND {tr}.deleted = 0 AND "));
                sql.append(self.check(inner, &format!("{tr}.rid"), &targets));
                sql.push(")");
                sql
            }
            Filter::Has { source_type, reference_param, inner } => {
                let (me, re) = (self.alias("me"), self.alias("ref"));
                let source = Some(vec![source_type.clone()]);
                let pids = self.params.pids(reference_param, &source);
                let mut sql = Sql::new(&format!(
                    "EXISTS (SELECT 1 FROM resources AS {me} CROSS JOIN idx_reference AS {re} \
                     ON {re}.target_id = {me}.id AND {re}.target_type = {me}.resource_type \
                     WHERE {me}.rid = {rid} AND {re}.pid IN "
                ));
                sql.int_list(&pids);
                sql.push(" AND ");
                sql.append(self.check(inner, &format!("{re}.rid"), &source));
                sql.push(")");
                sql
            }
        }
    }

    /// A `SELECT rid` listing exactly the resources of `types` satisfying `filter`, each once,
    /// through value indexes; None when the filter cannot enumerate its matches that way.
    fn driver(&mut self, filter: &Filter, types: &Types) -> Option<Sql> {
        match filter {
            Filter::Match { param, any_of, negate: false } if !any_of.is_empty() => {
                let pids = self.params.pids(param, types);
                Some(union(seeks(any_of, &pids, "rid")))
            }
            Filter::Chain { param, target_types, inner } => {
                let targets = types_of(target_types);
                let inner = self.driver(inner, &targets)?;
                let (t, tr, re) = (self.alias("t"), self.alias("tr"), self.alias("ref"));
                let pids = self.params.pids(param, types);
                let mut sql = Sql::new(&format!("SELECT DISTINCT {re}.rid FROM ("));
                sql.append(inner);
                sql.push(&format!(
                    ") AS {t} CROSS JOIN resources AS {tr} ON {tr}.rid = {t}.rid \
                     CROSS JOIN idx_reference AS {re} ON {re}.pid IN "
                ));
                sql.int_list(&pids);
                sql.push(&format!(" AND {re}.target_id = {tr}.id AND {re}.target_type = {tr}.resource_type"));
                Some(sql)
            }
            Filter::Has { source_type, reference_param, inner } => {
                let source = Some(vec![source_type.clone()]);
                let inner = self.driver(inner, &source)?;
                let (s, re, me) = (self.alias("s"), self.alias("ref"), self.alias("me"));
                let pids = self.params.pids(reference_param, &source);
                let mut sql = Sql::new(&format!("SELECT DISTINCT {me}.rid FROM ("));
                sql.append(inner);
                sql.push(&format!(") AS {s} CROSS JOIN idx_reference AS {re} INDEXED BY idx_reference_owner ON {re}.rid = {s}.rid AND {re}.pid IN "));
                sql.int_list(&pids);
                sql.push(&format!(
                    " CROSS JOIN resources AS {me} ON {me}.resource_type = {re}.target_type AND {me}.id = {re}.target_id \
                     WHERE {me}.deleted = 0"
                ));
                if let Some(types) = types {
                    sql.push(&format!(" AND {me}.resource_type IN "));
                    sql.text_list(types);
                }
                Some(sql)
            }
            _ => None,
        }
    }
}

/// The distinct rids of several `SELECT rid`s.
fn union(selects: Vec<Sql>) -> Sql {
    let mut sql = Sql::default();
    if selects.len() == 1 {
        sql.push("SELECT DISTINCT rid FROM (");
        sql.append(selects.into_iter().next().unwrap_or_default());
        sql.push(")");
        return sql;
    }
    for (i, select) in selects.into_iter().enumerate() {
        if i > 0 {
            sql.push(" UNION ");
        }
        sql.append(select);
    }
    sql
}

/// The candidate rows of a search and the conditions left to check on them.
struct MatchSet {
    /// `SELECT rid` of the candidates, or None: every resource of the scope.
    driver: Option<Sql>,
    /// Conditions on `m.rid` (driver) or `r.rid` (no driver).
    checks: Vec<Sql>,
}

/// Chooses the driving filter (probing the candidates when there are several) and builds the
/// checks of the others.
async fn match_set(
    conn: Option<&mut SqliteConnection>,
    params: &Params,
    filters: &[Filter],
    types: &Types,
) -> Result<MatchSet, StoreError> {
    let mut planner = Planner { params, aliases: 0 };
    let mut drivers: Vec<(usize, Sql)> = Vec::new();
    for (i, filter) in filters.iter().enumerate() {
        if let Some(sql) = planner.driver(filter, types) {
            drivers.push((i, sql));
        }
    }
    let plain: Vec<usize> = drivers
        .iter()
        .filter(|(i, _)| matches!(filters[*i], Filter::Match { .. }))
        .map(|(i, _)| *i)
        .collect();
    let chosen = match (plain.len(), conn) {
        (0, _) => drivers.first().map(|(i, _)| *i),
        (1, _) | (_, None) => plain.first().copied(),
        (_, Some(conn)) => {
            let probes: Vec<Sql> = plain.iter().map(|i| probe(&filters[*i], &mut planner, types)).collect();
            let mut sql = Sql::new("SELECT ");
            sql.append(Sql::joined(probes, ", "));
            let row = sql.query().fetch_one(conn).await.map_err(backend("probe search filters"))?;
            let mut best = (i64::MAX, plain[0]);
            for (column, i) in plain.iter().enumerate() {
                let n: i64 = row.try_get(column).map_err(backend("decode probe"))?;
                best = best.min((n, *i));
            }
            Some(best.1)
        }
    };
    let driver = chosen.and_then(|c| drivers.into_iter().find(|(i, _)| *i == c).map(|(_, sql)| sql));
    let rid = if driver.is_some() { "m.rid" } else { "r.rid" };
    let checks = filters
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != chosen)
        .map(|(_, filter)| planner.check(filter, rid, types))
        .collect();
    Ok(MatchSet { driver, checks })
}

/// One value-index seek per leaf of `any_of` on the parameter ids `pids`:
/// `SELECT {columns} FROM idx_… WHERE pid IN (…) AND <leaf>`. The driver selects `rid`, the
/// probe counts them.
fn seeks(any_of: &[Predicate], pids: &[i64], columns: &str) -> Vec<Sql> {
    let mut seeks = Vec::new();
    for (table, leaves) in leaves_by_table(any_of) {
        for leaf in leaves {
            let mut sql = Sql::new(&format!("SELECT {columns} FROM {table} WHERE pid IN "));
            sql.int_list(pids);
            if !leaf.text.is_empty() {
                sql.push(" AND ");
                sql.append(leaf);
            }
            seeks.push(sql);
        }
    }
    seeks
}

/// How many rows (at most `PROBE_LIMIT` per leaf) a plain match's index seeks produce.
fn probe(filter: &Filter, planner: &mut Planner<'_>, types: &Types) -> Sql {
    let Filter::Match { param, any_of, .. } = filter else { return Sql::new("0") };
    let pids = planner.params.pids(param, types);
    let counts: Vec<Sql> = seeks(any_of, &pids, "1")
        .into_iter()
        .map(|seek| {
            let mut sql = Sql::new("SELECT count(*) FROM (");
            sql.append(seek);
            sql.push(" LIMIT ");
            sql.int(PROBE_LIMIT);
            sql.push(")");
            sql
        })
        .collect();
    Sql::joined(counts, " + ")
}

/// `SELECT r.rid` (plus `extra` columns) of every match, with `r` the `resources` row; the
/// caller appends ordering and limits.
fn select_matches(set: &MatchSet, types: &Types, extra: &str, after: Option<&Cursor>) -> Sql {
    let mut sql = Sql::default();
    match &set.driver {
        Some(driver) => {
            sql.push(&format!("SELECT r.rid{extra} FROM ("));
            sql.append(driver.clone());
            sql.push(") AS m CROSS JOIN resources AS r ON r.rid = m.rid WHERE r.deleted = 0");
        }
        None => {
            sql.push(&format!("SELECT r.rid{extra} FROM resources AS r WHERE r.deleted = 0"));
            if let Some(types) = types {
                sql.push(" AND r.resource_type IN ");
                sql.text_list(types);
            }
        }
    }
    if let Some(Cursor::After { key: rid }) = after {
        sql.push(" AND r.rid > ");
        sql.int(*rid);
    }
    for check in &set.checks {
        sql.push(" AND ");
        sql.append(check.clone());
    }
    sql
}

/// `count(*)` of the matches. Without checks and with a driver, the driver alone is counted:
/// it lists only live resources (the index holds nothing else), so no `resources` row is read.
fn count_matches(set: &MatchSet, types: &Types) -> Sql {
    let mut sql = Sql::new("SELECT count(*) FROM (");
    match (&set.driver, set.checks.is_empty()) {
        (Some(driver), true) => sql.append(driver.clone()),
        (Some(driver), false) => {
            sql.push("SELECT m.rid FROM (");
            sql.append(driver.clone());
            sql.push(") AS m WHERE ");
            sql.append(Sql::joined(set.checks.clone(), " AND "));
        }
        (None, _) => sql.append(select_matches(set, types, "", None)),
    }
    sql.push(")");
    sql
}

/// The ORDER BY of a sorted search, keys then (type, id), values missing last.
fn sort_order(query: &SearchQuery, params: &Params, types: &Types) -> Sql {
    let mut sql = Sql::new(" ORDER BY ");
    for key in &query.sort {
        let (direction, aggregate) = if key.descending { ("DESC", "max") } else { ("ASC", "min") };
        let value = match key.param.as_str() {
            "_id" => Sql::new("r.id"),
            "_lastUpdated" => Sql::new("r.last_updated"),
            param => {
                let (table, column) = match param_kind(param, types) {
                    Some(ParamType::String) => ("idx_string", "normalized"),
                    Some(ParamType::Token) => ("idx_token", "code"),
                    Some(ParamType::Date) => ("idx_date", if key.descending { "hi" } else { "lo" }),
                    Some(ParamType::Number) => ("idx_number", if key.descending { "hi" } else { "lo" }),
                    Some(ParamType::Quantity) => ("idx_quantity", if key.descending { "hi" } else { "lo" }),
                    Some(ParamType::Reference) => ("idx_reference", "target_id"),
                    Some(ParamType::Uri) => ("idx_uri", "value"),
                    // Composite and special parameters have no order of their own.
                    _ => continue,
                };
                let mut value = Sql::new(&format!("(SELECT {aggregate}({column}) FROM {table} INDEXED BY {table}_owner WHERE rid = r.rid AND pid IN "));
                value.int_list(&params.pids(param, types));
                value.push(")");
                value
            }
        };
        sql.append(value);
        sql.push(&format!(" {direction} NULLS LAST, "));
    }
    sql.push("r.resource_type, r.id");
    sql
}

// ----- execution -------------------------------------------------------------------------------

const RESOURCE_COLUMNS: &str =
    "r.rid, r.resource_type, r.id, r.version, r.last_updated, r.deleted, v.body, r.seq";

/// The current, live versions of `rids`, in the order given (missing or deleted ones left out).
async fn load(conn: &mut SqliteConnection, rids: &[i64]) -> Result<Vec<(i64, StoredResource)>, StoreError> {
    let mut by_rid: HashMap<i64, StoredResource> = HashMap::with_capacity(rids.len());
    for chunk in rids.chunks(10_000) {
        let mut sql = Sql::new(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources AS r CROSS JOIN versions AS v ON v.seq = r.seq \
             WHERE r.deleted = 0 AND r.rid IN "
        ));
        sql.int_list(chunk);
        let rows: Vec<SqliteRow> = sql.query().fetch_all(&mut *conn).await.map_err(backend("load search results"))?;
        for row in &rows {
            let rid: i64 = row.try_get("rid").map_err(backend("decode rid"))?;
            by_rid.insert(rid, current_from_row(row)?);
        }
    }
    Ok(rids.iter().filter_map(|rid| by_rid.remove(rid).map(|r| (*rid, r))).collect())
}

async fn fetch_rids(conn: &mut SqliteConnection, sql: &Sql, context: &'static str) -> Result<Vec<i64>, StoreError> {
    let rows = sql.query().fetch_all(&mut *conn).await.map_err(backend(context))?;
    rows.iter().map(|row| row.try_get(0).map_err(backend(context))).collect()
}

async fn fetch_count(conn: &mut SqliteConnection, sql: &Sql) -> Result<u64, StoreError> {
    let row = sql.query().fetch_one(&mut *conn).await.map_err(backend("count search matches"))?;
    let n: i64 = row.try_get(0).map_err(backend("decode search total"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Runs `query` on `conn`. Callers run it inside a transaction so page and total agree.
/// `snapshots` is where sorted searches keep their match lists; without it (a conditional
/// write's search) `_sort` is ignored.
pub(super) async fn execute(
    conn: &mut SqliteConnection,
    snapshots: Option<&Snapshots>,
    query: &SearchQuery,
) -> Result<SearchPage, StoreError> {
    let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    let params = load_params(conn, query).await?;
    let types = scope_of(query);
    let sorted = !query.sort.is_empty() && snapshots.is_some();
    let count = query.count;

    if let (Some(Cursor::Snapshot { snapshot, offset }), Some(snapshots)) = (&cursor, snapshots) {
        let expired = || StoreError::InvalidQuery("the search snapshot of this cursor has expired; repeat the search".into());
        let snapshot = snapshots.get(snapshot).ok_or_else(expired)?;
        if snapshot.fingerprint != fingerprint(query) {
            return Err(StoreError::InvalidQuery("the cursor belongs to another search".into()));
        }
        let end = offset.saturating_add(count).min(snapshot.rids.len());
        let slice = snapshot.rids.get(*offset..end).unwrap_or_default();
        let page = load(conn, slice).await?;
        let next_cursor = (end < snapshot.rids.len())
            .then(|| Cursor::Snapshot { snapshot: snapshot.id.clone(), offset: end }.encode());
        let total = if query.total == TotalMode::None { None } else { snapshot.total };
        return finish(conn, query, &params, page, next_cursor, total).await;
    }
    if matches!(cursor, Some(Cursor::Snapshot { .. })) || (sorted && cursor.is_some()) {
        return Err(StoreError::InvalidQuery("the cursor does not fit this search".into()));
    }

    let set = match_set(Some(&mut *conn), &params, &query.filters, &types).await?;
    let counted = match query.total {
        TotalMode::None => None,
        TotalMode::Accurate | TotalMode::Estimate => Some(fetch_count(conn, &count_matches(&set, &types)).await?),
    };

    if sorted && count > 0 {
        let mut sql = select_matches(&set, &types, "", None);
        sql.append(sort_order(query, &params, &types));
        sql.push(" LIMIT ");
        sql.int(i64::try_from(SNAPSHOT_CAP).unwrap_or(i64::MAX));
        let rids = fetch_rids(conn, &sql, "run sorted search").await?;
        let page = load(conn, &rids[..count.min(rids.len())]).await?;
        let mut next_cursor = None;
        if rids.len() > count {
            let id = uuid::Uuid::new_v4().simple().to_string();
            next_cursor = Some(Cursor::Snapshot { snapshot: id.clone(), offset: count }.encode());
            // A capped list's total is the true count, which may be larger than the list.
            let total = match counted {
                Some(total) => Some(total),
                None if rids.len() < SNAPSHOT_CAP => u64::try_from(rids.len()).ok(),
                None => None,
            };
            if let Some(snapshots) = snapshots {
                snapshots.insert(Snapshot { id, fingerprint: fingerprint(query), rids, total, created: Instant::now() });
            }
        }
        return finish(conn, query, &params, page, next_cursor, counted).await;
    }

    let mut page = Vec::new();
    let mut next_cursor = None;
    if count > 0 {
        // One row more than the page tells whether another page follows.
        let limit = i64::try_from(count.saturating_add(1)).unwrap_or(i64::MAX);
        let sql = match (&set.driver, set.checks.is_empty()) {
            // The driver alone decides: take the page off it in rid order first, so a filter
            // matching 100,000 resources reads `_count` index entries instead of sorting all.
            (Some(driver), true) => {
                let mut sql = Sql::new("SELECT r.rid FROM (SELECT rid FROM (");
                sql.append(driver.clone());
                sql.push(")");
                if let Some(Cursor::After { key: rid }) = &cursor {
                    sql.push(" WHERE rid > ");
                    sql.int(*rid);
                }
                sql.push(" ORDER BY rid LIMIT ");
                sql.int(limit);
                sql.push(") AS m CROSS JOIN resources AS r ON r.rid = m.rid WHERE r.deleted = 0 ORDER BY r.rid");
                sql
            }
            _ => {
                let mut sql = select_matches(&set, &types, "", cursor.as_ref());
                sql.push(" ORDER BY r.rid LIMIT ");
                sql.int(limit);
                sql
            }
        };
        let mut rids = fetch_rids(conn, &sql, "run search").await?;
        let more = rids.len() > count;
        rids.truncate(count);
        page = load(conn, &rids).await?;
        if more {
            next_cursor = page
                .last()
                .map(|(rid, _)| Cursor::After { key: *rid }.encode());
        }
    }
    finish(conn, query, &params, page, next_cursor, counted).await
}

/// Adds the includes of `page` and assembles the result.
async fn finish(
    conn: &mut SqliteConnection,
    query: &SearchQuery,
    params: &Params,
    page: Vec<(i64, StoredResource)>,
    next_cursor: Option<String>,
    total: Option<u64>,
) -> Result<SearchPage, StoreError> {
    let included = if query.includes.is_empty() && query.revincludes.is_empty() {
        Vec::new()
    } else {
        includes(conn, query, params, &page).await?
    };
    Ok(SearchPage { resources: page.into_iter().map(|(_, r)| r).collect(), included, next_cursor, total })
}

/// The pids of `include.param` on `include.source_type`; `*` = every parameter of that type
/// (or of every type, for a bare `*`). Only reference parameters have rows in `idx_reference`,
/// so listing the others costs nothing.
async fn include_pids(conn: &mut SqliteConnection, params: &Params, include: &Include) -> Result<Vec<i64>, StoreError> {
    let source = Some(vec![include.source_type.clone()]);
    if include.param != "*" {
        return Ok(params.pids(&include.param, &source));
    }
    let mut sql = Sql::new("SELECT pid FROM params");
    if include.source_type != "*" {
        sql.push(" WHERE resource_type = ");
        sql.text(&include.source_type);
    }
    fetch_rids(conn, &sql, "read include parameters").await
}

fn applies(include: &Include, resource_type: &str) -> bool {
    include.source_type == "*" || include.source_type == resource_type
}

/// The live targets of the references of `sources` (by parameters `pids`, None = all), of
/// `target_type` if given.
fn include_sql(sources: &[i64], pids: Option<&[i64]>, target_type: Option<&str>) -> Sql {
    let mut sql = Sql::new(
        "SELECT DISTINCT tr.rid FROM idx_reference AS ref INDEXED BY idx_reference_owner \
         CROSS JOIN resources AS tr ON tr.resource_type = ref.target_type AND tr.id = ref.target_id \
         WHERE tr.deleted = 0 AND ref.rid IN ",
    );
    sql.int_list(sources);
    // Every reference row of the sources (`*`) is a seek on the owner index without a pid.
    if let Some(pids) = pids {
        sql.push(" AND ref.pid IN ");
        sql.int_list(pids);
    }
    if let Some(target_type) = target_type {
        sql.push(" AND ref.target_type = ");
        sql.text(target_type);
    }
    sql
}

/// The resources whose reference parameters `pids` point at one of `targets`.
fn revinclude_sql(pids: &[i64], targets: &[i64]) -> Sql {
    let mut sql = Sql::new("SELECT DISTINCT ref.rid FROM resources AS me CROSS JOIN idx_reference AS ref ON ref.pid IN ");
    sql.int_list(pids);
    sql.push(" AND ref.target_id = me.id AND ref.target_type = me.resource_type WHERE me.rid IN ");
    sql.int_list(targets);
    sql
}

/// `_include` and `_revinclude` of one page, then `:iterate` rounds over what they brought.
async fn includes(
    conn: &mut SqliteConnection,
    query: &SearchQuery,
    params: &Params,
    page: &[(i64, StoredResource)],
) -> Result<Vec<StoredResource>, StoreError> {
    let mut seen: HashSet<i64> = page.iter().map(|(rid, _)| *rid).collect();
    let mut frontier: Vec<(i64, String)> = page.iter().map(|(rid, r)| (*rid, r.resource_type.clone())).collect();
    let mut included = Vec::new();
    for round in 0..INCLUDE_DEPTH {
        let mut found: Vec<i64> = Vec::new();
        for include in query.includes.iter().filter(|i| round == 0 || i.iterate) {
            let sources: Vec<i64> =
                frontier.iter().filter(|(_, t)| applies(include, t)).map(|(rid, _)| *rid).collect();
            if sources.is_empty() {
                continue;
            }
            let pids = if include.param == "*" { None } else { Some(include_pids(conn, params, include).await?) };
            let sql = include_sql(&sources, pids.as_deref(), include.target_type.as_deref());
            found.extend(fetch_rids(conn, &sql, "find included resources").await?);
        }
        for include in query.revincludes.iter().filter(|i| round == 0 || i.iterate) {
            let targets: Vec<i64> = frontier
                .iter()
                .filter(|(_, t)| include.target_type.as_ref().is_none_or(|target| target == t))
                .map(|(rid, _)| *rid)
                .collect();
            if targets.is_empty() {
                continue;
            }
            let pids = include_pids(conn, params, include).await?;
            let sql = revinclude_sql(&pids, &targets);
            found.extend(fetch_rids(conn, &sql, "find revincluded resources").await?);
        }
        let mut new: Vec<i64> = Vec::new();
        for rid in found {
            if included.len() + new.len() >= MAX_INCLUDED {
                break;
            }
            if seen.insert(rid) {
                new.push(rid);
            }
        }
        if new.is_empty() {
            break;
        }
        let loaded = load(conn, &new).await?;
        frontier = loaded.iter().map(|(rid, r)| (*rid, r.resource_type.clone())).collect();
        included.extend(loaded.into_iter().map(|(_, r)| r));
    }
    Ok(included)
}

#[cfg(test)]
mod tests {
    use fhir_model::{Filter, SearchQuery, SortKey};
    use sqlx::Connection;

    use super::*;

    fn query(resource_type: &str, filters: Vec<Filter>) -> SearchQuery {
        let mut query = SearchQuery::all(Some(resource_type));
        query.filters = filters;
        query
    }

    fn filter(param: &str, any_of: Vec<Predicate>) -> Filter {
        Filter::Match { param: param.into(), any_of, negate: false }
    }

    fn code(code: &str) -> Predicate {
        Predicate::Token { system: TokenSystem::Is("http://loinc.org".into()), code: Some(code.into()) }
    }

    /// Every parameter name used below has a pid for every type used below.
    fn params() -> Params {
        let mut params = Params::default();
        let mut pid = 0;
        for name in ["name", "family", "code", "date", "subject", "patient", "value-quantity", "_id", "identifier", "url",
            "length", "code-value-quantity", "_text", "organization", "gender", "general-practitioner"] {
            for resource_type in ["Patient", "Observation", "Organization", "ValueSet", "Encounter", "RiskAssessment"] {
                pid += 1;
                params.by_name.entry(name.to_string()).or_default().push((resource_type.to_string(), pid));
            }
        }
        params
    }

    /// The plan's detail lines for `sql` on a fresh schema.
    async fn query_plan(sql: &Sql) -> Vec<String> {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.expect("open in-memory db");
        super::super::schema::create(&mut conn).await.expect("create schema");
        let mut explain = sql.clone();
        explain.text = format!("EXPLAIN QUERY PLAN {}", sql.text);
        explain
            .query()
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("explain query plan of {}: {e}", sql.text))
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect()
    }

    /// No stored table is ever scanned; each one that is read is read through an index.
    fn assert_indexed(plan: &[String], sql: &Sql) {
        for line in plan {
            if let Some(scanned) = line.strip_prefix("SCAN ") {
                let name = scanned.split_whitespace().next().unwrap_or_default();
                let stored = ["resources", "versions", "params"].contains(&name) || name.starts_with("idx_");
                // An alias (`r`, `ref1`...) names a stored table too; a scan of it is just as bad
                // unless it is a subquery or CTE result (SQLite prints those as `SCAN (subquery-N)`
                // or by the subquery's alias, which the generated SQL names `m`, `t…` or `s…`).
                let alias = ["r", "tr", "me", "ref"].iter().any(|a| name.starts_with(a) && name[a.len()..].chars().all(|c| c.is_ascii_digit()));
                assert!(!stored && !alias, "full scan of {name} in plan {plan:#?}\nfor {}", sql.text);
            }
            if line.starts_with("SEARCH ") {
                assert!(line.contains(" USING "), "unindexed search in plan {plan:#?}\nfor {}", sql.text);
            }
        }
    }

    /// `table` (or, for `idx_reference`, one of its `ref…` aliases) is read through an index.
    fn searched(plan: &[String], table: &str) -> bool {
        plan.iter().any(|line| {
            let Some(name) = line.strip_prefix("SEARCH ").and_then(|rest| rest.split_whitespace().next()) else {
                return false;
            };
            let alias = table == "idx_reference" && name.starts_with("ref");
            (name == table || alias) && line.contains(" USING ")
        })
    }

    /// Checks the page, sorted and count SQL of `query` (with `cursor`), and that each of
    /// `tables` is read by index.
    async fn check(query: &SearchQuery, cursor: Option<&Cursor>, tables: &[&str]) {
        let params = params();
        let types = scope_of(query);
        let set = match_set(None, &params, &query.filters, &types).await.expect("plan");
        let mut page = select_matches(&set, &types, "", cursor);
        page.push(" ORDER BY r.rid LIMIT 21");
        let mut sorted = select_matches(&set, &types, "", None);
        let mut sorted_query = query.clone();
        sorted_query.sort = vec![
            SortKey { param: "date".into(), descending: true },
            SortKey { param: "name".into(), descending: false },
            SortKey { param: "_lastUpdated".into(), descending: false },
        ];
        sorted.append(sort_order(&sorted_query, &params, &types));
        for sql in [page, sorted, count_matches(&set, &types)] {
            let lines = query_plan(&sql).await;
            assert_indexed(&lines, &sql);
            for table in tables {
                assert!(searched(&lines, table), "{table} not searched by index in {lines:#?}\nfor {}", sql.text);
            }
        }
    }

    #[tokio::test]
    async fn patient_name_search_uses_indexes() {
        let q = query("Patient", vec![filter("name", vec![Predicate::StringStartsWith("smi".into())])]);
        check(&q, None, &["idx_string"]).await;
        let cursor = Cursor::After { key: 7 };
        check(&q, Some(&cursor), &["idx_string"]).await;
        for predicate in [Predicate::StringExact("Smith".into()), Predicate::StringContains("mit".into())] {
            check(&query("Patient", vec![filter("name", vec![predicate])]), None, &["idx_string"]).await;
        }
    }

    #[tokio::test]
    async fn observation_code_and_date_search_uses_indexes() {
        let q = query(
            "Observation",
            vec![
                filter("subject", vec![Predicate::Reference { target_type: Some("Patient".into()), target_id: "p1".into() }]),
                filter("code", vec![code("1234-5"), Predicate::Token { system: TokenSystem::Any, code: Some("789".into()) }]),
                filter("date", vec![Predicate::Date { prefix: Prefix::Ge, lo: 1_600_000_000_000, hi: 1_600_086_400_000 }]),
            ],
        );
        check(&q, None, &["idx_reference", "idx_token", "idx_date"]).await;
        for prefix in [Prefix::Eq, Prefix::Ne, Prefix::Lt, Prefix::Gt, Prefix::Le, Prefix::Sa, Prefix::Eb, Prefix::Ap] {
            let q = query("Observation", vec![filter("date", vec![Predicate::Date { prefix, lo: 0, hi: 10 }])]);
            check(&q, None, &["idx_date"]).await;
        }
    }

    #[tokio::test]
    async fn every_predicate_kind_uses_indexes() {
        let cases: Vec<(&str, &str, Predicate, &str)> = vec![
            ("Observation", "code", Predicate::Token { system: TokenSystem::None, code: Some("x".into()) }, "idx_token"),
            ("Observation", "code", Predicate::Token { system: TokenSystem::Is("s".into()), code: None }, "idx_token"),
            ("Observation", "code", Predicate::TokenText("heart".into()), "idx_token_text"),
            (
                "Patient",
                "identifier",
                Predicate::IdentifierOfType { type_system: "s".into(), type_code: "MR".into(), value: "1".into() },
                "idx_of_type",
            ),
            ("RiskAssessment", "length", Predicate::Number { prefix: Prefix::Ge, lo: 1.0, hi: 2.0 }, "idx_number"),
            (
                "Observation",
                "value-quantity",
                Predicate::Quantity { prefix: Prefix::Gt, lo: 1.0, hi: 2.0, system: Some("http://unitsofmeasure.org".into()), code: Some("g".into()) },
                "idx_quantity",
            ),
            (
                "Observation",
                "value-quantity",
                Predicate::Quantity { prefix: Prefix::Le, lo: 1.0, hi: 2.0, system: None, code: Some("mg".into()) },
                "idx_quantity",
            ),
            ("Observation", "subject", Predicate::ReferenceUrl("http://x/Patient/1".into()), "idx_reference"),
            ("Observation", "subject", Predicate::Reference { target_type: None, target_id: "1".into() }, "idx_reference"),
            (
                "Observation",
                "subject",
                Predicate::ReferenceIdentifier { system: TokenSystem::Is("s".into()), value: "1".into() },
                "idx_reference_identifier",
            ),
            ("ValueSet", "url", Predicate::Uri { value: "http://x/vs".into(), mode: UriMatch::Exact }, "idx_uri"),
            ("ValueSet", "url", Predicate::Uri { value: "http://x/".into(), mode: UriMatch::Below }, "idx_uri"),
            ("ValueSet", "url", Predicate::Uri { value: "http://x/vs/a|1".into(), mode: UriMatch::Above }, "idx_uri"),
            (
                "Observation",
                "code-value-quantity",
                Predicate::Composite(vec![
                    code("8480-6"),
                    Predicate::Quantity { prefix: Prefix::Gt, lo: 99.5, hi: 100.5, system: None, code: None },
                ]),
                "idx_composite",
            ),
        ];
        for (resource_type, param, predicate, table) in cases {
            let q = query(resource_type, vec![filter(param, vec![predicate.clone()])]);
            check(&q, None, &[table]).await;
            // Also as a check under another driving filter, and negated.
            let both = query(resource_type, vec![filter("_id", vec![code("a")]), filter(param, vec![predicate.clone()])]);
            check(&both, None, &[table, "idx_token"]).await;
            let negated = query(
                resource_type,
                vec![filter("_id", vec![code("a")]), Filter::Match { param: param.into(), any_of: vec![predicate], negate: true }],
            );
            check(&negated, None, &[table, "idx_token"]).await;
        }
    }

    #[tokio::test]
    async fn negation_missing_chain_and_has_use_indexes() {
        let name = || Box::new(filter("name", vec![Predicate::StringStartsWith("smi".into())]));
        let chain = Filter::Chain { param: "subject".into(), target_types: vec!["Patient".into()], inner: name() };
        let chain2 = Filter::Chain {
            param: "subject".into(),
            target_types: vec!["Patient".into()],
            inner: Box::new(Filter::Chain { param: "organization".into(), target_types: vec!["Organization".into()], inner: name() }),
        };
        let has = Filter::Has { source_type: "Observation".into(), reference_param: "patient".into(), inner: Box::new(filter("code", vec![code("1")])) };
        let nested_has = Filter::Has {
            source_type: "Observation".into(),
            reference_param: "patient".into(),
            inner: Box::new(Filter::Has { source_type: "Encounter".into(), reference_param: "subject".into(), inner: Box::new(filter("code", vec![code("1")])) }),
        };
        let missing = |missing| Filter::Missing { param: "gender".into(), missing };
        let id = || filter("_id", vec![code("a")]);
        // Alone (driving where they can), and as checks under a plain driver.
        check(&query("Observation", vec![chain.clone()]), None, &["idx_string", "idx_reference"]).await;
        check(&query("Observation", vec![chain2.clone()]), None, &["idx_string", "idx_reference"]).await;
        check(&query("Observation", vec![id(), chain]), None, &["idx_string", "idx_reference"]).await;
        check(&query("Observation", vec![id(), chain2]), None, &["idx_string", "idx_reference"]).await;
        check(&query("Patient", vec![has.clone()]), None, &["idx_token", "idx_reference"]).await;
        check(&query("Patient", vec![nested_has.clone()]), None, &["idx_token", "idx_reference"]).await;
        check(&query("Patient", vec![id(), has]), None, &["idx_token", "idx_reference"]).await;
        check(&query("Patient", vec![id(), nested_has]), None, &["idx_token", "idx_reference"]).await;
        check(&query("Patient", vec![id(), missing(true)]), None, &["idx_token"]).await;
        check(&query("Patient", vec![id(), missing(false)]), None, &["idx_token"]).await;
        // Without any driver: the type's rows of `resources`, by index.
        check(&query("Patient", vec![missing(true)]), None, &["r"]).await;
        let not = Filter::Match { param: "name".into(), any_of: vec![Predicate::StringStartsWith("smi".into())], negate: true };
        check(&query("Patient", vec![not]), None, &["r", "idx_string"]).await;
    }

    #[tokio::test]
    async fn system_and_unfiltered_searches_use_indexes() {
        let mut system = SearchQuery::all(None);
        system.filters = vec![filter("_id", vec![Predicate::Token { system: TokenSystem::Any, code: Some("x".into()) }])];
        check(&system, None, &["idx_token"]).await;
        system.types = vec!["Patient".into(), "Observation".into()];
        check(&system, None, &["idx_token"]).await;
        let cursor = Cursor::After { key: 7 };
        check(&SearchQuery::all(Some("Patient")), Some(&cursor), &["r"]).await;
        let mut types = SearchQuery::all(None);
        types.types = vec!["Patient".into(), "Observation".into()];
        check(&types, Some(&cursor), &["r"]).await;
    }

    #[tokio::test]
    async fn include_queries_use_indexes() {
        for include in [include_sql(&[1, 2, 3], Some(&[4, 5]), Some("Patient")), include_sql(&[1, 2, 3], None, None)] {
            let lines = query_plan(&include).await;
            assert_indexed(&lines, &include);
            assert!(searched(&lines, "ref") && searched(&lines, "tr"), "{lines:#?}");
        }
        let revinclude = revinclude_sql(&[4, 5], &[1, 2, 3]);
        let lines = query_plan(&revinclude).await;
        assert_indexed(&lines, &revinclude);
        assert!(searched(&lines, "ref") && searched(&lines, "me"), "{lines:#?}");
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let after = Cursor::After { key: 4711 };
        assert_eq!(Cursor::decode(&after.encode()).unwrap(), after);
        let snapshot = Cursor::Snapshot { snapshot: "0af3".into(), offset: 40 };
        assert_eq!(Cursor::decode(&snapshot.encode()).unwrap(), snapshot);
        for bad in ["", "0", "zz", "50617469656e74", "r", "r-1", "r1x", "s", "s.1", "sxyz.1", "s0af3.", "s0af3.-1"] {
            assert_eq!(Cursor::decode(bad).unwrap_err().kind(), crate::StoreErrorKind::InvalidQuery, "{bad}");
        }
    }
}
