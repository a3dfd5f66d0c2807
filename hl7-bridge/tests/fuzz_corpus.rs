//! The fuzz target's sequence (`fuzz/fuzz_targets/parse_and_map.rs`: parse, map, build the
//! ACK from the sniffed header) on stable: over every file of the hostile corpus and 20,000
//! seeded byte mutations of the valid messages, none may panic.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hl7_bridge::{build_ack, map::map_message, parse, sniff_header, AckCode};

const MUTATIONS: usize = 20_000;

/// The body of the fuzz target, unchanged.
fn parse_and_map(data: &[u8]) {
    let errors = match parse(data) {
        Ok(message) => map_message(&message, Some(0)).err().into_iter().collect(),
        Err(error) => vec![error],
    };
    let code = if errors.is_empty() { AckCode::AA } else { AckCode::AE };
    let _ = build_ack(sniff_header(data).as_ref(), code, &errors, "20250101000000.000+0000", "FUZZ");
}

fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/tests/hl7_data").join(name)
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.is_file())
        .map(|path| (path.display().to_string(), std::fs::read(&path).expect("readable corpus file")))
        .collect();
    out.sort();
    out
}

/// Runs the body on `data`; a panic fails the test naming the input.
fn must_not_panic(name: &str, data: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| parse_and_map(data))).is_err() {
        panic!("parse_and_map panicked on {name}: {:?}", String::from_utf8_lossy(data));
    }
}

/// xorshift64*: a fixed seed gives the same mutations on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to HL7 structure, so mutations hit the parser's decisions.
const INTERESTING: &[u8] = b"|^~\\&#\r\n\x0b\x1c\x00\xff\xc3\xa9MSHPIDOBX0123456789.+-\"";

fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(8) {
            0 if at < data.len() => data[at] ^= 1 << rng.below(8),
            1 if at < data.len() => data[at] = INTERESTING[rng.below(INTERESTING.len())],
            2 => data.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            3 => data.insert(at, rng.next() as u8),
            4 if at < data.len() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            5 if at < data.len() => {
                let end = (at + 1 + rng.below(64)).min(data.len());
                let chunk = data[at..end].to_vec();
                let to = rng.below(data.len() + 1);
                data.splice(to..to, chunk);
            }
            6 => data.truncate(at),
            _ => {
                // An escape sequence, well-formed or not, somewhere in the text.
                let escapes: [&[u8]; 8] = [b"\\T\\", b"\\X\\", b"\\XC3\\", b"\\Cxx", b"\\.sp 99999\\", b"\\Z\\", b"\\", b"\\H\\\\N\\"];
                let escape = escapes[rng.below(escapes.len())];
                data.splice(at..at, escape.iter().copied());
            }
        }
    }
    data
}

#[test]
fn hostile_corpus_never_panics() {
    let corpus = files(&data_dir("hostile"));
    assert!(corpus.len() >= 20, "the hostile corpus is there: {}", corpus.len());
    for (name, data) in &corpus {
        must_not_panic(name, data);
        // Also as it would arrive framed or line-split differently.
        must_not_panic(name, &data.iter().map(|&b| if b == b'\r' { b'\n' } else { b }).collect::<Vec<_>>());
    }
}

#[test]
fn seeded_mutations_of_valid_messages_never_panic() {
    let seeds: Vec<(String, Vec<u8>)> = files(&data_dir("e2e"))
        .into_iter()
        .map(|(name, text)| {
            // The files have one segment per line; the wire has CR.
            let wire = text.iter().map(|&b| if b == b'\n' { b'\r' } else { b }).collect();
            (name, wire)
        })
        .collect();
    assert!(!seeds.is_empty());
    for (name, data) in &seeds {
        must_not_panic(name, data);
    }
    let mut rng = XorShift(0x5EED_7E55_E4A0_0001);
    for n in 0..MUTATIONS {
        let (name, seed) = &seeds[rng.below(seeds.len())];
        let data = mutate(&mut rng, seed);
        must_not_panic(&format!("mutation {n} of {name}"), &data);
    }
}
