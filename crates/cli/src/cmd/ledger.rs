//! `trib ledger verify|prove|check-proof`: work on the home's ledger file
//! directly (stop the node first: it holds the file open), or offline.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use trib_node::ledger::{verify_proof, StateKey, StateProof};
use trib_node::types::Hash;

use crate::{output, Global};

/// `trib ledger` subcommands.
#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Replay every block from genesis and check every root; reports the
    /// first mismatch and exits non-zero on failure.
    Verify,
    /// Print a JSON Merkle proof of one state entry (account/trib…,
    /// proposal/3, params, supply…) against a block's state root.
    Prove {
        /// The state key.
        key: StateKey,
        /// Block height [default: the head].
        #[arg(long)]
        height: Option<u64>,
        /// Ask the running node (--node) instead of opening the ledger file.
        #[arg(long)]
        remote: bool,
    },
    /// Verify a proof file offline against a state root you trust.
    CheckProof {
        /// A proof as printed by `trib ledger prove`.
        file: PathBuf,
        /// The trusted state root (64 hex characters).
        #[arg(long)]
        root: Hash,
    },
}

/// Runs `trib ledger …`.
pub fn run(g: &Global, c: LedgerCommand) -> anyhow::Result<()> {
    match c {
        LedgerCommand::Verify => verify(g),
        LedgerCommand::Prove {
            key,
            height,
            remote,
        } => {
            let proof = if remote {
                let client = g.client()?;
                super::runtime()?.block_on(client.proof(&key.to_string(), height))?
            } else {
                open_ledger(g)?.prove(key, height)?
            };
            output::json(&proof)
        }
        LedgerCommand::CheckProof { file, root } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read proof file {}", file.display()))?;
            let proof: StateProof = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a state proof (as printed by `trib ledger prove`)",
                    file.display()
                )
            })?;
            verify_proof(root, &proof)
                .with_context(|| format!("proof in {} is INVALID", file.display()))?;
            if g.json {
                return output::json(
                    &serde_json::json!({ "valid": true, "key": proof.key.to_string(), "height": proof.height, "value": proof.value }),
                );
            }
            match &proof.value {
                Some(v) => println!(
                    "valid: {} at block {} = {}",
                    proof.key,
                    proof.height,
                    serde_json::to_string(v)?
                ),
                None => println!("valid: {} is absent at block {}", proof.key, proof.height),
            }
            Ok(())
        }
    }
}

fn open_ledger(g: &Global) -> anyhow::Result<trib_node::ledger::Ledger> {
    let home = g.home();
    home.open_ledger().with_context(|| {
        format!("cannot open the ledger of {} (if `trib node` is running on it, stop it first, or use --remote)", home.root().display())
    })
}

fn verify(g: &Global) -> anyhow::Result<()> {
    let ledger = open_ledger(g)?;
    let total = ledger.height() + 1;
    let bar = if g.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "verifying {bar:40} {pos}/{len} blocks ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    let result = ledger.verify_chain(|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            if g.json {
                return output::json(&serde_json::json!({
                    "ok": true, "blocks": r.blocks, "txs": r.txs, "state_root": r.state_root,
                    "state_entries": r.state_entries, "elapsed_ms": r.elapsed.as_millis() as u64,
                }));
            }
            println!(
                "ledger OK: {} blocks and {} transactions replayed from genesis, every transactions root and state root matches; head state root {} ({} entries) in {:.2?}",
                r.blocks, r.txs, r.state_root, r.state_entries, r.elapsed
            );
            Ok(())
        }
        Err(e) => {
            if g.json {
                output::json(&serde_json::json!({ "ok": false, "error": e.to_string() }))?;
            }
            bail!("ledger verification FAILED: {e}")
        }
    }
}
