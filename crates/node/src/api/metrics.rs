//! `GET /metrics`: what an operator watches, in the Prometheus text format
//! (version 0.0.4), encoded by `prometheus-client`.
//!
//! Serving metrics keep vLLM's names where vLLM has one
//! (`vllm:num_requests_running`, `vllm:num_requests_waiting`,
//! `vllm:time_to_first_token_seconds`, `vllm:time_per_output_token_seconds`,
//! `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`; the
//! histograms and token counters are measured in the engine,
//! `trib_serve::EngineMetrics`); the node's own have the `trib:` prefix:
//! the adapter cache's hits, misses, loads and evictions, the block height,
//! the mempool depth, the job queue and the settlement lag (settlements of
//! served answers not yet in a block). Gauges and the cache's counters are
//! read when scraped ([`NodeCollector`]).
//!
//! The route is public, like vLLM's: it carries counts and timings only,
//! no account, key, prompt or answer (docs/node.md, metrics).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use trib_client::wire::JobStatus;

use super::ApiError;
use crate::chain::Chain;
use crate::jobs::JobQueue;
use crate::serving::Serving;

/// The `/metrics` route over the node's services.
pub(crate) fn routes(chain: Arc<Chain>, jobs: JobQueue, serving: Option<Arc<Serving>>) -> Router {
    let mut registry = Registry::default();
    if let Some(s) = &serving {
        s.engine.metrics().register(&mut registry);
    }
    registry.register_collector(Box::new(NodeCollector {
        chain,
        jobs,
        serving,
    }));
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry))
}

async fn scrape(State(registry): State<Arc<Registry>>) -> Result<Response, ApiError> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .map_err(|e| ApiError::internal(format!("cannot encode the metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

/// The values read at each scrape.
struct NodeCollector {
    chain: Arc<Chain>,
    jobs: JobQueue,
    serving: Option<Arc<Serving>>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector")
            .field("serving", &self.serving.is_some())
            .finish()
    }
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let pending = self.chain.pending_counts();
        gauge(
            &mut e,
            "trib:block_height",
            "Height of the last committed block",
            self.chain.height(),
        )?;
        gauge(
            &mut e,
            "trib:mempool_transactions",
            "Transactions waiting in the mempool",
            pending.transactions as u64,
        )?;
        gauge(
            &mut e,
            "trib:settlements_pending",
            "Settlements of served answers not yet in a block (settlement lag)",
            pending.settlements as u64,
        )?;
        let jobs = self.jobs.list();
        let count = |s: JobStatus| jobs.iter().filter(|j| j.status == s).count() as u64;
        gauge(
            &mut e,
            "trib:jobs_queued",
            "Training jobs waiting for the worker",
            count(JobStatus::Queued),
        )?;
        gauge(
            &mut e,
            "trib:jobs_running",
            "Training jobs being trained",
            count(JobStatus::Running),
        )?;
        let Some(s) = &self.serving else {
            return Ok(());
        };
        let stats = s.engine.stats();
        gauge(
            &mut e,
            "vllm:num_requests_running",
            "Number of requests in model execution batches",
            stats.running as u64,
        )?;
        gauge(
            &mut e,
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed",
            stats.queued as u64,
        )?;
        let cache = s.engine.adapters();
        counter(
            &mut e,
            "trib:adapter_cache_hits",
            "Requests served from a resident adapter",
            cache.hits,
        )?;
        counter(
            &mut e,
            "trib:adapter_cache_misses",
            "Requests that found their adapter absent",
            cache.misses,
        )?;
        counter(
            &mut e,
            "trib:adapter_loads",
            "Adapter loads run (fetch and parse)",
            cache.loads,
        )?;
        counter(
            &mut e,
            "trib:adapter_load_failures",
            "Adapter loads that failed",
            cache.load_failures,
        )?;
        counter(
            &mut e,
            "trib:adapter_evictions",
            "Adapters evicted to make room",
            cache.evictions,
        )?;
        gauge(
            &mut e,
            "trib:adapter_cache_bytes",
            "Bytes of loaded adapter weights",
            cache.bytes as u64,
        )?;
        Ok(())
    }
}
