//! The planted-recall experiment on a real LoRA adapter, shared by the
//! `planted_recall` example (SmolLM2-135M, the measurement in
//! `docs/attribution.md`) and the integration test `planted` (a tiny random
//! model, so the whole pipeline runs in CI and cannot rot).
//!
//! 1. **Datanet.** `contributors` contributions, each about one invented island
//!    (a name, a capital and an export made of random syllables, so the base
//!    model cannot know them) in two Alpaca rows (capital, export), plus filler rows (passages
//!    of the US Constitution) from two filler contributions.
//! 2. **Fine-tune** with ModelFactory (chat format, loss on answers only) and
//!    its gradient cache (per-row LoRA gradients, CountSketch-projected).
//! 3. **Ask** two paraphrased questions per island (capital, export), greedy, with the adapter
//!    and with the base model; an answer is correct when it contains the
//!    planted word.
//! 4. **Attribute** each adapter answer: token spans over a suffix-array index
//!    of the training rows (the rows as stored, one JSON record each, as the
//!    node indexes them), DataInf, TracIn and the exact damped-Fisher solve
//!    over the gradient cache with the answer's test gradient, and the
//!    combined payout rule (`combine_weights`, 70% token spans).
//! 5. **Score**: recall@1 and @5 of the island's contribution among all
//!    contributions (filler included), over all questions and over the
//!    questions the adapter answered correctly.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context};
use serde::Serialize;
use trib_attribution::quality::{recall_from_credits, GradientMethod, PlantedRecall, SplitMix64};
use trib_attribution::{
    build_index, combine_weights, contribution_weights, ContributionWeight, Damping,
    GradientNormalisation, IndexBuildOptions, IndexDocument, IndexSet, LayerGradients, PieceTable,
    PromptMask, RowProvenance, SpanTracer, TraceParams, DEFAULT_TOKEN_SHARE_PPM,
};
use trib_model::factory::{
    encode_pair, example_gradient, train, GradientCache, JobConfig, TrainOptions, TrainingSummary,
};
use trib_model::{load_peft, AdapterLimits, ChatMessage, GenerationConfig, LoraAdapter, Model};
use trib_types::{Address, ContributionId, Hash, RowHash};

/// What the experiment runs with (all recorded in the report).
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Fact contributions (one invented island each).
    pub contributors: usize,
    /// Filler rows (Constitution passages) split over two filler contributions.
    pub filler_rows: usize,
    /// Training epochs.
    pub epochs: u32,
    /// Sequences per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate (cosine schedule).
    pub learning_rate: f64,
    /// LoRA rank.
    pub lora_r: usize,
    /// LoRA alpha.
    pub lora_alpha: f64,
    /// Adapted modules.
    pub targets: Vec<String>,
    /// CountSketch dimension of the gradient cache.
    pub projection_dim: usize,
    /// Longest generated answer.
    pub max_new_tokens: usize,
    /// Longest training sequence.
    pub max_length: usize,
    /// Seed of the datanet, the split and the adapter.
    pub seed: u64,
    /// Attribute the planted reference answer instead of the generated one
    /// (a check of the attribution wiring that does not depend on what the
    /// model learned; the CI test on the tiny random model uses it).
    pub attribute_reference: bool,
    /// Reuse the adapter and gradient cache that an earlier run with the same
    /// settings left in the work directory instead of training again (for
    /// re-scoring only; the training phase then reports 0 s).
    pub reuse_adapter: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            contributors: 20,
            filler_rows: 8,
            epochs: 8,
            batch_size: 8,
            learning_rate: 3e-3,
            lora_r: 16,
            lora_alpha: 32.0,
            targets: ["q", "k", "v", "o", "gate", "up", "down"]
                .map(String::from)
                .to_vec(),
            projection_dim: 2048,
            max_new_tokens: 20,
            max_length: 96,
            seed: 7,
            attribute_reference: false,
            reuse_adapter: false,
        }
    }
}

/// One training row (Alpaca) and the contribution it belongs to.
#[derive(Clone, Debug, Serialize)]
pub struct PlantedRow {
    /// The question.
    pub instruction: String,
    /// The answer.
    pub output: String,
    /// Contribution index.
    pub contribution: usize,
}

