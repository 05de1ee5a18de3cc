//! `attr-bench`: speed of our token index against the `infini-gram` package,
//! and of DataInf against `dattri`, on the same inputs.
//!
//! `attr-bench prepare DIR [--tokens N]` builds a corpus from the texts under
//! `/usr/share/common-licenses` and `/usr/share/doc` (plain files, sorted by
//! path), tokenized by a deterministic word-level scheme (a word with its
//! leading space, each punctuation character, and newline are tokens; ids by
//! descending frequency, capped at 65,000 with an `<unk>` id), split into
//! paragraph rows. It writes `DIR/raw/{tokenized.0,offset.0}` for infini-gram's
//! indexer, builds our index (1 and 2 threads, best of 3), and times counts
//! and traces, writing `DIR/ours.json`. `scripts/bench/attr_infinigram.py`
//! runs the peer on the same files and compares.
//!
//! `attr-bench datainf DIR [--train N --dim D --tests T]` writes random
//! gradients to `DIR/grads.bin`, times our DataInf and writes the scores, for
//! `scripts/bench/attr_dattri.py`.

use std::collections::HashMap;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use trib_attribution::quality::SplitMix64;
use trib_attribution::{
    build_index, datainf_scores, Damping, IndexBuildOptions, IndexDocument, IndexSet,
    LayerGradients, RowProvenance, SpanTracer, TokenText, TraceParams,
};
use trib_types::{Address, ContributionId, Hash, RowHash};

const UNK: u32 = 65_000;

