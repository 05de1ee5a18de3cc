//! Per-sequence key/value cache for incremental decoding.
//!
//! Each layer keeps a preallocated `[kv_heads, capacity, head_dim]` buffer for
//! keys and one for values; new positions are written in place and the
//! capacity doubles when full, so appending a token costs O(1) amortised
//! copies instead of re-concatenating the whole history every step.

use candle_core::{DType, Device, Tensor};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};

const INITIAL_CAPACITY: usize = 64;

/// The cached keys and values of one sequence, all layers.
///
/// Not `Clone`: buffers are written in place, so a shallow copy would alias.
#[derive(Debug)]
pub struct KvCache {
    k: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    len: usize,
    capacity: usize,
    max_len: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl KvCache {
    /// An empty cache for a model.
    pub fn new(cfg: &LlamaConfig) -> Self {
        Self {
            k: vec![None; cfg.num_layers],
            v: vec![None; cfg.num_layers],
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
        per_layer * self.k.iter().filter(|k| k.is_some()).count()
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
    /// `len..len+n` and returns all keys and values `[kv_heads, len+n, head_dim]`.
    /// The length itself advances in [`KvCache::advance`], once per step.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let n = k.dim(1)?;
        let needed = self.len + n;
        if needed > self.capacity || self.k[layer].is_none() {
            self.grow(needed)?;
        }
        let kb = self.k[layer].as_ref().expect("allocated by grow");
        let vb = self.v[layer].as_ref().expect("allocated by grow");
        kb.slice_set(&k.contiguous()?, 1, self.len)?;
        vb.slice_set(&v.contiguous()?, 1, self.len)?;
        Ok((kb.narrow(1, 0, needed)?, vb.narrow(1, 0, needed)?))
    }

    /// Marks `n` positions as written in every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    fn grow(&mut self, needed: usize) -> Result<()> {
        let new_cap = if needed <= self.capacity {
            self.capacity.max(INITIAL_CAPACITY)
        } else {
            needed
                .max(self.capacity * 2)
                .max(INITIAL_CAPACITY)
                .min(self.max_len.max(needed))
        };
        let shape = (self.kv_heads, new_cap, self.head_dim);
        for buf in self.k.iter_mut().chain(self.v.iter_mut()) {
            let fresh = Tensor::zeros(shape, DType::F32, &Device::Cpu)?;
            if let Some(old) = buf.as_ref() {
                if self.len > 0 {
                    fresh.slice_set(&old.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                }
            }
            *buf = Some(fresh);
        }
        self.capacity = new_cap;
        Ok(())
    }
}
