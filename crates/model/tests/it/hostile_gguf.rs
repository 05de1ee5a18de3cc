//! GGUF headers that claim more than the file holds (found by reading the
//! loader while adding the `gguf_header` fuzz target, `fuzz/`): the loader
//! must refuse them with an error naming the claim, before allocating for
//! it. Each file is a valid tiny model with one metadata value patched.

use std::path::Path;

use trib_model::{write_tiny_gguf, GgmlDType, Model, TinySpec, WeightFormat};

/// Overwrites the `U32` value of metadata `key` (GGUF: key string, then the
/// value type 4 = U32 as u32, then the value).
fn patch_u32(bytes: &mut [u8], key: &str, value: u32) {
    let at = bytes
        .windows(key.len())
        .position(|w| w == key.as_bytes())
        .unwrap_or_else(|| panic!("`{key}` is in the tiny model's header"));
    let ty = at + key.len();
    assert_eq!(bytes[ty..ty + 4], 4u32.to_le_bytes(), "`{key}` is a U32");
    bytes[ty + 4..ty + 8].copy_from_slice(&value.to_le_bytes());
}

fn patched(dir: &Path, key: &str, value: u32) -> std::path::PathBuf {
    let path = dir.join("tiny.gguf");
    write_tiny_gguf(&path, &TinySpec::default(), 1, GgmlDType::F32).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    patch_u32(&mut bytes, key, value);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_context_length_beyond_the_supported_positions_is_refused_before_the_rotary_tables() {
    // 4.29e9 positions: the rotary tables alone would be ~275 GB.
    let dir = tempfile::tempdir().unwrap();
    let path = patched(dir.path(), "llama.context_length", u32::MAX);
    let e = Model::load(&path, WeightFormat::Auto).unwrap_err();
    assert!(e.to_string().contains("max_seq_len 4294967295"), "{e}");
    // The largest accepted context still loads.
    let path = patched(dir.path(), "llama.context_length", 1 << 20);
    let m = Model::load(&path, WeightFormat::Auto).unwrap();
    assert_eq!(m.config().max_seq_len, 1 << 20);
}

#[test]
fn a_block_count_beyond_the_tensors_in_the_file_is_refused_without_reserving_the_layers() {
    // 4.29e9 layers: reserving them up front would ask for terabytes.
    let dir = tempfile::tempdir().unwrap();
    let path = patched(dir.path(), "llama.block_count", u32::MAX);
    let e = Model::load(&path, WeightFormat::Auto).unwrap_err();
    assert!(e.to_string().contains("blk.2.attn_q.weight"), "{e}");
}

#[test]
fn a_zero_tensor_data_alignment_is_refused_with_its_name() {
    // `general.alignment` = 0 made candle's header reader divide by zero.
    // The tiny model has no alignment key: its `llama.block_count` key has
    // the same length and type, so it is renamed in place.
    let dir = tempfile::tempdir().unwrap();
    let path = patched(dir.path(), "llama.block_count", 0);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(17)
        .position(|w| w == b"llama.block_count")
        .unwrap();
    bytes[at..at + 17].copy_from_slice(b"general.alignment");
    std::fs::write(&path, bytes).unwrap();
    let e = Model::load(&path, WeightFormat::Auto).unwrap_err();
    assert!(e.to_string().contains("general.alignment"), "{e}");
}
