//! The bucket lifecycle Tessera applies at start-up: storage tiers for `dicom/`, expiry for
//! `temp/`, merged into whatever other rules the bucket already has.

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    Transition, TransitionStorageClass,
};

use super::LifecycleTiers;

/// The id of the rule that moves archived instances to cheaper tiers as they age.
pub(super) const DICOM_RULE_ID: &str = "tessera-dicom-tiers";
/// The id of the rule that expires temporary objects.
pub(super) const TEMP_RULE_ID: &str = "tessera-temp-expiry";
pub(super) const DICOM_PREFIX: &str = "dicom/";
pub(super) const TEMP_PREFIX: &str = "temp/";
/// An upload interrupted between its parts (a dropped association, a crash) leaves parts the
/// bucket bills for; both rules have S3 remove them after a day.
const ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS: i32 = 1;

impl LifecycleTiers {
    /// Checks the days against what S3 accepts: an object must stay 30 days in STANDARD before
    /// STANDARD_IA and 30 days in STANDARD_IA before GLACIER; DEEP_ARCHIVE comes after GLACIER;
    /// temporary objects live at least a day.
    pub fn validate(&self) -> Result<(), String> {
        let LifecycleTiers {
            apply: _,
            standard_ia_after_days: ia,
            glacier_after_days: glacier,
            deep_archive_after_days: deep,
            temp_expire_after_days: temp,
        } = *self;
        if ia < 30 {
            return Err(format!("standard_ia_after_days is {ia}; S3 requires at least 30"));
        }
        if glacier < ia.saturating_add(30) {
            return Err(format!(
                "glacier_after_days is {glacier}; S3 requires at least 30 days after standard_ia_after_days ({ia})"
            ));
        }
        if deep <= glacier {
            return Err(format!(
                "deep_archive_after_days is {deep}; it must be later than glacier_after_days ({glacier})"
            ));
        }
        if temp < 1 {
            return Err("temp_expire_after_days is 0; it must be at least 1".to_string());
        }
        for (name, days) in [("deep_archive_after_days", deep), ("temp_expire_after_days", temp)] {
            if i32::try_from(days).is_err() {
                return Err(format!("{name} is {days}, more than S3 accepts"));
            }
        }
        Ok(())
    }
}

/// Tessera's two rules for `tiers` (which `validate` accepted).
pub(super) fn our_rules(tiers: &LifecycleTiers) -> Vec<LifecycleRule> {
    let days = |d: u32| i32::try_from(d).unwrap_or(i32::MAX);
    let transition =
        |d: u32, class: TransitionStorageClass| Transition::builder().days(days(d)).storage_class(class).build();
    let abort =
        AbortIncompleteMultipartUpload::builder().days_after_initiation(ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS).build();
    let dicom = LifecycleRule::builder()
        .id(DICOM_RULE_ID)
        .filter(LifecycleRuleFilter::builder().prefix(DICOM_PREFIX).build())
        .status(ExpirationStatus::Enabled)
        .transitions(transition(tiers.standard_ia_after_days, TransitionStorageClass::StandardIa))
        .transitions(transition(tiers.glacier_after_days, TransitionStorageClass::Glacier))
        .transitions(transition(tiers.deep_archive_after_days, TransitionStorageClass::DeepArchive))
        .abort_incomplete_multipart_upload(abort.clone())
        .build()
        .expect("status is set");
    let temp = LifecycleRule::builder()
        .id(TEMP_RULE_ID)
        .filter(LifecycleRuleFilter::builder().prefix(TEMP_PREFIX).build())
        .status(ExpirationStatus::Enabled)
        .expiration(LifecycleExpiration::builder().days(days(tiers.temp_expire_after_days)).build())
        .abort_incomplete_multipart_upload(abort)
        .build()
        .expect("status is set");
    vec![dicom, temp]
}

/// The rules to put on a bucket that has `existing`, or None when it already has exactly ours:
/// every rule that is not ours is kept as it is, in its order, and ours follow.
pub(super) fn merged(existing: &[LifecycleRule], tiers: &LifecycleTiers) -> Option<Vec<LifecycleRule>> {
    let ours = our_rules(tiers);
    let is_ours = |rule: &LifecycleRule| matches!(rule.id(), Some(DICOM_RULE_ID) | Some(TEMP_RULE_ID));
    let up_to_date = ours.iter().all(|wanted| {
        let mut same_id = existing.iter().filter(|rule| rule.id() == wanted.id());
        matches!((same_id.next(), same_id.next()), (Some(rule), None) if RuleShape::of(rule) == RuleShape::of(wanted))
    });
    if up_to_date {
        return None;
    }
    let mut rules: Vec<LifecycleRule> = existing.iter().filter(|rule| !is_ours(rule)).cloned().collect();
    rules.extend(ours);
    Some(rules)
}

/// What a rule does, independent of how a server spells it back (the legacy top-level prefix
/// or a filter, transitions in any order, absent lists as empty ones).
#[derive(Debug, PartialEq, Eq)]
struct RuleShape {
    prefix: Option<String>,
    /// Tag, size or `and` filters: none of ours has one.
    other_filter: bool,
    enabled: bool,
    transitions: Vec<(Option<i32>, bool, Option<String>)>,
    expiration: Option<(Option<i32>, bool, Option<bool>)>,
    abort_incomplete_after: Option<i32>,
    noncurrent_versions: bool,
}

