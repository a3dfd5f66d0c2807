//! The search-parameter registry, extraction of index values from resources at write time,
//! and parsing of search requests into typed queries that any store can execute.

use serde_json::Value;

use crate::ModelError;

// The registry is data; the rest are the three jobs done with it. Each file owns one concern so
// that extending the registry to every R4 parameter touches `registry.rs` only.
mod date;
mod extract;
mod fhirpath;
mod number;
mod quantity;
mod query;
mod reference;
mod registry;
mod text;
mod ucum;

/// Page size when the client gives no `_count`.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Largest page a client can ask for; larger `_count` values are capped to this.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The R4 search parameter types (`SearchParameter.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    /// `special` (`near`, `_filter`...): listed, never advertised as working.
    Special,
}

impl ParamType {
    /// The R4 code (`SearchParameter.type`, CapabilityStatement `searchParam.type`).
    pub fn code(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }
}

/// One component of a composite parameter: the component's own parameter type and its
/// expression, relative to each item the composite's expression selects.
#[derive(Debug, Clone)]
pub struct ComponentDef {
    /// The code of the SearchParameter the component's `definition` points to (`code`).
    pub name: &'static str,
    pub kind: ParamType,
    pub expression: &'static str,
}

/// One search parameter of one resource type (a definition with several `base` types is one
/// row per base type).
#[derive(Debug, Clone)]
pub struct SearchParamDef {
    /// Resource type it applies to, or `Resource` / `DomainResource` for the common parameters.
    pub resource_type: &'static str,
    pub name: &'static str,
    pub kind: ParamType,
    /// The FHIRPath expression from the R4 definition, verbatim (shared by every base).
    pub expression: &'static str,
    /// Reference parameters: the resource types a target may have.
    pub targets: &'static [&'static str],
    /// Composite parameters: the components, in definition order.
    pub components: &'static [ComponentDef],
    /// The canonical URL of the SearchParameter definition.
    pub url: &'static str,
    pub documentation: &'static str,
}

/// A value extracted from a resource for one search parameter.
///
/// Ordered values (`Date`, `Number`, `Quantity`) are stored as the range `[lo, hi)` the value
/// stands for at its precision: `2013` is the whole year, `100` is `[99.5, 100.5)`, `1.50` is
/// `[1.495, 1.505)`. Every prefix is then the same interval test for all three kinds (see
/// `Prefix`).
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// `normalized` is lowercased with accents removed (for the default prefix match and
    /// `:contains`); `exact` is the original text (for `:exact`).
    String { normalized: String, exact: String },
    /// `system` is None when the coding/identifier has no system.
    Token {
        system: Option<String>,
        code: String,
    },
    /// The text a token search with `:text` matches: `CodeableConcept.text`, `Coding.display`,
    /// `Identifier.type.text`; normalised like `String`.
    TokenText { normalized: String },
    /// An Identifier's `type` coding with its value, for `identifier:of-type=system|code|value`.
    IdentifierOfType {
        type_system: Option<String>,
        type_code: String,
        value: String,
    },
    /// Epoch milliseconds UTC, `lo` inclusive, `hi` exclusive.
    Date { lo: i64, hi: i64 },
    Number { lo: f64, hi: f64 },
    /// A Quantity as written (`system`/`code`/`unit` as in the resource). When the unit is a
    /// UCUM unit that converts to a canonical base unit, a second `Quantity` entry is extracted
    /// with `system` = `http://unitsofmeasure.org`, `code` = the canonical unit (`g`, `m`,
    /// `Pa`...) and the range converted; searches with a convertible unit compare those.
    Quantity {
        system: Option<String>,
        code: Option<String>,
        unit: Option<String>,
        lo: f64,
        hi: f64,
        /// True for the entry converted to the canonical unit. A search without a unit
        /// compares only the quantities as written (`16.2 kg/m2` is not `ge100` because it
        /// is 16,200 g/m2).
        canonical: bool,
    },
    /// A reference split into type and id where it has that shape; `url` is the raw
    /// `reference` string.
    Reference {
        target_type: Option<String>,
        target_id: String,
        url: String,
    },
    /// `Reference.identifier`, for `:identifier`.
    ReferenceIdentifier {
        system: Option<String>,
        value: String,
    },
    /// A `uri`/`url`/`canonical`/`oid`/`uuid` value, as written.
    Uri(String),
    /// One tuple of a composite parameter: one value per component, in definition order. The
    /// tuples are built per item the composite's expression selects (so the code and value of
    /// one Observation component stay together).
    Composite(Vec<IndexValue>),
}

