//! MinHash signatures and LSH banding for near-duplicate detection.
//!
//! Broder's MinHash ("On the resemblance and containment of documents", 1997)
//! over word shingles, with the banding scheme of Leskovec, Rajaraman and
//! Ullman (*Mining of Massive Datasets*, ch. 3). The hash family is
//! multiply-shift (Dietzfelbinger et al., "A reliable randomized algorithm
//! for the closest-pair problem", 1997): `h_i(x) = (a_i·x + b_i mod 2^64) >> 32`
//! with seeded odd `a_i`, which is 2-universal and, unlike `datasketch`'s
//! `(a·x + b) mod (2^61 − 1)`, needs no 128-bit products, so the 128 slots of
//! a shingle vectorise. Everything is integer arithmetic so that two machines
//! always compute the same signature, band keys and verdict.
//!
//! Parameters and the false-positive/negative curve are in `docs/datanets.md`.

use std::collections::HashMap;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trib_types::RowHash;

/// MinHash/LSH parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinHashParams {
    /// Number of hash permutations (signature length).
    pub num_perm: usize,
    /// Words per shingle (k).
    pub shingle_words: usize,
    /// LSH bands; `bands × rows_per_band` must equal `num_perm`.
    pub bands: usize,
    /// Signature rows per band.
    pub rows_per_band: usize,
    /// Estimated Jaccard similarity, in basis points, at or above which a row
    /// is a near duplicate.
    pub threshold_bp: u16,
    /// Seed of the permutation parameters.
    pub seed: u64,
}

impl Default for MinHashParams {
    fn default() -> Self {
        MinHashParams {
            num_perm: 128,
            shingle_words: 3,
            bands: 32,
            rows_per_band: 4,
            threshold_bp: 7_000,
            seed: 0x7472_6962_7574_6172, // "tributar"
        }
    }
}

/// A MinHash signature: for each hash function, the minimum over shingles.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct MinHashSignature(pub Vec<u32>);

/// Computes signatures and band keys for one parameter set.
#[derive(Debug, Clone)]
pub struct MinHasher {
    params: MinHashParams,
    a: Vec<u64>,
    b: Vec<u64>,
}

/// splitmix64: the seeded stream the permutation parameters are drawn from,
/// and the finaliser of shingle and band hashes.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mix64(*state)
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl MinHasher {
    /// Draws the permutations for `params`. Panics if `bands × rows_per_band`
    /// differs from `num_perm` (a programming error: parameters are constants).
    pub fn new(params: MinHashParams) -> Self {
        assert_eq!(
            params.bands * params.rows_per_band,
            params.num_perm,
            "LSH bands must cover the signature"
        );
        assert!(params.shingle_words > 0 && params.num_perm > 0);
        let mut state = params.seed;
        let mut a = Vec::with_capacity(params.num_perm);
        let mut b = Vec::with_capacity(params.num_perm);
        for _ in 0..params.num_perm {
            a.push(splitmix64(&mut state) | 1);
            b.push(splitmix64(&mut state));
        }
        MinHasher { params, a, b }
    }

    /// The parameters.
    pub fn params(&self) -> &MinHashParams {
        &self.params
    }

    /// The 64-bit hashes of the `k`-word shingles of `text`. Words are
    /// maximal runs of alphanumeric characters, lower-cased; a text with fewer
    /// than `k` words is one shingle. No words, no shingles.
    pub fn shingle_hashes(&self, text: &str) -> Vec<u64> {
        let words: Vec<u64> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(word_hash)
            .collect();
        let k = self.params.shingle_words;
        if words.is_empty() {
            return Vec::new();
        }
        let windows = if words.len() < k {
            1
        } else {
            words.len() - k + 1
        };
        (0..windows)
            .map(|i| {
                let mut h = k as u64;
                for w in &words[i..(i + k).min(words.len())] {
                    h = mix64(h.rotate_left(23) ^ w);
                }
                h
            })
            .collect()
    }

    /// The signature of `text`, or `None` when it has no words.
    pub fn signature(&self, text: &str) -> Option<MinHashSignature> {
        let shingles = self.shingle_hashes(text);
        if shingles.is_empty() {
            return None;
        }
        let mut sig = vec![u32::MAX; self.params.num_perm];
        for x in shingles {
            for (slot, (a, b)) in sig.iter_mut().zip(self.a.iter().zip(&self.b)) {
                let h = (a.wrapping_mul(x).wrapping_add(*b) >> 32) as u32;
                *slot = (*slot).min(h);
            }
        }
        Some(MinHashSignature(sig))
    }

    /// One key per band: a hash of the band number and its rows.
    pub fn band_keys(&self, sig: &MinHashSignature) -> Vec<u64> {
        sig.0
            .chunks(self.params.rows_per_band)
            .enumerate()
            .map(|(band, rows)| {
                let mut h = mix64(band as u64 ^ 0x006c_7368);
                for r in rows {
                    h = mix64(h ^ *r as u64);
                }
                h
            })
            .collect()
    }

    /// Estimated Jaccard similarity in basis points: matching slots × 10,000
    /// / signature length (floor).
    pub fn similarity_bp(&self, x: &MinHashSignature, y: &MinHashSignature) -> u16 {
        let same = x.0.iter().zip(&y.0).filter(|(a, b)| a == b).count();
        (same * 10_000 / self.params.num_perm.max(1)) as u16
    }

    /// Whether two signatures are near duplicates under the threshold.
    pub fn is_near_duplicate(&self, x: &MinHashSignature, y: &MinHashSignature) -> bool {
        self.similarity_bp(x, y) >= self.params.threshold_bp
    }
}

