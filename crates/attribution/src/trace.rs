//! Span tracing in the manner of OLMoTrace (Liu et al., "OLMoTrace: Tracing
//! Language Model Outputs Back to Trillions of Training Tokens", arXiv
//! 2504.07096), and the step from spans to per-contribution credit.
//!
//! Procedure (see `docs/attribution.md` for the formulas):
//! 1. from every word-start position of the answer, the longest prefix that
//!    occurs in the index (one suffix-array search each);
//! 2. cut the span after the first delimiter (`\n`, `.`) inside it, then back
//!    off so that it ends on a word boundary;
//! 3. drop spans shorter than `min_span_tokens` or occurring more than
//!    `max_span_count` times (boilerplate earns nothing);
//! 4. keep maximal spans only (right ends strictly increasing);
//! 5. rank by the sum of unigram log-probabilities (rarest first) and keep
//!    `K = ceil(span_density × answer length)`;
//! 6. list the rows holding each span, give identical and near-identical rows'
//!    credit to their first contributor, merge overlapping spans for display.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use trib_types::{Address, ContributionId, Hash};

use crate::error::{AttributionError, Result};
use crate::index::{IndexSet, Occurrence, RowProvenance};

/// What the tracer needs to know about token pieces; the tokenizer owner
/// (`trib-model`) implements it.
pub trait TokenText {
    /// Whether `token` begins a new word (a leading space or newline, or
    /// punctuation that stands alone).
    fn is_word_start(&self, token: u32) -> bool;
    /// Whether `token` contains a span delimiter (`\n` or `.`).
    fn is_delimiter(&self, token: u32) -> bool;
    /// Whether `token` holds a letter (not only digits, punctuation or
    /// white space), for [`TraceParams::require_letter`]. Default: `true`.
    fn has_letter(&self, token: u32) -> bool {
        let _ = token;
        true
    }
}

/// A [`TokenText`] over the decoded piece of every token id, for tokenizers
/// that mark a leading space in the piece: `' '`, GPT-2 byte-level `'Ġ'`,
/// SentencePiece `'▁'`. A piece starts a word when it starts with one of
/// those, with a newline (`'\n'`, `'Ċ'`), or is punctuation only; it is a
/// delimiter when it contains a newline or a `'.'`.
#[derive(Clone, Debug, Default)]
pub struct PieceTable {
    word_start: Vec<bool>,
    delimiter: Vec<bool>,
    letter: Vec<bool>,
}

impl PieceTable {
    /// Builds the table from the piece of each token id (index = id).
    pub fn new<S: AsRef<str>>(pieces: &[S]) -> Self {
        let mut word_start = Vec::with_capacity(pieces.len());
        let mut delimiter = Vec::with_capacity(pieces.len());
        let mut letter = Vec::with_capacity(pieces.len());
        for p in pieces {
            let p = p.as_ref();
            let first = p.chars().next();
            let starts = matches!(first, Some(' ' | '\u{120}' | '\u{2581}' | '\n' | '\u{10A}'))
                || (!p.is_empty() && p.chars().all(|c| !c.is_alphanumeric()));
            word_start.push(starts);
            delimiter.push(p.contains('\n') || p.contains('\u{10A}') || p.contains('.'));
            // Space and newline markers are letters to `char::is_alphabetic`
            // ('Ġ', 'Ċ'): skip them first.
            let body = p.trim_start_matches([' ', '\u{120}', '\u{2581}', '\n', '\u{10A}']);
            letter.push(body.chars().any(char::is_alphabetic));
        }
        PieceTable {
            word_start,
            delimiter,
            letter,
        }
    }
}

impl TokenText for PieceTable {
    fn is_word_start(&self, token: u32) -> bool {
        self.word_start.get(token as usize).copied().unwrap_or(true)
    }
    fn is_delimiter(&self, token: u32) -> bool {
        self.delimiter.get(token as usize).copied().unwrap_or(false)
    }
    fn has_letter(&self, token: u32) -> bool {
        self.letter.get(token as usize).copied().unwrap_or(true)
    }
}

