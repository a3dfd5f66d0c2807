//! Fuzz target: any bytes through the parser wrapper, the v2-to-FHIR mapping and the ACK
//! builder must never panic. `hl7-bridge/tests/fuzz_corpus.rs` runs the same sequence on
//! stable over the hostile corpus and seeded mutations.
#![no_main]

use hl7_bridge::{build_ack, map::map_message, parse, sniff_header, AckCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let errors = match parse(data) {
        Ok(message) => map_message(&message, Some(0)).err().into_iter().collect(),
        Err(error) => vec![error],
    };
    let code = if errors.is_empty() { AckCode::AA } else { AckCode::AE };
    let _ = build_ack(sniff_header(data).as_ref(), code, &errors, "20250101000000.000+0000", "FUZZ");
});
