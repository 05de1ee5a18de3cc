//! Ingestion throughput on the demo corpus (`scripts/demo-data.sh`), against
//! two peers measured in the same run:
//!
//! 1. **hash-only ingest** (ours, same parser and chunker, then blake3 row
//!    hashes and an exact-duplicate hash set; no quality, no MinHash): what
//!    validation costs on top of plain content addressing;
//! 2. **datasketch** (Python, `MinHash.update_batch` + `MinHashLSH`, the same
//!    128 permutations, 32 bands × 4 rows, 3-word shingles) on exactly the
//!    rows we produced, against our MinHash + LSH step alone.
//!
//! Everything runs on one thread.
//!
//! ```text
//! scripts/demo-data.sh
//! python3 -m venv target/bench-venv && target/bench-venv/bin/pip install datasketch
//! cargo run --release -p trib-datanet --example ingest_bench -- target/demo-data target/bench-venv/bin/python
//! ```

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use trib_datanet::{
    parse_rows, Datanet, FileKind, LshIndex, MemoryDedupIndex, MinHashParams, MinHasher,
    QuotaUsage, SourceFile, Validator,
};
use trib_types::Address;

struct Corpus {
    files: Vec<(String, PathBuf)>,
    bytes: u64,
}

fn corpus(root: &Path) -> Result<Corpus> {
    let mut files = Vec::new();
    for dn in ["legal", "medicine", "computing", "general"] {
        let dir = root.join(dn);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("{} (run scripts/demo-data.sh first)", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for p in names {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name != "datanet.json" && FileKind::from_file_name(&name).is_some() {
                files.push((dn.to_string(), p));
            }
        }
    }
    let bytes = files
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    Ok(Corpus { files, bytes })
}

fn datanet(name: &str) -> Datanet {
    let mut d = Datanet::new(Address([1; 20]), name, "bench");
    d.quotas.max_file_bytes = 1 << 30;
    d.quotas.bytes_per_contributor_per_day = u64::MAX;
    d.quotas.bytes_per_datanet_per_day = u64::MAX;
    d.quotas.files_per_contributor_per_day = u32::MAX;
    d
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let root = PathBuf::from(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("target/demo-data"),
    );
    let python = args.get(2).cloned().unwrap_or_else(|| "python3".into());
    let c = corpus(&root)?;
    if c.files.is_empty() {
        bail!("no files under {}", root.display());
    }
    println!(
        "corpus: {} files, {:.1} MB, 1 thread",
        c.files.len(),
        c.bytes as f64 / 1e6
    );

    // 1. Full ingest: file → validated rows (quality, exact + near dup), per datanet.
    let validator = Validator::default();
    let t = Instant::now();
    let (mut rows, mut accepted, mut dups) = (0u64, 0u64, 0u64);
    let mut current = String::new();
    let mut index = MemoryDedupIndex::new();
    let mut d = datanet("legal");
    for (dn, path) in &c.files {
        if *dn != current {
            current = dn.clone();
            index = MemoryDedupIndex::new();
            d = datanet(dn);
        }
        let bytes = std::fs::read(path)?;
        let name = path.file_name().unwrap().to_string_lossy();
        let file = SourceFile {
            name: &name,
            declared: None,
            csv_column: None,
            bytes: &bytes,
        };
        let v = validator.validate(&d, Address([2; 20]), &file, &QuotaUsage::default(), &index)?;
        rows += v.report.rows.len() as u64;
        accepted += v.report.rows_accepted as u64;
        dups += v.report.duplicates_rejected as u64;
        index.add(&v);
    }
    let full = t.elapsed().as_secs_f64();

    // 2. Hash-only ingest: same parse + chunk, blake3 row hash, exact dedup.
    let t = Instant::now();
    let mut seen = HashSet::new();
    let mut all_rows: Vec<String> = Vec::new();
    let mut hashed = 0u64;
    for (dn, path) in &c.files {
        let d = datanet(dn);
        let bytes = std::fs::read(path)?;
        let name = path.file_name().unwrap().to_string_lossy();
        let file = SourceFile {
            name: &name,
            declared: None,
            csv_column: None,
            bytes: &bytes,
        };
        for (_, row) in parse_rows(&file, &d.parse_limits(), &d.chunker())? {
            if seen.insert(row.row_hash()) {
                hashed += 1;
            }
            all_rows.push(row.plain_text());
        }
    }
    let hash_only = t.elapsed().as_secs_f64();

    // 3. MinHash + LSH alone on the rows, ours vs datasketch.
    let hasher = MinHasher::new(MinHashParams::default());
    let t = Instant::now();
    let mut lsh = LshIndex::new();
    let mut near = 0u64;
    for (i, text) in all_rows.iter().enumerate() {
        if let Some(sig) = hasher.signature(text) {
            let keys = hasher.band_keys(&sig);
            if lsh
                .candidates(&keys)
                .iter()
                .any(|(_, s)| hasher.is_near_duplicate(s, &sig))
            {
                near += 1;
            }
            lsh.insert(
                trib_types::RowHash(trib_types::Hash::of(&(i as u64).to_le_bytes())),
                sig,
                &keys,
            );
        }
    }
    let ours_minhash = t.elapsed().as_secs_f64();
    let row_bytes: u64 = all_rows.iter().map(|r| r.len() as u64).sum();

    let rows_file = std::env::temp_dir().join("trib-datanet-bench-rows.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&rows_file)?);
        for r in &all_rows {
            serde_json::to_writer(&mut f, r)?;
            f.write_all(b"\n")?;
        }
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench/datasketch_minhash.py");
    let peer = std::process::Command::new(&python)
        .arg(&script)
        .arg(&rows_file)
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .output();
    let peer: Option<serde_json::Value> = match peer {
        Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout).ok(),
        Ok(out) => {
            eprintln!(
                "datasketch peer failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("could not run {python}: {e}");
            None
        }
    };

    println!();
    println!("| path | what | rows | seconds | MB/s (input) |");
    println!("|---|---|---:|---:|---:|");
    println!(
        "| trib-datanet full ingest | parse, chunk, quality, exact + MinHash/LSH near dup | {rows} ({accepted} accepted, {dups} dup) | {full:.2} | {:.1} |",
        mbps(c.bytes, full)
    );
    println!(
        "| hash-only ingest (peer) | parse, chunk, blake3, exact dedup | {} ({hashed} unique) | {hash_only:.2} | {:.1} |",
        all_rows.len(),
        mbps(c.bytes, hash_only)
    );
    println!();
    println!(
        "MinHash + LSH only, same {} rows ({:.1} MB of row text):",
        all_rows.len(),
        row_bytes as f64 / 1e6
    );
    println!("| implementation | seconds | rows/s | MB/s | near dups flagged |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| trib-datanet MinHasher + LshIndex | {ours_minhash:.2} | {:.0} | {:.1} | {near} |",
        all_rows.len() as f64 / ours_minhash,
        mbps(row_bytes, ours_minhash)
    );
    match peer {
        Some(p) => {
            let secs = p["seconds"].as_f64().unwrap_or(f64::NAN);
            println!(
                "| datasketch {} MinHash.update_batch + MinHashLSH (Python {}) | {secs:.2} | {:.0} | {:.1} | {} |",
                p["datasketch"].as_str().unwrap_or("?"),
                p["python"].as_str().unwrap_or("?"),
                all_rows.len() as f64 / secs,
                mbps(row_bytes, secs),
                p["near_duplicates"]
            );
            println!();
            println!("speed-up over datasketch: {:.1}x", secs / ours_minhash);
        }
        None => println!("| datasketch | (not run) | | | |"),
    }
    Ok(())
}
