//! FHIR R4 model: format conversion, validation, the search-parameter registry and the
//! extraction of search values. Pure: no I/O, no async, no database.

mod error;
mod format;
mod resource_types;
mod search;
mod validate;

pub use error::{Issue, IssueSeverity, ModelError};
pub use format::{parse_resource, serialize_resource, Format};
pub use resource_types::{is_resource_type, resource_types};
pub use search::{
    extract_index, parse_search, search_parameters, DatePrefix, Filter, IndexEntry, IndexValue,
    ParamType, Predicate, SearchParamDef, SearchQuery, SortKey, TokenSystem, DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
};
pub use validate::validate;
