//! `ledger-bench`: signed-transfer throughput of the embedded ledger.
//!
//! Run in release: `cargo run --release -p trib-ledger --bin ledger-bench --
//! [--accounts N] [--txs N] [--block N] [--threads 1,2]`.
//!
//! For each thread count it measures, on a fresh ledger in a temporary
//! directory:
//! - submitted → committed: pre-signed transfers go through
//!   `Mempool::add_batch` (parallel batch signature checks, nonce and balance
//!   checks against committed state plus pending), are drained into blocks and
//!   committed durably by `Ledger::produce_block_from` (one fsynced redb
//!   transaction per block; signatures are not re-verified there since the
//!   mempool admitted only verified ones);
//! - the cost split per transaction (mempool admission, block signature
//!   checks, execution, state-tree update, storage commit);
//! - replay verification (`Ledger::verify_chain`);
//! - ed25519 batch verification alone (ZIP-215, `trib_types::verify_batch`)
//!   over the same signatures: the physical bound of any design that checks
//!   every signature once.
//!
//! Printed beside the published throughput of Cosmos SDK chains (~1,800 TPS)
//! and an OP-Stack chain (~1,300 simple transfers/s); those two are published
//! figures, not measured here.

use std::time::{Duration, Instant};

use trib_ledger::{Action, Genesis, Ledger, Mempool, SignedTransaction, Transaction};
use trib_types::{verify_batch, Amount, PublicKey, SecretKey, Signature};

struct Args {
    accounts: usize,
    txs: usize,
    block: usize,
    threads: Vec<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        accounts: 10_000,
        txs: 50_000,
        block: 5_000,
        threads: vec![1, 2],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{v:?} is not a number"))
        };
        match flag.as_str() {
            "--accounts" => a.accounts = num(val()?)?,
            "--txs" => a.txs = num(val()?)?,
            "--block" => a.block = num(val()?)?,
            "--threads" => {
                a.threads = val()?
                    .split(',')
                    .map(|t| num(t.to_string()))
                    .collect::<Result<_, _>>()?;
            }
            "--help" | "-h" => {
                return Err(
                    "usage: ledger-bench [--accounts N] [--txs N] [--block N] [--threads 1,2]"
                        .into(),
                );
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.accounts < 2 || a.txs == 0 || a.block == 0 || a.threads.is_empty() {
        return Err(
            "accounts >= 2, txs > 0, block > 0 and at least one thread count are required".into(),
        );
    }
    Ok(a)
}

fn keys(n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            SecretKey::from_seed(seed)
        })
        .collect()
}

/// Transfers in rounds: round r has one transaction per account with nonce r,
/// to a pseudo-random other account.
fn sign_transfers(
    keys: &[SecretKey],
    n: usize,
    chain_id: &str,
    fee: Amount,
) -> Vec<SignedTransaction> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            let from = i % keys.len();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut to = (x % keys.len() as u64) as usize;
            if to == from {
                to = (to + 1) % keys.len();
            }
            Transaction {
                chain_id: chain_id.to_string(),
                sender: keys[from].public_key(),
                nonce: (i / keys.len()) as u64,
                fee,
                action: Action::Transfer {
                    to: keys[to].address(),
                    amount: Amount(1_000 + i as u128),
                },
            }
            .sign(&keys[from])
        })
        .collect()
}

#[derive(Default)]
struct Split {
    admit: Duration,
    stateless: Duration,
    execute: Duration,
    tree: Duration,
    commit: Duration,
}

struct Run {
    threads: usize,
    tps: f64,
    /// Committed transfers per CPU-second (None without /proc).
    tps_cpu: Option<f64>,
    replay_cpu: Option<f64>,
    blocks: u64,
    split: Split,
    replay_tps: f64,
    batch_verify: f64,
    single_verify: f64,
}

