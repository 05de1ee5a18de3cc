//! llama.cpp's permutation of the q and k projection rows. Its converter
//! (`convert_hf_to_gguf.py`, `permute(w, n_head)`) interleaves each head's
//! rows for its interleaved rope; the GGUF loader undoes that at load (row
//! moves on the quantized bytes, exact) so every weight is in the Hugging
//! Face layout and the "rotate_half" rope applies everywhere, and the tiny
//! GGUF writer redoes it so its files look like llama.cpp's.

use std::borrow::Cow;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Tensor};

use crate::error::Result;

/// Permutes the rows of a q or k projection between the Hugging Face layout
/// (per head: first half-dims, then second half-dims) and llama.cpp's GGUF
/// layout (per head: pairs interleaved). `to_gguf = false` undoes
/// llama.cpp's `permute(w, n_head)` from `convert_hf_to_gguf.py`:
/// GGUF row `h·hd + 2i + j` holds HF row `h·hd + j·hd/2 + i`.
pub(crate) fn permute_rows(data: &[u8], rows: usize, n_head: usize, to_gguf: bool) -> Vec<u8> {
    let row_bytes = data.len() / rows;
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let gguf = h * hd + 2 * i + j;
                let hf = h * hd + j * half + i;
                let (dst, src) = if to_gguf { (gguf, hf) } else { (hf, gguf) };
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    out
}

/// Applies [`permute_rows`] to a (possibly quantized) `[rows, in]` tensor
/// without dequantizing: ggml blocks run along rows, so rows move whole.
pub(crate) fn permute_qtensor(q: &QTensor, n_head: usize, to_gguf: bool) -> Result<QTensor> {
    let dims = q.shape().dims().to_vec();
    let rows = dims[0];
    let data = q.data()?;
    let permuted = permute_rows(&data, rows, n_head, to_gguf);
    let storage = QStorage::from_data(Cow::Owned(permuted), &Device::Cpu, q.dtype())?;
    Ok(QTensor::new(storage, dims)?)
}

/// Applies [`permute_rows`] to a 1-D f32 bias.
pub(crate) fn permute_bias(b: &Tensor, n_head: usize, to_gguf: bool) -> Result<Tensor> {
    let v: Vec<f32> = b.to_vec1()?;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let p = permute_rows(&bytes, v.len(), n_head, to_gguf);
    let out: Vec<f32> = p
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Tensor::from_vec(out, v.len(), &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_rows_round_trips_and_matches_llama_cpp_for_one_head() {
        // One head of 4 rows: HF [r0, r1, r2, r3] (halves [r0 r1] [r2 r3])
        // becomes GGUF [r0, r2, r1, r3] (pairs interleaved).
        let data: Vec<u8> = (0..4u8).collect();
        let g = permute_rows(&data, 4, 1, true);
        assert_eq!(g, vec![0, 2, 1, 3]);
        assert_eq!(permute_rows(&g, 4, 1, false), data);
        let data: Vec<u8> = (0..48u8).collect();
        let rt = permute_rows(&permute_rows(&data, 12, 2, true), 12, 2, false);
        assert_eq!(rt, data);
    }

    proptest::proptest! {
        #[test]
        fn unpermuting_undoes_the_llama_cpp_permutation(heads in 1usize..5, half in 1usize..5, row in 1usize..4, seed in 0u8..255) {
            let rows = heads * half * 2;
            let data: Vec<u8> = (0..rows * row).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let g = permute_rows(&data, rows, heads, true);
            proptest::prop_assert_eq!(permute_rows(&g, rows, heads, false), data);
        }
    }
}
