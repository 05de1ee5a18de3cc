//! Building an index directory with libsais.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use libsais::{SuffixArrayConstruction, ThreadCount};
use trib_types::Hash;

use super::{sa_entry_bytes, separator_for, token_width_for, IndexManifest, RowProvenance, FORMAT};
use crate::error::{io_err, AttributionError, Result};

/// One document (row) to index: its token ids and where it came from.
#[derive(Clone, Copy, Debug)]
pub struct IndexDocument<'a> {
    /// Token ids, each below the declared vocabulary size.
    pub tokens: &'a [u32],
    /// The row's provenance, stored in `rows.0`.
    pub provenance: RowProvenance,
}

/// Parameters of an index build.
#[derive(Clone, Debug)]
pub struct IndexBuildOptions {
    /// Label stored in the manifest (datanet id and version).
    pub label: String,
    /// Hash of the tokenizer the ids come from; indexes with different hashes do not mix.
    pub tokenizer_hash: Hash,
    /// Vocabulary size: ids must be below it; up to 65,535 gives 2-byte tokens.
    pub vocab_size: u32,
    /// Threads for suffix-array construction (OpenMP inside libsais).
    pub threads: u16,
}

/// Builds an index of `docs` into the new directory `dir`.
///
/// The files are written into a sibling temporary directory and renamed into
/// place at the end, so a failed build leaves nothing at `dir`.
pub fn build_index<'a>(
    dir: &Path,
    docs: impl IntoIterator<Item = IndexDocument<'a>>,
    opts: &IndexBuildOptions,
) -> Result<IndexManifest> {
    if dir.exists() {
        return Err(AttributionError::IndexExists(dir.to_path_buf()));
    }
    if opts.vocab_size == 0 {
        return Err(AttributionError::InvalidParameter {
            name: "vocab_size",
            reason: "must be at least 1".into(),
        });
    }
    let started = Instant::now();
    let width = token_width_for(opts.vocab_size);
    let sep = separator_for(width);
    // Token stream with separators, as u32, and the row records.
    let mut stream: Vec<u32> = Vec::new();
    let mut offsets: Vec<u64> = Vec::new();
    let mut rows: Vec<u8> = Vec::new();
    for (d, doc) in docs.into_iter().enumerate() {
        offsets.push(stream.len() as u64 * width as u64);
        stream.push(sep);
        for &t in doc.tokens {
            if t >= opts.vocab_size || t == sep {
                return Err(AttributionError::TokenOutOfRange {
                    document: d,
                    token: t,
                    vocab_size: opts.vocab_size,
                    separator: sep,
                });
            }
            stream.push(t);
        }
        rows.extend_from_slice(&doc.provenance.to_record());
    }
    let documents = offsets.len() as u64;
    let positions = stream.len() as u64;
    let bytes_len = positions * width as u64;
    let k = sa_entry_bytes(bytes_len);

    let mut tokenized = Vec::with_capacity(bytes_len as usize);
    if width == 2 {
        for &t in &stream {
            tokenized.extend_from_slice(&(t as u16).to_le_bytes());
        }
    } else {
        for &t in &stream {
            tokenized.extend_from_slice(&t.to_le_bytes());
        }
    }
    let sa = suffix_array(&stream, width, opts.threads.max(1))?;
    let mut table = Vec::with_capacity(sa.len() * k as usize);
    for p in sa {
        let byte_off = p * width as u64;
        table.extend_from_slice(&byte_off.to_le_bytes()[..k as usize]);
    }
    let mut offset_bytes = Vec::with_capacity(offsets.len() * 8);
    for o in &offsets {
        offset_bytes.extend_from_slice(&o.to_le_bytes());
    }
    let content_hash = Hash::domain("trib-attribution index", &[&tokenized, &rows]);
    let manifest = IndexManifest {
        format: FORMAT.to_string(),
        label: opts.label.clone(),
        tokenizer_hash: opts.tokenizer_hash,
        vocab_size: opts.vocab_size,
        token_width: width,
        documents,
        tokens: positions - documents,
        sa_entry_bytes: k,
        content_hash,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");

    let tmp = temp_sibling(dir);
    let write_all = || -> Result<()> {
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        write_file(&tmp.join("tokenized.0"), &tokenized)?;
        write_file(&tmp.join("offset.0"), &offset_bytes)?;
        write_file(&tmp.join("table.0"), &table)?;
        write_file(&tmp.join("rows.0"), &rows)?;
        write_file(&tmp.join("manifest.json"), &json)?;
        fs::rename(&tmp, dir).map_err(io_err(dir))?;
        Ok(())
    };
    if let Err(e) = write_all() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    tracing::info!(
        target: "trib::attribution",
        dir = %dir.display(),
        documents,
        tokens = manifest.tokens,
        ms = started.elapsed().as_millis() as u64,
        "built token index"
    );
    Ok(manifest)
}

fn temp_sibling(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!(".{name}.building-{}", std::process::id()))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Suffix array (token positions) of `stream` ordered by the little-endian
/// byte order of the token stream.
///
/// Comparing two suffixes byte by byte, where each token is written
/// little-endian, is the same as comparing them token by token after
/// swapping each token's bytes (the low byte becomes the most significant),
/// so libsais runs on the byte-swapped ids. 4-byte tokens are first mapped to
/// dense ranks that preserve the swapped order (libsais' large-alphabet mode
/// needs ids in `0..alphabet`).
pub(crate) fn suffix_array(stream: &[u32], width: u8, threads: u16) -> Result<Vec<u64>> {
    let sa_err = |e: libsais::LibsaisError| AttributionError::SuffixArray(e.to_string());
    if stream.is_empty() {
        return Ok(Vec::new());
    }
    if width == 2 {
        let swapped: Vec<u16> = stream.iter().map(|&t| (t as u16).swap_bytes()).collect();
        if swapped.len() < i32::MAX as usize {
            let c = SuffixArrayConstruction::for_text(&swapped).in_owned_buffer32();
            let sa = if threads > 1 {
                c.multi_threaded(ThreadCount::fixed(threads))
                    .run()
                    .map_err(sa_err)?
                    .into_vec()
            } else {
                c.single_threaded().run().map_err(sa_err)?.into_vec()
            };
            Ok(sa.into_iter().map(|p| p as u64).collect())
        } else {
            let c = SuffixArrayConstruction::for_text(&swapped).in_owned_buffer64();
            let sa = if threads > 1 {
                c.multi_threaded(ThreadCount::fixed(threads))
                    .run()
                    .map_err(sa_err)?
                    .into_vec()
            } else {
                c.single_threaded().run().map_err(sa_err)?.into_vec()
            };
            Ok(sa.into_iter().map(|p| p as u64).collect())
        }
    } else {
        let mut distinct: Vec<u32> = stream.iter().map(|t| t.swap_bytes()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let rank = |t: u32| distinct.binary_search(&t.swap_bytes()).expect("present") as i64;
        if stream.len() < i32::MAX as usize {
            let mut dense: Vec<i32> = stream.iter().map(|&t| rank(t) as i32).collect();
            let c = SuffixArrayConstruction::for_text_mut(&mut dense).in_owned_buffer32();
            let sa = if threads > 1 {
                c.multi_threaded(ThreadCount::fixed(threads))
                    .run()
                    .map_err(sa_err)?
                    .into_vec()
            } else {
                c.single_threaded().run().map_err(sa_err)?.into_vec()
            };
            Ok(sa.into_iter().map(|p| p as u64).collect())
        } else {
            let mut dense: Vec<i64> = stream.iter().map(|&t| rank(t)).collect();
            let c = SuffixArrayConstruction::for_text_mut(&mut dense).in_owned_buffer64();
            let sa = if threads > 1 {
                c.multi_threaded(ThreadCount::fixed(threads))
                    .run()
                    .map_err(sa_err)?
                    .into_vec()
            } else {
                c.single_threaded().run().map_err(sa_err)?.into_vec()
            };
            Ok(sa.into_iter().map(|p| p as u64).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Naive suffix order by little-endian bytes.
    fn naive(stream: &[u32], width: u8) -> Vec<u64> {
        let bytes: Vec<u8> = stream
            .iter()
            .flat_map(|&t| {
                if width == 2 {
                    (t as u16).to_le_bytes().to_vec()
                } else {
                    t.to_le_bytes().to_vec()
                }
            })
            .collect();
        let w = width as usize;
        let mut pos: Vec<u64> = (0..stream.len() as u64).collect();
        pos.sort_by(|&a, &b| bytes[a as usize * w..].cmp(&bytes[b as usize * w..]));
        pos
    }

    #[test]
    fn byte_order_differs_from_numeric_order() {
        // 0x0100 < 0x0001 in little-endian byte order (first byte 0x00 < 0x01).
        let stream = [0x0001u32, 0x0100];
        assert_eq!(suffix_array(&stream, 2, 1).unwrap(), vec![1, 0]);
        assert_eq!(naive(&stream, 2), vec![1, 0]);
    }

    #[test]
    fn multi_threaded_construction_matches_single_threaded() {
        let mut x = 12345u32;
        let stream: Vec<u32> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) % 300 + 0xF0
            })
            .collect();
        assert_eq!(
            suffix_array(&stream, 2, 2).unwrap(),
            suffix_array(&stream, 2, 1).unwrap()
        );
        assert_eq!(suffix_array(&stream, 2, 1).unwrap(), naive(&stream, 2));
    }

    #[test]
    fn entry_width_matches_infini_gram_formula() {
        assert_eq!(sa_entry_bytes(2), 1);
        assert_eq!(sa_entry_bytes(256), 1);
        assert_eq!(sa_entry_bytes(257), 2);
        assert_eq!(sa_entry_bytes(1 << 32), 4);
        assert_eq!(sa_entry_bytes((1 << 32) + 2), 5);
    }

    proptest! {
        #[test]
        fn u16_suffix_array_matches_naive_byte_sort(
            stream in proptest::collection::vec(
                prop_oneof![0u32..4, 0xFEu32..0x102, Just(0xFFFF), 0u32..0xFFFF], 0..200)
        ) {
            prop_assert_eq!(suffix_array(&stream, 2, 1).unwrap(), naive(&stream, 2));
        }

        #[test]
        fn u32_suffix_array_matches_naive_byte_sort(
            stream in proptest::collection::vec(
                prop_oneof![0u32..3, 0xFFu32..0x101, 0x1_0000u32..0x1_0003, Just(0xFFFF_FFFF)], 0..150)
        ) {
            prop_assert_eq!(suffix_array(&stream, 4, 1).unwrap(), naive(&stream, 4));
        }
    }
}
