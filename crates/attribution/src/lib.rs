//! Proof of Attribution: suffix-array (infini-gram layout) span tracing in the
//! manner of OLMoTrace, and gradient influence (DataInf, TracIn) over LoRA
//! parameters. Turns scores into per-contribution weights.
