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

/// CPU seconds (user + system) of this process, from `/proc/self/stat`:
/// the benchmark is single-threaded, and on a shared machine CPU time is far
/// steadier than wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the
    // command name; clock ticks are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

struct Timer(Instant, f64);

impl Timer {
    fn start() -> Self {
        Timer(Instant::now(), cpu_seconds())
    }
    /// (wall, cpu) seconds since start.
    fn stop(&self) -> (f64, f64) {
        (self.0.elapsed().as_secs_f64(), cpu_seconds() - self.1)
    }
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
    let t = Timer::start();
    let mut per_datanet: Vec<(String, u64, u64, f64)> = Vec::new();
    let mut dn_start = (0u64, 0u64, cpu_seconds());
    let (mut rows, mut accepted, mut dups) = (0u64, 0u64, 0u64);
    let mut current = String::new();
    let mut index = MemoryDedupIndex::new();
    let mut d = datanet("legal");
    for (dn, path) in &c.files {
        if *dn != current {
            if !current.is_empty() {
                per_datanet.push((
                    current.clone(),
                    dn_start.0,
                    rows - dn_start.1,
                    cpu_seconds() - dn_start.2,
                ));
            }
            dn_start = (0, rows, cpu_seconds());
            current = dn.clone();
            index = MemoryDedupIndex::new();
            d = datanet(dn);
        }
        let bytes = std::fs::read(path)?;
        dn_start.0 += bytes.len() as u64;
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
    per_datanet.push((
        current.clone(),
        dn_start.0,
        rows - dn_start.1,
        cpu_seconds() - dn_start.2,
    ));
    let full = t.stop();

    // 2. Hash-only ingest: same parse + chunk, blake3 row hash, exact dedup.
    let t = Timer::start();
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
    let hash_only = t.stop();

    // 3. MinHash + LSH alone on the rows, ours vs datasketch.
    let hasher = MinHasher::new(MinHashParams::default());
    let t = Timer::start();
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
    let ours_minhash = t.stop();
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
    println!("| path | what | rows | wall s | CPU s | MB/s (input, CPU) |");
    println!("|---|---|---:|---:|---:|---:|");
    println!(
        "| trib-datanet full ingest | parse, chunk, quality, exact + MinHash/LSH near dup | {rows} ({accepted} accepted, {dups} dup) | {:.2} | {:.2} | {:.1} |",
        full.0, full.1, mbps(c.bytes, full.1)
    );
    println!(
        "| hash-only ingest (peer) | parse, chunk, blake3, exact dedup | {} ({hashed} unique) | {:.2} | {:.2} | {:.1} |",
        all_rows.len(), hash_only.0, hash_only.1, mbps(c.bytes, hash_only.1)
    );
    println!();
    println!("full ingest per datanet:");
    println!("| datanet | MB | rows | CPU s | MB/s |");
    println!("|---|---:|---:|---:|---:|");
    for (name, bytes, n, cpu) in &per_datanet {
        println!(
            "| {name} | {:.1} | {n} | {cpu:.2} | {:.1} |",
            *bytes as f64 / 1e6,
            mbps(*bytes, *cpu)
        );
    }
    println!();
    println!(
        "MinHash + LSH only, same {} rows ({:.1} MB of row text):",
        all_rows.len(),
        row_bytes as f64 / 1e6
    );
    println!("| implementation | wall s | CPU s | rows/s (CPU) | MB/s (CPU) | near dups flagged |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| trib-datanet MinHasher + LshIndex | {:.2} | {:.2} | {:.0} | {:.1} | {near} |",
        ours_minhash.0,
        ours_minhash.1,
        all_rows.len() as f64 / ours_minhash.1,
        mbps(row_bytes, ours_minhash.1)
    );
    match peer {
        Some(p) => {
            let wall = p["seconds"].as_f64().unwrap_or(f64::NAN);
            let cpu = p["cpu_seconds"].as_f64().unwrap_or(f64::NAN);
            println!(
                "| datasketch {} MinHash.update_batch + MinHashLSH (Python {}) | {wall:.2} | {cpu:.2} | {:.0} | {:.1} | {} |",
                p["datasketch"].as_str().unwrap_or("?"),
                p["python"].as_str().unwrap_or("?"),
                all_rows.len() as f64 / cpu,
                mbps(row_bytes, cpu),
                p["near_duplicates"]
            );
            println!();
            println!(
                "speed-up over datasketch (CPU time): {:.1}x",
                cpu / ours_minhash.1
            );
        }
        None => println!("| datasketch | (not run) | | | | |"),
    }
    Ok(())
}
