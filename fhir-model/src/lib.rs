//! FHIR R4 model: format conversion, validation, the search-parameter registry and the
//! extraction of search values. Pure: no I/O, no async, no database.

mod error;
mod format;
mod resource_types;
mod search;
mod subset;
mod validate;

pub use error::{Issue, IssueSeverity, ModelError};
pub use format::{format_instant, parse_resource, serialize_resource, Format};
pub use resource_types::{is_resource_type, is_valid_id, resource_types};
pub use search::{
    extract_index, find_search_parameter, parameters_of, parse_search, search_parameters, unsupported_reason,
    ComponentDef, Filter, Include, IndexEntry, IndexValue, ParamType, Predicate, Prefix,
    SearchParamDef, SearchQuery, SortKey, Summary, TokenSystem, TotalMode, UriMatch,
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};
pub use subset::subset_resource;
pub use validate::validate;
