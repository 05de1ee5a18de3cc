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
//! `--duration-s` runs the clients for a time instead of a request count
//! (the load test of `scripts/faults/load.sh`); `--api-key` takes several
//! keys, client *c* using key *c* mod K. Failures are counted by HTTP
//! status (429 from the node's limits, 402 once an allowance is spent) or
//! kind, and each key's settled answers are summed (receipts and fees from
//! the final chunks) so that a caller can check the ledger's allowances
//! against them.
//!
//! `trib bench adapters --count D --key producer` prepares such a run: it
//! writes D random rank-8 q/v PEFT adapters (`B` non-zero, so each changes
//! the output) for the home's served base model into `<home>/adapters/<id>/`
//! and registers them on the ledger.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{json, Value};
use trib_client::{ChatTiming, ClientError, NodeClient};
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
    /// API keys the requests are charged to (`trib apikey new`),
    /// comma-separated: client c uses key c mod K.
    #[arg(long, env = "TRIB_API_KEY", value_delimiter = ',', required = true)]
    api_key: Vec<String>,
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
    /// Run for this many seconds instead (clients start no request after
    /// it; `--requests` is then ignored).
    #[arg(long)]
    duration_s: Option<u64>,
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
    if a.concurrency == 0 || a.requests == 0 || a.duration_s == Some(0) {
        bail!("--concurrency, --requests and --duration-s must be at least 1");
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
    /// Requests sent (`--requests`, or as many as `--duration-s` allowed).
    requests: usize,
    duration_s: Option<u64>,
    max_tokens: u32,
    ok: usize,
    failed: usize,
    /// Failures by HTTP status (`"429"`, `"402"`…) or kind
    /// (`"unreachable"`, `"stream"`, `"other"`).
    failed_by: BTreeMap<String, usize>,
    /// The first few error messages.
    errors: Vec<String>,
    /// Per API key (in `--api-key` order): its settled answers.
    keys: Vec<KeyReport>,
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

/// One API key's answers in a run.
#[derive(Debug, Default, Serialize)]
struct KeyReport {
    /// The key's first characters (`trib-sk-` and 4 hex digits).
    prefix: String,
    /// Answers streamed to the end.
    ok: usize,
    /// Answers whose final chunk named a receipt.
    settled: usize,
    /// The fees of those receipts, base units.
    fees: String,
    /// Answers whose final chunk carried a `settlement_error`.
    settlement_errors: usize,
    /// Its failed requests, as [`Report::failed_by`].
    failed_by: BTreeMap<String, usize>,
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
        if !self.failed_by.is_empty() {
            let by: Vec<String> = self
                .failed_by
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            println!("failed by status or kind: {}", by.join(", "));
        }
        for k in &self.keys {
            println!(
                "key {}: {} ok, {} settled for {} base units, {} settlement errors",
                k.prefix, k.ok, k.settled, k.fees, k.settlement_errors
            );
        }
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

/// How a failed request is counted: its HTTP status, or its kind.
fn failure_kind(e: &ClientError) -> String {
    match e {
        e if e.status().is_some() => e.status().unwrap_or_default().to_string(),
        ClientError::Unreachable { .. } => "unreachable".into(),
        ClientError::Stream { .. } => "stream".into(),
        _ => "other".into(),
    }
}

async fn serve(node: &str, a: ServeArgs) -> anyhow::Result<Report> {
    let client = NodeClient::with_idle_connections(node, a.concurrency)?;
    let timeout = Duration::from_secs(a.timeout_s);
    let models = Arc::new(pick_models(&client, &a).await?);
    let next = Arc::new(AtomicUsize::new(0));
    let load_before = load_avg();
    let started = Instant::now();
    let deadline = a.duration_s.map(|s| started + Duration::from_secs(s));
    let requests = if deadline.is_some() {
        usize::MAX
    } else {
        a.requests
    };
    let mut clients = Vec::new();
    for c in 0..a.concurrency.min(requests) {
        let (client, models, next) = (client.clone(), models.clone(), next.clone());
        let (key_index, prompt, max_tokens) = (c % a.api_key.len(), a.prompt.clone(), a.max_tokens);
        let key = a.api_key[key_index].clone();
        clients.push(tokio::spawn(async move {
            let mut out: Vec<(usize, Result<ChatTiming, ClientError>)> = Vec::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return out;
                }
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
                let r = client.chat_stream_timed(&key, &body, timeout).await;
                if r.is_err() {
                    // A refused request (429, 402…) comes back at once: do
                    // not spin on it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                out.push((key_index, r));
            }
        }));
    }
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    let mut failed_by: BTreeMap<String, usize> = BTreeMap::new();
    let mut keys: Vec<(KeyReport, u128)> = a
        .api_key
        .iter()
        .map(|k| {
            let prefix = k.get(..12).unwrap_or(k).to_string();
            (
                KeyReport {
                    prefix,
                    ..KeyReport::default()
                },
                0,
            )
        })
        .collect();
    for c in clients {
        for (key_index, r) in c.await.context("a bench client panicked")? {
            match r {
                Ok(s) => {
                    let (k, fees) = &mut keys[key_index];
                    k.ok += 1;
                    if let Some((_, fee)) = &s.settled {
                        k.settled += 1;
                        *fees += fee;
                    }
                    if s.settlement_error.is_some() {
                        k.settlement_errors += 1;
                    }
                    samples.push(s);
                }
                Err(e) => {
                    let kind = failure_kind(&e);
                    *keys[key_index].0.failed_by.entry(kind.clone()).or_default() += 1;
                    *failed_by.entry(kind).or_default() += 1;
                    if errors.len() < 5 {
                        errors.push(e.to_string());
                    }
                }
            }
        }
    }
    let wall = started.elapsed();
    let failed = failed_by.values().sum();
    let completion_tokens: u64 = samples.iter().map(|s| s.completion_tokens).sum();
    let mut ttft: Vec<Duration> = samples.iter().map(|s| s.ttft).collect();
    let mut tpot: Vec<Duration> = samples.iter().filter_map(|s| s.tpot).collect();
    let mut e2e: Vec<Duration> = samples.iter().map(|s| s.e2e).collect();
    Ok(Report {
        node: client.base_url().to_string(),
        models: models.to_vec(),
        concurrency: a.concurrency,
        requests: samples.len() + failed,
        duration_s: a.duration_s,
        max_tokens: a.max_tokens,
        ok: samples.len(),
        failed,
        failed_by,
        errors,
        keys: keys
            .into_iter()
            .map(|(mut k, fees)| {
                k.fees = fees.to_string();
                k
            })
            .collect(),
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
