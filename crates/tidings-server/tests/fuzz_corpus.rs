//! The fuzz targets' inputs on stable: every file under `fuzz/corpus/TARGET/` (the seeds, and
//! anything a campaign chose to keep) and `fuzz/regressions/TARGET/` (inputs that once broke
//! a target) is run through the same invariant the cargo-fuzz target checks
//! (`fuzz/src/lib.rs`). This is the CI smoke for the fuzz campaign: it needs no nightly
//! toolchain, takes seconds, and keeps every fixed crash fixed. `bench/fuzz.sh` runs the
//! targets themselves under libFuzzer for a fixed time.

#[path = "../../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz;

use std::path::{Path, PathBuf};

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_keeps_its_target_invariant() {
    let mut ran = 0;
    for (target, check) in fuzz::TARGETS {
        let seeds = inputs("corpus", target);
        assert!(
            !seeds.is_empty(),
            "fuzz/corpus/{target}/ has no seed inputs"
        );
        for path in seeds.iter().chain(inputs("regressions", target).iter()) {
            let data = std::fs::read(path).expect("read input");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{target} broke on {} (replay: cargo +nightly fuzz run {target} {})",
                path.display(),
                path.display()
            );
            ran += 1;
        }
    }
    eprintln!(
        "fuzz corpus: {ran} inputs replayed through {} targets",
        fuzz::TARGETS.len()
    );
}
