//! The model side of answer-time gradient attribution: [`ModelGradients`]
//! implements `trib_attribution::answer::AnswerGradients` over `trib-model`.
//!
//! Where the served adapter's folder `<home>/adapters/<ADAPTER_ID>/` holds
//! the ModelFactory's `gradient_cache/` (`GradientCache::dir_for`), it reads
//! the cache (checked to be taken at the served adapter weights) and takes
//! the gradient of an answer's loss over the answer tokens new with respect
//! to the prompt, unit length per layer
//! (`trib_model::factory::answer_gradient`). The DataInf scoring, the
//! combination with the spans and the replay at verify are
//! `trib_attribution::answer::GradientAttributor`'s.
//!
//! The training forward needs the base model in f32; it is loaded lazily,
//! once per node, on the first answer of an adapter with a cache, and shared.
//! Every call runs on the blocking pool (the settle path already is there).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use trib_attribution::answer::{
    AnswerGradient, AnswerGradients, CachedGradients, CachedRow, GradientAttributionError,
};
use trib_attribution::LayerGradients;
use trib_model::factory::{answer_gradient, AnswerTokens, GradientCache};
use trib_model::{
    load_peft, AdapterLimits, LoraAdapter, Model, WeightFormat, ADAPTER_WEIGHTS_FILE,
};
use trib_types::{AdapterId, Hash};

type Result<T> = std::result::Result<T, GradientAttributionError>;

fn model_err(what: impl Into<String>) -> impl FnOnce(String) -> GradientAttributionError {
    let what = what.into();
    move |reason| GradientAttributionError::Model { what, reason }
}

/// One adapter loaded for the training forward: its LoRA weights and its
/// gradient cache (the projections the answer gradient goes through).
struct Loaded {
    adapter: LoraAdapter,
    cache: GradientCache,
    dir: PathBuf,
}

/// The base model in f32 and the adapters with a gradient cache under
/// `<home>/adapters`; one per node.
pub(crate) struct ModelGradients {
    adapters_dir: PathBuf,
    base: PathBuf,
    model: Mutex<Option<Arc<Model>>>,
    loaded: Mutex<HashMap<AdapterId, Arc<Loaded>>>,
}