/// The answer tokens that repeat a word of the prompt, which no span may
/// include: what the answer copies from the question earns nothing.
///
/// Measured in `docs/attribution.md` §5 (planted recall): plain spans on the
/// *base* model's answers, which learned nothing from the datanet, still
/// credited the planted contribution 82.5% of the time, because the answer
/// repeats the question's rare words (an invented name) and only that
/// contribution's rows hold them. Masking the prompt's words brought that
/// control to 0 and, with 2-token minimum spans, credited the true source of
/// every correct and every borrowed answer.
///
/// Rule: the prompt is split on whitespace and each piece normalised
/// (alphanumeric characters only, lower-cased; empty pieces dropped). The
/// answer is cut into words (a word-start token and the tokens up to the
/// next word start, [`TokenText::is_word_start`]); a word whose decoded,
/// normalised text is one of the prompt's words is masked, all its tokens.
/// Case and punctuation are ignored: `"Quokka,"` in the prompt masks
/// `" quokka"` in the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptMask {
    prompt_hash: Hash,
    masked: Vec<bool>,
}

impl PromptMask {
    /// Masks the words of `answer` (token ids) that occur in `prompt`.
    /// `decode` turns a word's token ids into text (the tokenizer's decoder);
    /// its error is returned as is.
    pub fn new<E>(
        prompt: &str,
        answer: &[u32],
        text: &dyn TokenText,
        mut decode: impl FnMut(&[u32]) -> std::result::Result<String, E>,
    ) -> std::result::Result<Self, E> {
        let asked: BTreeSet<String> = prompt
            .split_whitespace()
            .map(normalise_word)
            .filter(|w| !w.is_empty())
            .collect();
        let mut masked = vec![false; answer.len()];
        let mut start = 0;
        while start < answer.len() {
            let mut end = start + 1;
            while end < answer.len() && !text.is_word_start(answer[end]) {
                end += 1;
            }
            if asked.contains(&normalise_word(&decode(&answer[start..end])?)) {
                masked[start..end].fill(true);
            }
            start = end;
        }
        Ok(PromptMask {
            prompt_hash: Self::hash_prompt(prompt),
            masked,
        })
    }

    /// The hash the evidence records for a prompt: blake3 in derive-key mode
    /// (domain `attribution prompt`) over its UTF-8 bytes.
    pub fn hash_prompt(prompt: &str) -> Hash {
        Hash::domain("attribution prompt", &[prompt.as_bytes()])
    }

    /// [`PromptMask::hash_prompt`] of the prompt the mask was made from.
    pub fn prompt_hash(&self) -> Hash {
        self.prompt_hash
    }

    /// One flag per answer token: `true` = repeats a prompt word.
    pub fn masked(&self) -> &[bool] {
        &self.masked
    }

    /// How many answer tokens are masked.
    pub fn masked_tokens(&self) -> usize {
        self.masked.iter().filter(|m| **m).count()
    }

    /// The masked tokens as `[start, end)` ranges, in order.
    pub fn ranges(&self) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        for (i, _) in self.masked.iter().enumerate().filter(|(_, m)| **m) {
            match out.last_mut() {
                Some(last) if last.1 == i => last.1 = i + 1,
                _ => out.push((i, i + 1)),
            }
        }
        out
    }
}

