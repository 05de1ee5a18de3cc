//! A ModelFactory job file (TOML), the body of `POST /v1/jobs` and the file
//! `trib factory train` reads: `JobConfig::from_toml_str` (parse, resolve
//! paths, validate), then what the queue does with an accepted job (its
//! sources, LoRA scaling, training and config hashes). Nothing may panic;
//! an accepted job's sources parse and its LoRA scaling is finite.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use trib_model::factory::JobConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(job) = JobConfig::from_toml_str(text, Path::new("/nonexistent/trib-fuzz")) {
        job.sources().expect("an accepted job's sources parse");
        assert!(job.lora_scaling().is_finite(), "LoRA scaling is not finite");
        let _ = job.training_hash();
        let _ = job.config_hash();
    }
});