/// CPU time (user + system, all threads) of this process so far, from
/// `/proc/self/stat` (Linux; USER_HZ = 100). Unlike wall time it barely
/// changes when other processes compete for the cores.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn per_tx_us(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn run(
    args: &Args,
    threads: usize,
    keys: &[SecretKey],
    genesis: &Genesis,
    txs: &[SignedTransaction],
) -> Result<Run, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| e.to_string())?;
    pool.install(|| {
        let dir =
            std::env::temp_dir().join(format!("ledger-bench-{}-{threads}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let ledger = Ledger::create(dir.join("bench.redb"), genesis).map_err(|e| e.to_string())?;
        let producer = &keys[0];
        let mut mempool = Mempool::new(args.block * 2);
        let mut split = Split::default();
        let mut committed = 0usize;
        let cpu0 = cpu_seconds();
        let start = Instant::now();
        for (i, chunk) in txs.chunks(args.block).enumerate() {
            let t = Instant::now();
            let results = mempool.add_batch(chunk.to_vec(), &ledger);
            split.admit += t.elapsed();
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                return Err(format!("mempool refused a benchmark transaction: {e}"));
            }
            let out = ledger
                .produce_block_from(&mut mempool, 1_000 * (i as u64 + 1), producer)
                .map_err(|e| e.to_string())?;
            if let Some(r) = out.rejected.first() {
                return Err(format!(
                    "block rejected a benchmark transaction: {}",
                    r.error
                ));
            }
            committed += out.included.len();
            split.stateless += out.timings.stateless;
            split.execute += out.timings.execute;
            split.tree += out.timings.state_tree;
            split.commit += out.timings.commit;
        }
        let elapsed = start.elapsed();
        let tps = committed as f64 / elapsed.as_secs_f64();
        let cpu1 = cpu_seconds();
        let tps_cpu = cpu0
            .zip(cpu1)
            .map(|(a, b)| committed as f64 / (b - a).max(0.01));

        let t = Instant::now();
        let report = ledger.verify_chain(|_, _| {}).map_err(|e| e.to_string())?;
        let replay_tps = report.txs as f64 / t.elapsed().as_secs_f64();
        let replay_cpu = cpu1
            .zip(cpu_seconds())
            .map(|(a, b)| report.txs as f64 / (b - a).max(0.01));

        // The physical bound: verify every signature once, in parallel batches.
        let hashes: Vec<_> = txs
            .iter()
            .map(|t| (t.tx.sender, t.tx.signing_hash(), t.signature))
            .collect();
        let t = Instant::now();
        let chunk = hashes.len().div_ceil(threads).max(64);
        let ok: usize = {
            use rayon::prelude::*;
            hashes
                .par_chunks(chunk)
                .map(|c| {
                    let items: Vec<(PublicKey, &[u8], Signature)> = c
                        .iter()
                        .map(|(pk, h, s)| (*pk, h.as_bytes().as_slice(), *s))
                        .collect();
                    verify_batch(&items).into_iter().filter(|v| *v).count()
                })
                .sum()
        };
        let batch_verify = ok as f64 / t.elapsed().as_secs_f64();
        let sample = &hashes[..hashes.len().min(5_000)];
        let t = Instant::now();
        let single_ok = {
            use rayon::prelude::*;
            sample
                .par_iter()
                .filter(|(pk, h, s)| pk.verify(h.as_bytes(), s).is_ok())
                .count()
        };
        let single_verify = single_ok as f64 / t.elapsed().as_secs_f64();
        drop(ledger);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(Run {
            threads,
            tps,
            tps_cpu,
            replay_cpu,
            blocks: report.blocks - 1,
            split,
            replay_tps,
            batch_verify,
            single_verify,
        })
    })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    eprintln!(
        "ledger-bench: {} accounts, {} signed transfers, blocks of {}, threads {:?} ({} CPUs visible)",
        args.accounts, args.txs, args.block, args.threads, cpus
    );
    let keys = keys(args.accounts + 1);
    let producer = keys[0].public_key();
    let users = &keys[1..];
    let mut genesis = Genesis::dev(
        producer,
        users
            .iter()
            .map(|k| (k.address(), Amount::open(1_000_000)))
            .collect(),
    );
    genesis.chain_id = "tributary-bench".into();
    genesis.params.max_block_txs = args.block as u32;
    genesis.params.max_tx_bytes = 1_024;
    let t = Instant::now();
    let txs = sign_transfers(users, args.txs, &genesis.chain_id, genesis.params.min_fee);
    eprintln!(
        "signed {} transfers in {:.1} s (client side, not counted)",
        txs.len(),
        t.elapsed().as_secs_f64()
    );

    let mut runs = Vec::new();
    for &threads in &args.threads {
        eprintln!("running with {threads} thread(s)…");
        match run(&args, threads, &keys, &genesis, &txs) {
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("benchmark failed: {e}");
                std::process::exit(1);
            }
        }
    }

    let n = args.txs;
    println!("\n### Signed transfers, submitted → committed durably ({} accounts, {} txs, blocks of {})\n", args.accounts, n, args.block);
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "n/a".into());
    println!("| threads | committed transfers/s (wall) | per CPU-second | blocks | replay verify tx/s (wall) | replay per CPU-second | ed25519 batch verify/s (bound) | ed25519 single verify/s |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {:.0} | {} | {} | {:.0} | {} | {:.0} | {:.0} |",
            r.threads,
            r.tps,
            opt(r.tps_cpu),
            r.blocks,
            r.replay_tps,
            opt(r.replay_cpu),
            r.batch_verify,
            r.single_verify
        );
    }
    println!(
        "| anchor: Cosmos SDK chains (published, not measured here) | ~1,800 TPS | | | | | | |"
    );
    println!("| anchor: OP Stack, ~27 Mgas/s (published, not measured here) | ~1,300 transfers/s | | | | | | |");
    println!("\n### Cost split per transaction (µs)\n");
    println!("| threads | mempool admission (batch sig + checks) | block stateless checks | execution | state tree (JMT) | storage commit (fsync) | total |");
    println!("|---|---|---|---|---|---|---|");
    for r in &runs {
        let s = &r.split;
        let parts = [s.admit, s.stateless, s.execute, s.tree, s.commit].map(|d| per_tx_us(d, n));
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.threads,
            parts[0],
            parts[1],
            parts[2],
            parts[3],
            parts[4],
            parts.iter().sum::<f64>()
        );
    }
}
