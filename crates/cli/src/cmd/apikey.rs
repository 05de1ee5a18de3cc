//! `trib apikey new|list|revoke`: API keys for the node's OpenAI-compatible
//! endpoints, bound to a ledger account. `new` writes the home's key file
//! directly (no node needed), optionally approving the node's operator;
//! `list` and `revoke` are requests to the node signed by the account's key
//! (`GET /v1/apikeys`, `DELETE /v1/apikeys/{id}`).

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use trib_node::ledger::Action;
use trib_node::types::{Address, Amount};
use trib_node::ApiKeys;

use crate::passphrase::PassphraseArgs;
use crate::{output, Global};

/// `trib apikey` subcommands.
#[derive(Subcommand, Debug)]
pub enum ApikeyCommand {
    /// Create a random API key charging an account; only its hash is stored
    /// (in `<home>/apikeys.json`), the key is printed once.
    New(NewArgs),
    /// The account's keys on the node (id, first characters, creation
    /// time, never the key) and its allowance for the node's operator.
    List {
        /// Keystore key of the account (signs the request).
        #[arg(long, value_name = "ACCOUNT_KEY")]
        key: String,
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// Revoke one of the account's keys by id (`trib apikey list`): the
    /// node refuses it from the next request on.
    Revoke {
        /// The key's id.
        id: String,
        /// Keystore key of the account (signs the request).
        #[arg(long, value_name = "ACCOUNT_KEY")]
        key: String,
        #[command(flatten)]
        pass: PassphraseArgs,
    },
}

/// `trib apikey new`.
#[derive(Args, Debug)]
pub struct NewArgs {
    /// Keystore key of the account the API key charges.
    #[arg(long, value_name = "ACCOUNT_KEY")]
    key: String,
    /// Also approve the node's operator to charge up to this much OPEN
    /// (an `ApproveOperator` transaction signed by the account, sent to `--node`).
    #[arg(long, value_parser = parse_amount)]
    allowance: Option<Amount>,
    /// The operator to approve [default: the home's producer key, which
    /// settles the node's inference receipts].
    #[arg(long)]
    operator: Option<Address>,
    #[command(flatten)]
    pass: PassphraseArgs,
}

fn parse_amount(s: &str) -> Result<Amount, String> {
    Amount::parse_open(s).map_err(|e| e.to_string())
}

/// Runs `trib apikey`.
pub fn run(g: &Global, c: ApikeyCommand) -> anyhow::Result<()> {
    match c {
        ApikeyCommand::New(a) => new(g, a),
        ApikeyCommand::List { key, pass } => {
            let client = signed_client(g, &key, &pass)?;
            let list = super::runtime()?.block_on(client.api_keys())?;
            if g.json {
                return output::json(&list);
            }
            println!("account   {}", list.account);
            if let (Some(op), Some(al)) = (list.operator, list.allowance) {
                println!("allowance {} for operator {op}", output::open(al));
            }
            if list.keys.is_empty() {
                println!("no API keys (create one with: trib apikey new --key {key})");
            }
            for k in &list.keys {
                println!(
                    "{}  {:<14} created {}",
                    k.id,
                    k.prefix.as_deref().map_or("-".into(), |p| format!("{p}…")),
                    output::time_ms(k.created_ms)
                );
            }
            Ok(())
        }
        ApikeyCommand::Revoke { id, key, pass } => {
            let client = signed_client(g, &key, &pass)?;
            let gone = super::runtime()?.block_on(client.revoke_api_key(&id))?;
            if g.json {
                return output::json(&gone);
            }
            println!("revoked API key {}", gone.id);
            Ok(())
        }
    }
}

/// A client of `--node` signing with the keystore key `key`.
fn signed_client(
    g: &Global,
    key: &str,
    pass: &PassphraseArgs,
) -> anyhow::Result<trib_client::NodeClient> {
    let sk = pass.load_key(&g.home().keystore()?, key)?;
    Ok(g.client()?.with_signer(sk))
}

/// `trib apikey new`.
fn new(g: &Global, a: NewArgs) -> anyhow::Result<()> {
    let home = g.home();
    let ks = home.keystore()?;
    let account = ks
        .info(&a.key)
        .with_context(|| format!("no keystore key {:?}", a.key))?
        .address;
    let mut approved = None;
    if let Some(allowance) = a.allowance {
        let operator = match a.operator {
            Some(o) => o,
            None => {
                let producer = home.load_config()?.producer_key;
                ks.info(&producer)
                    .with_context(|| {
                        format!(
                            "the operator key {producer:?} is not in this home; pass --operator"
                        )
                    })?
                    .address
            }
        };
        let key = a.pass.load_key(&ks, &a.key)?;
        let client = g.client()?;
        let view = super::runtime()?.block_on(async move {
            let stx = client
                .sign_and_submit(
                    &key,
                    None,
                    Action::ApproveOperator {
                        operator,
                        allowance,
                    },
                )
                .await?;
            client
                .wait_for_commit(&stx.hash(), Duration::from_secs(30))
                .await
        })?;
        approved = Some((operator, allowance, view.hash));
    }
    let api_key = ApiKeys::create(&ApiKeys::path_in(home.root()), account)?;
    if g.json {
        return output::json(&serde_json::json!({
            "api_key": api_key,
            "account": account,
            "approved_operator": approved.map(|(o, a, h)| serde_json::json!({
                "operator": o, "allowance": a, "tx": h })),
        }));
    }
    println!("{api_key}");
    eprintln!("API key for account {account} (only its hash is stored; keep it secret)");
    if let Some((o, al, h)) = approved {
        eprintln!("approved operator {o} for {} (tx {h})", output::open(al));
    }
    Ok(())
}