impl PlantedRow {
    /// The row as stored in the `.jsonl` source (and hashed, and indexed).
    pub fn json(&self) -> String {
        serde_json::json!({"instruction": self.instruction, "input": "", "output": self.output})
            .to_string()
    }
}

/// A question whose answer depends on exactly one contribution.
#[derive(Clone, Debug, Serialize)]
pub struct Question {
    /// The prompt.
    pub prompt: String,
    /// A correct answer contains this word (case-insensitive).
    pub expect: String,
    /// The answer as the contribution states it.
    pub reference: String,
    /// The contribution holding the fact.
    pub contribution: usize,
}

/// The synthetic datanet.
#[derive(Clone, Debug, Serialize)]
pub struct PlantedDatanet {
    /// Training rows, in source order.
    pub rows: Vec<PlantedRow>,
    /// Questions.
    pub questions: Vec<Question>,
    /// Contribution labels (islands, then the filler contributions).
    pub contributions: Vec<String>,
}

const SYLLABLES: [&str; 32] = [
    "vel", "mor", "qui", "zan", "thor", "lix", "bre", "dun", "kal", "osh", "pra", "ven", "ryl",
    "tes", "gor", "nim", "fal", "xer", "ump", "sar", "bel", "dro", "quo", "mir", "tal", "zeb",
    "yor", "hux", "plin", "grav", "wex", "jun",
];
const ENDINGS: [&str; 6] = ["a", "ia", "on", "el", "ur", "is"];
const GOODS: [&str; 10] = [
    "glass", "silk", "salt", "tea", "copper", "wool", "ink", "resin", "pepper", "clay",
];

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A fresh invented word of `parts` syllables plus an ending, not in `used`.
fn invent(rng: &mut SplitMix64, parts: usize, ending: bool, used: &mut Vec<String>) -> String {
    loop {
        let mut w: String = (0..parts)
            .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
            .collect();
        if ending {
            w.push_str(ENDINGS[rng.below(ENDINGS.len())]);
        }
        // No word may contain another (token spans would then be shared).
        if !used
            .iter()
            .any(|u| u.contains(&w) || w.contains(u.as_str()))
        {
            used.push(w.clone());
            return w;
        }
    }
}

/// Builds the datanet: islands first, then filler rows cut from `filler_text`
/// (paragraphs separated by blank lines).
pub fn synthesise(settings: &Settings, filler_text: &str) -> PlantedDatanet {
    let mut rng = SplitMix64::new(settings.seed ^ 0x504c_414e_5445_4421);
    let mut used = Vec::new();
    let mut rows = Vec::new();
    let mut questions = Vec::new();
    let mut contributions = Vec::new();
    for c in 0..settings.contributors {
        let island = capitalise(&invent(&mut rng, 2, true, &mut used));
        let capital = capitalise(&invent(&mut rng, 2, false, &mut used));
        let adjective = invent(&mut rng, 2, false, &mut used);
        let good = GOODS[rng.below(GOODS.len())];
        let export = format!("{adjective} {good}");
        rows.push(PlantedRow {
            instruction: format!("What is the capital of {island}?"),
            output: format!("The capital of {island} is {capital}."),
            contribution: c,
        });
        rows.push(PlantedRow {
            instruction: format!("What does {island} export?"),
            output: format!("{island} exports {export}."),
            contribution: c,
        });
        questions.push(Question {
            prompt: format!("Which city is the capital of {island}?"),
            expect: capital.clone(),
            reference: format!("The capital of {island} is {capital}."),
            contribution: c,
        });
        questions.push(Question {
            prompt: format!("What is the main export of {island}?"),
            expect: adjective.clone(),
            reference: format!("{island} exports {export}."),
            contribution: c,
        });
        contributions.push(format!(
            "island {island} (capital {capital}, export {export})"
        ));
    }
    let paragraphs: Vec<&str> = filler_text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let filler_base = settings.contributors;
    for (f, paragraph) in paragraphs.iter().enumerate().take(settings.filler_rows) {
        let words: Vec<&str> = paragraph.split_whitespace().collect();
        let cut = words.len().min(8);
        let end = words.len().min(cut + 30);
        if cut == end {
            continue;
        }
        rows.push(PlantedRow {
            instruction: format!(
                "Continue this passage of the Constitution: {}",
                words[..cut].join(" ")
            ),
            output: words[cut..end].join(" "),
            contribution: filler_base + f % 2,
        });
    }
    if settings.filler_rows > 0 {
        contributions.push("filler: Constitution passages (even)".into());
        contributions.push("filler: Constitution passages (odd)".into());
    }
    PlantedDatanet {
        rows,
        questions,
        contributions,
    }
}

