//! `cargo +nightly fuzz run cursor`: see `tidings_fuzz::cursor` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::cursor(data));
