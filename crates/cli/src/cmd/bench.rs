//! `trib bench serve`: load-test a running node's OpenAI-compatible
//! endpoints from another process.
//!
//! `--concurrency` closed-loop clients share `--requests` chat requests;
//! request *i* asks for model *i* mod D of the `--models` list (by default
//! every adapter `GET /v1/models` lists, or the base model when there is
//! none), so a run with D adapters keeps up to min(D, concurrency) distinct
//! adapters in flight. Requests stream (server-sent events) so that the
//! client sees each token when the node sends it:
//!
//! - TTFT: request sent → first content chunk;
//! - TPOT: (last content chunk − first content chunk) / (completion tokens − 1);
//! - output tok/s: completion tokens of all successful requests / wall time.
//!
//! The node's final chunk waits for the answer's settlement, so the
//! end-to-end latency includes it; TTFT and TPOT do not. The load average
//! is printed before and after because this machine is shared.
//!
//! `trib bench adapters --count D --key producer` prepares such a run: it
//! writes D random rank-8 q/v PEFT adapters (`B` non-zero, so each changes
//! the output) for the home's served base model into `<home>/adapters/<id>/`
//! and registers them on the ledger.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{json, Value};
use trib_client::{ChatTiming, NodeClient};
use trib_node::ledger::Action;
use trib_node::model::{LoraAdapter, LoraConfig, LoraTarget, Model, Tensor, WeightFormat};
use trib_node::types::{Amount, Hash};

use super::datanet::{sign_submit_wait, KeyOpts};
use crate::Global;

/// `trib bench` subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Drive a running node's `/v1/chat/completions` with concurrent
    /// streaming clients across adapters; report output tok/s, TTFT and
    /// TPOT percentiles.
    Serve(ServeArgs),
    /// Write random rank-8 q/v PEFT adapters for the home's served base
    /// model into its adapter store and register them on the ledger (a
    /// benchmark fixture for `trib bench serve`).
    Adapters(AdaptersArgs),
}

/// `trib bench adapters`.
#[derive(Args, Debug)]
pub struct AdaptersArgs {
    /// How many adapters.
    #[arg(long, default_value_t = 8)]
    count: usize,
    /// Seed of the first adapter (adapter k uses seed + k).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `B` is drawn from U(-b_scale, b_scale).
    #[arg(long, default_value_t = 0.05)]
    b_scale: f32,
    /// Price per 1k prompt tokens, OPEN.
    #[arg(long, default_value = "0.001")]
    price_in: String,
    /// Price per 1k completion tokens, OPEN.
    #[arg(long, default_value = "0.002")]
    price_out: String,
    #[command(flatten)]
    key: KeyOpts,
}

/// `trib bench serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// API key the requests are charged to (`trib apikey new`).
    #[arg(long, env = "TRIB_API_KEY")]
    api_key: String,
    /// Models to spread the requests over (adapter ids or names, or the base
    /// model), comma-separated [default: every adapter the node lists].
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Use only the first D models of the list.
    #[arg(long)]
    distinct: Option<usize>,
    /// Clients sending requests at the same time.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Requests in total.
    #[arg(long, default_value_t = 32)]
    requests: usize,
    /// `max_tokens` of each request.
    #[arg(long, default_value_t = 32)]
    max_tokens: u32,
    /// The user message of each request (request *i* appends " (i)" so that
    /// prompts differ).
    #[arg(
        long,
        default_value = "Write a short paragraph about rivers and the sea."
    )]
    prompt: String,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

/// Runs `trib bench`.
pub fn run(g: &Global, c: BenchCommand) -> anyhow::Result<()> {
    let a = match c {
        BenchCommand::Serve(a) => a,
        BenchCommand::Adapters(a) => return adapters(g, a),
    };
    if a.concurrency == 0 || a.requests == 0 {
        bail!("--concurrency and --requests must be at least 1");
    }
    let report = super::runtime()?.block_on(serve(&g.node, a))?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    if report.ok == 0 {
        bail!(
            "no request succeeded; first error: {}",
            report.errors.first().map(String::as_str).unwrap_or("none")
        );
    }
    Ok(())
}