/// A word as [`PromptMask`] compares it: alphanumeric characters only, lower-cased.
fn normalise_word(w: &str) -> String {
    w.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Thresholds of the span tracer. Every value is recorded in the receipt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceParams {
    /// Spans shorter than this many tokens are dropped.
    pub min_span_tokens: usize,
    /// Spans occurring more often than this in the index set are boilerplate and dropped.
    pub max_span_count: u64,
    /// Keep `ceil(span_density × answer tokens)` spans.
    pub span_density: f64,
    /// Rows listed (and credited) per span; occurrences beyond it are ignored.
    pub rows_per_span: usize,
    /// Tokens of context shown on either side of a retrieved span.
    pub context_tokens: usize,
    /// Rows whose token 5-gram sets have at least this Jaccard similarity are
    /// near-duplicates: the first contributor keeps the credit.
    pub near_duplicate_jaccard: f64,
    /// Drop spans with no token holding a letter ([`TokenText::has_letter`]):
    /// a span of digits and punctuation (`" 1"`, `"(3)."`) earns nothing.
    /// Off by default (OLMoTrace has no such rule); the node's answer-time
    /// tracing turns it on with its 2-token minimum, where such spans were
    /// measured to credit unrelated answers (`docs/attribution.md` §8).
    pub require_letter: bool,
}

impl Default for TraceParams {
    fn default() -> Self {
        TraceParams {
            min_span_tokens: 4,
            max_span_count: 16,
            span_density: 0.05,
            rows_per_span: 16,
            context_tokens: 16,
            near_duplicate_jaccard: 0.8,
            require_letter: false,
        }
    }
}

impl TraceParams {
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| {
            Err(AttributionError::InvalidParameter {
                name,
                reason: reason.into(),
            })
        };
        if self.min_span_tokens == 0 {
            return bad("min_span_tokens", "must be at least 1");
        }
        if !(self.span_density > 0.0 && self.span_density <= 1.0) {
            return bad("span_density", "must be in (0, 1]");
        }
        if self.rows_per_span == 0 {
            return bad("rows_per_span", "must be at least 1");
        }
        if !(self.near_duplicate_jaccard > 0.0 && self.near_duplicate_jaccard <= 1.0) {
            return bad("near_duplicate_jaccard", "must be in (0, 1]");
        }
        Ok(())
    }
}

/// One row holding a traced span, and who is credited for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanRow {
    /// Where the span occurs.
    pub occurrence: Occurrence,
    /// The row holding it.
    pub provenance: RowProvenance,
    /// The row credited: itself, or the earliest identical / near-identical row.
    pub credited: RowProvenance,
    /// Credit in micro-units (10⁻⁶ nats of span information) given to `credited` for this row.
    pub credit_micros: u64,
}

/// A kept span of the answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracedSpan {
    /// First answer token of the span.
    pub start: usize,
    /// One past the last answer token.
    pub end: usize,
    /// Occurrences in the index set.
    pub count: u64,
    /// Sum of unigram log-probabilities × 10⁶ (more negative = rarer).
    pub log_prob_micros: i64,
    /// Rows holding it (up to `rows_per_span`).
    pub rows: Vec<SpanRow>,
}

/// Integer weight of one contribution.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct ContributionWeight {
    /// The contribution.
    pub contribution: ContributionId,
    /// Its contributor.
    pub contributor: Address,
    /// Non-negative weight in micro-units.
    pub weight: u64,
}

/// The result of tracing one answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// Answer length in tokens.
    pub answer_tokens: usize,
    /// Kept spans, by start position.
    pub spans: Vec<TracedSpan>,
    /// Overlapping spans merged, for display: `[start, end)` ranges.
    pub highlights: Vec<(usize, usize)>,
    /// Credit per contribution, sorted by contribution id; empty when no span cleared the thresholds.
    pub weights: Vec<ContributionWeight>,
}

/// Traces answers against an [`IndexSet`].
pub struct SpanTracer<'a> {
    index: &'a IndexSet,
    text: &'a dyn TokenText,
    params: TraceParams,
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    start: usize,
    end: usize,
    count: u64,
    log_prob: f64,
}

impl<'a> SpanTracer<'a> {
    /// A tracer with the given thresholds.
    pub fn new(index: &'a IndexSet, text: &'a dyn TokenText, params: TraceParams) -> Result<Self> {
        params.validate()?;
        Ok(SpanTracer {
            index,
            text,
            params,
        })
    }

    /// The thresholds in use.
    pub fn params(&self) -> &TraceParams {
        &self.params
    }

    /// Natural-log unigram probability of `token` (count ≥ 1 assumed by callers).
    fn unigram_log_prob(&self, token: u32, total: f64) -> f64 {
        let c = self.index.unigram_count(token).max(1) as f64;
        (c / total).ln()
    }

