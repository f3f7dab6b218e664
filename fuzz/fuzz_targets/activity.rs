//! `cargo +nightly fuzz run activity`: see `tidings_fuzz::activity` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::activity(data));