/// Writes and registers `a.count` random adapters.
fn adapters(g: &Global, a: AdaptersArgs) -> anyhow::Result<()> {
    let home = g.home();
    let config = home.load_config()?;
    let base = config
        .base_model
        .clone()
        .context("the home's config.toml names no base_model: the node serves nothing")?;
    let info = trib_node::describe_model(&base)?;
    let model = Model::load(&base, WeightFormat::Quantized)
        .with_context(|| format!("loading {}", base.display()))?;
    let parse = |s: &str| Amount::parse_open(s).map_err(|e| anyhow::anyhow!("price {s:?}: {e}"));
    let (price_in, price_out) = (parse(&a.price_in)?, parse(&a.price_out)?);
    let (sk, wait) = a.key.load(g)?;
    let client = g.client()?;
    let store = home.root().join("adapters");
    std::fs::create_dir_all(&store)?;
    let rt = super::runtime()?;
    let mut ids = Vec::new();
    for k in 0..a.count {
        let seed = a.seed + k as u64;
        let adapter = random_adapter(&model, &info.name, a.b_scale, seed)?;
        let tmp = store.join(format!(".bench-{seed}.tmp"));
        let id = trib_node::model::save_peft(&adapter, &tmp)?;
        let dest = store.join(id.to_string());
        if dest.exists() {
            std::fs::remove_dir_all(&tmp)?;
        } else {
            std::fs::rename(&tmp, &dest)?;
        }
        let action = Action::RegisterAdapter {
            adapter: id,
            base: info.id,
            name: format!("bench-r8-{seed:03}"),
            datanets: Vec::new(),
            config_hash: Hash::of(b"trib bench adapters"),
            metrics_hash: Hash::of(b"none"),
            price_in_per_1k: price_in,
            price_out_per_1k: price_out,
        };
        rt.block_on(sign_submit_wait(&client, &sk, action, wait))
            .with_context(|| format!("registering adapter {id}"))?;
        ids.push(id.to_string());
    }
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "adapters": ids }))?
        );
    } else {
        for id in &ids {
            println!("{id}");
        }
    }
    Ok(())
}

/// A rank-8 q/v adapter with PEFT's `A` and a uniform random `B` (PEFT's
/// zero `B` would make it a no-op).
fn random_adapter(
    model: &Model,
    base_name: &str,
    b_scale: f32,
    seed: u64,
) -> anyhow::Result<LoraAdapter> {
    let lc = LoraConfig {
        r: 8,
        alpha: 16.0,
        dropout: 0.0,
        targets: vec![LoraTarget::QProj, LoraTarget::VProj],
        use_rslora: false,
    };
    let adapter = LoraAdapter::init(lc, model.config(), base_name.to_string(), seed)?;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for (_, _, pair) in adapter.iter_pairs() {
        let cur = pair.b.as_tensor();
        let vals: Vec<f32> = (0..cur.elem_count())
            .map(|_| {
                // xorshift64*, as trib-serve's RandomAdapter.
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let u =
                    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
                (2.0 * u - 1.0) * b_scale
            })
            .collect();
        pair.b
            .set(&Tensor::from_vec(vals, cur.dims(), cur.device())?)?;
    }
    Ok(adapter)
}

/// The run's results (`--json` prints this).
#[derive(Debug, Serialize)]
struct Report {
    node: String,
    models: Vec<String>,
    concurrency: usize,
    requests: usize,
    max_tokens: u32,
    ok: usize,
    failed: usize,
    /// The first few error messages.
    errors: Vec<String>,
    wall_s: f64,
    completion_tokens: u64,
    output_tok_per_s: f64,
    ttft_ms_p50: f64,
    ttft_ms_p99: f64,
    tpot_ms_p50: f64,
    tpot_ms_p99: f64,
    e2e_ms_p50: f64,
    e2e_ms_p99: f64,
    load_avg_before: String,
    load_avg_after: String,
}

impl Report {
    fn print(&self) {
        println!(
            "{} requests ({} ok, {} failed) over {} model(s) at concurrency {}, max_tokens {}",
            self.requests,
            self.ok,
            self.failed,
            self.models.len(),
            self.concurrency,
            self.max_tokens
        );
        println!(
            "output: {} tokens in {:.2} s = {:.1} tok/s",
            self.completion_tokens, self.wall_s, self.output_tok_per_s
        );
        println!(
            "TTFT p50 {:.1} ms, p99 {:.1} ms; TPOT p50 {:.1} ms, p99 {:.1} ms; end-to-end p50 {:.1} ms, p99 {:.1} ms",
            self.ttft_ms_p50,
            self.ttft_ms_p99,
            self.tpot_ms_p50,
            self.tpot_ms_p99,
            self.e2e_ms_p50,
            self.e2e_ms_p99
        );
        println!(
            "load average before: {}; after: {}",
            self.load_avg_before, self.load_avg_after
        );
        for e in &self.errors {
            println!("error: {e}");
        }
    }
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The `q`-quantile (nearest rank) of `v` in milliseconds; 0 when empty.
fn quantile_ms(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1].as_secs_f64() * 1e3
}

