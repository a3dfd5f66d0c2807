//! Translates a `SearchQuery` into SQL over the index tables, and runs it.
//!
//! Shape of the generated SQL, for filters F1..Fn each with predicates P1..Pm:
//!
//! ```sql
//! SELECT r.* FROM (
//!     SELECT resource_type, id FROM (<F1: leaf(P1) UNION leaf(P2) ...>)
//!     INTERSECT
//!     SELECT resource_type, id FROM (<F2: ...>)
//! ) AS m CROSS JOIN resources AS r ON r.resource_type = m.resource_type AND r.id = m.id
//! WHERE r.deleted = 0 ORDER BY m.resource_type, m.id LIMIT ?
//! ```
//!
//! where each leaf is a seek on one covering value index:
//! `SELECT resource_type, id FROM idx_token WHERE resource_type = ? AND param = ? AND code = ?
//! AND id > ?` (the last term is the cursor). `CROSS JOIN` pins the join order so SQLite always
//! drives from the index matches and only then looks up `resources` by primary key; it never
//! walks all resources of a type to test them. Predicates whose SQL would need an `OR` across
//! two value columns (date `ne`, `ge`, `le`) become several leaves, so each stays one seek.

use fhir_model::{Filter, Predicate, Prefix, SearchQuery, TokenSystem};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Row, Sqlite, SqliteConnection};

use super::{backend, current_from_row};
use crate::{SearchPage, StoreError};

/// A value to bind to one `?` of generated SQL.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Bind {
    Text(String),
    Int(i64),
}

/// Generated SQL and its parameters, in `?` order.
#[derive(Debug, Default, Clone)]
pub(super) struct Sql {
    pub(super) text: String,
    pub(super) binds: Vec<Bind>,
}

impl Sql {
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

    pub(super) fn query(&self) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.text.clone()));
        for bind in &self.binds {
            query = match bind {
                Bind::Text(value) => query.bind(value.clone()),
                Bind::Int(value) => query.bind(*value),
            };
        }
        query
    }
}

/// The last `(resource type, id)` of a page. Encoded as lowercase hex of `type/id`: opaque to
/// clients, safe in a URL, and resource types never contain `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cursor {
    resource_type: String,
    id: String,
}