    /// Steps 1–4: maximal candidate spans that pass the filters, by start.
    /// No span starts at, or runs over, a `masked` token (all `false`: no mask).
    fn candidates(&self, answer: &[u32], masked: &[bool]) -> Vec<Candidate> {
        let n = answer.len();
        let total = self.index.total_tokens().max(1) as f64;
        let mut out: Vec<Candidate> = Vec::new();
        let mut max_end = 0usize;
        // First masked position at or after each start (n: none).
        let mut next_masked = vec![n; n + 1];
        for p in (0..n).rev() {
            next_masked[p] = if masked[p] { p } else { next_masked[p + 1] };
        }
        for s in 0..n {
            if masked[s]
                || (s > 0 && !self.text.is_word_start(answer[s]))
                || self.text.is_delimiter(answer[s])
            {
                continue;
            }
            let (len, _) = self.index.longest_prefix(&answer[s..next_masked[s]]);
            let mut e = s + len;
            if let Some(d) = (s..e).find(|&j| self.text.is_delimiter(answer[j])) {
                e = d + 1;
            }
            while e > s && !self.is_boundary(answer, masked, e) {
                e -= 1;
            }
            if e - s < self.params.min_span_tokens || e <= max_end {
                continue;
            }
            if self.params.require_letter && !answer[s..e].iter().any(|&t| self.text.has_letter(t))
            {
                continue;
            }
            let count = self.index.count(&answer[s..e]);
            if count == 0 || count > self.params.max_span_count {
                continue;
            }
            let log_prob = answer[s..e]
                .iter()
                .map(|&t| self.unigram_log_prob(t, total))
                .sum();
            out.push(Candidate {
                start: s,
                end: e,
                count,
                log_prob,
            });
            max_end = e;
        }
        out
    }

    /// A span may end before position `e` when the next token starts a word,
    /// is a delimiter or is masked, or when the span itself ends with a delimiter.
    fn is_boundary(&self, answer: &[u32], masked: &[bool], e: usize) -> bool {
        e == answer.len()
            || masked[e]
            || self.text.is_word_start(answer[e])
            || self.text.is_delimiter(answer[e])
            || self.text.is_delimiter(answer[e - 1])
    }

    /// Steps 1–4 only: the maximal spans passing the length and count
    /// filters, as `(start, end, count)` by start (before rarity ranking).
    pub fn maximal_spans(&self, answer: &[u32]) -> Vec<(usize, usize, u64)> {
        self.candidates(answer, &vec![false; answer.len()])
            .into_iter()
            .map(|c| (c.start, c.end, c.count))
            .collect()
    }

    /// Traces `answer` (token ids).
    pub fn trace(&self, answer: &[u32]) -> Result<Trace> {
        self.trace_with_mask(answer, &vec![false; answer.len()])
    }

    /// Traces `answer` with the words it repeats from the prompt masked
    /// ([`PromptMask`]): no span starts at or runs over a masked token.
    /// `K` (spans kept) still counts every answer token.
    pub fn trace_masked(&self, answer: &[u32], mask: &PromptMask) -> Result<Trace> {
        if mask.masked.len() != answer.len() {
            return Err(AttributionError::InvalidParameter {
                name: "mask",
                reason: format!(
                    "the prompt mask covers {} tokens, the answer has {}",
                    mask.masked.len(),
                    answer.len()
                ),
            });
        }
        self.trace_with_mask(answer, &mask.masked)
    }

    fn trace_with_mask(&self, answer: &[u32], masked: &[bool]) -> Result<Trace> {
        let n = answer.len();
        let mut cands = self.candidates(answer, masked);
        let k = (self.params.span_density * n as f64).ceil() as usize;
        cands.sort_by(|a, b| {
            a.log_prob
                .total_cmp(&b.log_prob)
                .then(a.start.cmp(&b.start))
        });
        cands.truncate(k);
        cands.sort_by_key(|c| c.start);

        let total = self.index.total_tokens().max(1) as f64;
        // Information of each covered answer token, shared among the spans covering it.
        let mut cover = vec![0u32; n];
        for c in &cands {
            for x in &mut cover[c.start..c.end] {
                *x += 1;
            }
        }
        let mut spans = Vec::with_capacity(cands.len());
        let mut by_contribution: BTreeMap<ContributionId, (Address, u64)> = BTreeMap::new();
        for c in &cands {
            let span = &answer[c.start..c.end];
            let credit: f64 = (c.start..c.end)
                .map(|p| -self.unigram_log_prob(answer[p], total) / cover[p] as f64)
                .sum();
            let occs = self.index.occurrences(span, self.params.rows_per_span);
            let rows = self.credit_rows(&occs, credit);
            for r in &rows {
                let e = by_contribution
                    .entry(r.credited.contribution)
                    .or_insert((r.credited.contributor, 0));
                e.1 += r.credit_micros;
            }
            spans.push(TracedSpan {
                start: c.start,
                end: c.end,
                count: c.count,
                log_prob_micros: (c.log_prob * 1e6).round() as i64,
                rows,
            });
        }
        let weights = by_contribution
            .into_iter()
            .filter(|(_, (_, w))| *w > 0)
            .map(|(contribution, (contributor, weight))| ContributionWeight {
                contribution,
                contributor,
                weight,
            })
            .collect();
        let highlights = merge_intervals(spans.iter().map(|s| (s.start, s.end)));
        tracing::debug!(target: "trib::attribution", answer_tokens = n, spans = spans.len(), "traced answer");
        Ok(Trace {
            answer_tokens: n,
            spans,
            highlights,
            weights,
        })
    }

