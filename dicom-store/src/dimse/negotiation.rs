//! Association negotiation: which calling/called AE titles, abstract syntaxes (Verification,
//! Study Root C-FIND, and every storage SOP class the standard dictionary names) and transfer
//! syntaxes this SCP accepts.

use dicom_core::dictionary::UidDictionary;
use dicom_dictionary_std::sop_class::StandardSopClassDictionary;
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{
    AssociationAC, AssociationRJ, AssociationRJResult, AssociationRJServiceUserReason, AssociationRJSource,
    AssociationRQ, PresentationContextResult, PresentationContextResultReason, UserVariableItem,
};

use super::DimseConfig;

pub(crate) const VERIFICATION: &str = "1.2.840.10008.1.1";
pub(crate) const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Our implementation class UID (a UUID-derived OID under 2.25) and version name.
pub(crate) const IMPLEMENTATION_CLASS_UID: &str = "2.25.181163468402313465434931627870474561113";
pub(crate) const IMPLEMENTATION_VERSION_NAME: &str = "TESSERA_01";

/// What a negotiated presentation context is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Verification,
    StudyRootFind,
    Storage,
}

/// An accepted presentation context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AcceptedContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
    pub service: Service,
}

/// The outcome of an A-ASSOCIATE-RQ.
pub(crate) enum Negotiated {
    Accept { ac: AssociationAC, contexts: Vec<AcceptedContext>, peer_max_pdu: u32 },
    Reject { rj: AssociationRJ, why: String },
}

/// The service a SOP class belongs to, if we provide it.
pub(crate) fn service_of(abstract_syntax: &str) -> Option<Service> {
    match abstract_syntax {
        VERIFICATION => Some(Service::Verification),
        STUDY_ROOT_FIND => Some(Service::StudyRootFind),
        uid => is_storage_sop_class(uid).then_some(Service::Storage),
    }
}

/// A storage SOP class of the standard dictionary: its name says "Storage", and it is not one
/// of the non-storage classes whose names contain the word.
pub(crate) fn is_storage_sop_class(uid: &str) -> bool {
    let Some(entry) = StandardSopClassDictionary.by_uid(uid) else {
        return false;
    };
    let name = entry.name;
    name.contains("Storage") && !name.contains("Storage Commitment") && !name.contains("Media Storage Directory")
}

/// The transfer syntax to use for a context: for storage, the first proposed one the registry
/// knows (stored as received, whatever its encoding); for commands with identifiers, explicit
/// then implicit VR little endian, which we decode ourselves.
fn choose_transfer_syntax(service: Service, proposed: &[String]) -> Option<String> {
    let proposed: Vec<&str> = proposed.iter().map(|ts| ts.trim_end_matches(['\0', ' '])).collect();
    match service {
        Service::Storage => proposed
            .iter()
            .find(|ts| TransferSyntaxRegistry.get(ts).is_some_and(|t| !t.is_unsupported()))
            .map(|ts| ts.to_string()),
        Service::Verification | Service::StudyRootFind => [EXPLICIT_VR_LE, IMPLICIT_VR_LE]
            .into_iter()
            .find(|ts| proposed.contains(ts))
            .map(str::to_string),
    }
}

fn reject(reason: AssociationRJServiceUserReason, why: String) -> Negotiated {
    Negotiated::Reject {
        rj: AssociationRJ { result: AssociationRJResult::Permanent, source: AssociationRJSource::ServiceUser(reason) },
        why,
    }
}