impl Cursor {
    pub(super) fn encode(resource_type: &str, id: &str) -> String {
        let mut out = String::with_capacity(2 * (resource_type.len() + id.len() + 1));
        for byte in resource_type.bytes().chain(std::iter::once(b'/')).chain(id.bytes()) {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }

    pub(super) fn decode(text: &str) -> Result<Cursor, StoreError> {
        let malformed = || StoreError::InvalidQuery(format!("malformed cursor {text:?}"));
        if text.len() % 2 != 0 {
            return Err(malformed());
        }
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let bytes = text
            .as_bytes()
            .chunks(2)
            .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(malformed)?;
        let decoded = String::from_utf8(bytes).map_err(|_| malformed())?;
        match decoded.split_once('/') {
            Some((resource_type, id)) if !resource_type.is_empty() && !id.is_empty() => {
                Ok(Cursor { resource_type: resource_type.to_string(), id: id.to_string() })
            }
            _ => Err(malformed()),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Which resource types a query covers.
enum Scope<'a> {
    One(&'a str),
    Many(&'a [String]),
    /// Every type; index seeks go type by type through `known_types`.
    All,
}

impl<'a> Scope<'a> {
    fn of(query: &'a SearchQuery) -> Self {
        match (&query.resource_type, query.types.as_slice()) {
            (Some(resource_type), _) => Scope::One(resource_type),
            (None, []) => Scope::All,
            (None, [only]) => Scope::One(only),
            (None, types) => Scope::Many(types),
        }
    }

    /// `resource_type` condition for the value-index leaves (which need the type to seek).
    fn index_condition(&self, sql: &mut Sql) {
        match self {
            Scope::One(resource_type) => {
                sql.push("resource_type = ");
                sql.text(resource_type);
            }
            Scope::Many(types) => {
                sql.push("resource_type IN (");
                for (i, resource_type) in types.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.text(resource_type);
                }
                sql.push(")");
            }
            Scope::All => sql.push("resource_type IN (SELECT resource_type FROM known_types)"),
        }
    }

    /// How the cursor restricts this scope.
    fn after<'c>(&self, cursor: Option<&'c Cursor>) -> After<'c> {
        match (self, cursor) {
            (_, None) => After::Nothing,
            (Scope::One(resource_type), Some(cursor)) => match cursor.resource_type.as_str().cmp(resource_type) {
                std::cmp::Ordering::Less => After::Nothing,
                std::cmp::Ordering::Equal => After::Id(&cursor.id),
                std::cmp::Ordering::Greater => After::Exhausted,
            },
            (_, Some(cursor)) => After::Pair(&cursor.resource_type, &cursor.id),
        }
    }
}

/// The cursor as a condition on `(resource_type, id)`.
#[derive(Clone, Copy)]
enum After<'c> {
    Nothing,
    Id(&'c str),
    Pair(&'c str, &'c str),
    /// The cursor is past every row of the scope.
    Exhausted,
}

impl After<'_> {
    fn condition(self, sql: &mut Sql, prefix: &str) {
        match self {
            After::Nothing | After::Exhausted => {}
            After::Id(id) => {
                sql.push(&format!(" AND {prefix}id > "));
                sql.text(id);
            }
            After::Pair(resource_type, id) => {
                sql.push(&format!(" AND ({prefix}resource_type, {prefix}id) > ("));
                sql.text(resource_type);
                sql.push(", ");
                sql.text(id);
                sql.push(")");
            }
        }
    }
}

/// The SQL for one search: the page (None when the cursor is past the end) and the total
/// (None when nothing can match).
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) page: Option<Sql>,
    pub(super) total: Option<Sql>,
}

/// Builds the SQL for `query`, fetching at most `limit` rows after `cursor`.
pub(super) fn plan(query: &SearchQuery, cursor: Option<&Cursor>, limit: i64) -> Plan {
    let scope = Scope::of(query);
    let after = scope.after(cursor);
    if query.filters.iter().any(|filter| !matches!(filter, Filter::Match { any_of, negate: false, .. } if !any_of.is_empty())) {
        // A parameter with no acceptable value matches nothing.
        return Plan { page: None, total: None };
    }
    if query.filters.is_empty() {
        return plan_unfiltered(&scope, after, limit);
    }
    let page = (!matches!(after, After::Exhausted)).then(|| {
        let mut sql = Sql::default();
        sql.push(
            "SELECT r.resource_type, r.id, r.version, r.last_updated, r.deleted, r.body, r.seq FROM (",
        );
        sql.append(match_set(query, &scope, after));
        sql.push(
            ") AS m CROSS JOIN resources AS r ON r.resource_type = m.resource_type AND r.id = m.id \
             WHERE r.deleted = 0 ORDER BY m.resource_type, m.id LIMIT ",
        );
        sql.int(limit);
        sql
    });
    let mut total = Sql::default();
    total.push("SELECT count(*) FROM (");
    total.append(match_set(query, &scope, After::Nothing));
    total.push(")");
    Plan { page, total: Some(total) }
}

/// A query without filters lists the current resources in key order straight off the
/// `resources` primary key.
fn plan_unfiltered(scope: &Scope<'_>, after: After<'_>, limit: i64) -> Plan {
    let condition = |sql: &mut Sql, prefix: &str| match scope {
        Scope::All => sql.push(&format!("{prefix}deleted = 0")),
        _ => {
            sql.push(prefix);
            scope.index_condition(sql);
            sql.push(&format!(" AND {prefix}deleted = 0"));
        }
    };
    let page = (!matches!(after, After::Exhausted)).then(|| {
        let mut sql = Sql::default();
        sql.push("SELECT r.resource_type, r.id, r.version, r.last_updated, r.deleted, r.body, r.seq FROM resources AS r WHERE ");
        condition(&mut sql, "r.");
        after.condition(&mut sql, "r.");
        sql.push(" ORDER BY r.resource_type, r.id LIMIT ");
        sql.int(limit);
        sql
    });
    let mut total = Sql::default();
    total.push("SELECT count(*) FROM resources AS r WHERE ");
    condition(&mut total, "r.");
    Plan { page, total: Some(total) }
}

