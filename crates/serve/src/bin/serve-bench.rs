//! `serve-bench`: OpenLoRA throughput with many adapters in one batch.
//!
//! Drives the real engine over SmolLM2-135M (GGUF Q4_1) with closed-loop
//! clients at a fixed concurrency, each request naming one of D random
//! rank-8 q/v PEFT adapters (D = 1, 8, 64, 256), and reports aggregate output
//! tokens/s, p50/p99 time per output token (TPOT) and time to first token.
//! In the same run it measures the naive alternatives:
//!
//! - *one model copy per adapter*: requests are batched only with requests for
//!   the same adapter (each group runs its own decode, as separate merged
//!   copies would); memory is one merged f32 copy per adapter;
//! - *merge per request*: each request merges its adapter into the weights
//!   (`Model::merge_adapter`) and generates alone.
//!
//! and the adapter cold-load latency and bytes per cached adapter.
//!
//! ```text
//! cargo run --release -p trib-serve --bin serve-bench -- \
//!     --threads 2 --concurrency 32 --new-tokens 32 --adapters 1,8,64,256
//! ```
//!
//! `--adapter-dir DIR` keeps the generated adapters (`DIR/bench-r8-NNN/`)
//! for the peer scripts `scripts/bench/serve_peft.py` and
//! `scripts/bench/serve_llamacpp.py`.
//!
//! Every row also reports the process's CPU-seconds (user + system, all
//! threads, from `/proc/self/stat`) and output tokens per CPU-second: on a
//! machine shared with other jobs the wall-clock rate moves with the load,
//! the CPU cost of a fixed amount of work much less. `--repeats N` runs the
//! mixed-batch rows N times, interleaved (1, 8, 64, 1, 8, 64, …), and ends
//! with their medians.

use std::error::Error;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trib_model::{KvCache, LoraAdapter, WeightFormat};
use trib_serve::{
    AdapterFiles, AdapterName, BatchModel, CacheConfig, ChatMessage, DecodeSlot, Engine,
    EngineConfig, EngineHandle, EngineLimits, GenerateRequest, LocalDirStore, ModelError, Prompt,
    RandomAdapter, SamplingParams, ServedModel, StreamEvent,
};

type Res<T> = Result<T, Box<dyn Error>>;

