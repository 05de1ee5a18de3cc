//! How a projection's weights are held ([`Weight`]: ggml-quantized blocks,
//! dense f32, both, or bf16 tiles for training), a projection with its bias
//! ([`Linear`]) and the weights of one pre-norm decoder block ([`Block`]:
//! two norms and the seven projections LoRA can target). Every
//! architecture stores its layers in these types, and the kernels (the lean
//! decode path, the frozen-weight products) read them; the loaders fill
//! them.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

use crate::error::{ModelError, Result};
use crate::kernels::amx::Bf16Weight;
use crate::kernels::frozen::{frozen_linear, FrozenWeight};
use crate::lora::LoraTarget;

/// Up to this many rows, a [`Weight::Hybrid`] multiplies with the quantized
/// blocks (a memory-bound matrix-vector product, where reading 5 bits per
/// weight for Q4_1 instead of 32 can win when the kernels are SIMD); above
/// it, with the dense copy (a compute-bound matrix product, where candle's
/// f32 gemm with runtime-detected SIMD wins). Measured in docs/model.md.
pub(crate) const QUANTIZED_MAX_ROWS: usize = 1;

/// A projection matrix `[out, in]`, dense f32 or ggml-quantized.
#[derive(Clone, Debug)]
pub(crate) enum Weight {
    /// Quantized blocks, multiplied without dequantizing (no backward).
    Quantized(Arc<QTensor>),
    /// Dense f32.
    Dense(Tensor),
    /// Both: quantized for single-row decode, dense for everything else.
    Hybrid(Arc<QTensor>, Tensor),
    /// bf16 tiles for training's frozen products ([`Bf16Weight`]).
    Bf16(Arc<Bf16Weight>),
}

impl Weight {
    /// `x·Wᵀ` for `x: [n, in]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Weight::Quantized(q) => QMatMul::QTensor(q.clone()).forward(x)?,
            Weight::Dense(w) => x.matmul(&w.t()?)?,
            Weight::Hybrid(q, w) => {
                if x.dim(0)? <= QUANTIZED_MAX_ROWS {
                    QMatMul::QTensor(q.clone()).forward(x)?
                } else {
                    x.matmul(&w.t()?)?
                }
            }
            Weight::Bf16(w) => frozen_linear(x, FrozenWeight::Bf16(w))?,
        })
    }

    /// Dense f32 copy (dequantizing if needed).
    pub(crate) fn to_dense(&self) -> Result<Tensor> {
        Ok(match self {
            Weight::Quantized(q) => q.dequantize(&Device::Cpu)?,
            Weight::Dense(t) | Weight::Hybrid(_, t) => t.clone(),
            Weight::Bf16(w) => w.to_tensor()?,
        })
    }

    /// The weight as the training forward's frozen products take it.
    pub(crate) fn frozen(&self) -> Result<FrozenWeight<'_>> {
        match self {
            Weight::Dense(t) | Weight::Hybrid(_, t) => Ok(FrozenWeight::F32(t)),
            Weight::Bf16(w) => Ok(FrozenWeight::Bf16(w)),
            Weight::Quantized(_) => Err(ModelError::NeedsDenseWeights),
        }
    }

    /// Rows of an embedding matrix.
    pub(crate) fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Weight::Quantized(q) => q.embedding(ids)?,
            Weight::Dense(w) | Weight::Hybrid(_, w) => w.index_select(ids, 0)?,
            Weight::Bf16(w) => w.to_tensor()?.index_select(ids, 0)?,
        })
    }

    /// A short name of the storage type (`Q4_1`, `F32`).
    pub(crate) fn dtype_name(&self) -> String {
        match self {
            Weight::Quantized(q) => format!("{:?}", q.dtype()),
            Weight::Dense(_) => "F32".to_string(),
            Weight::Hybrid(q, _) => format!("{:?}+F32", q.dtype()),
            Weight::Bf16(w) => format!("BF16 ({})", w.kernel().name()),
        }
    }
}

/// A projection with optional bias.
#[derive(Clone, Debug)]
pub(crate) struct Linear {
    pub(crate) weight: Weight,
    pub(crate) bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.forward(x)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// One decoder block.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub(crate) attn_norm: Tensor,
    pub(crate) mlp_norm: Tensor,
    /// q, k, v, o, gate, up, down, indexed by [`LoraTarget::index`].
    pub(crate) linears: [Linear; 7],
}

impl Block {
    pub(crate) fn lin(&self, t: LoraTarget) -> &Linear {
        &self.linears[t as usize]
    }
}

/// Whether a ggml dtype is an actual quantization (not a float format).
pub(crate) fn is_quantized_dtype(d: GgmlDType) -> bool {
    !matches!(d, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}