/// `(resource_type, id)` of every resource matching all filters, without duplicates.
fn match_set(query: &SearchQuery, scope: &Scope<'_>, after: After<'_>) -> Sql {
    let mut sql = Sql::default();
    let single = query.filters.len() == 1;
    for (i, filter) in query.filters.iter().enumerate() {
        if i > 0 {
            sql.push(" INTERSECT ");
        }
        if !single {
            sql.push("SELECT resource_type, id FROM (");
        }
        let Filter::Match { param, any_of, .. } = filter else { continue };
        let leaves: Vec<(&str, Sql)> = any_of.iter().flat_map(leaf_conditions).collect();
        let distinct = if leaves.len() == 1 { "DISTINCT " } else { "" };
        for (j, (table, condition)) in leaves.into_iter().enumerate() {
            if j > 0 {
                sql.push(" UNION ");
            }
            sql.push(&format!("SELECT {distinct}resource_type, id FROM {table} WHERE "));
            scope.index_condition(&mut sql);
            sql.push(" AND param = ");
            sql.text(param);
            if !condition.text.is_empty() {
                sql.push(" AND ");
                sql.append(condition);
            }
            after.condition(&mut sql, "");
        }
        if !single {
            sql.push(")");
        }
    }
    sql
}

/// The index table and value condition(s) of one predicate; several entries are OR-ed.
fn leaf_conditions(predicate: &Predicate) -> Vec<(&'static str, Sql)> {
    let mut sql = Sql::default();
    match predicate {
        Predicate::StringStartsWith(prefix) => {
            // A prefix match as a range on the normalised value: [prefix, successor(prefix)).
            // UTF-8 byte order equals code point order, so this is exactly "starts with".
            if !prefix.is_empty() {
                sql.push("normalized >= ");
                sql.text(prefix);
                if let Some(upper) = prefix_successor(prefix) {
                    sql.push(" AND normalized < ");
                    sql.text(&upper);
                }
            }
            vec![("idx_string", sql)]
        }
        Predicate::StringExact(value) => {
            sql.push("exact = ");
            sql.text(value);
            vec![("idx_string", sql)]
        }
        Predicate::Token { system, code } => {
            let mut terms: Vec<Sql> = Vec::new();
            if let Some(code) = code {
                let mut term = Sql::default();
                term.push("code = ");
                term.text(code);
                terms.push(term);
            }
            match system {
                TokenSystem::Any => {}
                TokenSystem::None => {
                    let mut term = Sql::default();
                    term.push("system IS NULL");
                    terms.push(term);
                }
                TokenSystem::Is(system) => {
                    let mut term = Sql::default();
                    term.push("system = ");
                    term.text(system);
                    terms.push(term);
                }
            }
            for (i, term) in terms.into_iter().enumerate() {
                if i > 0 {
                    sql.push(" AND ");
                }
                sql.append(term);
            }
            vec![("idx_token", sql)]
        }
        Predicate::Date { prefix, lo, hi } => date_conditions(*prefix, *lo, *hi)
            .into_iter()
            .map(|condition| ("idx_date", condition))
            .collect(),
        Predicate::Reference { target_type, target_id } => {
            sql.push("target_id = ");
            sql.text(target_id);
            if let Some(target_type) = target_type {
                sql.push(" AND target_type = ");
                sql.text(target_type);
            }
            vec![("idx_reference", sql)]
        }
        // Not indexed yet: matches nothing (`1 = 0` keeps the leaf a valid seek).
        _ => {
            sql.push("1 = 0");
            vec![("idx_token", sql)]
        }
    }
}

