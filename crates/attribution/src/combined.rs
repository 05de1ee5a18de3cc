//! Adding a gradient method's weights to evidence already sealed by the
//! token method.
//!
//! At answer time the node traces spans first (fast, always available) and
//! scores the adapter's gradient cache second (only for adapters that have
//! one); `verify` re-traces the spans and re-applies the stored gradient part.
//! [`AttributionEvidence::with_gradient`] is the one place that combines the
//! two, by the same rule as sealing with the gradient in hand
//! ([`crate::combine_weights`], docs/attribution.md §3–§4), so both paths
//! produce identical evidence and hash.

use crate::error::Result;
use crate::evidence::{AttributionEvidence, AttributionMethod, GradientEvidence};
use crate::weights::combine_weights;

impl AttributionEvidence {
    /// This evidence with `gradient` as its gradient part: the final weights
    /// become `combine_weights(token_weights, gradient.weights,
    /// thresholds.token_share_ppm)`, the gradient method joins `methods`
    /// when it has weights, `fallback_to_datanets` is re-derived, and the
    /// hash is re-sealed. Any gradient part already present is replaced.
    pub fn with_gradient(&self, gradient: GradientEvidence) -> Result<Self> {
        let weights = combine_weights(
            &self.token_weights,
            &gradient.weights,
            self.thresholds.token_share_ppm,
        )?;
        let mut methods: Vec<AttributionMethod> = Vec::new();
        if !self.token_weights.is_empty() {
            methods.push(AttributionMethod::TokenSpans);
        }
        if !gradient.weights.is_empty() {
            methods.push(gradient.method);
        }
        let mut ev = self.clone();
        ev.methods = methods;
        ev.fallback_to_datanets = weights.is_empty();
        ev.weights = weights;
        ev.gradient = Some(gradient);
        ev.evidence_hash = ev.compute_hash();
        Ok(ev)
    }
}