impl ModelGradients {
    /// Reads adapters from `adapters_dir/<ID>/` and the f32 base model from
    /// `base` (loaded on first use).
    pub(crate) fn new(adapters_dir: PathBuf, base: PathBuf) -> Self {
        ModelGradients {
            adapters_dir,
            base,
            model: Mutex::new(None),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    fn adapter_dir(&self, adapter: &AdapterId) -> PathBuf {
        self.adapters_dir.join(adapter.to_string())
    }

    /// The f32 base model, loaded once.
    fn model(&self) -> Result<Arc<Model>> {
        let mut slot = self.model.lock().expect("model lock poisoned");
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        let started = Instant::now();
        let m = Arc::new(
            Model::load(&self.base, WeightFormat::F32)
                .map_err(|e| e.to_string())
                .map_err(model_err(format!(
                    "loading {} in f32 for the training forward",
                    self.base.display()
                )))?,
        );
        tracing::info!(target: "trib::attribution", base = %self.base.display(),
            ms = started.elapsed().as_millis() as u64, "f32 base model loaded for gradient attribution");
        *slot = Some(m.clone());
        Ok(m)
    }

    /// `adapter`'s weights and cache, loaded once.
    fn loaded(&self, adapter: &AdapterId) -> Result<Arc<Loaded>> {
        if let Some(l) = self
            .loaded
            .lock()
            .expect("adapter lock poisoned")
            .get(adapter)
        {
            return Ok(l.clone());
        }
        let model = self.model()?;
        let l = Arc::new(load(&model, &self.adapter_dir(adapter))?);
        self.loaded
            .lock()
            .expect("adapter lock poisoned")
            .insert(*adapter, l.clone());
        Ok(l)
    }
}

impl AnswerGradients for ModelGradients {
    fn location(&self) -> String {
        self.adapters_dir.display().to_string()
    }

    fn has_cache(&self, adapter: &AdapterId) -> bool {
        GradientCache::dir_for(&self.adapter_dir(adapter))
            .join("index.json")
            .is_file()
    }

    fn prepare(&self) -> Result<()> {
        self.model().map(|_| ())
    }

    fn cache(&self, adapter: &AdapterId) -> Result<CachedGradients> {
        let l = self.loaded(adapter)?;
        let rows = l
            .cache
            .index
            .examples
            .iter()
            .map(|e| CachedRow {
                row: e.provenance.row_hash,
                contribution: e.provenance.contribution,
                contributor: e.provenance.contributor,
            })
            .collect::<Vec<_>>();
        let mut layers = Vec::with_capacity(l.cache.layers.len());
        for (e, t) in l.cache.index.layers.iter().zip(&l.cache.layers) {
            let data: Vec<f32> = t
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(|e| e.to_string())
                .map_err(model_err(format!(
                    "reading layer {} of the gradient cache",
                    e.layer
                )))?;
            // Built field by field: the rows that name no contribution are
            // dropped (and the kept ones checked) by the attributor.
            layers.push(LayerGradients {
                name: format!("layer.{}", e.layer),
                rows: data.len() / e.stored_dim.max(1),
                cols: e.stored_dim,
                data,
            });
        }
        Ok(CachedGradients {
            dir: GradientCache::dir_for(&l.dir),
            adapter_hash: l.cache.index.adapter_hash,
            rows,
            layers,
        })
    }

    fn answer_gradient(
        &self,
        adapter: &AdapterId,
        prompt: &str,
        answer: &str,
    ) -> Result<Option<AnswerGradient>> {
        let model = self.model()?;
        let l = self.loaded(adapter)?;
        let g = answer_gradient(
            &model,
            &l.adapter,
            &l.cache,
            prompt,
            answer,
            AnswerTokens::NewInAnswer,
            true,
        )
        .map_err(|e| e.to_string())
        .map_err(model_err(format!(
            "the answer's gradient against {}",
            GradientCache::dir_for(&l.dir).display()
        )))?;
        Ok(g.map(|g| AnswerGradient {
            layers: g.layers,
            target_tokens: g.target_tokens,
        }))
    }
}

/// Reads the gradient cache of the adapter in `adapter_dir`, checks that it
/// was taken at the served weights, and loads the adapter.
fn load(model: &Model, adapter_dir: &Path) -> Result<Loaded> {
    let dir = GradientCache::dir_for(adapter_dir);
    let cache = GradientCache::load(&dir)
        .map_err(|e| e.to_string())
        .map_err(model_err(format!(
            "reading the gradient cache {}",
            dir.display()
        )))?;
    let weights = adapter_dir.join(ADAPTER_WEIGHTS_FILE);
    let bytes = std::fs::read(&weights)
        .map_err(|e| e.to_string())
        .map_err(model_err(format!("reading {}", weights.display())))?;
    let served = Hash::of(&bytes);
    if served != cache.index.adapter_hash {
        return Err(GradientAttributionError::StaleCache {
            dir,
            cached: cache.index.adapter_hash,
            served,
        });
    }
    let adapter = load_peft(adapter_dir, model.config(), &AdapterLimits::default())
        .map_err(|e| e.to_string())
        .map_err(model_err(format!(
            "loading the adapter in {}",
            adapter_dir.display()
        )))?;
    Ok(Loaded {
        adapter,
        cache,
        dir: adapter_dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trib_attribution::answer::{
        compare_scores, receipt_method, GradientAttributor, DATAINF, DATANET_FALLBACK,
        GRADIENT_BUDGET,
    };
    use trib_attribution::{AttributionEvidence, AttributionMethod, Trace, TraceParams};
    use trib_model::factory::{
        train, DatanetResolver, DatanetRow, JobConfig, ResolvedDatanet, TrainOptions,
    };
    use trib_model::{write_tiny_hf_dir, TinySpec};
    use trib_types::{Address, ContributionId, RowHash, SecretKey};

    /// Four invented facts, two contributions (alice: rows 0, 2; bob: 1, 3).
    struct Facts;

    const ROWS: [(&str, &str); 4] = [
        ("What does Praxera export?", "Praxera exports huxbre clay."),
        (
            "What is the capital of Gordunia?",
            "The capital of Gordunia is Duntes.",
        ),
        ("What does Velmor export?", "Velmor exports quandle silk."),
        (
            "What is the capital of Ostrava?",
            "The capital of Ostrava is Pellimo.",
        ),
    ];

    fn who(i: usize) -> (ContributionId, Address) {
        let k = SecretKey::from_seed([1 + (i % 2) as u8; 32]);
        (ContributionId(Hash::of(&[(i % 2) as u8])), k.address())
    }

    impl DatanetResolver for Facts {
        fn resolve(&self, _: &str, _: &str) -> std::result::Result<ResolvedDatanet, String> {
            let rows = ROWS
                .iter()
                .enumerate()
                .map(|(i, (q, a))| {
                    let content =
                        serde_json::json!({"instruction": q, "input": "", "output": a}).to_string();
                    DatanetRow {
                        row_hash: RowHash(Hash::of(content.as_bytes())),
                        content,
                        contribution: Some(who(i).0),
                        contributor: Some(who(i).1),
                    }
                })
                .collect();
            Ok(ResolvedDatanet {
                version_root: Hash::of(b"facts v1"),
                rows,
            })
        }
    }

    /// Trains a tiny adapter on the facts and installs it, with its
    /// gradient cache, as `<adapters>/<ID>/`.
    fn install(dir: &Path) -> (GradientAttributor, AdapterId, PathBuf) {
        let base = dir.join("hf");
        write_tiny_hf_dir(&base, &TinySpec::default(), 11).unwrap();
        let job = JobConfig::from_toml_str(
            &format!(
                r#"
[model]
base = "{base}"
chat_template = "chatml"
[data]
sources = ["facts@1"]
format = "alpaca"
max_length = 96
validation_fraction = 0.0
[lora]
r = 2
alpha = 4
dropout = 0.0
target_modules = ["q", "v"]
[train]
learning_rate = 0.01
batch_size = 2
epochs = 1
seed = 3
[gradient_cache]
projection_dim = 64
[output]
dir = "{out}"
"#,
                base = base.display(),
                out = dir.join("run").display()
            ),
            Path::new(""),
        )
        .unwrap();
        let out = train(
            &job,
            TrainOptions {
                resolver: Some(Arc::new(Facts)),
                ..TrainOptions::default()
            },
        )
        .unwrap();
        let id = out.summary.adapter_id;
        let target = dir.join("adapters").join(id.to_string());
        std::fs::create_dir_all(GradientCache::dir_for(&target)).unwrap();
        for f in std::fs::read_dir(&out.adapter_dir).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, target.join(f.file_name().unwrap())).unwrap();
        }
        let cache = out.summary.gradient_cache.clone().unwrap();
        for f in std::fs::read_dir(&cache).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(
                &f,
                GradientCache::dir_for(&target).join(f.file_name().unwrap()),
            )
            .unwrap();
        }
        (attributor(&dir.join("adapters"), &base), id, target)
    }

    /// The node's gradient attributor over `adapters` with the f32 `base`.
    fn attributor(adapters: &Path, base: &Path) -> GradientAttributor {
        GradientAttributor::new(
            Arc::new(ModelGradients::new(
                adapters.to_path_buf(),
                base.to_path_buf(),
            )),
            GRADIENT_BUDGET,
        )
    }

    /// Token evidence with no span (the trace found nothing).
    fn spanless(answer_tokens: &[u32]) -> AttributionEvidence {
        let trace = Trace {
            answer_tokens: answer_tokens.len(),
            spans: vec![],
            highlights: vec![],
            weights: vec![],
        };
        AttributionEvidence::new(
            answer_tokens,
            &trace,
            &TraceParams::default(),
            vec![],
            None,
            trib_attribution::DEFAULT_TOKEN_SHARE_PPM,
        )
        .unwrap()
    }

    const Q: &str = "Which goods come from Praxera?";
    const A: &str = "Praxera exports huxbre clay.";

    #[test]
    fn an_adapter_with_a_gradient_cache_gets_datainf_weights_that_replay_within_tolerance() {
        let dir = tempfile::tempdir().unwrap();
        let (g, id, _) = install(dir.path());
        assert!(g.has_cache(&id));
        let (ev, stored) = g.attach(Some(&id), Q, A, spanless(&[1, 2, 3]));
        let stored = stored.expect("the adapter has a cache and the answer new tokens");
        assert_eq!(stored.rows.len(), 4);
        assert!(stored.target_tokens > 0);
        let grad = ev.gradient.clone().unwrap();
        assert_eq!(grad.method, AttributionMethod::DataInf);
        assert_eq!(grad.damping_ppm, 100_000);
        assert!(!ev.weights.is_empty());
        assert_eq!(
            ev.weights.iter().map(|w| w.weight).sum::<u64>() / 1000,
            999_999
        );
        assert_eq!(receipt_method(&ev), DATAINF);
        assert!(ev.hash_is_valid());
        // Replay: recomputed scores agree, weights follow from the stored
        // scores, and the re-traced evidence gets the same gradient part.
        let again = g
            .replay(Some(&id), Q, A, &ev, Some(&stored), spanless(&[1, 2, 3]))
            .unwrap();
        assert_eq!(again, ev);
        // Scores are deterministic on one machine.
        let (ev2, stored2) = g.attach(Some(&id), Q, A, spanless(&[1, 2, 3]));
        assert_eq!(
            (ev2, stored2.unwrap().scores),
            (ev.clone(), stored.scores.clone())
        );
    }

    #[test]
    fn a_stored_score_edited_beyond_tolerance_is_named_and_edited_weights_do_not_follow() {
        let dir = tempfile::tempdir().unwrap();
        let (g, id, _) = install(dir.path());
        let (ev, stored) = g.attach(Some(&id), Q, A, spanless(&[1, 2, 3]));
        let stored = stored.unwrap();
        let scale = stored.scores.iter().fold(0f64, |m, s| m.max(s.abs()));
        // Within tolerance of the recomputed scores: no score is named (the
        // weights derived from the edited stored scores are still checked
        // exactly against the evidence, and ppb weights move with a 1e-7 edit).
        let mut close = stored.clone();
        close.scores[1] += 1e-7 * scale;
        assert!(compare_scores(&close, &stored).is_empty());
        if let Err(p) = g.replay(Some(&id), Q, A, &ev, Some(&close), spanless(&[1, 2, 3])) {
            assert!(
                p.iter().all(|p| !p.contains("gradient score of row")),
                "{p:?}"
            );
        }
        assert_eq!(compare_scores(&stored, &stored), Vec::<String>::new());
        // Beyond tolerance: the row is named.
        let mut far = stored.clone();
        far.scores[2] += 0.5 * scale;
        let bad = g
            .replay(Some(&id), Q, A, &ev, Some(&far), spanless(&[1, 2, 3]))
            .unwrap_err();
        assert!(
            bad.iter()
                .any(|p| p.contains(&format!("gradient score of row {}", stored.rows[2]))),
            "{bad:?}"
        );
        // Evidence whose gradient weights were edited does not follow from the scores.
        let mut edited = ev.clone();
        edited.gradient.as_mut().unwrap().weights[0].weight += 1;
        let bad = g
            .replay(
                Some(&id),
                Q,
                A,
                &edited,
                Some(&stored),
                spanless(&[1, 2, 3]),
            )
            .unwrap_err();
        assert!(bad.iter().any(|p| p.contains("do not follow")), "{bad:?}");
        // Evidence with a gradient part but no stored scores.
        let bad = g
            .replay(Some(&id), Q, A, &ev, None, spanless(&[1, 2, 3]))
            .unwrap_err();
        assert!(bad[0].contains("no gradient scores"), "{bad:?}");
    }

    #[test]
    fn no_cache_or_a_cache_of_other_weights_leaves_the_token_evidence_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (g, id, target) = install(dir.path());
        let tokens = spanless(&[1, 2, 3]);
        // The base model (no adapter), and an adapter without a cache.
        assert_eq!(g.attach(None, Q, A, tokens.clone()), (tokens.clone(), None));
        let other = AdapterId(Hash::of(b"no such adapter"));
        assert!(!g.has_cache(&other));
        assert_eq!(
            g.attach(Some(&other), Q, A, tokens.clone()),
            (tokens.clone(), None)
        );
        assert_eq!(receipt_method(&tokens), DATANET_FALLBACK);
        // Weights retrained after the cache was taken: the cache is refused.
        let fresh = attributor(&dir.path().join("adapters"), &dir.path().join("hf"));
        let w = target.join(ADAPTER_WEIGHTS_FILE);
        let mut bytes = std::fs::read(&w).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        std::fs::write(&w, bytes).unwrap();
        let err = fresh
            .score(&id, Q, A)
            .err()
            .expect("a stale cache is refused");
        assert!(
            matches!(err, GradientAttributionError::StaleCache { .. }),
            "{err}"
        );
        assert_eq!(
            fresh.attach(Some(&id), Q, A, tokens.clone()),
            (tokens, None)
        );
    }