/// Date semantics from `Predicate`'s documentation; the indexed range is `[lo, hi)` in the
/// table's columns, the searched one `[search_lo, search_hi)`.
fn date_conditions(prefix: Prefix, search_lo: i64, search_hi: i64) -> Vec<Sql> {
    let one = |parts: &[(&str, i64)]| {
        let mut sql = Sql::default();
        for (i, (text, value)) in parts.iter().enumerate() {
            if i > 0 {
                sql.push(" AND ");
            }
            sql.push(text);
            sql.int(*value);
        }
        sql
    };
    // `lo <= search_hi` follows from the other two terms for any well-formed range; it is
    // spelled out so the seek on `(param, lo)` is bounded on both sides.
    let eq = || one(&[("lo >= ", search_lo), ("lo <= ", search_hi), ("hi <= ", search_hi)]);
    let gt = || one(&[("hi > ", search_hi)]);
    let lt = || one(&[("lo < ", search_lo)]);
    match prefix {
        Prefix::Eq => vec![eq()],
        Prefix::Ne => vec![lt(), gt()],
        Prefix::Gt => vec![gt()],
        Prefix::Lt => vec![lt()],
        Prefix::Ge => vec![gt(), eq()],
        Prefix::Le => vec![lt(), eq()],
        Prefix::Sa => vec![one(&[("lo >= ", search_hi)])],
        Prefix::Eb => vec![one(&[("hi <= ", search_lo)])],
        Prefix::Ap => vec![one(&[("lo < ", search_hi), ("hi > ", search_lo)])],
    }
}

/// The smallest string greater than every string starting with `prefix`, or None when there
/// is none (every character is U+10FFFF).
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Runs `query` on `conn`. Callers run it inside a transaction so page and total agree.
pub(super) async fn execute(conn: &mut SqliteConnection, query: &SearchQuery) -> Result<SearchPage, StoreError> {
    let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    let count = query.count;
    // One row more than the page tells whether another page follows.
    let limit = i64::try_from(count.saturating_add(1)).unwrap_or(i64::MAX);
    let plan = plan(query, cursor.as_ref(), limit);
    let mut resources = Vec::new();
    if let (Some(page), true) = (&plan.page, count > 0) {
        let rows: Vec<SqliteRow> =
            page.query().fetch_all(&mut *conn).await.map_err(backend("run search"))?;
        resources = rows.iter().map(current_from_row).collect::<Result<Vec<_>, _>>()?;
    }
    let next_cursor = if resources.len() > count {
        resources.truncate(count);
        resources.last().map(|last| Cursor::encode(&last.resource_type, &last.id))
    } else {
        None
    };
    let total = match &plan.total {
        Some(total) => {
            let row = total.query().fetch_one(&mut *conn).await.map_err(backend("count search matches"))?;
            let n: i64 = row.try_get(0).map_err(backend("decode search total"))?;
            u64::try_from(n).unwrap_or(0)
        }
        None => 0,
    };
    Ok(SearchPage { resources, included: Vec::new(), next_cursor, total: Some(total) })
}