/// Word-level pieces of `text`.
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut space = false;
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            if cur.is_empty() && space {
                cur.push(' ');
            }
            cur.push(ch);
            space = false;
            continue;
        }
        if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if ch == '\n' {
            out.push("\n".into());
            space = false;
        } else if ch.is_whitespace() {
            space = true;
        } else {
            out.push(if space {
                format!(" {ch}")
            } else {
                ch.to_string()
            });
            space = false;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct Vocab {
    pieces: Vec<String>,
}

impl TokenText for Vocab {
    fn is_word_start(&self, token: u32) -> bool {
        self.pieces
            .get(token as usize)
            .is_none_or(|p| p.starts_with(' ') || p == "\n")
    }
    fn is_delimiter(&self, token: u32) -> bool {
        self.pieces
            .get(token as usize)
            .is_some_and(|p| p == "\n" || p == "." || p == " .")
    }
}

fn collect_texts(limit_tokens: usize) -> Vec<String> {
    let mut files = Vec::new();
    for root in ["/usr/share/common-licenses", "/usr/share/doc"] {
        walk(Path::new(root), &mut files);
    }
    files.sort();
    let mut out = Vec::new();
    let mut approx = 0usize;
    for f in files {
        let Ok(bytes) = fs::read(&f) else { continue };
        if bytes.contains(&0) {
            continue;
        }
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        approx += text.split_whitespace().count() * 3 / 2;
        out.push(text);
        if approx > limit_tokens {
            break;
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(&p, out);
        } else if ft.is_file()
            && !p
                .extension()
                .is_some_and(|x| x == "gz" || x == "png" || x == "jpg" || x == "pdf")
        {
            out.push(p);
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn prepare(dir: &Path, args: &[String]) -> Result<(), Box<dyn Error>> {
    let limit: usize = arg(args, "--tokens", 2_000_000);
    fs::create_dir_all(dir)?;
    let texts = collect_texts(limit);
    // Rows: paragraphs (blank-line separated).
    let paras: Vec<Vec<String>> = texts
        .iter()
        .flat_map(|t| {
            t.split("\n\n")
                .map(|p| pieces(p.trim_matches('\n')))
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect();
    let mut freq: HashMap<&str, u64> = HashMap::new();
    for p in &paras {
        for w in p {
            *freq.entry(w.as_str()).or_default() += 1;
        }
    }
    let mut by_freq: Vec<(&str, u64)> = freq.into_iter().collect();
    by_freq.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    by_freq.truncate(UNK as usize);
    let ids: HashMap<&str, u32> = by_freq
        .iter()
        .enumerate()
        .map(|(i, (w, _))| (*w, i as u32))
        .collect();
    let mut vocab: Vec<String> = by_freq.iter().map(|(w, _)| w.to_string()).collect();
    vocab.push("<unk>".into());
    let docs: Vec<Vec<u32>> = paras
        .iter()
        .map(|p| {
            p.iter()
                .map(|w| ids.get(w.as_str()).copied().unwrap_or(UNK))
                .collect()
        })
        .collect();
    let tokens: usize = docs.iter().map(Vec::len).sum();
    let provs: Vec<RowProvenance> = (0..docs.len())
        .map(|i| RowProvenance {
            row: RowHash(Hash::of(&(i as u64).to_le_bytes())),
            contribution: ContributionId(Hash::of(&((i / 10) as u64).to_le_bytes())),
            contributor: Address([(i % 251) as u8; 20]),
            first_seen: i as u64,
        })
        .collect();
    let v = Vocab { pieces: vocab };
    let opts = |threads| IndexBuildOptions {
        label: "bench".into(),
        tokenizer_hash: Hash::of(b"attr-bench word pieces"),
        vocab_size: UNK + 1,
        threads,
    };
    let mut build_times = serde_json::Map::new();
    for threads in [1u16, 2] {
        let mut times = Vec::new();
        for rep in 0..3 {
            let d = dir.join(format!("ours-{threads}t-{rep}"));
            let _ = fs::remove_dir_all(&d);
            let t = Instant::now();
            build_index(
                &d,
                docs.iter().zip(&provs).map(|(t, p)| IndexDocument {
                    tokens: t,
                    provenance: *p,
                }),
                &opts(threads),
            )?;
            times.push(t.elapsed().as_secs_f64());
            if threads == 2 && rep == 0 {
                let ours = dir.join("ours");
                let _ = fs::remove_dir_all(&ours);
                fs::rename(&d, &ours)?;
            } else {
                fs::remove_dir_all(&d)?;
            }
        }
        build_times.insert(
            format!("{threads}"),
            times.iter().cloned().fold(f64::INFINITY, f64::min).into(),
        );
    }
    let raw = dir.join("raw");
    fs::create_dir_all(&raw)?;
    fs::copy(dir.join("ours/tokenized.0"), raw.join("tokenized.0"))?;
    fs::copy(dir.join("ours/offset.0"), raw.join("offset.0"))?;
    let bow: Vec<String> = (0..=UNK)
        .filter(|&t| v.is_word_start(t))
        .map(|t| t.to_string())
        .collect();
    fs::write(dir.join("bow_ids.txt"), bow.join("\n") + "\n")?;
    let delims: Vec<u32> = (0..=UNK).filter(|&t| v.is_delimiter(t)).collect();

    let set = IndexSet::open(&[dir.join("ours")])?;
    // Count queries: n-grams sampled from the corpus plus random sequences.
    let mut rng = SplitMix64::new(17);
    let mut queries: Vec<Vec<u32>> = Vec::new();
    while queries.len() < 2000 {
        let d = &docs[rng.below(docs.len())];
        if d.is_empty() {
            continue;
        }
        let len = 1 + rng.below(8);
        let s = rng.below(d.len());
        queries.push(d[s..(s + len).min(d.len())].to_vec());
    }
    for _ in 0..200 {
        queries.push(
            (0..1 + rng.below(4))
                .map(|_| rng.below(UNK as usize) as u32)
                .collect(),
        );
    }
    let t = Instant::now();
    let counts: Vec<u64> = queries.iter().map(|q| set.count(q)).collect();
    let count_us = t.elapsed().as_secs_f64() * 1e6 / queries.len() as f64;

    // Answers: ~400 tokens spliced from corpus fragments and random words.
    let answers: Vec<Vec<u32>> = (0..20)
        .map(|_| {
            let mut a = Vec::new();
            while a.len() < 400 {
                let d = &docs[rng.below(docs.len())];
                if d.len() > 5 {
                    let s = rng.below(d.len() - 5);
                    let l = 5 + rng.below(40);
                    a.extend_from_slice(&d[s..(s + l).min(d.len())]);
                }
                for _ in 0..rng.below(4) {
                    a.push(rng.below(20_000) as u32);
                }
            }
            a
        })
        .collect();
    let params = TraceParams {
        min_span_tokens: 4,
        max_span_count: 10,
        ..TraceParams::default()
    };
    let tracer = SpanTracer::new(&set, &v, params)?;
    // One warm-up pass so that both timings see the same page cache.
    for a in &answers {
        std::hint::black_box(tracer.trace(a)?);
    }
    let mut span_ms = Vec::new();
    let mut spans = Vec::new();
    for a in &answers {
        let t = Instant::now();
        spans.push(tracer.maximal_spans(a));
        span_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut trace_ms = Vec::new();
    for a in &answers {
        let t = Instant::now();
        std::hint::black_box(tracer.trace(a)?);
        trace_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let out = serde_json::json!({
        "tokens": tokens,
        "documents": docs.len(),
        "build_s": build_times,
        "count_us": count_us,
        "queries": queries,
        "counts": counts,
        "answers": answers,
        "delim_ids": delims,
        "min_len": 4,
        "max_cnt": 10,
        "our_spans": spans,
        "span_ms_median": median(span_ms),
        "trace_ms_median": median(trace_ms),
    });
    fs::write(dir.join("ours.json"), serde_json::to_vec(&out)?)?;
    println!(
        "corpus: {} tokens, {} rows; our build best of 3: 1 thread {:.3} s, 2 threads {:.3} s; count {:.1} µs; spans {:.2} ms, full trace {:.2} ms per answer",
        tokens,
        docs.len(),
        build_times["1"],
        build_times["2"],
        count_us,
        out["span_ms_median"],
        out["trace_ms_median"]
    );
    Ok(())
}

fn datainf_bench(dir: &Path, args: &[String]) -> Result<(), Box<dyn Error>> {
    let n: usize = arg(args, "--train", 2000);
    let d: usize = arg(args, "--dim", 4096);
    let t: usize = arg(args, "--tests", 64);
    fs::create_dir_all(dir)?;
    let mut rng = SplitMix64::new(23);
    let train: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
    let test: Vec<f32> = (0..t * d).map(|_| rng.normal() as f32).collect();
    let mut bin = Vec::with_capacity(12 + 4 * (train.len() + test.len()));
    for x in [n as u32, d as u32, t as u32] {
        bin.extend_from_slice(&x.to_le_bytes());
    }
    for x in train.iter().chain(&test) {
        bin.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(dir.join("grads.bin"), bin)?;
    let tr = vec![LayerGradients::new("layer", n, d, train)?];
    let te = vec![LayerGradients::new("layer", t, d, test)?];
    let lambda = Damping::Relative(0.1).lambda(&tr[0]);
    let mut times = Vec::new();
    let mut scores = None;
    for _ in 0..3 {
        let s = Instant::now();
        scores = Some(datainf_scores(&tr, &te, Damping::Fixed(lambda))?);
        times.push(s.elapsed().as_secs_f64());
    }
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let scores = scores.expect("ran");
    let out = serde_json::json!({
        "n": n, "d": d, "tests": t, "lambda": lambda,
        "seconds": best,
        "pairs_per_s": (n * t) as f64 / best,
        "threads": rayon::current_num_threads(),
        "scores": scores.data,
    });
    fs::write(dir.join("ours_datainf.json"), serde_json::to_vec(&out)?)?;
    println!(
        "DataInf n={n} d={d} tests={t} λ={lambda:.4e}: {best:.3} s, {:.0} pairs/s on {} threads",
        (n * t) as f64 / best,
        rayon::current_num_threads()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("prepare"), Some(dir)) => prepare(Path::new(dir), &args[2..]),
        (Some("datainf"), Some(dir)) => datainf_bench(Path::new(dir), &args[2..]),
        _ => Err("usage: attr-bench prepare DIR [--tokens N] | attr-bench datainf DIR [--train N --dim D --tests T]".into()),
    }
}