    /// Splits `credit` equally among the distinct owner groups of the rows
    /// holding a span; within a group (same row hash, or near-identical
    /// token content) the earliest row (`first_seen`, then row hash) is credited.
    fn credit_rows(&self, occs: &[Occurrence], credit: f64) -> Vec<SpanRow> {
        let provs: Vec<RowProvenance> = occs
            .iter()
            .map(|o| self.index.row(o.shard, o.document))
            .collect();
        let m = occs.len();
        // Union-find over occurrences.
        let mut parent: Vec<usize> = (0..m).collect();
        fn find(p: &mut [usize], i: usize) -> usize {
            let mut r = i;
            while p[r] != r {
                r = p[r];
            }
            let mut j = i;
            while p[j] != r {
                let nx = p[j];
                p[j] = r;
                j = nx;
            }
            r
        }
        let shingles: Vec<HashSet<[u32; 5]>> = occs
            .iter()
            .map(|o| shingle_set(&self.index.document_tokens(o.shard, o.document)))
            .collect();
        for i in 0..m {
            for j in i + 1..m {
                let same = provs[i].row == provs[j].row
                    || jaccard(&shingles[i], &shingles[j]) >= self.params.near_duplicate_jaccard;
                if same {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b {
                        parent[b] = a;
                    }
                }
            }
        }
        let owner_key = |p: &RowProvenance| (p.first_seen, p.row);
        let mut owner: BTreeMap<usize, RowProvenance> = BTreeMap::new();
        for (i, p) in provs.iter().enumerate() {
            let r = find(&mut parent, i);
            let e = owner.entry(r).or_insert(*p);
            if owner_key(p) < owner_key(e) {
                *e = *p;
            }
        }
        let groups = owner.len().max(1) as f64;
        let micros = (credit / groups * 1e6).round() as u64;
        let mut credited_group: HashSet<usize> = HashSet::new();
        (0..m)
            .map(|i| {
                let r = find(&mut parent, i);
                // One share per group, booked on the group's first listed occurrence.
                let credit_micros = if credited_group.insert(r) { micros } else { 0 };
                SpanRow {
                    occurrence: occs[i],
                    provenance: provs[i],
                    credited: owner[&r],
                    credit_micros,
                }
            })
            .collect()
    }
}