#[cfg(test)]
mod tests {
    use fhir_model::{Filter, SearchQuery};
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
            .expect("explain query plan")
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect()
    }

    /// No stored table is ever scanned; each one that is read is read through an index.
    fn assert_indexed(plan: &[String]) {
        const TABLES: &[&str] =
            &["resources", "r", "idx_string", "idx_token", "idx_date", "idx_reference", "known_types"];
        for line in plan {
            if let Some(scanned) = line.strip_prefix("SCAN ") {
                let name = scanned.split_whitespace().next().unwrap_or_default();
                assert!(!TABLES.contains(&name), "full scan of {name} in plan {plan:#?}");
            }
            if line.starts_with("SEARCH ") {
                assert!(line.contains(" USING "), "unindexed search in plan {plan:#?}");
            }
        }
    }

    fn searched(plan: &[String], table: &str) -> bool {
        plan.iter().any(|line| line.starts_with(&format!("SEARCH {table} USING")))
    }

    async fn check(query: &SearchQuery, cursor: Option<&Cursor>, tables: &[&str]) {
        let plan = plan(query, cursor, 21);
        for sql in [plan.page.expect("page sql"), plan.total.expect("total sql")] {
            let lines = query_plan(&sql).await;
            assert_indexed(&lines);
            for table in tables {
                let total_only = !sql.text.contains("CROSS JOIN") && *table == "r";
                assert!(total_only || searched(&lines, table), "{table} not searched by index in {lines:#?}");
            }
        }
    }

    #[tokio::test]
    async fn patient_name_search_uses_indexes() {
        let q = query("Patient", vec![filter("name", vec![Predicate::StringStartsWith("smi".into())])]);
        check(&q, None, &["idx_string", "r"]).await;
        let cursor = Cursor { resource_type: "Patient".into(), id: "p7".into() };
        check(&q, Some(&cursor), &["idx_string", "r"]).await;
    }

    #[tokio::test]
    async fn observation_code_and_date_search_uses_indexes() {
        let q = query(
            "Observation",
            vec![
                filter(
                    "code",
                    vec![
                        Predicate::Token { system: TokenSystem::Is("http://loinc.org".into()), code: Some("1234-5".into()) },
                        Predicate::Token { system: TokenSystem::Any, code: Some("789".into()) },
                    ],
                ),
                filter("date", vec![Predicate::Date { prefix: Prefix::Ge, lo: 1_600_000_000_000, hi: 1_600_086_400_000 }]),
            ],
        );
        check(&q, None, &["idx_token", "idx_date", "r"]).await;
        for prefix in [Prefix::Eq, Prefix::Ne, Prefix::Lt, Prefix::Sa, Prefix::Eb, Prefix::Ap] {
            let q = query("Observation", vec![filter("date", vec![Predicate::Date { prefix, lo: 0, hi: 10 }])]);
            check(&q, None, &["idx_date", "r"]).await;
        }
    }

    #[tokio::test]
    async fn reference_search_uses_indexes() {
        let q = query(
            "Observation",
            vec![filter(
                "subject",
                vec![
                    Predicate::Reference { target_type: Some("Patient".into()), target_id: "p1".into() },
                    Predicate::Reference { target_type: None, target_id: "p2".into() },
                ],
            )],
        );
        check(&q, None, &["idx_reference", "r"]).await;
    }

    #[tokio::test]
    async fn system_and_unfiltered_searches_use_indexes() {
        let mut system = SearchQuery::all(None);
        system.filters = vec![filter("_id", vec![Predicate::Token { system: TokenSystem::Any, code: Some("x".into()) }])];
        check(&system, None, &["idx_token", "r"]).await;
        system.types = vec!["Patient".into(), "Observation".into()];
        check(&system, None, &["idx_token", "r"]).await;

        let cursor = Cursor { resource_type: "Patient".into(), id: "p7".into() };
        let lines = query_plan(&plan(&SearchQuery::all(Some("Patient")), Some(&cursor), 21).page.unwrap()).await;
        assert_indexed(&lines);
        assert!(lines.iter().any(|l| l.contains("(resource_type=? AND id>?)")), "{lines:#?}");
        let lines = query_plan(&plan(&SearchQuery::all(None), Some(&cursor), 21).page.unwrap()).await;
        assert_indexed(&lines);
        assert!(searched(&lines, "r"), "{lines:#?}");
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let encoded = Cursor::encode("Patient", "a-1.x");
        assert_eq!(Cursor::decode(&encoded).unwrap(), Cursor { resource_type: "Patient".into(), id: "a-1.x".into() });
        for bad in ["", "0", "zz", "50617469656e74", "2f6964", "ff00"] {
            assert_eq!(Cursor::decode(bad).unwrap_err().kind(), crate::StoreErrorKind::InvalidQuery, "{bad}");
        }
    }

    #[test]
    fn prefix_successor_bounds_exactly_the_prefixed_strings() {
        assert_eq!(prefix_successor("smi").as_deref(), Some("smj"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
    }
}
