//! The engine's Prometheus metrics, measured where they happen: the
//! scheduler thread observes each sequence's time to first token and time
//! per output token, and counts the prompt tokens it prefills and the
//! tokens it generates. Named as vLLM names them
//! (`vllm:time_to_first_token_seconds`, `vllm:time_per_output_token_seconds`,
//! `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`), with vLLM's
//! histogram buckets, so dashboards built for vLLM read them unchanged.
//!
//! The node registers them in its `/metrics` registry
//! ([`EngineMetrics::register`], reached through
//! [`EngineHandle::metrics`](crate::EngineHandle::metrics)); the gauges
//! that are read when scraped (running and waiting requests, the adapter
//! cache) come from [`EngineStats`](crate::EngineStats) and
//! [`CacheStats`](crate::CacheStats).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// vLLM's buckets for the time to first token, in seconds.
const TTFT_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// vLLM's buckets for the time per output token, in seconds.
const TPOT_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

/// The engine's histograms and token counters (cheap to clone: the clones
/// share the values).
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    /// From a request's arrival to its first generated token.
    pub(crate) time_to_first_token: Histogram,
    /// Between two generated tokens of one sequence.
    pub(crate) time_per_output_token: Histogram,
    /// Prompt tokens prefilled.
    pub(crate) prompt_tokens: Counter,
    /// Tokens generated.
    pub(crate) generation_tokens: Counter,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            time_to_first_token: Histogram::new(TTFT_BUCKETS),
            time_per_output_token: Histogram::new(TPOT_BUCKETS),
            prompt_tokens: Counter::default(),
            generation_tokens: Counter::default(),
        }
    }
}

impl EngineMetrics {
    /// Adds them to `registry` under vLLM's names (counters get the
    /// `_total` suffix when encoded).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds",
            self.time_to_first_token.clone(),
        );
        registry.register(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds",
            self.time_per_output_token.clone(),
        );
        registry.register(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed",
            self.prompt_tokens.clone(),
        );
        registry.register(
            "vllm:generation_tokens",
            "Number of generation tokens processed",
            self.generation_tokens.clone(),
        );
    }
}
