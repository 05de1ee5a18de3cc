//! Masked next-token cross-entropy, from differentiable ops only.

use candle_core::{DType, Device, Tensor, D};

use super::data::Batch;
use super::error::Result;

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
    let dev = logits.device();
    let picked = flat.index_select(&Tensor::from_vec(rows, n, dev)?, 0)?; // [n, v]
    let logp = candle_nn::ops::log_softmax(&picked, D::Minus1)?;
    let ids = Tensor::from_vec(ids, (n, 1), dev)?;
    let nll = logp.gather(&ids, 1)?.sum_all()?.neg()?;
    Ok((nll, n))
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
}
