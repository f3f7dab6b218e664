//! `cargo +nightly fuzz run compat_bodies`: see `tidings_fuzz::compat_bodies` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_fuzz::compat_bodies(data));
