//! The receipt method names: protocol constants, written into every
//! inference receipt and checked by verify.

use crate::evidence::AttributionEvidence;

/// The receipt method of an answer settled with token-span weights alone.
pub const TOKEN_SPANS: &str = "token-spans";
/// The receipt method of an answer settled by the ledger's fallback rule
/// (no span cleared the thresholds, no gradient credited anyone, the model
/// has no datanet, or the answer could not be traced).
pub const DATANET_FALLBACK: &str = "datanet-fallback";
/// The receipt method when only DataInf credited anyone (no span cleared
/// the thresholds).
pub const DATAINF: &str = "datainf";
/// The receipt method of spans combined with DataInf (70% / 30%).
pub const TOKEN_SPANS_DATAINF: &str = "token-spans+datainf";

/// The receipt method of sealed evidence: [`TOKEN_SPANS`],
/// [`TOKEN_SPANS_DATAINF`], [`DATAINF`] or [`DATANET_FALLBACK`].
pub fn receipt_method(evidence: &AttributionEvidence) -> &'static str {
    let gradient = evidence
        .gradient
        .as_ref()
        .is_some_and(|g| !g.weights.is_empty());
    match (
        evidence.weights.is_empty(),
        evidence.token_weights.is_empty(),
        gradient,
    ) {
        (true, _, _) => DATANET_FALLBACK,
        (false, false, true) => TOKEN_SPANS_DATAINF,
        (false, true, true) => DATAINF,
        (false, _, false) => TOKEN_SPANS,
    }
}