struct Args {
    model: PathBuf,
    threads: usize,
    concurrency: usize,
    new_tokens: usize,
    adapters: Vec<usize>,
    requests: usize,
    naive: bool,
    /// Largest number of distinct adapters the per-adapter-batches baseline runs.
    naive_max: usize,
    /// Keep the generated adapters here (for the peer scripts) instead of a temporary directory.
    adapter_dir: Option<PathBuf>,
    /// Interleaved repetitions of the mixed-batch rows.
    repeats: usize,
    /// How the base weights are held (`--weights`; serving's default is
    /// quantized blocks only).
    weights: WeightFormat,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        model: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf"
        )),
        threads: 2,
        concurrency: 32,
        new_tokens: 32,
        adapters: vec![1, 8, 64, 256],
        requests: 0,
        naive: true,
        naive_max: 64,
        adapter_dir: None,
        repeats: 1,
        weights: WeightFormat::Quantized,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = PathBuf::from(val()?),
            "--threads" => a.threads = val()?.parse()?,
            "--concurrency" => a.concurrency = val()?.parse()?,
            "--new-tokens" => a.new_tokens = val()?.parse()?,
            "--requests" => a.requests = val()?.parse()?,
            "--adapters" => {
                a.adapters = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--no-naive" => a.naive = false,
            "--naive-max" => a.naive_max = val()?.parse()?,
            "--adapter-dir" => a.adapter_dir = Some(PathBuf::from(val()?)),
            "--repeats" => a.repeats = val()?.parse::<usize>()?.max(1),
            "--weights" => {
                a.weights = match val()?.as_str() {
                    "quantized" => WeightFormat::Quantized,
                    "auto" => WeightFormat::Auto,
                    "f32" => WeightFormat::F32,
                    other => {
                        return Err(
                            format!("--weights {other}: expected quantized, auto or f32").into(),
                        )
                    }
                }
            }
            "-h" | "--help" => {
                println!(
                    "serve-bench [--model GGUF] [--threads N] [--concurrency C] [--new-tokens N] \
                     [--requests R] [--adapters 1,8,64,256] [--no-naive] [--naive-max D] [--adapter-dir DIR] [--repeats N] [--weights quantized|auto|f32]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

/// The naive baseline's compute: the batch is split by adapter and each group
/// decodes on its own, as if every adapter had its own (merged) model copy.
struct PerAdapterCopies(Arc<ServedModel>);

impl BatchModel for PerAdapterCopies {
    type Adapter = LoraAdapter;
    type Cache = KvCache;
    fn name(&self) -> &str {
        self.0.name()
    }
    fn context_len(&self) -> usize {
        self.0.context_len()
    }
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    fn stop_tokens(&self) -> Vec<u32> {
        self.0.stop_tokens()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.0.encode(text)
    }
    fn decode(&self, tokens: &[u32]) -> Result<String, ModelError> {
        self.0.decode(tokens)
    }
    fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<String, ModelError> {
        self.0.chat_prompt(messages)
    }
    fn load_adapter(&self, files: &AdapterFiles) -> Result<LoraAdapter, String> {
        self.0.load_adapter(files)
    }
    fn adapter_bytes(&self, adapter: &LoraAdapter) -> usize {
        self.0.adapter_bytes(adapter)
    }
    fn new_cache(&self) -> KvCache {
        self.0.new_cache()
    }
    fn prefill(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Vec<f32>, ModelError> {
        self.0.prefill(tokens, cache, adapter)
    }
    fn decode_batch(
        &self,
        slots: &mut [DecodeSlot<'_, KvCache, LoraAdapter>],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let key = |a: Option<&LoraAdapter>| a.map_or(0usize, |a| a as *const LoraAdapter as usize);
        let n = slots.len();
        type Group<'s> = (usize, Vec<usize>, Vec<DecodeSlot<'s, KvCache, LoraAdapter>>);
        let mut groups: Vec<Group<'_>> = Vec::new();
        for (i, s) in slots.iter_mut().enumerate() {
            let k = key(s.adapter);
            let slot = DecodeSlot {
                token: s.token,
                cache: &mut *s.cache,
                adapter: s.adapter,
            };
            match groups.iter_mut().find(|g| g.0 == k) {
                Some(g) => {
                    g.1.push(i);
                    g.2.push(slot);
                }
                None => groups.push((k, vec![i], vec![slot])),
            }
        }
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); n];
        for (_, idx, mut group) in groups {
            for (i, l) in idx.into_iter().zip(self.0.decode_batch(&mut group)?) {
                out[i] = l;
            }
        }
        Ok(out)
    }
}

const PROMPTS: [&str; 8] = [
    "The history of the river valley begins with",
    "In a small village by the sea, the fishermen",
    "The main ingredients of a good bread are",
    "Once upon a time, a curious robot",
    "The theory of evolution explains how",
    "To configure a web server, first",
    "The best way to learn a new language is",
    "Mountains are formed when",
];

struct Run {
    tokens: usize,
    wall: Duration,
    /// CPU-seconds the whole process used during the run.
    cpu: f64,
    tpot: Vec<f64>,
    ttft: Vec<f64>,
    max_adapters_in_batch: usize,
    max_batch: usize,
}

fn drive(
    h: &EngineHandle,
    names: &[AdapterName],
    requests: usize,
    concurrency: usize,
    new_tokens: usize,
) -> Res<Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new((0usize, Vec::new(), Vec::new())));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            let (next, results, errors) = (next.clone(), results.clone(), errors.clone());
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= requests {
                    return;
                }
                let req = GenerateRequest {
                    prompt: Prompt::Text(PROMPTS[i % PROMPTS.len()].into()),
                    adapter: Some(names[i % names.len()].clone()),
                    sampling: SamplingParams::greedy(),
                    max_tokens: Some(new_tokens),
                    stop: vec![],
                    rate_key: None,
                };
                let start = Instant::now();
                let mut sub = match h.submit(req) {
                    Ok(s) => s,
                    Err(e) => {
                        errors.lock().unwrap().push(e.to_string());
                        return;
                    }
                };
                let (mut first, mut last, mut n) = (None, start, 0usize);
                while let Some(ev) = sub.events.blocking_recv() {
                    match ev {
                        StreamEvent::Delta { token: Some(_), .. } => {
                            let now = Instant::now();
                            first.get_or_insert(now);
                            last = now;
                            n += 1;
                        }
                        StreamEvent::Delta { .. } => {}
                        StreamEvent::Done(_) => break,
                        StreamEvent::Error(e) => {
                            errors.lock().unwrap().push(e.to_string());
                            break;
                        }
                    }
                }
                let mut r = results.lock().unwrap();
                r.0 += n;
                if let Some(f) = first {
                    r.2.push((f - start).as_secs_f64());
                    if n > 1 {
                        r.1.push((last - f).as_secs_f64() / (n - 1) as f64);
                    }
                }
            });
        }
    });
    let wall = t0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    if let Some(e) = errors.lock().unwrap().first() {
        return Err(format!("a request failed: {e}").into());
    }
    let (tokens, tpot, ttft) = std::mem::take(&mut *results.lock().unwrap());
    let st = h.stats();
    Ok(Run {
        tokens,
        wall,
        cpu,
        tpot,
        ttft,
        max_adapters_in_batch: st.max_adapters_in_batch,
        max_batch: st.max_batch,
    })
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

