//! Black-box FHIR R4 conformance cases over HTTP, their registry and a runner, usable against
//! any server's base URL.
//!
//! Every case is an async function taking a [`Ctx`] and returning a [`CaseResult`]. A case
//! creates its own data with identifiers unique to the run, so the suite also works against a
//! shared server that already holds other data. The list below is the single source of truth
//! for which cases exist: the registry and the per-case tests of `tests/server.rs` are both
//! generated from it.

/// Calls the macro named `$callback` with every case, grouped by module:
/// `module { case, case, ... } module { ... }`. The registry is built from it, and so is one
/// test function per case in `tests/server.rs`.
#[macro_export]
macro_rules! for_each_case {
    ($callback:ident) => {
        $callback! {
            crud {
                create_returns_201_with_location_and_etag,
                create_prefer_return_minimal_has_empty_body,
                create_prefer_return_operation_outcome,
                read_returns_current_version_with_etag,
                vread_returns_the_version_asked_for,
                read_unknown_id_is_404,
                read_unknown_type_is_404,
                update_increments_version,
                update_as_create_is_201,
                update_with_mismatched_id_is_400,
                update_with_stale_if_match_is_412,
                update_with_current_if_match_is_200,
                delete_then_read_is_410,
                delete_keeps_history,
                delete_with_unacceptable_format_deletes_nothing,
            }
            history {
                instance_history_is_newest_first,
                instance_history_pages_without_gaps,
                type_history_pages_without_gaps,
                system_history_pages_without_gaps,
            }
            conditional {
                create_with_no_match_is_201,
                create_with_one_match_returns_existing,
                create_with_two_matches_is_412,
                update_with_no_match_creates,
                update_with_one_match_updates,
                update_with_two_matches_is_412,
                delete_removes_the_match,
            }
            formats {
                xml_create_reads_back_as_json,
                accept_xml_returns_xml,
                format_param_xml_returns_xml,
                format_param_json_overrides_accept,
                plain_json_and_xml_media_types_are_accepted,
                pretty_json_is_indented,
                unsupported_content_type_is_415,
                malformed_json_is_400,
                malformed_xml_is_400,
                unproducible_accept_is_406,
            }
            validation {
                heart_rate_out_of_range_is_422,
                blood_pressure_systolic_not_above_diastolic_is_422,
                future_effective_time_is_422,
                unknown_element_is_400,
                valid_observation_is_201,
            }
            errors {
                unsupported_method_is_405,
                body_over_limit_is_413,
                version_conflict_is_409_or_412,
                error_bodies_are_operation_outcomes,
            }
            search {
                searchset_has_self_link_and_match_mode,
                patient_by_id,
                patient_by_identifier,
                patient_by_name_prefix_ignoring_case_and_accents,
                patient_by_family_and_given,
                patient_by_birthdate_prefixes,
                patient_by_partial_birthdate,
                patient_by_gender,
                observation_by_subject,
                observation_by_patient,
                observation_by_code,
                observation_by_category,
                observation_by_date_prefixes,
                observation_by_status,
                by_last_updated,
                and_or_combinations,
                paging_returns_every_match_once,
                malformed_date_is_400,
                unknown_parameter_strict_is_400,
                unknown_parameter_lenient_is_ignored,
            }
            bundles {
                corpus_transaction_succeeds,
                transaction_rewrites_urn_uuid_references,
                transaction_with_invalid_entry_persists_nothing,
                transaction_with_if_match_conflict_persists_nothing,
                transaction_resolves_conditional_reference,
                batch_reports_each_entry,
            }
            corpus {
                patient_examples_round_trip,
                observation_examples_round_trip,
            }
            capability {
                metadata_is_a_capability_statement,
                healthz_is_200,
                readyz_is_200,
            }
            concurrency {
                concurrent_if_match_updates_lose_nothing,
            }
            search_examples {
                strings,
                tokens,
                dates,
                numbers_quantities,
                references,
                uris,
                composites,
                common,
                chains,
                has,
                or_and,
                includes,
                sort_paging,
                result_control,
                post_and_system,
                errors,
                capability,
            }
        }
    };
}

#[macro_use]
mod failure;
mod ctx;
mod fhir;
mod registry;
mod runner;

mod bundles;
mod capability;
mod concurrency;
mod conditional;
mod corpus;
mod crud;
mod errors;
mod formats;
mod history;
mod search;
mod search_examples;
mod validation;

pub use ctx::{Ctx, Reply};
pub use failure::{CaseFailure, CaseResult};
pub use registry::{cases, Case};
pub use runner::{run, run_case, Outcome, Summary};
