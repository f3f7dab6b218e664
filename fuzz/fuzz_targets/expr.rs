//! `cargo +nightly fuzz run expr`: see `tidings_fuzz::expr` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::expr(data));