/// One index row: a parameter name and one value. A resource yields many.
#[derive(Debug, Clone, PartialEq)]
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

/// Comparison prefixes for ordered values (date, number, quantity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
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

/// How a `uri` search compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMatch {
    /// Exact string match (the default).
    Exact,
    /// `:below`: the indexed uri starts with the search value (the search value is a prefix).
    Below,
    /// `:above`: the search value starts with the indexed uri (the indexed uri is a prefix of
    /// it), e.g. a canonical `http://x/ValueSet/a|1.0` is above `http://x/ValueSet/a`.
    Above,
}

/// One condition on one index value.
///
/// Ordered predicates (`Date`, `Number`, `Quantity`) compare the indexed range `[rlo, rhi)`
/// with the search range `[lo, hi)` (the search value's own precision range), the same way
/// for all three kinds:
/// eq: `rlo >= lo && rhi <= hi`; ne: not eq (`rlo < lo || rhi > hi`); gt: `rhi > hi`;
/// lt: `rlo < lo`; ge: `rhi > hi || eq`; le: `rlo < lo || eq`; sa: `rlo >= hi`;
/// eb: `rhi <= lo`; ap: the ranges overlap (`rlo < hi && rhi > lo`), with the search range
/// already widened by the parser (dates: 10% of the distance from now, at least a day;
/// numbers and quantities: 10% of the value).
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// `IndexValue::String`: normalised value starts with this normalised text.
    StringStartsWith(String),
    /// `:exact`: case- and accent-sensitive equality with the original text.
    StringExact(String),
    /// `:contains`: normalised value contains this normalised text anywhere.
    StringContains(String),
    /// `IndexValue::Token`. `code` None means `system|` (any code in that system).
    Token {
        system: TokenSystem,
        code: Option<String>,
    },
    /// `:text` on a token: an `IndexValue::TokenText` starts with this normalised text.
    TokenText(String),
    /// `:of-type` on an identifier: `IndexValue::IdentifierOfType` equal on all three.
    IdentifierOfType {
        type_system: String,
        type_code: String,
        value: String,
    },
    Date {
        prefix: Prefix,
        lo: i64,
        hi: i64,
    },
    Number {
        prefix: Prefix,
        lo: f64,
        hi: f64,
    },
    /// `system` and `code` already canonicalised when the unit converts (then
    /// `system = Some(UCUM)` and `code` is the canonical unit, and `[lo, hi)` converted).
    /// `system` None and `code` Some: matches `code` or `unit`. Both None: any unit.
    Quantity {
        prefix: Prefix,
        lo: f64,
        hi: f64,
        system: Option<String>,
        code: Option<String>,
    },
    /// `IndexValue::Reference`. `target_type` None matches any type with that id.
    Reference {
        target_type: Option<String>,
        target_id: String,
    },
    /// An absolute or otherwise unsplittable reference value: equality with the raw `url`.
    ReferenceUrl(String),
    /// `:identifier` on a reference: an `IndexValue::ReferenceIdentifier`.
    ReferenceIdentifier {
        system: TokenSystem,
        value: String,
    },
    Uri { value: String, mode: UriMatch },
    /// One predicate per component, in definition order; all must hold on the same tuple.
    Composite(Vec<Predicate>),
}

