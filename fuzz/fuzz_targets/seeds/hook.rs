//! The seed hook every target with generated seeds shares: with
//! `TRIB_FUZZ_WRITE_SEEDS=DIR` in the environment, the target writes its
//! seed inputs into DIR (created) and exits before fuzzing starts.
//! `scripts/fuzz.sh` uses it to seed a missing corpus.

use std::path::{Path, PathBuf};

/// Runs `write(DIR)` and exits when `TRIB_FUZZ_WRITE_SEEDS=DIR` is set.
pub fn on_request(write: impl FnOnce(&Path)) {
    if let Some(out) = std::env::var_os("TRIB_FUZZ_WRITE_SEEDS") {
        let out = PathBuf::from(out);
        std::fs::create_dir_all(&out).expect("seed dir");
        write(&out);
        std::process::exit(0);
    }
}
