//! The MongoDB document layout: collection names, how a resource's search index values are
//! laid out inside its `resources` document, and every index the backend creates.
//!
//! A `resources` document holds the current version of one resource and, for a live one, its
//! search values in one array per value kind (the counterpart of the embedded store's `idx_*`
//! tables). Every array element names its parameter in `p`, so one compound multikey index
//! per kind — `type` first, then `<kind>.p`, then the value fields — turns every predicate
//! into index bounds, and `$elemMatch` keeps the parameter and the value on the same element:
//!
//! | array  | `IndexValue`            | element fields                                             |
//! |--------|-------------------------|------------------------------------------------------------|
//! | `str`  | `String`                | `n` normalised, `e` exact                                  |
//! | `sfx`  | `String` (suffixes)     | `s`: each suffix of `n`, cut to `CONTAINS_WINDOW` chars    |
//! | `tok`  | `Token`                 | `s` system (`""` when none), `c` code                      |
//! | `ttx`  | `TokenText`             | `n` normalised                                             |
//! | `oft`  | `IdentifierOfType`      | `ts` type system, `tc` type code, `v` value                |
//! | `date` | `Date`                  | `lo`, `hi` epoch ms (Int64)                                |
//! | `num`  | `Number`                | `lo`, `hi` (Double)                                        |
//! | `qty`  | `Quantity`              | `s`, `c`, `u` (`""` when none), `lo`, `hi`, `cn` canonical |
//! | `ref`  | `Reference`             | `t` target type (`""` when none), `i` target id, `u` url   |
//! | `rid`  | `ReferenceIdentifier`   | `s` system, `v` value                                      |
//! | `uri`  | `Uri`                   | `v`                                                        |
//! | `cmp`  | `Composite`             | `c1`…`c3`: `{a, b, c, lo, hi}` per component, by kind      |
//!
//! Besides the arrays: `params` lists the parameters that have at least one value (what
//! `:missing` asks), and `refk` maps each reference parameter to the `Type/id` keys it points
//! at, the join key of chains, `_has` and includes (`$lookup` on `refk.<param>` ↔ `_id`).

use fhir_model::{IndexEntry, IndexValue};
use mongodb::bson::{doc, Bson, Document};

use crate::components::{component_slots, MAX_COMPONENTS};
use crate::paging::SNAPSHOT_TTL_SECS;

/// Current version of every resource, tombstones included; `_id` is `Type/id`.
pub(crate) const RESOURCES: &str = "resources";
/// Every version ever written; `_id` is its change-feed `seq`.
pub(crate) const VERSIONS: &str = "versions";
/// The change-feed counter (one document, `_id: "changes"`).
pub(crate) const COUNTERS: &str = "counters";
/// Consumers' change-feed positions; `_id` is the consumer name.
pub(crate) const CHECKPOINTS: &str = "checkpoints";
/// Ordered match lists of sorted searches, for their later pages; expire by TTL.
pub(crate) const SNAPSHOTS: &str = "search_snapshots";

/// `_id` of the counter document in `COUNTERS`.
pub(crate) const CHANGE_COUNTER: &str = "changes";

/// How many characters of each suffix `sfx` keeps. A `:contains` needle up to this long is one
/// anchored range on `sfx.s`; a longer one is every window of this length, overlapping by half.
pub(crate) const CONTAINS_WINDOW: usize = 64;

/// The `_id` of a resource's document in `RESOURCES`: `Type/id`. Ordering by it is ordering
/// by type, then id (`/` sorts below every character a type name or an id may hold, except
/// `-` and `.` which never end a type name), the default search order.
pub(crate) fn resource_key(resource_type: &str, id: &str) -> String {
    format!("{resource_type}/{id}")
}