/// One condition of a query. Several filters must all hold (repeated parameter = AND).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Some value of `param` satisfies one of `any_of` (comma = OR). With `negate` (`:not`),
    /// the resource has no value of `param` satisfying any of them (so a resource without
    /// the element matches too).
    Match {
        param: String,
        any_of: Vec<Predicate>,
        negate: bool,
    },
    /// `:missing=true` (`missing`): the resource has no value for `param`; `false`: it has one.
    Missing { param: String, missing: bool },
    /// A chained parameter: the reference parameter `param` points to a resource of one of
    /// `target_types` that satisfies `inner` (whose params belong to that type).
    Chain {
        param: String,
        target_types: Vec<String>,
        inner: Box<Filter>,
    },
    /// `_has:Type:param:...`: some resource of `source_type` whose reference parameter
    /// `reference_param` points to this resource satisfies `inner`.
    Has {
        source_type: String,
        reference_param: String,
        inner: Box<Filter>,
    },
}

/// One `_sort` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// A parameter of the searched type (or `_id`, `_lastUpdated`).
    pub param: String,
    pub descending: bool,
}

/// An `_include` or `_revinclude`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// `_include`: the type whose references are followed; `_revinclude`: the type of the
    /// resources that point at the matches.
    pub source_type: String,
    /// The reference parameter of `source_type`; `*` = every reference parameter.
    pub param: String,
    /// Only targets (or, for `_revinclude`, only matches) of this type.
    pub target_type: Option<String>,
    /// `:iterate`: also applied to the resources included so far, until nothing new comes.
    pub iterate: bool,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TotalMode {
    None,
    Estimate,
    #[default]
    Accurate,
}

/// `_summary`. Applied by the server when rendering; `Count` also tells the store that no
/// page is needed, only the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

/// A parsed search request.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// None for a system-level search (all types, or those in `types`).
    pub resource_type: Option<String>,
    /// For system-level search: `_type` restriction (empty = all types).
    pub types: Vec<String>,
    pub filters: Vec<Filter>,
    /// `_sort` keys in order; empty = the default order (resource type, then id).
    pub sort: Vec<SortKey>,
    /// Page size, already capped to `MAX_PAGE_SIZE`.
    pub count: usize,
    /// Opaque continuation from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    pub total: TotalMode,
    pub summary: Option<Summary>,
    /// `_elements`: top-level element names to keep (empty = all).
    pub elements: Vec<String>,
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
            sort: Vec::new(),
            count: DEFAULT_PAGE_SIZE,
            cursor: None,
            includes: Vec::new(),
            revincludes: Vec::new(),
            total: TotalMode::Accurate,
            summary: None,
            elements: Vec::new(),
            applied: Vec::new(),
            ignored: Vec::new(),
        }
    }
}

/// Every R4 search parameter, one row per base type (common ones under `Resource`), supported
/// or not.
pub fn search_parameters() -> &'static [SearchParamDef] {
    registry::SEARCH_PARAMETERS
}

/// Every parameter that applies to `resource_type`: its own and the common ones, supported or
/// not.
pub fn parameters_of(resource_type: &str) -> impl Iterator<Item = &'static SearchParamDef> + '_ {
    registry::params_for(resource_type).map(|(_, def)| def)
}

/// The top-level elements of `resource_type` its base definition marks as summary (what
/// `_summary=true` keeps); empty for an unknown type.
pub(crate) fn summary_elements(resource_type: &str) -> &'static [&'static str] {
    registry::summary_elements(resource_type).unwrap_or(&[])
}

/// The top-level elements of `resource_type` with a minimum cardinality of one, which every
/// subset keeps so that it stays a valid resource.
pub(crate) fn mandatory_elements(resource_type: &str) -> &'static [&'static str] {
    registry::mandatory_elements(resource_type).unwrap_or(&[])
}

/// The parameter `name` of `resource_type` (its own or a common one), supported or not.
pub fn find_search_parameter(resource_type: &str, name: &str) -> Option<&'static SearchParamDef> {
    registry::find_param(Some(resource_type), name).map(|(_, def)| def)
}

/// Why a parameter does not work (its expression is outside the FHIRPath subset, it has no
/// expression, or its type is `special`), or None when it works. The CapabilityStatement
/// advertises exactly the parameters for which this is None.
pub fn unsupported_reason(def: &SearchParamDef) -> Option<String> {
    registry::unsupported_reason(def)
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