/// User + system CPU-seconds of this process (all threads) from
/// `/proc/self/stat` (fields 14 and 15, in clock ticks of 1/100 s, the
/// Linux `USER_HZ` on every architecture we run on); NaN elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

/// The median of `v` (NaN when empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    pct(&mut v, 0.5)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn engine<M: BatchModel>(
    model: Arc<M>,
    root: &std::path::Path,
    concurrency: usize,
) -> EngineHandle {
    Engine::start(
        model,
        Arc::new(LocalDirStore::new(root)),
        EngineConfig {
            limits: EngineLimits {
                max_running: concurrency,
                max_queued: 4 * concurrency,
                ..EngineLimits::default()
            },
            cache: CacheConfig {
                capacity_bytes: 2 << 30,
                loader_threads: 1,
            },
        },
    )
}

fn main() -> Res<()> {
    let args = parse_args()?;
    // candle's CPU kernels size their pools from RAYON_NUM_THREADS; set it
    // before the first tensor op.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let base_id = "HuggingFaceTB/SmolLM2-135M-Instruct";
    let model =
        Arc::new(ServedModel::load_as(&args.model, args.weights)?.accept_base_name(base_id));
    let cfg = model.model().config().clone();
    let params = model.model().info().parameters;
    let rss_base = peak_rss_mb();
    let max_d = args.adapters.iter().copied().max().unwrap_or(1);
    struct Rm(Option<PathBuf>);
    impl Drop for Rm {
        fn drop(&mut self) {
            if let Some(p) = &self.0 {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
    let (store, _rm) = match &args.adapter_dir {
        Some(d) => (d.clone(), Rm(None)),
        None => {
            let d = std::env::temp_dir().join(format!("trib-serve-bench-{}", std::process::id()));
            (d.clone(), Rm(Some(d)))
        }
    };
    let t = Instant::now();
    let names: Vec<AdapterName> = (0..max_d)
        .map(|i| {
            let name = format!("bench-r8-{i:03}");
            RandomAdapter::qv_r8(base_id, i as u64 + 1).write(&store.join(&name), &cfg)?;
            Ok(AdapterName::parse(&name)?)
        })
        .collect::<Res<_>>()?;
    eprintln!(
        "wrote {max_d} PEFT adapters (r=8, q/v) in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    println!("# serve-bench: SmolLM2-135M-Instruct Q4_1, {} thread(s), concurrency {}, {} new tokens/request, greedy", args.threads, args.concurrency, args.new_tokens);
    println!();

    // Cold loads: every adapter fetched from disk, parsed and validated once.
    let h = engine(model.clone(), &store, args.concurrency);
    let t = Instant::now();
    let tickets: Vec<_> = names
        .iter()
        .map(|n| h.start_adapter_load(n))
        .collect::<Result<_, _>>()?;
    for t in tickets {
        t.wait()?;
    }
    let all_load = t.elapsed();
    let st = h.adapters();
    let per_adapter = st.bytes / st.adapters.len().max(1);
    let mut load_ms: Vec<f64> = st.adapters.iter().map(|a| a.load_ms).collect();
    println!(
        "## Adapter cold load ({} adapters, 1 loader thread)",
        st.adapters.len()
    );
    println!();
    println!("| metric | value |");
    println!("|---|---|");
    println!(
        "| load latency p50 (fetch + parse + validate) | {:.1} ms |",
        pct(&mut load_ms, 0.5)
    );
    println!("| load latency p99 | {:.1} ms |", pct(&mut load_ms, 0.99));
    println!(
        "| all {} loaded in | {:.2} s |",
        st.adapters.len(),
        all_load.as_secs_f64()
    );
    println!(
        "| bytes per cached adapter | {} ({:.2} MiB) |",
        per_adapter,
        per_adapter as f64 / (1 << 20) as f64
    );
    println!(
        "| base model weights (Q4_1 file) | {:.1} MiB |",
        std::fs::metadata(&args.model)?.len() as f64 / (1 << 20) as f64
    );
    println!(
        "| peak RSS: base model / with {} adapters | {:.0} MiB / {:.0} MiB |",
        st.adapters.len(),
        rss_base,
        peak_rss_mb()
    );
    println!();

    // Warm-up (first-touch allocations, thread pools).
    drive(
        &h,
        &names[..1],
        args.concurrency.min(4),
        args.concurrency.min(4),
        4,
    )?;
    drop(h);

    println!("## Throughput vs distinct adapters in the batch");
    println!();
    println!("| approach | distinct adapters | requests | output tok/s | vs 1 adapter | CPU s | output tok per CPU-s | vs 1 adapter (CPU) | TPOT p50 | TPOT p99 | TTFT p50 | max adapters in one decode |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for naive in [false, true] {
        if naive && !args.naive {
            continue;
        }
        let mut single = None;
        let mut single_cpu = None;
        let repeats = if naive { 1 } else { args.repeats };
        let plan: Vec<usize> = (0..repeats)
            .flat_map(|_| args.adapters.iter().copied())
            .collect();
        for d in plan {
            if naive && d > args.naive_max {
                continue;
            }
            let requests = if args.requests > 0 {
                args.requests
            } else {
                (2 * args.concurrency).max(d)
            };
            let h = if naive {
                engine(
                    Arc::new(PerAdapterCopies(model.clone())),
                    &store,
                    args.concurrency,
                )
            } else {
                engine(model.clone(), &store, args.concurrency)
            };
            for n in &names[..d] {
                h.start_adapter_load(n)?.wait()?;
            }
            let mut r = drive(&h, &names[..d], requests, args.concurrency, args.new_tokens)?;
            let tps = r.tokens as f64 / r.wall.as_secs_f64();
            let tpc = r.tokens as f64 / r.cpu;
            let base = *single.get_or_insert(tps);
            let base_cpu = *single_cpu.get_or_insert(tpc);
            let label = if naive {
                "per-adapter batches (one model copy per adapter)"
            } else {
                "OpenLoRA mixed batch"
            };
            println!(
                "| {label} | {d} | {requests} | {tps:.1} | {:.0}% | {:.1} | {tpc:.1} | {:.0}% | {:.1} ms | {:.1} ms | {:.0} ms | {} of {} |",
                100.0 * tps / base,
                r.cpu,
                100.0 * tpc / base_cpu,
                1e3 * pct(&mut r.tpot, 0.5),
                1e3 * pct(&mut r.tpot, 0.99),
                1e3 * pct(&mut r.ttft, 0.5),
                r.max_adapters_in_batch,
                r.max_batch,
            );
            rows.push((naive, d, tps, tpc));
        }
    }
    println!();
    if args.repeats > 1 {
        println!(
            "## Mixed batch: medians of {} interleaved runs",
            args.repeats
        );
        println!();
        println!("| distinct adapters | output tok/s (median) | vs 1 adapter | output tok per CPU-s (median) | vs 1 adapter (CPU) | runs (tok/s; tok per CPU-s) |");
        println!("|---|---|---|---|---|---|");
        let of = |d: usize| -> (Vec<f64>, Vec<f64>) {
            rows.iter()
                .filter(|r| !r.0 && r.1 == d)
                .map(|r| (r.2, r.3))
                .unzip()
        };
        let (w1, c1) = of(args.adapters[0]);
        for &d in &args.adapters {
            let (w, c) = of(d);
            let runs: Vec<String> = w
                .iter()
                .zip(&c)
                .map(|(w, c)| format!("{w:.1}; {c:.1}"))
                .collect();
            println!(
                "| {d} | {:.1} | {:.0}% | {:.1} | {:.0}% | {} |",
                median(&w),
                100.0 * median(&w) / median(&w1),
                median(&c),
                100.0 * median(&c) / median(&c1),
                runs.join(" / ")
            );
        }
        println!();
    }

    if args.naive {
        // Merge per request: W' = W + s·B·A (f32 copy), then generate alone.
        let n = 3;
        let mut merge_s = 0.0;
        let mut gen_s = 0.0;
        let mut toks = 0;
        for (i, name) in names.iter().take(n).enumerate() {
            let files = LocalDirStore::new(&store);
            let a = model.load_adapter(&trib_serve::AdapterStore::fetch(&files, name)?)?;
            let t = Instant::now();
            let merged = model.model().merge_adapter(&a)?;
            merge_s += t.elapsed().as_secs_f64();
            let prompt = model.encode(PROMPTS[i])?;
            let gcfg = trib_model::GenerationConfig {
                sampling: trib_model::SamplingConfig::greedy(),
                max_new_tokens: args.new_tokens,
                extra_stop_tokens: vec![],
            };
            let t = Instant::now();
            let g = trib_model::generate(&merged, None, &prompt, &gcfg, |_| {
                std::ops::ControlFlow::Continue(())
            })?;
            gen_s += t.elapsed().as_secs_f64();
            toks += g.tokens.len().max(1);
        }
        let tps = toks as f64 / (merge_s + gen_s);
        let merged_mib = params as f64 * 4.0 / (1 << 20) as f64;
        println!(
            "## Naive: merge the adapter into the weights per request ({n} requests, each alone)"
        );
        println!();
        println!("| metric | value |");
        println!("|---|---|");
        println!(
            "| merge time per request | {:.0} ms |",
            1e3 * merge_s / n as f64
        );
        println!(
            "| generation alone on the merged f32 copy | {:.1} tok/s |",
            toks as f64 / gen_s
        );
        println!("| end-to-end output tok/s (merge + generate, serial) | {tps:.1} |");
        println!("| memory per merged copy (f32) | {merged_mib:.0} MiB |");
        for d in &args.adapters {
            println!(
                "| {d} adapters: resident merged f32 copies vs OpenLoRA (base in memory + {d} cached adapters) | {:.0} MiB vs {:.0} MiB |",
                merged_mib * *d as f64,
                rss_base + (*d * per_adapter) as f64 / (1 << 20) as f64
            );
        }
        println!();
    }
    let ours = |d: usize| -> Option<(f64, f64)> {
        let (w, c): (Vec<f64>, Vec<f64>) = rows
            .iter()
            .filter(|r| !r.0 && r.1 == d)
            .map(|r| (r.2, r.3))
            .unzip();
        (!w.is_empty()).then(|| (median(&w), median(&c)))
    };
    if let (Some(one), Some(sixty_four)) = (ours(1), ours(64)) {
        println!(
            "64 distinct adapters reach {:.0}% of single-adapter throughput by wall clock and {:.0}% by output tokens per CPU-second (target ≥ 80%).",
            100.0 * sixty_four.0 / one.0,
            100.0 * sixty_four.1 / one.1
        );
    }
    println!("peak RSS {:.0} MiB", peak_rss_mb());
    Ok(())
}
