//! `trib query balance|account|block|tx|proposal|params|supply|status|payouts`.

use clap::Subcommand;
use trib_client::NodeClient;
use trib_node::ledger::Proposal;
use trib_node::types::{Address, TxHash};

use crate::{output, Global};

/// `trib query` subcommands.
#[derive(Subcommand, Debug)]
pub enum QueryCommand {
    /// Spendable OPEN of an address (or keystore key name).
    Balance {
        /// Address or key name.
        who: String,
    },
    /// Everything about an account: balance, gOPEN, unbonding, delegation,
    /// claimable staking rewards, nonce.
    Account {
        /// Address or key name.
        who: String,
    },
    /// A block, by height (default: the latest).
    Block {
        /// Height, or `latest`.
        #[arg(default_value = "latest")]
        height: String,
    },
    /// A transaction and its receipt.
    Tx {
        /// Transaction hash.
        hash: TxHash,
    },
    /// One proposal, or all of them.
    Proposal {
        /// Proposal id (omit to list all).
        id: Option<u64>,
    },
    /// The governed parameters.
    Params,
    /// Where all OPEN is (balances, gOPEN, unbonding, deposits, burned).
    Supply,
    /// Chain id, height, head hash and mempool size.
    Status,
    /// Payout lines paid to an address (or key name), or of one receipt
    /// (the same as `trib attribution payouts`).
    Payouts(super::attribution::PayoutsArgs),
}

/// An address, or the address of a keystore key named `who`.
pub(crate) fn resolve(g: &Global, who: &str) -> anyhow::Result<Address> {
    if let Ok(a) = who.parse::<Address>() {
        return Ok(a);
    }
    match g.home().keystore().and_then(|ks| Ok(ks.info(who)?)) {
        Ok(info) => Ok(info.address),
        Err(_) => {
            anyhow::bail!("{who:?} is neither an address (trib + 40 hex) nor a key in the keystore")
        }
    }
}

/// Runs `trib query …`.
pub fn run(g: &Global, c: QueryCommand) -> anyhow::Result<()> {
    let client = g.client()?;
    super::runtime()?.block_on(query(g, &client, c))
}

async fn query(g: &Global, client: &NodeClient, c: QueryCommand) -> anyhow::Result<()> {
    match c {
        QueryCommand::Balance { who } => {
            let a = client.account(&resolve(g, &who)?).await?;
            if g.json {
                return output::json(
                    &serde_json::json!({ "address": a.address, "balance": a.balance }),
                );
            }
            println!("{}", output::open(a.balance));
        }
        QueryCommand::Account { who } => {
            let a = client.account(&resolve(g, &who)?).await?;
            if g.json {
                return output::json(&a);
            }
            println!("address      {}", a.address);
            println!("balance      {}", output::open(a.balance));
            println!("staked       {}", output::gopen(a.staked));
            for u in &a.unbonding {
                println!(
                    "unbonding    {} until block {}",
                    output::open(u.amount),
                    u.release_height
                );
            }
            println!(
                "delegate     {}",
                a.delegate
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "(self)".into())
            );
            println!("voting power {}", output::gopen(a.voting_power));
            println!(
                "rewards      {} claimable (trib tx claim-rewards)",
                output::open(a.staking_rewards)
            );
            println!("nonce        {} (next to sign: {})", a.nonce, a.next_nonce);
        }
        QueryCommand::Block { height } => {
            let h = if height == "latest" {
                None
            } else {
                Some(height.parse::<u64>().map_err(|_| {
                    anyhow::anyhow!("invalid height {height:?}: expected a number or 'latest'")
                })?)
            };
            let b = client.block(h).await?;
            if g.json {
                return output::json(&b);
            }
            let hd = &b.block.header;
            println!("block {} {}", hd.height, b.hash);
            println!("  time        {} ms", hd.time_ms);
            println!("  parent      {}", hd.parent);
            println!("  tx root     {}", hd.tx_root);
            println!("  state root  {}", hd.state_root);
            println!("  producer    {}", hd.producer.address());
            println!("  txs         {}", b.block.txs.len());
            for t in &b.block.txs {
                println!("    {t}");
            }
            for e in &b.block.end_block_events {
                println!("  end-block   {}", super::tx::describe(e));
            }
        }
        QueryCommand::Tx { hash } => {
            let v = client
                .tx(&hash)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the node knows no transaction {hash}"))?;
            if g.json {
                return output::json(&v);
            }
            super::tx::print_receipt(&v);
        }
        QueryCommand::Proposal { id: Some(id) } => {
            let p = client.proposal(id).await?;
            if g.json {
                return output::json(&p);
            }
            print_proposal(&p);
        }
        QueryCommand::Proposal { id: None } => {
            let ps = client.proposals().await?;
            if g.json {
                return output::json(&ps);
            }
            if ps.is_empty() {
                println!("no proposals");
            }
            for p in &ps {
                println!(
                    "{:>4}  {:<28} {}  \"{}\"",
                    p.id,
                    p.status.to_string(),
                    p.change,
                    p.title
                );
            }
        }
        QueryCommand::Params => {
            let p = client.params().await?;
            if g.json {
                return output::json(&p);
            }
            let v = serde_json::to_value(&p)?;
            for (k, val) in v.as_object().into_iter().flatten() {
                println!("{k:<28} {val}");
            }
        }
        QueryCommand::Supply => {
            let s = client.supply().await?;
            if g.json {
                return output::json(&s);
            }
            println!("balances   {}", output::open(s.supply.open));
            println!("staked     {}", output::gopen(s.supply.gopen));
            println!("unbonding  {}", output::open(s.supply.unbonding));
            println!("deposits   {}", output::open(s.supply.deposits));
            println!("burned     {}", output::open(s.supply.burned));
            println!("total      {}", output::open(s.total));
        }
        QueryCommand::Status => {
            let s = client.status().await?;
            if g.json {
                return output::json(&s);
            }
            println!("chain id    {}", s.chain_id);
            println!("height      {}", s.height);
            println!("head        {}", s.head_hash);
            println!("state root  {}", s.state_root);
            println!("producer    {}", s.producer);
            println!("mempool     {} pending", s.mempool_size);
            println!("version     {}", s.version);
        }
        QueryCommand::Payouts(a) => {
            return output::json(&super::attribution::payouts(g, a).await?);
        }
    }
    Ok(())
}

fn print_proposal(p: &Proposal) {
    println!("proposal {}: {}", p.id, p.title);
    if !p.description.is_empty() {
        println!("  {}", p.description);
    }
    println!("  change      {}", p.change);
    println!("  status      {}", p.status);
    println!("  proposer    {}", p.proposer);
    println!("  deposit     {}", output::open(p.total_deposit));
    println!(
        "  submitted   block {} (deposit period to {})",
        p.submit_height, p.deposit_end_height
    );
    if let (Some(s), Some(e)) = (p.voting_start_height, p.voting_end_height) {
        println!("  voting      blocks {s}..={e}");
    }
    if let Some(x) = p.execute_height {
        println!("  executes at block {x}");
    }
    for (voter, choice) in &p.votes {
        println!("  vote        {voter} {choice:?}");
    }
    if let Some(t) = &p.tally {
        println!(
            "  tally       yes {} no {} abstain {} veto {} of {}",
            output::gopen(t.yes),
            output::gopen(t.no),
            output::gopen(t.abstain),
            output::gopen(t.veto),
            output::gopen(t.total_power)
        );
    }
}
