//! `cargo +nightly fuzz run search_query`: see `tidings_fuzz::search_query` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::search_query(data));