/// Okapi BM25 relevance of each document (a list of terms: words from
/// [`bm25_terms`], or token ids) to `query`, with the documents themselves
/// as the collection: OLMoTrace re-ranks the documents
/// retrieved for an answer's spans by BM25 against the prompt and answer.
/// Used for display order only (which rows a response shows first); credit
/// and payouts never depend on it.
///
/// `score(D) = Σ_{t ∈ distinct(query)} idf(t) · f(t,D)·(k1+1) / (f(t,D) +
/// k1·(1 − b + b·|D|/avgdl))`, `idf(t) = ln(1 + (N − n(t) + 0.5)/(n(t) +
/// 0.5))`, with `k1 = 1.2`, `b = 0.75` (Robertson et al.; Lucene's
/// defaults), `N` documents, `n(t)` of them holding `t`. Each distinct query
/// token counts once. Empty documents and an empty query score 0.
pub fn bm25_scores<T: Ord>(query: &[T], docs: &[&[T]]) -> Vec<f64> {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;
    let terms: BTreeSet<&T> = query.iter().collect();
    let n = docs.len() as f64;
    let avgdl = docs.iter().map(|d| d.len()).sum::<usize>() as f64 / n.max(1.0);
    let tf: Vec<BTreeMap<&T, u32>> = docs
        .iter()
        .map(|d| {
            let mut m = BTreeMap::new();
            for t in d.iter().filter(|t| terms.contains(t)) {
                *m.entry(t).or_insert(0) += 1;
            }
            m
        })
        .collect();
    let idf: BTreeMap<&T, f64> = terms
        .iter()
        .map(|t| {
            let holding = tf.iter().filter(|m| m.contains_key(t)).count() as f64;
            (*t, (1.0 + (n - holding + 0.5) / (holding + 0.5)).ln())
        })
        .collect();
    docs.iter()
        .zip(&tf)
        .map(|(d, m)| {
            if d.is_empty() || avgdl == 0.0 {
                return 0.0;
            }
            let norm = K1 * (1.0 - B + B * d.len() as f64 / avgdl);
            m.iter()
                .map(|(t, f)| {
                    let f = f64::from(*f);
                    idf[t] * f * (K1 + 1.0) / (f + norm)
                })
                .sum()
        })
        .collect()
}

/// The words of `text` as [`bm25_scores`] and [`PromptMask`] compare them:
/// split on whitespace, alphanumeric characters only, lower-cased, empty
/// pieces dropped.
pub fn bm25_terms(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(normalise_word)
        .filter(|w| !w.is_empty())
        .collect()
}

fn shingle_set(tokens: &[u32]) -> HashSet<[u32; 5]> {
    if tokens.len() < 5 {
        let mut one = [u32::MAX; 5];
        one[..tokens.len()].copy_from_slice(tokens);
        return HashSet::from([one]);
    }
    tokens
        .windows(5)
        .map(|w| [w[0], w[1], w[2], w[3], w[4]])
        .collect()
}

