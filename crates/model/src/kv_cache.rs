//! Per-sequence key/value cache for incremental decoding.
//!
//! Each layer keeps a preallocated `[kv_heads, capacity, head_dim]` f32
//! buffer for keys and one for values; new positions are written in place and
//! the capacity doubles when full, so appending a token costs O(1) amortised
//! copies instead of re-concatenating the whole history every step. The
//! buffers are plain vectors so the lean decode path (`crate::kernels::decode`) reads
//! one head's keys as one contiguous slice; the candle path gets tensors
//! copied out of them.

use candle_core::{Device, Tensor};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};

/// One sequence's cached keys and values of a layer, per kv head.
pub(crate) struct HeadsView<'a> {
    /// `(keys, values)` per kv head, each `[len, head_dim]`.
    pub(crate) heads: Vec<(&'a [f32], &'a [f32])>,
    pub(crate) len: usize,
}

const INITIAL_CAPACITY: usize = 64;

/// The cached keys and values of one sequence, all layers.
///
/// Not `Clone`: a cache is one sequence's state, moved, not shared.
pub struct KvCache {
    /// Per layer, `[kv_heads, capacity, head_dim]`; empty until first use.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
    capacity: usize,
    max_len: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl KvCache {
    /// An empty cache for a model.
    pub fn new(cfg: &LlamaConfig) -> Self {
        Self {
            k: vec![Vec::new(); cfg.num_layers],
            v: vec![Vec::new(); cfg.num_layers],
            len: 0,
            capacity: 0,
            max_len: cfg.max_seq_len,
            kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
        }
    }

    /// Positions already cached (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The model's context limit.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes held by the buffers (allocated capacity, not just `len`).
    pub fn size_in_bytes(&self) -> usize {
        let per_layer = 2 * self.kv_heads * self.capacity * self.head_dim * 4;
        per_layer * self.k.iter().filter(|k| !k.is_empty()).count()
    }

    /// Forgets everything (keeps the buffers for reuse).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Drops positions from `len` on (e.g. to rewind a rejected draft).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Checks that `n` more positions fit in the context.
    pub(crate) fn check_room(&self, n: usize) -> Result<()> {
        if self.len + n > self.max_len {
            return Err(ModelError::ContextOverflow {
                needed: self.len + n,
                max: self.max_len,
            });
        }
        Ok(())
    }

    /// Writes `k`, `v` (`[kv_heads, n, head_dim]`) of `layer` at positions
    /// `len..len+n` and returns all keys and values `[kv_heads, len+n, head_dim]`
    /// (copies, for the candle path). The length itself advances in
    /// [`KvCache::advance`], once per step.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (kvh, n, hd) = k.dims3()?;
        if (kvh, hd) != (self.kv_heads, self.head_dim) || v.dims3()? != (kvh, n, hd) {
            return Err(ModelError::Generation(format!(
                "cache of {} kv heads × {} dims given keys {:?} and values {:?}",
                self.kv_heads,
                self.head_dim,
                k.dims(),
                v.dims()
            )));
        }
        self.reserve(n)?;
        let needed = self.len + n;
        let (cap, len) = (self.capacity, self.len);
        let mut out = Vec::with_capacity(2);
        for (buf, new) in [(&mut self.k[layer], k), (&mut self.v[layer], v)] {
            let new = new.flatten_all()?.to_vec1::<f32>()?;
            for h in 0..kvh {
                let dst = (h * cap + len) * hd;
                buf[dst..dst + n * hd].copy_from_slice(&new[h * n * hd..(h + 1) * n * hd]);
            }
            let mut all = Vec::with_capacity(kvh * needed * hd);
            for h in 0..kvh {
                all.extend_from_slice(&buf[h * cap * hd..(h * cap + needed) * hd]);
            }
            out.push(Tensor::from_vec(all, (kvh, needed, hd), &Device::Cpu)?);
        }
        let v_all = out.pop().expect("two");
        let k_all = out.pop().expect("two");
        Ok((k_all, v_all))
    }

    /// Makes room for `n` more positions in every layer (doubling).
    pub(crate) fn reserve(&mut self, n: usize) -> Result<()> {
        self.check_room(n)?;
        let needed = self.len + n;
        if needed > self.capacity || self.k.iter().any(Vec::is_empty) {
            self.grow(needed);
        }
        Ok(())
    }

    /// Writes one position's keys and values (`[kv_heads · head_dim]` each)
    /// of `layer` at `len + offset`; room must have been [`KvCache::reserve`]d.
    pub(crate) fn write_position(&mut self, layer: usize, offset: usize, k: &[f32], v: &[f32]) {
        let (cap, hd) = (self.capacity, self.head_dim);
        let pos = self.len + offset;
        assert!(
            pos < cap,
            "position {pos} beyond the reserved capacity {cap}"
        );
        for (buf, src) in [(&mut self.k[layer], k), (&mut self.v[layer], v)] {
            for (h, row) in src.chunks_exact(hd).enumerate() {
                let dst = (h * cap + pos) * hd;
                buf[dst..dst + hd].copy_from_slice(row);
            }
        }
    }

    /// Keys and values of every kv head in `layer` at positions `0..len`,
    /// each `[len, head_dim]` row-major.
    pub(crate) fn heads_view(&self, layer: usize, len: usize) -> HeadsView<'_> {
        let heads = (0..self.kv_heads)
            .map(|h| {
                let start = h * self.capacity * self.head_dim;
                let end = start + len * self.head_dim;
                (&self.k[layer][start..end], &self.v[layer][start..end])
            })
            .collect();
        HeadsView { heads, len }
    }

    /// Marks `n` positions as written in every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    fn grow(&mut self, needed: usize) {
        let new_cap = if needed <= self.capacity {
            self.capacity.max(INITIAL_CAPACITY)
        } else {
            needed
                .max(self.capacity * 2)
                .max(INITIAL_CAPACITY)
                .min(self.max_len.max(needed))
        };
        let (kvh, hd, old_cap, len) = (self.kv_heads, self.head_dim, self.capacity, self.len);
        for buf in self.k.iter_mut().chain(self.v.iter_mut()) {
            let mut fresh = vec![0f32; kvh * new_cap * hd];
            if !buf.is_empty() {
                for h in 0..kvh {
                    fresh[h * new_cap * hd..(h * new_cap + len) * hd]
                        .copy_from_slice(&buf[h * old_cap * hd..(h * old_cap + len) * hd]);
                }
            }
            *buf = fresh;
        }
        self.capacity = new_cap;
    }
}
