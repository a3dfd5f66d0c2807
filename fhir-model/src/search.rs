//! The search-parameter registry, extraction of index values from resources at write time,
//! and parsing of search requests into typed queries that any store can execute.

use serde_json::Value;

use crate::ModelError;

// The registry is data; the rest are the three jobs done with it. Each file owns one concern so
// that extending the registry to every R4 parameter touches `registry.rs` only.
mod date;
mod extract;
mod fhirpath;
mod query;
mod reference;
mod registry;
mod text;

/// Page size when the client gives no `_count`.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Largest page a client can ask for; larger `_count` values are capped to this.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The FHIR search parameter types Tessera indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Token,
    Date,
    Reference,
}

/// One supported search parameter.
#[derive(Debug, Clone)]
pub struct SearchParamDef {
    /// Resource type it applies to, or `Resource` for the common parameters.
    pub resource_type: &'static str,
    pub name: &'static str,
    pub kind: ParamType,
    /// The FHIRPath expression from the R4 definition, for the CapabilityStatement.
    pub expression: &'static str,
    pub documentation: &'static str,
}

/// A value extracted from a resource for one search parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexValue {
    /// `normalized` is lowercased with accents removed (for the default prefix match);
    /// `exact` is the original text (for `:exact`).
    String { normalized: String, exact: String },
    /// `system` is None when the coding/identifier has no system.
    Token {
        system: Option<String>,
        code: String,
    },
    /// The instant range the value covers, in epoch milliseconds UTC: `lo` inclusive,
    /// `hi` exclusive. A partial date `2013` covers the whole year.
    Date { lo: i64, hi: i64 },
    /// A reference split into type and id where it has that shape; `url` is the raw
    /// `reference` string.
    Reference {
        target_type: Option<String>,
        target_id: String,
        url: String,
    },
}

/// One index row: a parameter name and one value. A resource yields many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub param: String,
    pub value: IndexValue,
}

/// What a token search constrains the system to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSystem {
    /// `code`: any system.
    Any,
    /// `|code`: no system.
    None,
    /// `system|code` or `system|`.
    Is(String),
}

/// Comparison prefixes for ordered values (date now; number and quantity later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePrefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// One condition on one index value. Semantics for `Date`, with the indexed range
/// `[rlo, rhi)` and the search range `[lo, hi)`:
/// eq: `rlo >= lo && rhi <= hi`; ne: not eq; gt: `rhi > hi`; lt: `rlo < lo`;
/// ge: `rhi > hi || eq`; le: `rlo < lo || eq`; sa: `rlo >= hi`; eb: `rhi <= lo`;
/// ap: the ranges overlap once the search range is widened by 10% of its distance from now
/// (at least one day) on each side, given here already widened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicate {
    /// Normalised value starts with this normalised text.
    StringStartsWith(String),
    /// Exact, case-sensitive match on the original text (`:exact`).
    StringExact(String),
    /// `code` None means `system|` (any code in that system).
    Token {
        system: TokenSystem,
        code: Option<String>,
    },
    Date {
        prefix: DatePrefix,
        lo: i64,
        hi: i64,
    },
    /// `target_type` None matches any type with that id.
    Reference {
        target_type: Option<String>,
        target_id: String,
    },
}

/// One search parameter in a query: matches when any predicate matches (comma = OR).
/// Several filters in a query must all match (repeated parameter = AND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub param: String,
    pub any_of: Vec<Predicate>,
}

/// Result order. Only the default (by resource id, then type) for now; the cursor is the
/// last `(resource type, id)` of the previous page so paging is stable under concurrent writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Id,
}

/// A parsed search request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// None for a system-level search (all types, or those in `types`).
    pub resource_type: Option<String>,
    /// For system-level search: `_type` restriction (empty = all types).
    pub types: Vec<String>,
    pub filters: Vec<Filter>,
    pub sort: SortKey,
    /// Page size, already capped to `MAX_PAGE_SIZE`.
    pub count: usize,
    /// Opaque continuation from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// The parameters that were applied, as `(name, value)` in request order, for the
    /// Bundle's self link. Excludes `_cursor`.
    pub applied: Vec<(String, String)>,
    /// Parameters that were not understood and were ignored (lenient handling).
    pub ignored: Vec<String>,
}

impl SearchQuery {
    /// A query matching every resource of `resource_type` (None: every type).
    pub fn all(resource_type: Option<&str>) -> Self {
        SearchQuery {
            resource_type: resource_type.map(str::to_string),
            types: Vec::new(),
            filters: Vec::new(),
            sort: SortKey::Id,
            count: DEFAULT_PAGE_SIZE,
            cursor: None,
            applied: Vec::new(),
            ignored: Vec::new(),
        }
    }
}

/// Every supported search parameter (common ones under `Resource`).
pub fn search_parameters() -> &'static [SearchParamDef] {
    registry::SEARCH_PARAMETERS
}

/// Extracts the index entries of `resource` (FHIR JSON whose `id` and `meta.lastUpdated` are
/// already set): `_id` (token), `_lastUpdated` (date) and every parameter the registry has for
/// its type.
pub fn extract_index(resource_type: &str, resource: &Value) -> Vec<IndexEntry> {
    extract::extract_index(resource_type, resource)
}

/// Parses search parameters (already percent-decoded, in request order) for
/// `resource_type` (None = system level). `strict` is `Prefer: handling=strict`: unknown
/// parameters are then an error instead of ignored. Result parameters handled here: `_count`,
/// `_cursor` (continuation), `_type` (system level). `_format` and `_pretty` are skipped
/// silently (they are not search parameters). A malformed value is always an error.
pub fn parse_search(
    resource_type: Option<&str>,
    params: &[(String, String)],
    strict: bool,
) -> Result<SearchQuery, ModelError> {
    let now = time::OffsetDateTime::now_utc();
    let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    query::parse_search(resource_type, params, strict, now_ms)
}