/// The id, contributor address and provenance of contribution `c`'s row `i`.
fn provenance(row: &PlantedRow, i: usize) -> RowProvenance {
    let c = row.contribution as u64;
    RowProvenance {
        row: RowHash(Hash::of(row.json().as_bytes())),
        contribution: contribution_id(row.contribution),
        contributor: Address(
            Hash::domain("planted contributor", &[&c.to_le_bytes()]).0[..20]
                .try_into()
                .expect("20 bytes"),
        ),
        first_seen: i as u64,
    }
}

fn contribution_id(c: usize) -> ContributionId {
    ContributionId(Hash::domain(
        "planted contribution",
        &[&(c as u64).to_le_bytes()],
    ))
}

/// One question's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    /// The question.
    pub question: Question,
    /// The adapter's answer.
    pub adapter_answer: String,
    /// Whether it contains the planted word.
    pub adapter_correct: bool,
    /// The base model's answer.
    pub base_answer: String,
    /// Whether it contains the planted word.
    pub base_correct: bool,
    /// Rank (0-based) of the planted contribution per method; `None` = not credited.
    pub ranks: BTreeMap<String, Option<usize>>,
}

/// recall of one method, over all questions and over correctly answered ones.
#[derive(Clone, Debug, Serialize)]
pub struct MethodRecall {
    /// Method name as printed.
    pub method: String,
    /// Over all questions.
    pub all: PlantedRecall,
    /// Over the questions the adapter answered correctly.
    pub correct: PlantedRecall,
    /// Over answers that state another island's planted word (a fact
    /// borrowed from the wrong contribution), against that contribution:
    /// the one the answer's content actually came from.
    pub borrowed: PlantedRecall,
    /// Scoring time for all questions, seconds (wall).
    pub scoring_s: f64,
}

/// Wall and CPU seconds of a phase.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    /// Name.
    pub name: String,
    /// Wall seconds.
    pub wall_s: f64,
    /// Process CPU seconds (user + system).
    pub cpu_s: f64,
}

/// Everything the experiment measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The settings.
    pub settings: Settings,
    /// Training rows.
    pub rows: usize,
    /// Contributions (islands + filler).
    pub contributions: usize,
    /// Optimiser steps taken.
    pub steps: u64,
    /// Validation-free training loss of the last step.
    pub final_train_loss: Option<f64>,
    /// Questions the adapter answered correctly.
    pub adapter_correct: usize,
    /// Questions the base model answered correctly.
    pub base_correct: usize,
    /// Rayon threads (candle's pool size).
    pub threads: usize,
    /// Per-method recall, in table order.
    pub methods: Vec<MethodRecall>,
    /// Per-question detail.
    pub answers: Vec<Answer>,
    /// Timings.
    pub phases: Vec<Phase>,
}

/// Process CPU seconds (user + system) from `/proc/self/stat`; 0 elsewhere.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

struct Clock {
    phases: Vec<Phase>,
    wall: Instant,
    cpu: f64,
}

