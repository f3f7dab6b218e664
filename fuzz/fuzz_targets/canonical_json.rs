//! `cargo +nightly fuzz run canonical_json`: see `tidings_fuzz::canonical_json` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::canonical_json(data));