/// The models to use: `--models`, or every adapter of `GET /v1/models`
/// (the base model when none is registered).
async fn pick_models(client: &NodeClient, a: &ServeArgs) -> anyhow::Result<Vec<String>> {
    let node = client.base_url();
    let mut models = if a.models.is_empty() {
        let v = client.openai_models().await?;
        let data = v["data"].as_array().cloned().unwrap_or_default();
        let id = |m: &Value| m["id"].as_str().map(str::to_string);
        let adapters: Vec<String> = data
            .iter()
            .filter(|m| m.get("parent").is_some())
            .filter_map(id)
            .collect();
        if adapters.is_empty() {
            data.iter().filter_map(id).take(1).collect()
        } else {
            adapters
        }
    } else {
        a.models.clone()
    };
    if let Some(d) = a.distinct {
        if d == 0 || d > models.len() {
            bail!(
                "--distinct {d} must be between 1 and the {} models available",
                models.len()
            );
        }
        models.truncate(d);
    }
    if models.is_empty() {
        bail!("the node at {node} serves no model (no base_model in its config?)");
    }
    Ok(models)
}

async fn serve(node: &str, a: ServeArgs) -> anyhow::Result<Report> {
    let client = NodeClient::with_idle_connections(node, a.concurrency)?;
    let timeout = Duration::from_secs(a.timeout_s);
    let models = Arc::new(pick_models(&client, &a).await?);
    let next = Arc::new(AtomicUsize::new(0));
    let load_before = load_avg();
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..a.concurrency.min(a.requests) {
        let (client, models, next) = (client.clone(), models.clone(), next.clone());
        let (key, prompt, requests, max_tokens) = (
            a.api_key.clone(),
            a.prompt.clone(),
            a.requests,
            a.max_tokens,
        );
        clients.push(tokio::spawn(async move {
            let mut out: Vec<Result<ChatTiming, String>> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return out;
                }
                let body = json!({
                    "model": models[i % models.len()],
                    "messages": [{ "role": "user", "content": format!("{prompt} ({i})") }],
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "stream": true,
                });
                out.push(
                    client
                        .chat_stream_timed(&key, &body, timeout)
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
        }));
    }
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    let mut failed = 0;
    for c in clients {
        for r in c.await.context("a bench client panicked")? {
            match r {
                Ok(s) => samples.push(s),
                Err(e) => {
                    failed += 1;
                    if errors.len() < 5 {
                        errors.push(e);
                    }
                }
            }
        }
    }
    let wall = started.elapsed();
    let completion_tokens: u64 = samples.iter().map(|s| s.completion_tokens).sum();
    let mut ttft: Vec<Duration> = samples.iter().map(|s| s.ttft).collect();
    let mut tpot: Vec<Duration> = samples.iter().filter_map(|s| s.tpot).collect();
    let mut e2e: Vec<Duration> = samples.iter().map(|s| s.e2e).collect();
    Ok(Report {
        node: client.base_url().to_string(),
        models: models.to_vec(),
        concurrency: a.concurrency,
        requests: a.requests,
        max_tokens: a.max_tokens,
        ok: samples.len(),
        failed,
        errors,
        wall_s: wall.as_secs_f64(),
        completion_tokens,
        output_tok_per_s: completion_tokens as f64 / wall.as_secs_f64().max(1e-9),
        ttft_ms_p50: quantile_ms(&mut ttft, 0.5),
        ttft_ms_p99: quantile_ms(&mut ttft, 0.99),
        tpot_ms_p50: quantile_ms(&mut tpot, 0.5),
        tpot_ms_p99: quantile_ms(&mut tpot, 0.99),
        e2e_ms_p50: quantile_ms(&mut e2e, 0.5),
        e2e_ms_p99: quantile_ms(&mut e2e, 0.99),
        load_avg_before: load_before,
        load_avg_after: load_avg(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_in_milliseconds() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&mut v, 0.5), 50.0);
        assert_eq!(quantile_ms(&mut v, 0.99), 99.0);
        assert_eq!(quantile_ms(&mut v, 1.0), 100.0);
        assert_eq!(quantile_ms(&mut [], 0.5), 0.0);
        assert_eq!(quantile_ms(&mut [Duration::from_millis(7)], 0.99), 7.0);
    }
}