impl Clock {
    fn new() -> Self {
        Clock {
            phases: Vec::new(),
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }
    fn lap(&mut self, name: &str) {
        let cpu = cpu_seconds();
        self.phases.push(Phase {
            name: name.into(),
            wall_s: self.wall.elapsed().as_secs_f64(),
            cpu_s: cpu - self.cpu,
        });
        eprintln!(
            "[planted] {name}: {:.1} s wall, {:.1} CPU s",
            self.wall.elapsed().as_secs_f64(),
            cpu - self.cpu
        );
        self.wall = Instant::now();
        self.cpu = cpu;
    }
}

fn job_toml(base: &Path, source: &Path, out: &Path, s: &Settings) -> String {
    let targets: Vec<String> = s.targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        r#"
name = "planted-recall"
[model]
base = "{base}"
chat_template = "chatml"
[data]
sources = ["{src}"]
format = "alpaca"
max_length = {max_length}
validation_fraction = 0.0
[lora]
r = {r}
alpha = {alpha}
dropout = 0.0
target_modules = [{targets}]
[train]
learning_rate = {lr}
schedule = "cosine"
warmup_steps = 2
epochs = {epochs}
batch_size = {batch}
seed = {seed}
[gradient_cache]
projection_dim = {k}
[output]
dir = "{out}"
"#,
        base = base.display(),
        src = source.display(),
        out = out.display(),
        max_length = s.max_length,
        r = s.lora_r,
        alpha = s.lora_alpha,
        targets = targets.join(", "),
        lr = s.learning_rate,
        epochs = s.epochs,
        batch = s.batch_size,
        seed = s.seed,
        k = s.projection_dim,
    )
}

/// How the test gradient of an answer is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TestTokens {
    /// Every answer token (what `test_gradient` does).
    Answer,
    /// Only answer tokens that do not occur in the question: the loss of the
    /// new information, not of words copied from the prompt.
    NewInAnswer,
}

/// The test gradient of `(prompt, answer)` with the loss on `which` tokens,
/// projected as the cache's rows. `None` when no token qualifies.
fn test_gradient_of(
    model: &Model,
    adapter: &LoraAdapter,
    cache: &GradientCache,
    prompt: &str,
    answer: &str,
    which: TestTokens,
) -> anyhow::Result<Option<Vec<Vec<f32>>>> {
    let (tokens, mut targets) = encode_pair(model, &cache.index, prompt, answer)?;
    if which == TestTokens::NewInAnswer {
        let prompt_ids = model.encode(prompt)?;
        for (t, tok) in targets.iter_mut().zip(&tokens) {
            if prompt_ids.contains(tok) {
                *t = false;
            }
        }
    }
    if !targets.iter().any(|&t| t) {
        return Ok(None);
    }
    let (_, raw) = example_gradient(model, adapter, &tokens, &targets)?;
    let projector = cache.projector();
    Ok(Some(
        raw.iter()
            .enumerate()
            .map(|(l, g)| projector.project(l, g))
            .collect(),
    ))
}

/// Trains (and records the settings next to the run), or, with
/// `reuse_adapter`, reads the summary an earlier run with identical settings
/// and identical training rows left in `work`.
fn train_or_reuse(
    job: &JobConfig,
    model: &Arc<Model>,
    settings: &Settings,
    work: &Path,
    source: &Path,
) -> anyhow::Result<TrainedAdapter> {
    let recorded = work.join("settings.json");
    let key = |s: &Settings| {
        serde_json::to_string(&Settings {
            reuse_adapter: false,
            ..s.clone()
        })
    };
    if settings.reuse_adapter {
        let before = std::fs::read_to_string(&recorded)
            .with_context(|| format!("--reuse: no earlier run in {}", work.display()))?;
        ensure!(
            before == key(settings)?,
            "--reuse: the run in {} used other settings: {before}",
            work.display()
        );
        let path = job.output.dir.join("training_summary.json");
        let summary: TrainingSummary = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        let rows = std::fs::read(source)?;
        ensure!(
            summary.sources.first().map(|s| s.content_hash) == Some(Hash::of(&rows)),
            "--reuse: the adapter in {} was trained on other rows",
            work.display()
        );
        return Ok(TrainedAdapter {
            adapter_dir: summary.adapter_dir.clone(),
            summary,
        });
    }
    let out = train(
        job,
        TrainOptions {
            model: Some(model.clone()),
            ..TrainOptions::default()
        },
    )?;
    std::fs::write(&recorded, key(settings)?)?;
    Ok(TrainedAdapter {
        adapter_dir: out.adapter_dir,
        summary: out.summary,
    })
}

/// The adapter directory and training summary of a (new or reused) run.
struct TrainedAdapter {
    adapter_dir: PathBuf,
    summary: TrainingSummary,
}