    fn rss_mib() -> f64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    fn cpu_seconds() -> f64 {
        // utime + stime of the process, in clock ticks (100 per second).
        let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<&str> = s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (t(11) + t(12)) / 100.0
    }

    /// Added latency and memory of the gradient step on SmolLM2 with the
    /// planted-recall adapter (`scripts/attribution-eval.sh` leaves it in
    /// `target/attribution/planted-run/run`): `cargo test -p trib-node --lib
    /// gradient_latency_on_smollm2 -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs the SmolLM2 model and a planted-recall run; prints a table"]
    fn gradient_latency_on_smollm2() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let Ok(base) = trib_model::locate_smollm2(&root.join("models")) else {
            eprintln!("SmolLM2 not found: skipped");
            return;
        };
        let run = root.join("target/attribution/planted-run/run");
        let report = root.join("target/attribution/planted_recall.json");
        if !run.join("gradient_cache/index.json").is_file() || !report.is_file() {
            eprintln!("no planted-recall run in {}: skipped", run.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let id = AdapterId(Hash::of(b"planted"));
        let target = dir.path().join(id.to_string());
        let cache_dir = GradientCache::dir_for(&target);
        std::fs::create_dir_all(&cache_dir).unwrap();
        for f in std::fs::read_dir(run.join("adapter")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, target.join(f.file_name().unwrap())).unwrap();
        }
        std::fs::copy(
            run.join("gradient_cache/gradients.safetensors"),
            cache_dir.join("gradients.safetensors"),
        )
        .unwrap();
        // The planted rows come from a local file (no contribution on the
        // cache rows): give row i contribution i / 2 so that every row is
        // scored, as a datanet-trained adapter's are.
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("gradient_cache/index.json")).unwrap())
                .unwrap();
        for e in index["examples"].as_array_mut().unwrap() {
            let row = e["provenance"]["row"].as_u64().unwrap();
            e["provenance"]["contribution"] =
                serde_json::to_value(ContributionId(Hash::of(&(row / 2).to_le_bytes()))).unwrap();
            e["provenance"]["contributor"] =
                serde_json::to_value(SecretKey::from_seed([(row / 2) as u8; 32]).address())
                    .unwrap();
        }
        std::fs::write(cache_dir.join("index.json"), index.to_string()).unwrap();
        let answers: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let qa: Vec<(String, String)> = answers["answers"]
            .as_array()
            .unwrap()
            .iter()
            .take(12)
            .map(|a| {
                (
                    a["question"]["prompt"].as_str().unwrap().to_string(),
                    a["adapter_answer"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let source = Arc::new(ModelGradients::new(dir.path().to_path_buf(), base));
        let g = GradientAttributor::new(source.clone(), GRADIENT_BUDGET);
        let rss0 = rss_mib();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        source.prepare().unwrap();
        let (load_s, load_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        let rss1 = rss_mib();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        g.preload(&id).unwrap();
        let (cache_s, cache_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        let rss2 = rss_mib();
        let mut ms = Vec::new();
        let c0 = cpu_seconds();
        for (q, a) in &qa {
            let t = Instant::now();
            let s = g.score(&id, q, a).unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(s.is_some(), "{q} / {a}");
        }
        let cpu = cpu_seconds() - c0;
        let rss3 = rss_mib();
        ms.sort_by(f64::total_cmp);
        eprintln!(
            "threads: {}",
            std::thread::available_parallelism().map_or(0, usize::from)
        );
        eprintln!(
            "f32 base model load: {load_s:.2} s wall, {load_cpu:.2} CPU s, RSS +{:.0} MiB",
            rss1 - rss0
        );
        eprintln!(
            "adapter + cache load: {cache_s:.2} s wall, {cache_cpu:.2} CPU s, RSS +{:.0} MiB",
            rss2 - rss1
        );
        eprintln!(
            "per answer ({}): median {:.0} ms, p90 {:.0} ms, max {:.0} ms, {:.2} CPU s per answer; RSS after {:.0} MiB (+{:.0} during answers)",
            ms.len(),
            ms[ms.len() / 2],
            ms[ms.len() * 9 / 10],
            ms[ms.len() - 1],
            cpu / ms.len() as f64,
            rss3,
            rss3 - rss2
        );
    }
}
