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

/// Overwrites the dimensions of tensor `name` in the tensor table (GGUF
/// v2+: name as u64 length and bytes, then `n_dims` as u32, then each
/// dimension as u64).
fn patch_dims(bytes: &mut [u8], name: &str, dims: &[u64]) {
    let mut entry = (name.len() as u64).to_le_bytes().to_vec();
    entry.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(entry.len())
        .position(|w| w == entry.as_slice())
        .unwrap_or_else(|| panic!("`{name}` is in the tiny model's tensor table"))
        + entry.len();
    let n = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(n, dims.len(), "`{name}` has {n} dimensions");
    for (i, d) in dims.iter().enumerate() {
        let p = at + 4 + 8 * i;
        bytes[p..p + 8].copy_from_slice(&d.to_le_bytes());
    }
}

fn with_dims(dir: &Path, name: &str, dims: &[u64]) -> std::path::PathBuf {
    let path = dir.join("tiny.gguf");
    write_tiny_gguf(&path, &TinySpec::default(), 1, GgmlDType::F32).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    patch_dims(&mut bytes, name, dims);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn tensor_dimensions_whose_product_overflows_are_refused_before_candle_reads_them() {
    // The gguf_header fuzz target's crash: candle's TensorInfo::read
    // multiplied these unchecked ("attempt to multiply with overflow").
    // The same input is in fuzz/corpus/gguf_header/overflowing-dims.
    let dir = tempfile::tempdir().unwrap();
    let path = with_dims(dir.path(), "blk.0.attn_q.weight", &[1 << 33, 1 << 33]);
    // `TRIB_WRITE_CRASH_INPUT=FILE` keeps the input (how the corpus copy
    // was written).
    if let Ok(out) = std::env::var("TRIB_WRITE_CRASH_INPUT") {
        std::fs::copy(&path, out).unwrap();
    }
    let e = Model::load(&path, WeightFormat::Auto).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("blk.0.attn_q.weight") && text.contains("overflows"),
        "{text}"
    );
    // The header alone is refused too (the fuzz target's first call).
    let mut f = std::fs::File::open(&path).unwrap();
    let e = trib_model::read_gguf_header(&path, &mut f).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
}

#[test]
fn a_tensor_larger_than_the_rest_of_the_file_is_refused_with_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = with_dims(dir.path(), "token_embd.weight", &[1 << 20, 1 << 20]);
    let e = Model::load(&path, WeightFormat::Auto).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("token_embd.weight") && text.contains("needs 4398046511104 bytes"),
        "{text}"
    );
}
