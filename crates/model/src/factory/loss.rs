//! Masked next-token cross-entropy over the logit rows that predict a
//! target, as one fused op with a hand-written backward.

use candle_core::{DType, Device, Tensor};

use super::data::Batch;
use super::error::Result;
use crate::kernels::train::cross_entropy_rows;
use crate::lora::{LoraAdapter, LoraDropout};
use crate::Model;

/// Positions of a batch that carry loss: `(logit row, target token)` pairs
/// where the logit row `r·len + t − 1` predicts token `t` of row `r`.
pub(crate) fn target_positions(batch: &Batch) -> (Vec<u32>, Vec<u32>) {
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for r in 0..batch.rows {
        for t in 1..batch.len {
            let i = r * batch.len + t;
            if batch.targets[i] {
                rows.push((i - 1) as u32);
                ids.push(batch.tokens[i]);
            }
        }
    }
    (rows, ids)
}

/// The summed cross-entropy over the batch's targets, as a scalar tensor
/// connected to the graph, and the number of targets.
///
/// Only the rows that predict a target go through the log-softmax (masked
/// rows are gathered away first), so prompt tokens cost no softmax work.
pub(crate) fn masked_ce_sum(logits: &Tensor, batch: &Batch) -> Result<(Tensor, usize)> {
    let (b, t, v) = logits.dims3()?;
    let (rows, ids) = target_positions(batch);
    let n = rows.len();
    if n == 0 {
        return Ok((Tensor::zeros((), DType::F32, logits.device())?, 0));
    }
    let flat = logits.reshape((b * t, v))?;
    let picked = flat.index_select(&Tensor::from_vec(rows, n, logits.device())?, 0)?; // [n, v]
    Ok((ce_sum(&picked, ids)?, n))
}

/// The summed cross-entropy of a batch's targets, taking the model's
/// training forward with the LM head run over the target-predicting rows
/// only ([`Model::forward_train_rows`]): equal to [`masked_ce_sum`] over
/// [`Model::forward_train`], without the head's work on prompt positions.
pub(crate) fn masked_ce_sum_train(
    model: &Model,
    batch: &Batch,
    adapter: Option<&LoraAdapter>,
    dropout: Option<&mut LoraDropout>,
) -> Result<(Tensor, usize)> {
    let (rows, ids) = target_positions(batch);
    let n = rows.len();
    if n == 0 {
        return Ok((Tensor::zeros((), DType::F32, &Device::Cpu)?, 0));
    }
    let picked = model.forward_train_rows(&token_tensor(batch)?, &rows, adapter, dropout)?;
    Ok((ce_sum(&picked, ids)?, n))
}

/// `−Σ_i log softmax(logits_i)[ids_i]` over `[n, vocab]` logits: one fused
/// op (log-softmax, gather and the `softmax − onehot` gradient in one pass
/// per row, crate::kernels::train) instead of about sixteen passes of
/// composed candle ops over the `[n, vocab]` logits.
fn ce_sum(logits: &Tensor, ids: Vec<u32>) -> Result<Tensor> {
    Ok(cross_entropy_rows(logits, ids)?.sum_all()?)
}

/// The batch's token ids as a `[rows, len]` u32 tensor.
pub(crate) fn token_tensor(batch: &Batch) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        batch.tokens.clone(),
        (batch.rows, batch.len),
        &Device::Cpu,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_matches_a_hand_computed_cross_entropy() -> Result<()> {
        // One row of three tokens, vocabulary 2; only token 2 is a target,
        // predicted from position 1 whose logits are [0, ln 3] → p(1) = 3/4.
        let batch = Batch {
            rows: 1,
            len: 3,
            tokens: vec![0, 0, 1],
            targets: vec![false, false, true],
            real_tokens: 3,
        };
        let logits = Tensor::new(
            &[[[5.0f32, -5.0], [0.0, 3f32.ln()], [9.0, 9.0]]],
            &Device::Cpu,
        )?;
        let (sum, n) = masked_ce_sum(&logits, &batch)?;
        assert_eq!(n, 1);
        let want = -(0.75f32.ln());
        assert!((sum.to_scalar::<f32>()? - want).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn head_over_target_rows_gives_the_same_loss_and_gradients_as_the_full_head(
    ) -> anyhow::Result<()> {
        use crate::lora::{LoraConfig, LoraTarget};
        use crate::tiny::{write_tiny_gguf, TinySpec};
        use crate::WeightFormat;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("tiny.gguf");
        write_tiny_gguf(
            &path,
            &TinySpec::default(),
            9,
            candle_core::quantized::GgmlDType::F32,
        )?;
        let model = Model::load(&path, WeightFormat::F32)?;
        let lora = LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: LoraTarget::ALL.to_vec(),
            use_rslora: false,
        };
        let adapter = LoraAdapter::init(lora, model.config(), "tiny", 3)?;
        // Non-zero B, so that A gets a gradient too.
        for (_, _, p) in adapter.iter_pairs() {
            p.b.set(&(p.b.ones_like()? * 0.01)?)?;
        }
        // Two rows of different lengths (padding) with prompt positions
        // that carry no loss.
        let seqs = [
            super::super::data::Sequence {
                tokens: vec![5, 9, 13, 17, 21, 25, 29],
                targets: vec![false, false, false, true, true, true, true],
                examples: vec![],
            },
            super::super::data::Sequence {
                tokens: vec![7, 11, 15, 19],
                targets: vec![false, false, true, true],
                examples: vec![],
            },
        ];
        let batch = Batch::pad(&seqs.iter().collect::<Vec<_>>(), 0);
        let full = model.forward_train(&token_tensor(&batch)?, Some(&adapter), None)?;
        let (want, n_want) = masked_ce_sum(&full, &batch)?;
        let (got, n_got) = masked_ce_sum_train(&model, &batch, Some(&adapter), None)?;
        assert_eq!((n_got, n_want), (6, 6));
        let (w, g) = (want.to_scalar::<f32>()?, got.to_scalar::<f32>()?);
        assert!((w - g).abs() < 1e-5 * w.abs(), "loss {g} vs {w}");
        let (gw, gg) = (want.backward()?, got.backward()?);
        let mut checked = 0;
        for (_, _, p) in adapter.iter_pairs() {
            for v in [&p.a, &p.b] {
                let a = gw.get(v.as_tensor()).expect("gradient, full head");
                let b = gg.get(v.as_tensor()).expect("gradient, target rows");
                let diff: f32 = (a - b)?.abs()?.max_all()?.to_scalar()?;
                let scale: f32 = a.abs()?.max_all()?.to_scalar()?;
                assert!(scale > 0.0, "a zero gradient would make this vacuous");
                assert!(
                    diff <= 1e-4 * scale,
                    "gradient differs by {diff} (scale {scale})"
                );
                checked += 1;
            }
        }
        assert!(checked > 0);
        Ok(())
    }
}