impl RuleShape {
    #[allow(deprecated)]
    fn of(rule: &LifecycleRule) -> RuleShape {
        let filter = rule.filter();
        let mut transitions: Vec<_> = rule
            .transitions()
            .iter()
            .map(|t| (t.days(), t.date().is_some(), t.storage_class().map(|c| c.as_str().to_string())))
            .collect();
        transitions.sort();
        RuleShape {
            prefix: filter.and_then(|f| f.prefix()).or(rule.prefix()).map(str::to_string),
            other_filter: filter.is_some_and(|f| {
                f.tag().is_some()
                    || f.and().is_some()
                    || f.object_size_greater_than().is_some()
                    || f.object_size_less_than().is_some()
            }),
            enabled: *rule.status() == ExpirationStatus::Enabled,
            transitions,
            expiration: rule
                .expiration()
                .map(|e| (e.days(), e.date().is_some(), e.expired_object_delete_marker().filter(|m| *m))),
            abort_incomplete_after: rule.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()),
            noncurrent_versions: !rule.noncurrent_version_transitions().is_empty()
                || rule.noncurrent_version_expiration().is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foreign_rule() -> LifecycleRule {
        LifecycleRule::builder()
            .id("logs-expiry")
            .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
            .status(ExpirationStatus::Enabled)
            .expiration(LifecycleExpiration::builder().days(3).build())
            .build()
            .unwrap()
    }

    /// `rule` with other transitions and status, as a server could spell it back.
    fn respelled(rule: &LifecycleRule, transitions: Vec<Transition>, status: ExpirationStatus) -> LifecycleRule {
        LifecycleRule::builder()
            .set_id(rule.id().map(str::to_string))
            .set_filter(rule.filter().cloned())
            .status(status)
            .set_transitions(Some(transitions))
            .set_expiration(rule.expiration().cloned())
            .set_abort_incomplete_multipart_upload(rule.abort_incomplete_multipart_upload().cloned())
            .build()
            .unwrap()
    }

    #[test]
    fn default_tiers_are_valid_and_make_two_rules() {
        let tiers = LifecycleTiers::default();
        tiers.validate().unwrap();
        let rules = our_rules(&tiers);
        let dicom = RuleShape::of(&rules[0]);
        assert_eq!(dicom.prefix.as_deref(), Some("dicom/"));
        assert_eq!(
            dicom.transitions,
            vec![
                (Some(30), false, Some("STANDARD_IA".to_string())),
                (Some(90), false, Some("GLACIER".to_string())),
                (Some(365), false, Some("DEEP_ARCHIVE".to_string())),
            ]
        );
        let temp = RuleShape::of(&rules[1]);
        assert_eq!(temp.prefix.as_deref(), Some("temp/"));
        assert_eq!(temp.expiration, Some((Some(7), false, None)));
    }

    #[test]
    fn validation_names_the_offending_tier() {
        let base = LifecycleTiers::default();
        let too_early = LifecycleTiers { standard_ia_after_days: 10, ..base.clone() };
        assert!(too_early.validate().unwrap_err().contains("standard_ia_after_days is 10"));
        let glacier_too_soon = LifecycleTiers { glacier_after_days: 45, ..base.clone() };
        assert!(glacier_too_soon.validate().unwrap_err().contains("glacier_after_days is 45"));
        let deep_before_glacier = LifecycleTiers { deep_archive_after_days: 90, ..base.clone() };
        assert!(deep_before_glacier.validate().unwrap_err().contains("deep_archive_after_days is 90"));
        let no_temp = LifecycleTiers { temp_expire_after_days: 0, ..base };
        assert!(no_temp.validate().is_err());
    }

    #[test]
    fn a_bucket_without_rules_gets_ours() {
        let tiers = LifecycleTiers::default();
        assert_eq!(merged(&[], &tiers), Some(our_rules(&tiers)));
    }

    #[test]
    fn a_bucket_with_our_rules_is_left_alone_however_they_are_spelled() {
        let tiers = LifecycleTiers::default();
        let mut existing = vec![foreign_rule()];
        // A server may answer with the transitions reordered: still the same rule.
        for rule in our_rules(&tiers) {
            let mut transitions = rule.transitions().to_vec();
            transitions.reverse();
            existing.push(respelled(&rule, transitions, ExpirationStatus::Enabled));
        }
        assert_eq!(merged(&existing, &tiers), None);
    }

    #[test]
    fn changed_tiers_replace_our_rules_and_keep_foreign_ones() {
        let old = LifecycleTiers::default();
        let mut existing = vec![foreign_rule()];
        existing.extend(our_rules(&old));
        let new = LifecycleTiers { glacier_after_days: 180, ..old };
        let rules = merged(&existing, &new).expect("the tiers changed");
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0], foreign_rule());
        assert_eq!(&rules[1..], our_rules(&new).as_slice());
    }

    #[test]
    fn duplicated_or_disabled_rules_of_ours_are_rewritten() {
        let tiers = LifecycleTiers::default();
        let mut doubled = our_rules(&tiers);
        doubled.push(our_rules(&tiers)[0].clone());
        assert_eq!(merged(&doubled, &tiers), Some(our_rules(&tiers)));
        let mut disabled = our_rules(&tiers);
        disabled[1] = respelled(&disabled[1], Vec::new(), ExpirationStatus::Disabled);
        assert_eq!(merged(&disabled, &tiers), Some(our_rules(&tiers)));
    }
}