/// Decides an A-ASSOCIATE-RQ.
pub(crate) fn negotiate(rq: &AssociationRQ, config: &DimseConfig) -> Negotiated {
    let called = rq.called_ae_title.trim();
    let calling = rq.calling_ae_title.trim();
    if rq.application_context_name.trim_end_matches('\0') != APPLICATION_CONTEXT {
        let why = format!("application context {} is not DICOM's", rq.application_context_name);
        return reject(AssociationRJServiceUserReason::ApplicationContextNameNotSupported, why);
    }
    if !called.eq_ignore_ascii_case(config.ae_title.trim()) {
        let why = format!("called AE title {called:?} is not ours ({:?})", config.ae_title);
        return reject(AssociationRJServiceUserReason::CalledAETitleNotRecognized, why);
    }
    let calling_allowed = config.accepted_calling_ae_titles.is_empty()
        || config.accepted_calling_ae_titles.iter().any(|t| t.trim().eq_ignore_ascii_case(calling));
    if !calling_allowed {
        let why = format!("calling AE title {calling:?} is not in the accepted list");
        return reject(AssociationRJServiceUserReason::CallingAETitleNotRecognized, why);
    }

    let mut results = Vec::with_capacity(rq.presentation_contexts.len());
    let mut contexts = Vec::new();
    for pc in &rq.presentation_contexts {
        let abstract_syntax = pc.abstract_syntax.trim_end_matches(['\0', ' ']).to_string();
        let (reason, transfer_syntax) = match service_of(&abstract_syntax) {
            None => (PresentationContextResultReason::AbstractSyntaxNotSupported, pc.transfer_syntaxes.first().cloned()),
            Some(service) => match choose_transfer_syntax(service, &pc.transfer_syntaxes) {
                None => (PresentationContextResultReason::TransferSyntaxesNotSupported, pc.transfer_syntaxes.first().cloned()),
                Some(ts) => {
                    contexts.push(AcceptedContext {
                        id: pc.id,
                        abstract_syntax: abstract_syntax.clone(),
                        transfer_syntax: ts.clone(),
                        service,
                    });
                    (PresentationContextResultReason::Acceptance, Some(ts))
                }
            },
        };
        results.push(PresentationContextResult {
            id: pc.id,
            reason,
            transfer_syntax: transfer_syntax.unwrap_or_else(|| IMPLICIT_VR_LE.to_string()),
        });
    }
    let peer_max_pdu = rq
        .user_variables
        .iter()
        .find_map(|v| match v {
            UserVariableItem::MaxLength(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(0);
    let ac = AssociationAC {
        protocol_version: 1,
        calling_ae_title: rq.calling_ae_title.clone(),
        called_ae_title: rq.called_ae_title.clone(),
        application_context_name: APPLICATION_CONTEXT.to_string(),
        presentation_contexts: results,
        user_variables: vec![
            UserVariableItem::MaxLength(config.max_pdu_length),
            UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
            UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.to_string()),
        ],
    };
    Negotiated::Accept { ac, contexts, peer_max_pdu }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_classes_come_from_the_dictionary_not_a_list() {
        assert!(is_storage_sop_class("1.2.840.10008.5.1.4.1.1.2")); // CT Image Storage
        assert!(is_storage_sop_class("1.2.840.10008.5.1.4.1.1.88.22")); // Enhanced SR Storage
        assert!(is_storage_sop_class("1.2.840.10008.5.1.4.1.1.481.5")); // RT Plan Storage
        assert!(!is_storage_sop_class("1.2.840.10008.1.20.1")); // Storage Commitment Push Model
        assert!(!is_storage_sop_class("1.2.840.10008.1.3.10")); // Media Storage Directory
        assert!(!is_storage_sop_class(STUDY_ROOT_FIND));
        assert!(!is_storage_sop_class("1.2.3.4"));
    }

    #[test]
    fn encapsulated_syntaxes_are_accepted_for_storage_only() {
        let jpeg = vec!["1.2.840.10008.1.2.4.50".to_string()];
        assert_eq!(choose_transfer_syntax(Service::Storage, &jpeg).as_deref(), Some("1.2.840.10008.1.2.4.50"));
        assert_eq!(choose_transfer_syntax(Service::StudyRootFind, &jpeg), None);
        let deflated = vec!["1.2.840.10008.1.2.1.99".to_string()];
        assert_eq!(choose_transfer_syntax(Service::Storage, &deflated).as_deref(), Some("1.2.840.10008.1.2.1.99"));
        assert_eq!(choose_transfer_syntax(Service::Storage, &["1.2.3".to_string()]), None);
    }
}
