//! `cargo +nightly fuzz run engineio`: see `tidings_fuzz::engineio` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::engineio(data));