fn jaccard(a: &HashSet<[u32; 5]>, b: &HashSet<[u32; 5]>) -> f64 {
    let inter = a.iter().filter(|x| b.contains(*x)).count();
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Merges overlapping or touching `[start, end)` intervals given in start order.
fn merge_intervals(iv: impl Iterator<Item = (usize, usize)>) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (s, e) in iv {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_table_reads_common_space_markers() {
        let t = PieceTable::new(&[
            "\u{120}the",
            "cat",
            "\u{2581}dog",
            ".",
            "\u{10A}",
            " a",
            "ing",
            "!",
        ]);
        let starts: Vec<bool> = (0..8).map(|i| t.is_word_start(i)).collect();
        assert_eq!(
            starts,
            vec![true, false, true, true, true, true, false, true]
        );
        let delims: Vec<bool> = (0..8).map(|i| t.is_delimiter(i)).collect();
        assert_eq!(
            delims,
            vec![false, false, false, true, true, false, false, false]
        );
        let letters: Vec<bool> = (0..8).map(|i| t.has_letter(i)).collect();
        assert_eq!(
            letters,
            vec![true, true, true, false, false, true, true, false]
        );
        let digits = PieceTable::new(&["\u{120}", "1", "\u{120}1987", "\u{10A}", "\u{2581}x"]);
        let letters: Vec<bool> = (0..5).map(|i| digits.has_letter(i)).collect();
        assert_eq!(letters, vec![false, false, false, false, true]);
    }

    /// Decodes the toy vocabulary of these tests: a word-start id `i` is
    /// `" w{i}"` (id 7 is `" W7,"`: case and punctuation differ), others `"x"`.
    fn toy_decode(ids: &[u32]) -> std::result::Result<String, std::convert::Infallible> {
        Ok(ids
            .iter()
            .map(|&i| match i {
                7 => " W7,".to_string(),
                i if i < 1000 => format!(" w{i}"),
                _ => "x".to_string(),
            })
            .collect())
    }

    struct Toy;
    impl TokenText for Toy {
        fn is_word_start(&self, token: u32) -> bool {
            token < 1000
        }
        fn is_delimiter(&self, token: u32) -> bool {
            token == 0
        }
    }

    #[test]
    fn a_prompt_mask_covers_whole_words_the_prompt_holds_ignoring_case_and_punctuation() {
        // Words: [5], [6, 1001], [7], [8, 1002, 1003], [9].
        let answer = [5, 6, 1001, 7, 8, 1002, 1003, 9];
        let m = PromptMask::new("Is w6x or (w7) like w8xx?", &answer, &Toy, toy_decode).unwrap();
        assert_eq!(
            m.masked(),
            &[false, true, true, true, true, true, true, false]
        );
        assert_eq!(m.masked_tokens(), 6);
        assert_eq!(m.ranges(), vec![(1, 7)]);
        // A prefix of a word is not the word: "w6" does not mask "w6x".
        let m = PromptMask::new("w6 w8", &answer, &Toy, toy_decode).unwrap();
        assert_eq!(m.masked_tokens(), 0);
        assert_eq!(m.ranges(), Vec::<(usize, usize)>::new());
        // Punctuation-only prompt pieces mask nothing; the hash names the prompt.
        let m = PromptMask::new(" ?! ", &answer, &Toy, toy_decode).unwrap();
        assert_eq!(m.masked_tokens(), 0);
        assert_eq!(m.prompt_hash(), PromptMask::hash_prompt(" ?! "));
        assert_ne!(m.prompt_hash(), PromptMask::hash_prompt(" ?!"));
        // The decoder's error is returned as is.
        let err = PromptMask::new("w5", &answer, &Toy, |_| Err("no decoder")).unwrap_err();
        assert_eq!(err, "no decoder");
    }

    #[test]
    fn bm25_prefers_documents_sharing_more_and_rarer_query_tokens() {
        let query = [1, 2, 3, 3];
        let docs: [&[u32]; 5] = [
            &[1, 9, 9, 9], // one common query token
            &[1, 2, 9, 9], // two
            &[1, 2, 3, 9], // three, 3 being the rarest
            &[9, 9, 9, 9], // none
            &[],           // empty
        ];
        let s = bm25_scores(&query, &docs);
        assert!(s[2] > s[1] && s[1] > s[0] && s[0] > 0.0, "{s:?}");
        assert_eq!(s[3], 0.0);
        assert_eq!(s[4], 0.0);
        // Repeating a query token in the query does not weigh it more.
        assert_eq!(s, bm25_scores(&[1, 2, 3], &docs));
        // A longer document with the same matches scores lower (length norm).
        let long: Vec<u32> = [1, 2, 3].into_iter().chain([9; 20]).collect();
        let s = bm25_scores(&query, &[&[1, 2, 3, 9], &long]);
        assert!(s[0] > s[1], "{s:?}");
        assert!(bm25_scores::<u32>(&[], &[&[1, 2]])
            .iter()
            .all(|x| *x == 0.0));
        assert!(bm25_scores::<u32>(&[1], &[]).is_empty());
        // Over words: the row naming the mason ranks first for a question about him.
        let rows = [
            "In accordance with the orders, the potter counts gulls.",
            "In accordance with the orders, the mason tolls the bell.",
            "In accordance with the orders, the smith sweeps sand.",
        ]
        .map(bm25_terms);
        let docs: Vec<&[String]> = rows.iter().map(Vec::as_slice).collect();
        let s = bm25_scores(&bm25_terms("What did the Mason toll?"), &docs);
        assert!(s[1] > s[0] && s[1] > s[2], "{s:?}");
    }

    #[test]
    fn overlapping_intervals_merge() {
        let v = merge_intervals([(0, 3), (2, 5), (7, 9), (9, 10)].into_iter());
        assert_eq!(v, vec![(0, 5), (7, 10)]);
    }

    #[test]
    fn near_identical_token_sets_have_high_jaccard() {
        let a: Vec<u32> = (0..40).collect();
        let mut b = a.clone();
        b[39] = 999;
        assert!(jaccard(&shingle_set(&a), &shingle_set(&b)) > 0.9);
        let c: Vec<u32> = (100..140).collect();
        assert_eq!(jaccard(&shingle_set(&a), &shingle_set(&c)), 0.0);
    }
}