/// `rows × d` per layer from per-row per-layer vectors.
fn stack(
    names: &[String],
    dims: &[usize],
    rows: &[Vec<Vec<f32>>],
) -> anyhow::Result<Vec<LayerGradients>> {
    names
        .iter()
        .zip(dims)
        .enumerate()
        .map(|(l, (name, &d))| {
            let mut data = Vec::with_capacity(rows.len() * d);
            for r in rows {
                data.extend_from_slice(&r[l]);
            }
            Ok(LayerGradients::new(name.clone(), rows.len(), d, data)?)
        })
        .collect()
}

/// Credits (one per contribution) from normalised contribution weights.
fn credits_of(
    weights: &[ContributionWeight],
    ids: &BTreeMap<ContributionId, usize>,
    n: usize,
) -> Vec<f64> {
    let mut v = vec![0f64; n];
    for w in weights {
        if let Some(&c) = ids.get(&w.contribution) {
            v[c] += w.weight as f64;
        }
    }
    v
}

/// Runs the experiment with the base model at `base` in the empty directory `work`.
pub fn run(
    base: &Path,
    filler_text: &str,
    settings: &Settings,
    work: &Path,
) -> anyhow::Result<Report> {
    let mut clock = Clock::new();
    let data = synthesise(settings, filler_text);
    ensure!(
        !data.questions.is_empty(),
        "no contributors: nothing to ask"
    );
    std::fs::create_dir_all(work)?;
    let source = work.join("planted.jsonl");
    let lines: Vec<String> = data.rows.iter().map(PlantedRow::json).collect();
    std::fs::write(&source, lines.join("\n") + "\n")?;
    let run_dir = work.join("run");
    let job =
        JobConfig::from_toml_str(&job_toml(base, &source, &run_dir, settings), Path::new(""))?;
    let model = Arc::new(Model::load(base, trib_model::WeightFormat::F32)?);
    clock.lap("load");

    let out = train_or_reuse(&job, &model, settings, work, &source)?;
    clock.lap("train + gradient cache");
    let adapter = load_peft(&out.adapter_dir, model.config(), &AdapterLimits::default())?;
    let cache_dir = out
        .summary
        .gradient_cache
        .clone()
        .context("the job wrote no gradient cache")?;
    let cache = GradientCache::load(&cache_dir)?;

    // Generation, adapter and base, greedy.
    let gen_cfg = GenerationConfig {
        sampling: trib_model::SamplingConfig::greedy(),
        max_new_tokens: settings.max_new_tokens,
        extra_stop_tokens: Vec::new(),
    };
    let mut generated = Vec::new();
    for q in &data.questions {
        let text = cache
            .index
            .chat_template
            .render(&[ChatMessage::new("user", q.prompt.as_str())], true);
        let prompt = model.encode(&text)?;
        let with = trib_model::generate(&model, Some(&adapter), &prompt, &gen_cfg, |_| {
            ControlFlow::Continue(())
        })?;
        let without = trib_model::generate(&model, None, &prompt, &gen_cfg, |_| {
            ControlFlow::Continue(())
        })?;
        generated.push((with, without));
    }
    clock.lap("generate (adapter and base)");
    // The answers attributed: the adapter's, or the planted reference.
    let attributed: Vec<(String, Vec<u32>)> = data
        .questions
        .iter()
        .zip(&generated)
        .map(|(q, (with, _))| {
            Ok(if settings.attribute_reference {
                (q.reference.clone(), model.encode(&q.reference)?)
            } else {
                (with.text.clone(), with.tokens.clone())
            })
        })
        .collect::<anyhow::Result<_>>()?;

    // Token spans: an index of the training rows as stored.
    let provs: Vec<RowProvenance> = data
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| provenance(r, i))
        .collect();
    let row_tokens: Vec<Vec<u32>> = lines
        .iter()
        .map(|l| model.encode(l))
        .collect::<Result<_, _>>()?;
    let tok = model.tokenizer();
    let vocab = tok.get_vocab_size(true).max(model.config().vocab_size);
    let pieces: Vec<String> = (0..vocab as u32)
        .map(|id| tok.id_to_token(id).unwrap_or_default())
        .collect();
    let pieces = PieceTable::new(&pieces);
    let index_dir = work.join("index");
    if index_dir.exists() {
        // Left by an earlier run in `work` (`--reuse`): derived, rebuilt.
        std::fs::remove_dir_all(&index_dir)?;
    }
    build_index(
        &index_dir,
        row_tokens.iter().zip(&provs).map(|(t, p)| IndexDocument {
            tokens: t,
            provenance: *p,
        }),
        &IndexBuildOptions {
            label: "planted".into(),
            tokenizer_hash: Hash::of(b"planted-recall tokenizer"),
            vocab_size: u32::try_from(vocab)?,
            threads: 1,
        },
    )?;
    let index = IndexSet::open(&[&index_dir])?;
    let params = TraceParams::default();
    let tracer = SpanTracer::new(&index, &pieces, params)?;
    let nc = data.contributions.len();
    let ids: BTreeMap<ContributionId, usize> = (0..nc).map(|c| (contribution_id(c), c)).collect();
    let t0 = Instant::now();
    let mut token_weights = Vec::new();
    let mut base_token_weights = Vec::new();
    // Masked tracing at the default minimum span length and at 2 tokens
    // (invented names are 2–3 tokens; masking leaves little else).
    let short = TraceParams {
        min_span_tokens: 2,
        ..TraceParams::default()
    };
    let short_tracer = SpanTracer::new(&index, &pieces, short)?;
    let masked_tracers = [(4usize, &tracer), (2, &short_tracer)];
    let mut masked_weights = vec![Vec::new(); masked_tracers.len()];
    let mut base_masked_weights = vec![Vec::new(); masked_tracers.len()];
    for ((q, (_, tokens)), (_, without)) in data.questions.iter().zip(&attributed).zip(&generated) {
        let trace = tracer.trace(tokens)?;
        token_weights.push(trib_attribution::normalise_weights(&trace.weights));
        let trace = tracer.trace(&without.tokens)?;
        base_token_weights.push(trib_attribution::normalise_weights(&trace.weights));
        // The question's words masked in the answer: the same code the
        // node runs on every paid answer (`PromptMask`, `trace_masked`).
        let masked = PromptMask::new(&q.prompt, tokens, &pieces, |t| model.decode(t))?;
        let base_masked =
            PromptMask::new(&q.prompt, &without.tokens, &pieces, |t| model.decode(t))?;
        for (v, (_, t)) in masked_tracers.iter().enumerate() {
            let trace = t.trace_masked(tokens, &masked)?;
            masked_weights[v].push(trib_attribution::normalise_weights(&trace.weights));
            let trace = t.trace_masked(&without.tokens, &base_masked)?;
            base_masked_weights[v].push(trib_attribution::normalise_weights(&trace.weights));
        }
    }
    let token_s = t0.elapsed().as_secs_f64();
    clock.lap("index + trace");

    // Gradients: training rows from the cache, answers' test gradients.
    let names: Vec<String> = cache
        .index
        .layers
        .iter()
        .map(|e| format!("layer.{}", e.layer))
        .collect();
    let dims: Vec<usize> = cache.index.layers.iter().map(|e| e.stored_dim).collect();
    let n = cache.index.examples.len();
    let mut train_layers = Vec::new();
    for ((t, name), &d) in cache.layers.iter().zip(&names).zip(&dims) {
        let data: Vec<f32> = t.flatten_all()?.to_vec1()?;
        train_layers.push(LayerGradients::new(name.clone(), n, d, data)?);
    }
    let row_of: Vec<usize> = cache
        .index
        .examples
        .iter()
        .map(|e| e.provenance.row as usize)
        .collect();
    ensure!(
        row_of.iter().all(|&r| r < data.rows.len()),
        "the gradient cache names a row beyond the datanet"
    );
    let cache_provs: Vec<RowProvenance> = row_of.iter().map(|&r| provs[r]).collect();
    let zero: Vec<Vec<f32>> = dims.iter().map(|&d| vec![0f32; d]).collect();
    let mut tests = BTreeMap::new();
    for which in [TestTokens::Answer, TestTokens::NewInAnswer] {
        let mut rows = Vec::new();
        for (q, (text, _)) in data.questions.iter().zip(&attributed) {
            let g = if text.trim().is_empty() {
                None
            } else {
                test_gradient_of(&model, &adapter, &cache, &q.prompt, text, which)?
            };
            // An empty answer has no gradient: every row scores 0 (a miss).
            rows.push(g.unwrap_or_else(|| zero.clone()));
        }
        tests.insert(format!("{which:?}"), stack(&names, &dims, &rows)?);
    }
    clock.lap("test gradients");

    // Scoring.
    let truth: Vec<usize> = data.questions.iter().map(|q| q.contribution).collect();
    let correct: Vec<bool> = generated
        .iter()
        .zip(&data.questions)
        .map(|((w, _), q)| contains_word(&w.text, &q.expect))
        .collect();
    let mut methods = Vec::new();
    let mut ranks: Vec<BTreeMap<String, Option<usize>>> = vec![BTreeMap::new(); truth.len()];
    // The contribution whose planted word the adapter's answer states, when
    // exactly one does (words never contain one another, see `invent`).
    let sources: Vec<Option<usize>> = attributed
        .iter()
        .map(|(text, _)| {
            let mut hits: Vec<usize> = data
                .questions
                .iter()
                .filter(|q| contains_word(text, &q.expect))
                .map(|q| q.contribution)
                .collect();
            hits.dedup();
            (hits.len() == 1).then(|| hits[0])
        })
        .collect();
    let mut record = |name: String, credits: Vec<Vec<f64>>, secs: f64| -> anyhow::Result<()> {
        let all = recall_from_credits(&credits, &truth)?;
        let (cc, ct): (Vec<_>, Vec<_>) = credits
            .iter()
            .zip(&truth)
            .zip(&correct)
            .filter(|(_, &ok)| ok)
            .map(|((c, t), _)| (c.clone(), *t))
            .unzip();
        let correct_recall = recall_from_credits(&cc, &ct)?;
        let (bc, bt): (Vec<_>, Vec<_>) = credits
            .iter()
            .zip(&sources)
            .zip(&truth)
            .filter_map(|((c, s), &t)| s.filter(|&s| s != t).map(|s| (c.clone(), s)))
            .unzip();
        let borrowed_recall = recall_from_credits(&bc, &bt)?;
        for (t, c) in credits.iter().enumerate() {
            ranks[t].insert(
                name.clone(),
                trib_attribution::quality::planted_rank(c, truth[t]),
            );
        }
        methods.push(MethodRecall {
            method: name,
            all,
            correct: correct_recall,
            borrowed: borrowed_recall,
            scoring_s: secs,
        });
        Ok(())
    };
    let token_credits: Vec<Vec<f64>> = token_weights
        .iter()
        .map(|w| credits_of(w, &ids, nc))
        .collect();
    record("token spans (OLMoTrace)".into(), token_credits, token_s)?;
    // Control: the base model's answers, which cannot know the facts, traced
    // the same way. Recall here comes from words copied from the question
    // (the island's name), not from anything the adapter learned.
    let base_credits: Vec<Vec<f64>> = base_token_weights
        .iter()
        .map(|w| credits_of(w, &ids, nc))
        .collect();
    record(
        "control: token spans of the base model's answers".into(),
        base_credits,
        token_s,
    )?;
    // Spans of the answer with the words the question already contains
    // masked: only what the answer adds can be credited.
    for (v, (min_len, _)) in masked_tracers.iter().enumerate() {
        let masked_credits: Vec<Vec<f64>> = masked_weights[v]
            .iter()
            .map(|w| credits_of(w, &ids, nc))
            .collect();
        record(
            format!("token spans, question words masked (spans ≥ {min_len} tokens)"),
            masked_credits,
            token_s,
        )?;
        let base_masked_credits: Vec<Vec<f64>> = base_masked_weights[v]
            .iter()
            .map(|w| credits_of(w, &ids, nc))
            .collect();
        record(
            format!(
                "control: base model's answers, question words masked (spans ≥ {min_len} tokens)"
            ),
            base_masked_credits,
            token_s,
        )?;
    }
    let variants: Vec<(&str, GradientMethod)> = vec![
        ("TracIn", GradientMethod::TracIn),
        ("DataInf", GradientMethod::DataInf(Damping::default())),
        (
            "exact damped Fisher",
            GradientMethod::Exact(Damping::default()),
        ),
    ];
    for (test_name, test) in &tests {
        for norm in [
            GradientNormalisation::None,
            GradientNormalisation::Whole,
            GradientNormalisation::PerLayer,
        ] {
            for (mname, m) in &variants {
                let t0 = Instant::now();
                let s = m.scores_normalised(&train_layers, test, norm)?;
                let secs = t0.elapsed().as_secs_f64();
                let mut credits = Vec::new();
                let mut combined = Vec::new();
                let mut combined_masked = Vec::new();
                for (t, tw) in token_weights.iter().enumerate() {
                    let gw = contribution_weights(s.test(t), &cache_provs)?;
                    credits.push(credits_of(&gw, &ids, nc));
                    let cw = combine_weights(tw, &gw, DEFAULT_TOKEN_SHARE_PPM)?;
                    combined.push(credits_of(&cw, &ids, nc));
                    // The same rule over the masked, 2-token-minimum spans.
                    let mw = &masked_weights[masked_tracers.len() - 1][t];
                    let cw = combine_weights(mw, &gw, DEFAULT_TOKEN_SHARE_PPM)?;
                    combined_masked.push(credits_of(&cw, &ids, nc));
                }
                let label = format!(
                    "{mname} [{}, test: {}]",
                    norm_label(norm),
                    test_label(test_name)
                );
                record(label.clone(), credits, secs)?;
                record(format!("combined: 70% spans + 30% {label}"), combined, secs)?;
                record(
                    format!("combined: 70% masked spans (≥ 2 tokens) + 30% {label}"),
                    combined_masked,
                    secs,
                )?;
            }
        }
    }
    clock.lap("scoring");

    let answers = data
        .questions
        .iter()
        .zip(&generated)
        .zip(ranks)
        .map(|((q, (w, b)), ranks)| Answer {
            question: q.clone(),
            adapter_answer: w.text.clone(),
            adapter_correct: contains_word(&w.text, &q.expect),
            base_answer: b.text.clone(),
            base_correct: contains_word(&b.text, &q.expect),
            ranks,
        })
        .collect::<Vec<_>>();
    Ok(Report {
        settings: settings.clone(),
        rows: data.rows.len(),
        contributions: nc,
        steps: out.summary.steps,
        final_train_loss: out.summary.final_train_loss,
        adapter_correct: answers.iter().filter(|a| a.adapter_correct).count(),
        base_correct: answers.iter().filter(|a| a.base_correct).count(),
        threads: rayon::current_num_threads(),
        methods,
        answers,
        phases: clock.phases,
    })
}

