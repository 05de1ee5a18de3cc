//! `trib init`.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use trib_node::types::{Address, Amount};
use trib_node::{InitOptions, NodeConfig, NodeHome};

use crate::{output, Global};

/// Arguments of `trib init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Chain id [default: tributary-local, or tributary-dev with --dev].
    #[arg(long)]
    chain_id: Option<String>,
    /// Development chain: short voting, timelock and unbonding periods.
    #[arg(long)]
    dev: bool,
    /// Initial balance, ADDRESS=OPEN (repeatable). Without any, the producer
    /// key gets 1,000,000 OPEN.
    #[arg(long = "alloc", value_name = "ADDRESS=OPEN", value_parser = parse_alloc)]
    allocations: Vec<(Address, Amount)>,
    /// HTTP API listen address written to config.toml.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Block interval in milliseconds written to config.toml.
    #[arg(long)]
    block_interval_ms: Option<u64>,
}

fn parse_alloc(s: &str) -> Result<(Address, Amount), String> {
    let (a, v) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid allocation {s:?}: expected ADDRESS=OPEN"))?;
    let addr: Address = a.trim().parse().map_err(|e| format!("{e}"))?;
    let amount = Amount::parse_open(v).map_err(|e| format!("{e}"))?;
    Ok((addr, amount))
}

/// Runs `trib init`.
pub fn run(g: &Global, a: InitArgs) -> anyhow::Result<()> {
    let home = g.home();
    let mut config = NodeConfig::default();
    if let Some(l) = a.listen {
        config.listen = l;
    }
    if let Some(i) = a.block_interval_ms {
        config.block_interval_ms = i;
    }
    let opts = InitOptions {
        chain_id: a.chain_id,
        dev: a.dev,
        allocations: a.allocations,
        params: None,
        config,
    };
    let report = NodeHome::init(home.root(), opts)
        .with_context(|| format!("cannot initialise {}", home.root().display()))?;
    if g.json {
        return output::json(&serde_json::json!({
            "home": report.home,
            "chain_id": report.genesis.chain_id,
            "producer": report.producer,
            "allocations": report.genesis.allocations,
        }));
    }
    println!("initialised node home {}", report.home.display());
    println!("  chain id   {}", report.genesis.chain_id);
    println!(
        "  producer   {} (key \"{}\")",
        report.producer.address, report.producer.name
    );
    for (addr, amount) in &report.genesis.allocations {
        println!("  allocation {addr} {}", output::open(*amount));
    }
    println!("start it with: trib node --home {}", report.home.display());
    Ok(())
}
