//! The one small Llama configuration the model targets (`peft_adapter`,
//! `gguf_header`) load against and write their seeds for: two layers of
//! width 32, small enough that a fuzz input can hold a whole model.

use trib_model::TinySpec;

pub fn spec() -> TinySpec {
    TinySpec {
        layers: 2,
        hidden: 32,
        heads: 2,
        kv_heads: 1,
        intermediate: 64,
        max_seq_len: 64,
        ..TinySpec::default()
    }
}