/// The search fields of a live resource document: `params`, `refk` and the value arrays
/// (empty arrays omitted, so a document carries only what it has).
pub(crate) fn index_fields(entries: &[IndexEntry]) -> Document {
    let mut arrays: Vec<(&'static str, Vec<Bson>)> = Vec::new();
    let mut push = |array: &'static str, element: Document| match arrays.iter_mut().find(|(name, _)| *name == array) {
        Some((_, elements)) => {
            let element = Bson::Document(element);
            if !elements.contains(&element) {
                elements.push(element);
            }
        }
        None => arrays.push((array, vec![Bson::Document(element)])),
    };
    let mut params: Vec<String> = Vec::new();
    let mut refk = Document::new();
    for IndexEntry { param, value } in entries {
        let p = param.as_str();
        if !params.iter().any(|known| known == p) {
            params.push(param.clone());
        }
        match value {
            IndexValue::String { normalized, exact } => {
                push("str", doc! { "p": p, "n": normalized, "e": exact });
                for suffix in suffixes(normalized) {
                    push("sfx", doc! { "p": p, "s": suffix });
                }
            }
            IndexValue::Token { system, code } => push("tok", doc! { "p": p, "s": text(system), "c": code }),
            IndexValue::TokenText { normalized } => push("ttx", doc! { "p": p, "n": normalized }),
            IndexValue::IdentifierOfType { type_system, type_code, value } => {
                push("oft", doc! { "p": p, "ts": text(type_system), "tc": type_code, "v": value })
            }
            IndexValue::Date { lo, hi } => push("date", doc! { "p": p, "lo": *lo, "hi": *hi }),
            IndexValue::Number { lo, hi } => push("num", doc! { "p": p, "lo": *lo, "hi": *hi }),
            IndexValue::Quantity { system, code, unit, lo, hi, canonical } => push(
                "qty",
                doc! { "p": p, "s": text(system), "c": text(code), "u": text(unit), "lo": *lo, "hi": *hi, "cn": *canonical },
            ),
            IndexValue::Reference { target_type, target_id, url } => {
                push("ref", doc! { "p": p, "t": text(target_type), "i": target_id, "u": url });
                if let Some(target_type) = target_type {
                    add_key(&mut refk, p, resource_key(target_type, target_id));
                }
            }
            IndexValue::ReferenceIdentifier { system, value } => push("rid", doc! { "p": p, "s": text(system), "v": value }),
            IndexValue::Uri(value) => push("uri", doc! { "p": p, "v": value }),
            IndexValue::Composite(components) => {
                let mut element = doc! { "p": p };
                for (i, component) in components.iter().take(MAX_COMPONENTS).enumerate() {
                    element.insert(format!("c{}", i + 1), component_fields(component));
                }
                push("cmp", element);
            }
        }
    }
    let mut fields = doc! { "params": params };
    if !refk.is_empty() {
        fields.insert("refk", refk);
    }
    for (name, elements) in arrays {
        fields.insert(name, elements);
    }
    fields
}

fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

fn add_key(refk: &mut Document, param: &str, key: String) {
    match refk.get_array_mut(param) {
        Ok(keys) => {
            let key = Bson::String(key);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Err(_) => {
            refk.insert(param, vec![key]);
        }
    }
}

/// One composite component as `{a, b, c, lo, hi}` (`components::component_slots`).
fn component_fields(value: &IndexValue) -> Document {
    let (a, b, c, lo, hi) = component_slots(value);
    doc! { "a": a, "b": b, "c": c, "lo": lo, "hi": hi }
}

/// Every suffix of `normalized`, each cut to `CONTAINS_WINDOW` characters, without repeats.
pub(crate) fn suffixes(normalized: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (start, _) in normalized.char_indices() {
        let suffix: String = normalized[start..].chars().take(CONTAINS_WINDOW).collect();
        if !out.contains(&suffix) {
            out.push(suffix);
        }
    }
    out
}

/// One index the backend creates at start-up (idempotently: same name, same definition).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IndexSpec {
    pub(crate) collection: &'static str,
    pub(crate) name: &'static str,
    pub(crate) keys: Document,
    pub(crate) unique: bool,
    /// TTL: documents expire this many seconds after the date in the (single) key field.
    pub(crate) expire_after_secs: Option<u64>,
}