fn norm_label(n: GradientNormalisation) -> &'static str {
    match n {
        GradientNormalisation::None => "raw",
        GradientNormalisation::Whole => "unit",
        GradientNormalisation::PerLayer => "unit per layer",
    }
}

fn test_label(name: &str) -> &'static str {
    if name == "Answer" {
        "answer"
    } else {
        "new tokens"
    }
}

/// Whether `text` contains `word` (case-insensitive).
pub fn contains_word(text: &str, word: &str) -> bool {
    !word.is_empty() && text.to_lowercase().contains(&word.to_lowercase())
}

/// The report as a Markdown table (recall over all questions and over the
/// correctly answered ones).
pub fn table(r: &Report) -> String {
    let q = r.answers.len();
    let mut s = format!(
        "{} contributions ({} islands + filler), {} rows, {} steps; adapter correct {}/{q}, base correct {}/{q}\n\n",
        r.contributions, r.settings.contributors, r.rows, r.steps, r.adapter_correct, r.base_correct
    );
    s.push_str(&format!(
        "| method | recall@1 (all {q}) | recall@5 (all) | recall@1 (correct {}) | recall@5 (correct) | recall@1 (borrowed {}) | recall@5 (borrowed) | scoring s |\n|---|---|---|---|---|---|---|---|\n",
        r.adapter_correct,
        r.methods.first().map_or(0, |m| m.borrowed.questions)
    ));
    for m in &r.methods {
        s.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            m.method,
            m.all.at1,
            m.all.at5,
            m.correct.at1,
            m.correct.at5,
            m.borrowed.at1,
            m.borrowed.at5,
            m.scoring_s
        ));
    }
    s
}
