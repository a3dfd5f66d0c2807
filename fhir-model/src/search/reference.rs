//! Splitting FHIR reference strings into target type and id, the same way for indexing and for
//! search values, so that what is stored and what is asked for always compare.

/// Splits a reference string.
///
/// - `Patient/123`, `Patient/123/_history/2` → `(Some("Patient"), "123")`
/// - `http://host/fhir/Patient/123` (also with `/_history/2`) → `(Some("Patient"), "123")`
/// - `#contained` or empty → None: it points inside the resource and indexes nothing
/// - anything else (`urn:uuid:…`, a bare id, an unrecognised URL) → `(None, whole string)`
pub(crate) fn split_reference(reference: &str) -> Option<(Option<String>, String)> {
    if reference.is_empty() || reference.starts_with('#') {
        return None;
    }
    let mut segments: Vec<&str> = reference.split('/').collect();
    if segments.len() >= 4 && segments[segments.len() - 2] == "_history" {
        segments.truncate(segments.len() - 2);
    }
    let absolute = reference.contains("://");
    // A relative reference is exactly `Type/id`. An absolute one ends in `Type/id` after
    // `scheme:`, the empty segment between the two slashes and the host: five segments at least.
    let shaped = if absolute {
        segments.len() >= 5
    } else {
        segments.len() == 2
    };
    if shaped {
        let (ty, id) = (segments[segments.len() - 2], segments[segments.len() - 1]);
        if is_type_name(ty) && is_id(id) {
            return Some((Some(ty.to_string()), id.to_string()));
        }
    }
    Some((None, reference.to_string()))
}

/// The shape of a resource type name. Checking the name against the R4 list is the
/// validator's job; here the shape is enough to tell `Patient/1` from `a/b`.
pub(crate) fn is_type_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase()) && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The R4 `id` datatype: 1 to 64 of `A-Z a-z 0-9 - .`.
pub(crate) fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(ty: &str, id: &str) -> Option<(Option<String>, String)> {
        Some((Some(ty.to_string()), id.to_string()))
    }

    #[test]
    fn relative_and_absolute_references_split_alike() {
        assert_eq!(split_reference("Patient/123"), typed("Patient", "123"));
        assert_eq!(
            split_reference("Patient/123/_history/2"),
            typed("Patient", "123")
        );
        assert_eq!(
            split_reference("http://host/fhir/Patient/123"),
            typed("Patient", "123")
        );
        assert_eq!(
            split_reference("https://host/Patient/a.b-c/_history/7"),
            typed("Patient", "a.b-c")
        );
    }

    #[test]
    fn other_forms_keep_the_whole_string_or_are_skipped() {
        let whole = |s: &str| Some((None, s.to_string()));
        assert_eq!(
            split_reference("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"),
            whole("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a")
        );
        assert_eq!(split_reference("123"), whole("123"));
        assert_eq!(split_reference("patient/123"), whole("patient/123"));
        assert_eq!(split_reference("a/Patient/123"), whole("a/Patient/123"));
        assert_eq!(
            split_reference("http://host/Patient/12_3"),
            whole("http://host/Patient/12_3")
        );
        assert_eq!(split_reference("#p1"), None);
        assert_eq!(split_reference(""), None);
    }
}