/// FNV-1a over the lower-cased characters of a word.
fn word_hash(w: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in w.chars().flat_map(char::to_lowercase) {
        let mut buf = [0u8; 4];
        for byte in c.encode_utf8(&mut buf).bytes() {
            h ^= byte as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// An in-memory LSH index: band key → rows with that band.
#[derive(Debug, Default, Clone)]
pub struct LshIndex {
    buckets: HashMap<(u16, u64), Vec<u32>>,
    rows: Vec<(RowHash, MinHashSignature)>,
}

impl LshIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a row under its band keys.
    pub fn insert(&mut self, row: RowHash, sig: MinHashSignature, band_keys: &[u64]) {
        let id = self.rows.len() as u32;
        self.rows.push((row, sig));
        for (band, key) in band_keys.iter().enumerate() {
            self.buckets
                .entry((band as u16, *key))
                .or_default()
                .push(id);
        }
    }

    /// Rows sharing at least one band with `band_keys`, each once, in
    /// insertion order.
    pub fn candidates(&self, band_keys: &[u64]) -> Vec<(RowHash, &MinHashSignature)> {
        self.candidate_ids(band_keys)
            .into_iter()
            .map(|i| {
                let (row, sig) = &self.rows[i as usize];
                (*row, sig)
            })
            .collect()
    }

    fn candidate_ids(&self, band_keys: &[u64]) -> Vec<u32> {
        let mut ids: Vec<u32> = band_keys
            .iter()
            .enumerate()
            .filter_map(|(band, key)| self.buckets.get(&(band as u16, *key)))
            .flatten()
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The most similar candidate whose estimated similarity to `sig` is at
    /// least `threshold_bp` (ties: the earliest inserted), with the
    /// similarity.
    pub fn nearest(
        &self,
        hasher: &MinHasher,
        sig: &MinHashSignature,
        band_keys: &[u64],
        threshold_bp: u16,
    ) -> Option<(RowHash, u16)> {
        let mut best: Option<(RowHash, u16)> = None;
        for i in self.candidate_ids(band_keys) {
            let (row, other) = &self.rows[i as usize];
            let s = hasher.similarity_bp(sig, other);
            if s >= threshold_bp && best.is_none_or(|(_, b)| s > b) {
                best = Some((*row, s));
            }
        }
        best
    }

    /// Rows in the index.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn true_jaccard(m: &MinHasher, x: &str, y: &str) -> f64 {
        let a: HashSet<u64> = m.shingle_hashes(x).into_iter().collect();
        let b: HashSet<u64> = m.shingle_hashes(y).into_iter().collect();
        a.intersection(&b).count() as f64 / a.union(&b).count() as f64
    }

    #[test]
    fn identical_texts_match_fully_and_case_is_ignored() {
        let m = MinHasher::new(MinHashParams::default());
        let s1 = m
            .signature("The quick brown fox jumps over the lazy dog")
            .unwrap();
        let s2 = m
            .signature("the QUICK brown fox, jumps over the lazy dog!")
            .unwrap();
        assert_eq!(m.similarity_bp(&s1, &s2), 10_000);
        assert!(m.signature(" ,;. ").is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn minhash_estimate_is_close_to_true_jaccard(
            base in proptest::collection::vec(0u16..400, 60..120),
            edits in proptest::collection::vec((0usize..120, 0u16..400), 0..40),
        ) {
            let m = MinHasher::new(MinHashParams { num_perm: 256, bands: 64, ..MinHashParams::default() });
            let words = |v: &[u16]| v.iter().map(|w| format!("w{w}")).collect::<Vec<_>>().join(" ");
            let mut edited = base.clone();
            for (pos, w) in edits {
                let i = pos % edited.len();
                edited[i] = w;
            }
            let (x, y) = (words(&base), words(&edited));
            let truth = true_jaccard(&m, &x, &y);
            let est = m.similarity_bp(&m.signature(&x).unwrap(), &m.signature(&y).unwrap()) as f64 / 10_000.0;
            // Standard error of the estimate is sqrt(J(1-J)/256) <= 0.031; allow ~5 sigma.
            prop_assert!((truth - est).abs() < 0.16, "true {truth} est {est}");
        }
    }

    #[test]
    fn lsh_finds_edited_copies_and_not_unrelated_text() {
        let m = MinHasher::new(MinHashParams::default());
        let original: String = (0..80).map(|i| format!("token{i} ")).collect();
        let mut edited = original.replace("token40 ", "changed ");
        edited.push_str("tail");
        let other: String = (0..80).map(|i| format!("other{i} ")).collect();
        let mut idx = LshIndex::new();
        let so = m.signature(&original).unwrap();
        idx.insert(RowHash::default(), so.clone(), &m.band_keys(&so));
        let se = m.signature(&edited).unwrap();
        let c = idx.candidates(&m.band_keys(&se));
        assert_eq!(c.len(), 1);
        assert!(m.is_near_duplicate(c[0].1, &se));
        let sx = m.signature(&other).unwrap();
        assert!(idx.candidates(&m.band_keys(&sx)).is_empty());
    }
}
