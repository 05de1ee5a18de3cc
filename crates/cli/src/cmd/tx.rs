//! `trib tx transfer|stake|unstake|delegate|claim-rewards|set-price|propose|deposit|vote`.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use trib_client::wire::TxView;
use trib_node::ledger::{Action, Event, ParamChange, VoteChoice};
use trib_node::types::{AdapterId, Address, Amount};
use trib_node::Keystore;

use crate::passphrase::PassphraseArgs;
use crate::{output, Global};

/// Options shared by every transaction.
#[derive(Args, Debug)]
pub struct TxOpts {
    /// Keystore key that signs and pays.
    #[arg(long, value_name = "KEY")]
    from: String,
    /// Fee in OPEN [default: the governed minimum fee].
    #[arg(long, value_parser = parse_amount)]
    fee: Option<Amount>,
    /// Wait until the transaction is in a block, then print its receipt.
    #[arg(long)]
    wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 30)]
    wait_timeout: u64,
    #[command(flatten)]
    pass: PassphraseArgs,
}

/// `trib tx` subcommands. Amounts are human OPEN (`1.5`).
#[derive(Subcommand, Debug)]
pub enum TxCommand {
    /// Send OPEN to an address (or to a keystore key by name).
    Transfer {
        /// Recipient: an address (`trib…`) or a keystore key name.
        #[arg(long)]
        to: String,
        /// Amount in OPEN.
        #[arg(value_parser = parse_amount)]
        amount: Amount,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Lock OPEN into gOPEN (1:1).
    Stake {
        /// Amount in OPEN.
        #[arg(value_parser = parse_amount)]
        amount: Amount,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Unlock gOPEN; the OPEN returns after the unbonding period.
    Unstake {
        /// Amount in gOPEN.
        #[arg(value_parser = parse_amount)]
        amount: Amount,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Give your gOPEN's voting power to an address (or a key name; yourself to undo).
    Delegate {
        /// The voter: an address or a keystore key name.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Move your accrued staking rewards to your balance
    /// (`ClaimStakingRewards`; `trib query account` shows what is claimable).
    ClaimRewards {
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Change the prices of an adapter you own (`SetAdapterPrice`).
    SetPrice {
        /// The adapter's id (as `trib models` and `/v1/adapters` show it).
        adapter: AdapterId,
        /// OPEN per 1,000 prompt tokens.
        #[arg(long = "input", value_parser = parse_amount, value_name = "OPEN")]
        input_per_1k: Amount,
        /// OPEN per 1,000 completion tokens.
        #[arg(long = "output", value_parser = parse_amount, value_name = "OPEN")]
        output_per_1k: Amount,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Propose a parameter change (e.g. --change min_fee=0.01).
    Propose {
        /// Short title.
        #[arg(long)]
        title: String,
        /// Longer description.
        #[arg(long, default_value = "")]
        description: String,
        /// The change, NAME=VALUE (amounts in OPEN).
        #[arg(long, value_name = "NAME=VALUE")]
        change: ParamChange,
        /// Initial deposit in OPEN.
        #[arg(long, value_parser = parse_amount)]
        deposit: Amount,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Add to a proposal's deposit.
    Deposit {
        /// Proposal id.
        proposal: u64,
        /// Amount in OPEN.
        #[arg(value_parser = parse_amount)]
        amount: Amount,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Vote on a proposal: yes, no, abstain or veto.
    Vote {
        /// Proposal id.
        proposal: u64,
        /// yes, no, abstain or veto.
        choice: VoteChoice,
        #[command(flatten)]
        opts: TxOpts,
    },
}

fn parse_amount(s: &str) -> Result<Amount, String> {
    Amount::parse_open(s).map_err(|e| e.to_string())
}

/// An address, or the address of a keystore key of that name.
fn resolve(ks: &Keystore, who: &str) -> anyhow::Result<Address> {
    if who.starts_with("trib") && who.len() == 44 {
        return Ok(who.parse()?);
    }
    Ok(ks
        .info(who)
        .with_context(|| format!("{who:?} is neither an address (trib…) nor a keystore key"))?
        .address)
}

/// Runs `trib tx …`.
pub fn run(g: &Global, c: TxCommand) -> anyhow::Result<()> {
    let ks = g.home().keystore()?;
    let (action, opts) = match c {
        TxCommand::Transfer { to, amount, opts } => (
            Action::Transfer {
                to: resolve(&ks, &to)?,
                amount,
            },
            opts,
        ),
        TxCommand::Stake { amount, opts } => (Action::Stake { amount }, opts),
        TxCommand::Unstake { amount, opts } => (Action::Unstake { amount }, opts),
        TxCommand::Delegate { to, opts } => (
            Action::Delegate {
                to: resolve(&ks, &to)?,
            },
            opts,
        ),
        TxCommand::ClaimRewards { opts } => (Action::ClaimStakingRewards, opts),
        TxCommand::SetPrice {
            adapter,
            input_per_1k,
            output_per_1k,
            opts,
        } => (
            Action::SetAdapterPrice {
                adapter,
                price_in_per_1k: input_per_1k,
                price_out_per_1k: output_per_1k,
            },
            opts,
        ),
        TxCommand::Propose {
            title,
            description,
            change,
            deposit,
            opts,
        } => (
            Action::Propose {
                title,
                description,
                change,
                deposit,
            },
            opts,
        ),
        TxCommand::Deposit {
            proposal,
            amount,
            opts,
        } => (Action::Deposit { proposal, amount }, opts),
        TxCommand::Vote {
            proposal,
            choice,
            opts,
        } => (Action::Vote { proposal, choice }, opts),
    };
    let key = opts.pass.load_key(&ks, &opts.from)?;
    let client = g.client()?;
    let name = action.name();
    super::runtime()?.block_on(async move {
        let stx = client.sign_and_submit(&key, opts.fee, action).await?;
        let hash = stx.hash();
        if !opts.wait {
            if g.json {
                return output::json(&serde_json::json!({ "hash": hash, "status": "pending" }));
            }
            println!("{hash}");
            eprintln!(
                "submitted {name} from {} (nonce {}); follow it with: trib query tx {hash}",
                opts.from, stx.tx.nonce
            );
            return Ok(());
        }
        let view = client
            .wait_for_commit(&hash, Duration::from_secs(opts.wait_timeout))
            .await?;
        if g.json {
            return output::json(&view);
        }
        print_receipt(&view);
        Ok(())
    })
}

/// Human text for a committed transaction.
pub fn print_receipt(v: &TxView) {
    println!("transaction {}", v.hash);
    println!("  status   {:?}", v.status);
    if let (Some(h), Some(i)) = (v.height, v.index) {
        println!("  block    {h} (index {i})");
    }
    println!(
        "  sender   {} nonce {} fee {}",
        v.tx.tx.sender.address(),
        v.tx.tx.nonce,
        output::open(v.tx.tx.fee)
    );
    if let Some(r) = &v.receipt {
        for e in &r.events {
            println!("  event    {}", describe(e));
        }
    }
}

/// One line per event, amounts in OPEN.
pub fn describe(e: &Event) -> String {
    match e {
        Event::FeePaid { payer, amount } => {
            format!("fee {} paid by {payer}", output::open(*amount))
        }
        Event::Transfer { from, to, amount } => {
            format!("transfer {} {from} -> {to}", output::open(*amount))
        }
        Event::Staked { account, amount } => format!("{account} staked {}", output::open(*amount)),
        Event::UnstakeStarted {
            account,
            amount,
            release_height,
        } => {
            format!(
                "{account} unstaking {} (released at block {release_height})",
                output::gopen(*amount)
            )
        }
        Event::Unbonded { account, amount } => {
            format!("{account} unbonded {}", output::open(*amount))
        }
        Event::Delegated {
            account,
            from,
            to,
            power,
        } => {
            format!(
                "{account} delegated {} of voting power from {from} to {to}",
                output::gopen(*power)
            )
        }
        Event::ProposalSubmitted {
            id,
            proposer,
            change,
        } => format!("proposal {id} submitted by {proposer}: {change}"),
        Event::DepositAdded {
            id,
            depositor,
            amount,
        } => format!(
            "deposit {} to proposal {id} by {depositor}",
            output::open(*amount)
        ),
        Event::VotingStarted {
            id,
            voting_end_height,
        } => format!("proposal {id} voting until block {voting_end_height}"),
        Event::Voted { id, voter, choice } => format!("{voter} voted {choice:?} on proposal {id}"),
        Event::ProposalFinished { id, status } => format!("proposal {id} {status}"),
        Event::ParamsChanged { id, change } => {
            format!("parameter change {change} executed (proposal {id})")
        }
        Event::DepositRefunded {
            id,
            depositor,
            amount,
        } => {
            format!(
                "deposit {} refunded to {depositor} (proposal {id})",
                output::open(*amount)
            )
        }
        Event::DepositBurned { id, amount } => {
            format!("deposits {} of proposal {id} burned", output::open(*amount))
        }
        Event::StakingRewardsClaimed { account, amount } => {
            format!(
                "{account} claimed {} of staking rewards",
                output::open(*amount)
            )
        }
        Event::AdapterPriceSet {
            adapter,
            price_in_per_1k,
            price_out_per_1k,
        } => format!(
            "adapter {adapter} now costs {} per 1k prompt tokens and {} per 1k completion tokens",
            output::open(*price_in_per_1k),
            output::open(*price_out_per_1k)
        ),
        Event::AccessGranted { datanet, to } => format!("{to} granted access to datanet {datanet}"),
        Event::AccessRevoked { datanet, to } => {
            format!("{to}'s access to datanet {datanet} revoked")
        }
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}