/// Every index of the backend. Each value array gets one compound multikey index led by
/// `type` and `<array>.p` (an array element's fields are scalars, so one array per index,
/// as MongoDB requires); ordered kinds get a second one on `hi` for the bounds of `gt`/`eb`.
pub(crate) fn index_specs() -> Vec<IndexSpec> {
    let index = |collection, name, keys: Document| IndexSpec { collection, name, keys, unique: false, expire_after_secs: None };
    vec![
        index(RESOURCES, "type_id", doc! { "type": 1, "_id": 1 }),
        index(RESOURCES, "params", doc! { "type": 1, "params": 1 }),
        index(RESOURCES, "str_normalized", doc! { "type": 1, "str.p": 1, "str.n": 1 }),
        index(RESOURCES, "str_exact", doc! { "type": 1, "str.p": 1, "str.e": 1 }),
        index(RESOURCES, "str_suffix", doc! { "type": 1, "sfx.p": 1, "sfx.s": 1 }),
        index(RESOURCES, "tok_code", doc! { "type": 1, "tok.p": 1, "tok.c": 1, "tok.s": 1 }),
        index(RESOURCES, "tok_system", doc! { "type": 1, "tok.p": 1, "tok.s": 1 }),
        index(RESOURCES, "ttx_normalized", doc! { "type": 1, "ttx.p": 1, "ttx.n": 1 }),
        index(RESOURCES, "oft_value", doc! { "type": 1, "oft.p": 1, "oft.v": 1, "oft.tc": 1 }),
        index(RESOURCES, "date_lo", doc! { "type": 1, "date.p": 1, "date.lo": 1, "date.hi": 1 }),
        index(RESOURCES, "date_hi", doc! { "type": 1, "date.p": 1, "date.hi": 1 }),
        index(RESOURCES, "num_lo", doc! { "type": 1, "num.p": 1, "num.lo": 1, "num.hi": 1 }),
        index(RESOURCES, "num_hi", doc! { "type": 1, "num.p": 1, "num.hi": 1 }),
        index(RESOURCES, "qty_code_lo", doc! { "type": 1, "qty.p": 1, "qty.c": 1, "qty.lo": 1, "qty.hi": 1 }),
        index(RESOURCES, "qty_code_hi", doc! { "type": 1, "qty.p": 1, "qty.c": 1, "qty.hi": 1 }),
        index(RESOURCES, "qty_unit_lo", doc! { "type": 1, "qty.p": 1, "qty.u": 1, "qty.lo": 1 }),
        index(RESOURCES, "ref_target", doc! { "type": 1, "ref.p": 1, "ref.i": 1, "ref.t": 1 }),
        index(RESOURCES, "ref_url", doc! { "type": 1, "ref.p": 1, "ref.u": 1 }),
        index(RESOURCES, "rid_value", doc! { "type": 1, "rid.p": 1, "rid.v": 1, "rid.s": 1 }),
        index(RESOURCES, "uri_value", doc! { "type": 1, "uri.p": 1, "uri.v": 1 }),
        index(RESOURCES, "cmp_first", doc! { "type": 1, "cmp.p": 1, "cmp.c1.b": 1, "cmp.c1.a": 1 }),
        // Every `refk.<param>` path: the `_has`/`_revinclude` side of a join.
        index(RESOURCES, "refk", doc! { "refk.$**": 1 }),
        IndexSpec { unique: true, ..index(VERSIONS, "type_id_version", doc! { "type": 1, "id": 1, "version": 1 }) },
        index(VERSIONS, "instance_history", doc! { "type": 1, "id": 1, "_id": -1 }),
        index(VERSIONS, "type_history", doc! { "type": 1, "_id": -1 }),
        index(VERSIONS, "since", doc! { "lastUpdated": 1, "_id": 1 }),
        IndexSpec { expire_after_secs: Some(SNAPSHOT_TTL_SECS), ..index(SNAPSHOTS, "expiry", doc! { "created": 1 }) },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(param: &str, value: IndexValue) -> IndexEntry {
        IndexEntry { param: param.into(), value }
    }

    #[test]
    fn index_fields_lay_out_every_value_kind() {
        let entries = vec![
            entry("family", IndexValue::String { normalized: "muller".into(), exact: "Müller".into() }),
            entry("family", IndexValue::String { normalized: "muller".into(), exact: "Müller".into() }),
            entry("code", IndexValue::Token { system: None, code: "x".into() }),
            entry("birthdate", IndexValue::Date { lo: 0, hi: 86_400_000 }),
            entry("subject", IndexValue::Reference { target_type: Some("Patient".into()), target_id: "p1".into(), url: "Patient/p1".into() }),
            entry("subject", IndexValue::Reference { target_type: None, target_id: "urn:uuid:1".into(), url: "urn:uuid:1".into() }),
            entry(
                "code-value-quantity",
                IndexValue::Composite(vec![
                    IndexValue::Token { system: Some("http://loinc.org".into()), code: "8480-6".into() },
                    IndexValue::Quantity { system: None, code: Some("mm[Hg]".into()), unit: None, lo: 119.5, hi: 120.5, canonical: false },
                ]),
            ),
        ];
        let fields = index_fields(&entries);
        let expected = doc! {
            "params": ["family", "code", "birthdate", "subject", "code-value-quantity"],
            "refk": { "subject": ["Patient/p1"] },
            "str": [{ "p": "family", "n": "muller", "e": "Müller" }],
            "sfx": [
                { "p": "family", "s": "muller" }, { "p": "family", "s": "uller" }, { "p": "family", "s": "ller" },
                { "p": "family", "s": "ler" }, { "p": "family", "s": "er" }, { "p": "family", "s": "r" },
            ],
            "tok": [{ "p": "code", "s": "", "c": "x" }],
            "date": [{ "p": "birthdate", "lo": 0_i64, "hi": 86_400_000_i64 }],
            "ref": [
                { "p": "subject", "t": "Patient", "i": "p1", "u": "Patient/p1" },
                { "p": "subject", "t": "", "i": "urn:uuid:1", "u": "urn:uuid:1" },
            ],
            "cmp": [{
                "p": "code-value-quantity",
                "c1": { "a": "http://loinc.org", "b": "8480-6", "c": "", "lo": 0.0, "hi": 0.0 },
                "c2": { "a": "", "b": "mm[Hg]", "c": "", "lo": 119.5, "hi": 120.5 },
            }],
        };
        assert_eq!(fields, expected);
    }

    #[test]
    fn suffixes_are_cut_to_the_window() {
        let long = "a".repeat(CONTAINS_WINDOW + 10);
        let out = suffixes(&long);
        // All suffixes of a run of one letter cut to the window collapse into the distinct lengths.
        assert_eq!(out.len(), CONTAINS_WINDOW);
        assert!(out.iter().all(|s| s.chars().count() <= CONTAINS_WINDOW));
        assert_eq!(suffixes("añb"), vec!["añb".to_string(), "ñb".to_string(), "b".to_string()]);
        assert!(suffixes("").is_empty());
    }

    #[test]
    fn every_index_has_a_unique_name_and_one_array_at_most() {
        let specs = index_specs();
        let mut names: Vec<(&str, &str)> = specs.iter().map(|s| (s.collection, s.name)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), specs.len(), "duplicate index names");
        for spec in &specs {
            // MongoDB refuses a compound index over two arrays: every dotted key of a resources
            // index must share one array prefix.
            let arrays: std::collections::BTreeSet<&str> =
                spec.keys.keys().filter_map(|k| k.split_once('.').map(|(array, _)| array)).collect();
            assert!(arrays.len() <= 1, "{} indexes several arrays: {arrays:?}", spec.name);
        }
        // Fewer than MongoDB's 64 indexes per collection.
        assert!(specs.iter().filter(|s| s.collection == RESOURCES).count() < 64);
    }

    /// Every official R4 example (the conformance corpus) fits in one MongoDB document with
    /// its search fields, well under the 16 MiB BSON limit; prints what the index costs.
    #[test]
    fn every_r4_example_fits_in_a_document_with_its_index() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance-tests/corpus/r4-examples");
        let mut sizes: Vec<(usize, usize, usize, String)> = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("corpus directory") {
            let path = entry.expect("corpus entry").path();
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let Ok(body) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let Some(resource_type) = body.get("resourceType").and_then(|t| t.as_str()).map(str::to_string) else { continue };
            let mut body = body;
            if let Some(object) = body.as_object_mut() {
                object.insert("meta".into(), serde_json::json!({"versionId": "1", "lastUpdated": "2026-01-01T00:00:00.000Z"}));
            }
            let entries = fhir_model::extract_index(&resource_type, &body);
            let fields = index_fields(&entries);
            let suffix_bytes = fields.get_array("sfx").map(|a| bson_len(&doc! { "sfx": a.clone() })).unwrap_or(0);
            let body_bytes = serde_json::to_vec(&body).expect("json").len();
            let index_bytes = bson_len(&fields);
            sizes.push((body_bytes, index_bytes, suffix_bytes, path.file_name().unwrap_or_default().to_string_lossy().into()));
        }
        assert!(sizes.len() > 500, "corpus not found in {}", dir.display());
        let limit = 16 * 1024 * 1024;
        for (body, index, _, name) in &sizes {
            assert!(body + index < limit / 2, "{name}: body {body} + index {index} bytes is close to the BSON limit");
        }
        let total = |f: fn(&(usize, usize, usize, String)) -> usize| sizes.iter().map(f).sum::<usize>();
        let (bodies, indexes, suffixes) = (total(|s| s.0), total(|s| s.1), total(|s| s.2));
        let largest = sizes.iter().max_by_key(|s| s.0 + s.1).expect("one example");
        println!(
            "{} examples: bodies {} KiB, search fields {} KiB ({:.2}× the bodies; suffixes for :contains {} KiB); largest {} ({} + {} bytes)",
            sizes.len(),
            bodies / 1024,
            indexes / 1024,
            indexes as f64 / bodies as f64,
            suffixes / 1024,
            largest.3,
            largest.0,
            largest.1
        );
    }

    fn bson_len(document: &Document) -> usize {
        let mut bytes = Vec::new();
        document.to_writer(&mut bytes).expect("bson");
        bytes.len()
    }
}
