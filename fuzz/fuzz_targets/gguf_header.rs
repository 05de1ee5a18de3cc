//! A GGUF base model as the node loads it: the header reader
//! (`read_gguf_header`: trib-model's checks, then candle's
//! `gguf_file::Content::read` for metadata and tensor table), then trib-model's
//! readers of that header (`LlamaConfig::from_gguf`, `tokenizer_from_gguf`,
//! the chat template), then the whole load (`Model::load_gguf` from a temp
//! file), which reads only the tensors the header names. Nothing may panic,
//! and nothing may allocate beyond the header's claims checked against the
//! file: libFuzzer's `-rss_limit_mb`/`-malloc_limit_mb` turn a header-sized
//! allocation into a crash.
//!
//! With `TRIB_FUZZ_WRITE_SEEDS=DIR` the target writes seed inputs (tiny
//! models written by `write_tiny_gguf` in f32, f16, q8_0 and q4_1) into DIR
//! and exits, before fuzzing starts.
#![no_main]

#[path = "seeds/hook.rs"]
mod seeds;
#[path = "seeds/tiny.rs"]
mod tiny;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trib_model::{
    read_gguf_header, tokenizer_from_gguf, write_tiny_gguf, ChatTemplate, GgmlDType, LlamaConfig,
    Model, WeightFormat,
};

fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("trib-fuzz-gguf-{}.gguf", std::process::id()))
    })
}

fn write_seeds(out: &std::path::Path) {
    for (i, dtype) in [
        GgmlDType::F32,
        GgmlDType::F16,
        GgmlDType::Q8_0,
        GgmlDType::Q4_1,
    ]
    .into_iter()
    .enumerate()
    {
        write_tiny_gguf(
            &out.join(format!("seed-gguf-{i}")),
            &tiny::spec(),
            i as u64,
            dtype,
        )
        .expect("tiny gguf");
    }
}

fuzz_target!(
    init: seeds::on_request(write_seeds),
    |data: &[u8]| {
        let path = Path::new("fuzz.gguf");
        let Ok(content) = read_gguf_header(path, &mut Cursor::new(data)) else {
            return;
        };
        let config = LlamaConfig::from_gguf(&content, path);
        let tokenizer = tokenizer_from_gguf(&content, path);
        let template = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        let _ = ChatTemplate::from_jinja(template.as_deref());
        if config.is_err() || tokenizer.is_err() {
            return;
        }
        let f = file();
        std::fs::write(f, data).expect("write temp gguf");
        if let Ok(model) = Model::load_gguf(f, WeightFormat::Auto) {
            let _ = model.info();
        }
    }
);
