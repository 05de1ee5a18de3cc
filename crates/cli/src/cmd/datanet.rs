//! `trib datanet …`: create, contribute, curate, publish, export, grant,
//! revoke and browse datanets. The node validates and stores the bytes;
//! every change of status is a ledger transaction signed here with a
//! keystore key.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use tokio::runtime::Runtime;
use trib_client::wire::{CreateDatanetRequest, PageView, TxView};
use trib_client::{ClientError, NodeClient, Upload};
use trib_node::ledger::{Action, CurationMode, DataType, Visibility};
use trib_node::types::{Address, Amount, ContributionId, SecretKey};
use trib_node::{Keystore, NodeHome};

use crate::passphrase::PassphraseArgs;
use crate::{output, Global};

/// The signing key of a datanet command.
#[derive(Args, Debug, Clone)]
pub struct KeyOpts {
    /// Keystore key that signs (and pays the fee and stake).
    #[arg(long, value_name = "KEY")]
    key: String,
    /// Seconds to wait for the transaction to be committed.
    #[arg(long, default_value_t = 60)]
    wait_timeout: u64,
    #[command(flatten)]
    pass: PassphraseArgs,
}

impl KeyOpts {
    /// Loads the key from the home's keystore; returns it with the wait limit.
    pub fn load(&self, g: &Global) -> anyhow::Result<(SecretKey, Duration)> {
        let ks = g.home().keystore()?;
        Ok((
            self.pass.load_key(&ks, &self.key)?,
            Duration::from_secs(self.wait_timeout),
        ))
    }
}

/// Upload quotas of a new datanet (limits are inclusive; days are UTC).
#[derive(Args, Debug, Clone)]
pub struct QuotaOpts {
    /// Largest single file, bytes.
    #[arg(long, default_value_t = trib_node::datanet::Quotas::default().max_file_bytes)]
    max_file_bytes: u64,
    /// Bytes one contributor may upload per UTC day.
    #[arg(long, default_value_t = trib_node::datanet::Quotas::default().bytes_per_contributor_per_day)]
    contributor_bytes_per_day: u64,
    /// Files one contributor may upload per UTC day.
    #[arg(long, default_value_t = trib_node::datanet::Quotas::default().files_per_contributor_per_day)]
    contributor_files_per_day: u32,
    /// Bytes the datanet accepts per UTC day, all contributors.
    #[arg(long, default_value_t = trib_node::datanet::Quotas::default().bytes_per_datanet_per_day)]
    datanet_bytes_per_day: u64,
}

/// Curation modes on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum CurationArg {
    /// The owner accepts or rejects.
    Owner,
    /// gOPEN-weighted validator vote with `--quorum-bps`.
    Validators,
}

/// Visibility on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum VisibilityArg {
    /// Anyone may train on it.
    Public,
    /// Only the owner and granted addresses.
    Permissioned,
}

/// Row kinds on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum TypeArg {
    /// Plain text rows.
    Text,
    /// Instruction/response records (JSONL).
    Instruction,
    /// Chat `messages` records (JSONL).
    Chat,
}

/// Accept or reject.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionArg {
    /// Accept the contribution (stake returns after the challenge window).
    Accept,
    /// Reject it (part of the stake is slashed).
    Reject,
}

/// `trib datanet` subcommands.
#[derive(Subcommand, Debug)]
pub enum DatanetCommand {
    /// Create a datanet: the node stores the descriptor, you sign CreateDatanet.
    Create(CreateArgs),
    /// Contribute files: validated row by row on the node, then Contribute is signed.
    Contribute(ContributeArgs),
    /// Accept or reject a pending contribution (owner, or a validator's vote).
    Curate {
        /// The datanet.
        name: String,
        /// The contribution id.
        contribution: String,
        /// The decision.
        #[arg(value_enum)]
        decision: DecisionArg,
        /// Why (required to reject).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        key: KeyOpts,
    },
    /// Publish the next version (the node computes the root; you sign it).
    Publish {
        /// The datanet.
        name: String,
        #[command(flatten)]
        key: KeyOpts,
    },
    /// Export NAME@VERSION as JSONL, verified against the ledger's root.
    Export {
        /// `NAME@VERSION`.
        #[arg(value_name = "NAME@VERSION")]
        target: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Sign the read with this keystore key (needed for a permissioned
        /// datanet: the owner or a granted address).
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// Grant training access to a permissioned datanet.
    Grant {
        /// The datanet.
        name: String,
        /// Address or keystore key name.
        address: String,
        #[command(flatten)]
        key: KeyOpts,
    },
    /// Revoke an address's training access to a permissioned datanet
    /// (`RevokeAccess`, signed by the owner).
    Revoke {
        /// The datanet.
        name: String,
        /// Address or keystore key name whose access ends.
        address: String,
        #[command(flatten)]
        key: KeyOpts,
    },
    /// List datanets.
    List,
    /// Show one datanet.
    Show {
        /// The datanet.
        name: String,
    },
    /// A datanet's versions (drafts not yet on the ledger are marked).
    Versions {
        /// The datanet.
        name: String,
    },
    /// A datanet's contributions with their ledger status.
    Contributions {
        /// The datanet.
        name: String,
        /// Page (from 1).
        #[arg(long, default_value_t = 1)]
        page: usize,
        /// Items per page (1 to 1,000).
        #[arg(long, default_value_t = PAGE, value_parser = parse_per_page)]
        per_page: usize,
    },
    /// Rows of a published version.
    Rows {
        /// `NAME@VERSION`.
        #[arg(value_name = "NAME@VERSION")]
        target: String,
        /// Page (from 1).
        #[arg(long, default_value_t = 1)]
        page: usize,
        /// Items per page (1 to 1,000).
        #[arg(long, default_value_t = PAGE, value_parser = parse_per_page)]
        per_page: usize,
        /// Sign the read with this keystore key (needed for a permissioned
        /// datanet: the owner or a granted address).
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// A contributor's contributions across datanets (those in permissioned
    /// datanets only when signed by the contributor or a granted reader).
    History {
        /// Address or keystore key name (a key name also signs the read).
        #[arg(long)]
        contributor: String,
        /// Sign the read with this keystore key instead.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// Contributors ranked by reputation.
    Leaderboard {
        /// The datanet.
        name: String,
    },
}

/// `trib datanet create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Unique name (a-z, 0-9, '-').
    name: String,
    /// Markdown file with the description.
    #[arg(long, value_name = "FILE.md")]
    description: Option<PathBuf>,
    /// Comma-separated tags.
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Row type, fixed at creation.
    #[arg(long = "type", value_enum, default_value = "text")]
    data_type: TypeArg,
    /// Who curates.
    #[arg(long, value_enum, default_value = "owner")]
    curation: CurationArg,
    /// Quorum for validator curation, basis points of all gOPEN.
    #[arg(long, default_value_t = 3_000)]
    quorum_bps: u16,
    /// OPEN each contribution stakes.
    #[arg(long, default_value = "0", value_parser = parse_amount)]
    stake: Amount,
    /// Who may train on it.
    #[arg(long, value_enum, default_value = "public")]
    visibility: VisibilityArg,
    #[command(flatten)]
    quotas: QuotaOpts,
    #[command(flatten)]
    key: KeyOpts,
}

/// `trib datanet contribute`.
#[derive(Args, Debug)]
pub struct ContributeArgs {
    /// The datanet.
    name: String,
    /// Files (.txt, .md, .jsonl, .csv, .pdf, .docx).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// For CSV files: the text column.
    #[arg(long)]
    csv_column: Option<String>,
    /// Declared type, when the extension does not say.
    #[arg(long = "type")]
    kind: Option<String>,
    #[command(flatten)]
    key: KeyOpts,
}

/// Items per page unless `--per-page` says otherwise.
const PAGE: usize = 50;

fn parse_per_page(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1_000).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a page size from 1 to 1000")),
    }
}

fn parse_amount(s: &str) -> Result<Amount, String> {
    Amount::parse_open(s).map_err(|e| e.to_string())
}

fn resolve(ks: &Keystore, who: &str) -> anyhow::Result<Address> {
    if let Ok(a) = who.parse::<Address>() {
        return Ok(a);
    }
    Ok(ks
        .info(who)
        .with_context(|| format!("{who:?} is neither an address nor a keystore key"))?
        .address)
}

fn split_version(s: &str) -> anyhow::Result<(String, u32)> {
    let (name, v) = s
        .rsplit_once('@')
        .with_context(|| format!("{s:?} is not NAME@VERSION"))?;
    let v: u32 = v
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .with_context(|| format!("version in {s:?} is not a positive number"))?;
    Ok((name.to_string(), v))
}

/// Signs `action`, submits it and waits for its block.
pub async fn sign_submit_wait(
    client: &NodeClient,
    key: &SecretKey,
    action: Action,
    wait: Duration,
) -> anyhow::Result<TxView> {
    let name = action.name();
    let stx = client
        .sign_and_submit(key, None, action)
        .await
        .with_context(|| format!("{name} transaction refused"))?;
    Ok(client.wait_for_commit(&stx.hash(), wait).await?)
}

/// Paginates with 1-based page numbers over cursor pages.
async fn nth_page<T, F, Fut>(page: usize, mut fetch: F) -> anyhow::Result<PageView<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<PageView<T>, ClientError>>,
{
    let mut after = None;
    for _ in 1..page.max(1) {
        let p = fetch(after).await?;
        match p.next {
            Some(n) => after = Some(n),
            None => {
                return Ok(PageView {
                    items: Vec::new(),
                    next: None,
                })
            }
        }
    }
    Ok(fetch(after).await?)
}

/// Prints a validation report as a table.
pub fn print_report(file: &str, r: &serde_json::Value) {
    let report = &r["report"];
    println!(
        "{file}: contribution {} ({} rows, {} accepted, {} duplicates)",
        report["contribution"].as_str().unwrap_or("?"),
        report["rows"].as_array().map_or(0, |a| a.len()),
        report["rows_accepted"],
        report["duplicates_rejected"]
    );
    println!(
        "  {:>4} {:>5} {:>6} {:>7} {:>5} {:>5} {:>5} {:>5}  result",
        "row", "line", "bytes", "quality", "len", "chars", "rep", "words"
    );
    for row in report["rows"].as_array().into_iter().flatten() {
        let q = &row["quality"];
        let result = match &row["rejection"] {
            serde_json::Value::Null => "accepted".to_string(),
            rej => format!("REJECTED {}", describe_rejection(rej)),
        };
        println!(
            "  {:>4} {:>5} {:>6} {:>7} {:>5} {:>5} {:>5} {:>5}  {result}",
            row["index"],
            row["line"],
            row["bytes"],
            q["score_bp"],
            q["length_bp"],
            q["charset_bp"],
            q["repetition_bp"],
            q["wordlike_bp"]
        );
    }
    if !report["rejection"].is_null() {
        println!(
            "  contribution REJECTED: {}",
            describe_rejection(&report["rejection"])
        );
    }
}

fn describe_rejection(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.replace('_', " "),
        serde_json::Value::Object(m) => {
            let kind = m
                .get("reason")
                .or_else(|| m.get("kind"))
                .and_then(|k| k.as_str())
                .map(|s| s.replace('_', " "));
            let rest: Vec<String> = m
                .iter()
                .filter(|(k, _)| *k != "reason" && *k != "kind")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            match kind {
                Some(k) if rest.is_empty() => k,
                Some(k) => format!("{k} ({})", rest.join(", ")),
                None => v.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// What every `trib datanet` step needs: the options, a client for
/// `--node`, the node home (keystore) and a runtime.
struct Ctx<'a> {
    g: &'a Global,
    client: NodeClient,
    home: NodeHome,
    rt: Runtime,
}

impl Ctx<'_> {
    /// The signing key of `k` and its wait limit.
    fn load(&self, k: &KeyOpts) -> anyhow::Result<(SecretKey, Duration)> {
        k.load(self.g)
    }

    /// The client, signing its reads with keystore key `key` when one is
    /// named.
    fn reader(&self, key: Option<&str>, pass: &PassphraseArgs) -> anyhow::Result<NodeClient> {
        Ok(match key {
            Some(k) => self
                .client
                .clone()
                .with_signer(pass.load_key(&self.home.keystore()?, k)?),
            None => self.client.clone(),
        })
    }
}

/// Runs `trib datanet …`.
pub fn run(g: &Global, cmd: DatanetCommand) -> anyhow::Result<()> {
    let cx = Ctx {
        g,
        client: g.client()?,
        home: g.home(),
        rt: super::runtime()?,
    };
    match cmd {
        DatanetCommand::Create(a) => create(&cx, a),
        DatanetCommand::Contribute(a) => contribute(&cx, a),
        DatanetCommand::Curate {
            name,
            contribution,
            decision,
            reason,
            key,
        } => curate(&cx, &name, &contribution, decision, reason, &key),
        DatanetCommand::Publish { name, key } => publish(&cx, &name, &key),
        DatanetCommand::Export {
            target,
            out,
            key,
            pass,
        } => export(&cx, &target, &out, key.as_deref(), &pass),
        DatanetCommand::Grant { name, address, key } => access(&cx, &name, &address, &key, true),
        DatanetCommand::Revoke { name, address, key } => access(&cx, &name, &address, &key, false),
        DatanetCommand::List => list(&cx),
        DatanetCommand::Show { name } => show(&cx, &name),
        DatanetCommand::Versions { name } => versions(&cx, &name),
        DatanetCommand::Contributions {
            name,
            page,
            per_page,
        } => contributions(&cx, &name, page, per_page),
        DatanetCommand::Rows {
            target,
            page,
            per_page,
            key,
            pass,
        } => rows(&cx, &target, page, per_page, key.as_deref(), &pass),
        DatanetCommand::History {
            contributor,
            key,
            pass,
        } => history(&cx, &contributor, key, &pass),
        DatanetCommand::Leaderboard { name } => leaderboard(&cx, &name),
    }
}

/// The creation request of `a`, owned by `owner`.
fn create_request(a: &CreateArgs, owner: Address) -> anyhow::Result<CreateDatanetRequest> {
    let description = match &a.description {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => String::new(),
    };
    Ok(CreateDatanetRequest {
        owner,
        name: a.name.clone(),
        description,
        tags: a.tags.iter().filter(|t| !t.is_empty()).cloned().collect(),
        data_type: match a.data_type {
            TypeArg::Text => DataType::Text,
            TypeArg::Instruction => DataType::Instruction,
            TypeArg::Chat => DataType::Chat,
        },
        curation: match a.curation {
            CurationArg::Owner => CurationMode::OwnerApproval,
            CurationArg::Validators => CurationMode::ValidatorVote {
                quorum_bps: a.quorum_bps,
            },
        },
        stake_per_contribution: a.stake,
        visibility: match a.visibility {
            VisibilityArg::Public => Visibility::Public,
            VisibilityArg::Permissioned => Visibility::Permissioned,
        },
    })
}

/// `trib datanet create`: the node stores the descriptor; the owner signs
/// `CreateDatanet`.
fn create(cx: &Ctx<'_>, a: CreateArgs) -> anyhow::Result<()> {
    let (sk, wait) = cx.load(&a.key)?;
    let req = create_request(&a, sk.address())?;
    let quotas = trib_node::datanet::Quotas {
        max_file_bytes: a.quotas.max_file_bytes,
        bytes_per_contributor_per_day: a.quotas.contributor_bytes_per_day,
        files_per_contributor_per_day: a.quotas.contributor_files_per_day,
        bytes_per_datanet_per_day: a.quotas.datanet_bytes_per_day,
    };
    let name = a.name;
    cx.rt.block_on(async {
        // The node stores a descriptor only for its signed owner.
        let plan = (cx.client.clone().with_signer(sk.clone()))
            .create_datanet_with_quotas(&req, quotas)
            .await?;
        let view = sign_submit_wait(&cx.client, &sk, plan.action, wait).await?;
        if cx.g.json {
            return output::json(&serde_json::json!({"id": plan.id, "metadata_hash": plan.metadata_hash, "tx": view.hash, "height": view.height}));
        }
        println!("created datanet {name} (id {}) in block {}", plan.id, view.height.unwrap_or(0));
        println!("  descriptor hash {}", plan.metadata_hash);
        Ok(())
    })
}

/// Uploads one file of `a` and signs its `Contribute` when the node accepts
/// it. Returns the node's answer (with `tx` added) and whether the file was
/// rejected at validation.
async fn contribute_file(
    cx: &Ctx<'_>,
    a: &ContributeArgs,
    sk: &SecretKey,
    wait: Duration,
    path: &std::path::Path,
) -> anyhow::Result<(serde_json::Value, bool)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("upload")
        .to_string();
    let upload = Upload {
        contributor: Some(sk.address()),
        file_name: &file_name,
        kind: a.kind.as_deref(),
        csv_column: a.csv_column.as_deref(),
    };
    // The node takes an upload only signed by its contributor.
    let mut r = (cx.client.clone().with_signer(sk.clone()))
        .contribute(&a.name, &upload, bytes)
        .await?;
    if !cx.g.json {
        print_report(&file_name, &r);
    }
    match serde_json::from_value::<Option<Action>>(r["action"].clone())? {
        Some(action) => {
            let view = sign_submit_wait(&cx.client, sk, action, wait).await?;
            if !cx.g.json {
                println!(
                    "  submitted Contribute {} in block {}",
                    view.hash,
                    view.height.unwrap_or(0)
                );
            }
            r["tx"] = serde_json::json!(view.hash);
            Ok((r, false))
        }
        None => {
            if !cx.g.json {
                println!("  no transaction: the contribution was rejected before staking");
            }
            Ok((r, true))
        }
    }
}

/// `trib datanet contribute`: every file in turn; fails when any was
/// rejected at validation.
fn contribute(cx: &Ctx<'_>, a: ContributeArgs) -> anyhow::Result<()> {
    let (sk, wait) = cx.load(&a.key)?;
    cx.rt.block_on(async {
        let mut all = Vec::new();
        let mut rejected = 0;
        for path in &a.files {
            let (r, was_rejected) = contribute_file(cx, &a, &sk, wait, path).await?;
            rejected += usize::from(was_rejected);
            all.push(r);
        }
        if cx.g.json {
            output::json(&all)?;
        }
        if rejected > 0 {
            bail!(
                "{rejected} of {} files were rejected at validation",
                a.files.len()
            );
        }
        Ok(())
    })
}

/// `trib datanet curate`: signs `Curate`.
fn curate(
    cx: &Ctx<'_>,
    name: &str,
    contribution: &str,
    decision: DecisionArg,
    reason: String,
    key: &KeyOpts,
) -> anyhow::Result<()> {
    let (sk, wait) = cx.load(key)?;
    let id: ContributionId = contribution
        .parse()
        .map_err(|e| anyhow::anyhow!("contribution id {contribution:?}: {e}"))?;
    if decision == DecisionArg::Reject && reason.trim().is_empty() {
        bail!("a rejection needs --reason");
    }
    let accept = decision == DecisionArg::Accept;
    cx.rt.block_on(async {
        let action = Action::Curate {
            contribution: id,
            accept,
            reason,
        };
        let view = sign_submit_wait(&cx.client, &sk, action, wait).await?;
        if cx.g.json {
            return output::json(&view);
        }
        println!(
            "{name}: contribution {id} {} in block {}",
            if accept { "accepted" } else { "rejected" },
            view.height.unwrap_or(0)
        );
        Ok(())
    })
}

/// `trib datanet publish`: the node plans the next version; the owner signs
/// `PublishVersion`.
fn publish(cx: &Ctx<'_>, name: &str, key: &KeyOpts) -> anyhow::Result<()> {
    let (sk, wait) = cx.load(key)?;
    cx.rt.block_on(async {
        let plan = cx.client.publish_plan(name).await?;
        let view = sign_submit_wait(&cx.client, &sk, plan.action.clone(), wait).await?;
        if cx.g.json {
            return output::json(&serde_json::json!({"version": plan.version, "root": plan.root, "rows": plan.rows, "contributions": plan.contributions, "tx": view.hash}));
        }
        println!("published {name}@{} in block {}: {} rows from {} contributions, root {}", plan.version, view.height.unwrap_or(0), plan.rows, plan.contributions.len(), plan.root);
        Ok(())
    })
}

/// `trib datanet export`: the export, verified against the ledger's root,
/// written atomically.
fn export(
    cx: &Ctx<'_>,
    target: &str,
    out: &std::path::Path,
    key: Option<&str>,
    pass: &PassphraseArgs,
) -> anyhow::Result<()> {
    let (name, v) = split_version(target)?;
    let reader = cx.reader(key, pass)?;
    cx.rt.block_on(async {
        let export = reader.verified_export(&name, v).await?;
        write_atomically(out, &export.bytes)?;
        let (rows, root) = (export.rows, export.root);
        if cx.g.json {
            return output::json(
                &serde_json::json!({"file": out, "rows": rows, "root": root, "verified": true}),
            );
        }
        println!(
            "wrote {}: {rows} rows of {name}@{v}, root {root} (equals the ledger's)",
            out.display()
        );
        Ok(())
    })
}

/// `trib datanet grant` (`grant`: signs `GrantAccess`) and `trib datanet
/// revoke` (signs `RevokeAccess`).
fn access(
    cx: &Ctx<'_>,
    name: &str,
    address: &str,
    key: &KeyOpts,
    grant: bool,
) -> anyhow::Result<()> {
    let (sk, wait) = cx.load(key)?;
    let to = resolve(&cx.home.keystore()?, address)?;
    cx.rt.block_on(async {
        let datanet = trib_node::ledger::datanet_id(name);
        let action = if grant {
            Action::GrantAccess { datanet, to }
        } else {
            Action::RevokeAccess { datanet, to }
        };
        let view = sign_submit_wait(&cx.client, &sk, action, wait).await?;
        if cx.g.json {
            return output::json(&view);
        }
        let may = if grant { "may now" } else { "may no longer" };
        println!(
            "{to} {may} train on {name} (block {})",
            view.height.unwrap_or(0)
        );
        Ok(())
    })
}

/// `trib datanet list`.
fn list(cx: &Ctx<'_>) -> anyhow::Result<()> {
    let list = cx.rt.block_on(cx.client.datanets())?;
    if cx.g.json {
        return output::json(&list);
    }
    println!(
        "{:<24} {:<13} {:>6} {:>9} {:>8} {:>7}  owner",
        "name", "visibility", "latest", "contribs", "accepted", "rows"
    );
    for d in list {
        let l = &d.ledger;
        println!(
            "{:<24} {:<13} {:>6} {:>9} {:>8} {:>7}  {}",
            l.name,
            format!("{:?}", l.visibility).to_lowercase(),
            l.latest_version,
            l.contributions,
            l.accepted,
            l.rows_accepted,
            l.owner
        );
    }
    Ok(())
}

/// `trib datanet show`.
fn show(cx: &Ctx<'_>, name: &str) -> anyhow::Result<()> {
    let d = cx.rt.block_on(cx.client.datanet(name))?;
    if cx.g.json {
        return output::json(&d);
    }
    let l = &d.ledger;
    println!("datanet {} ({})", l.name, l.id);
    println!("  owner       {}", l.owner);
    println!("  type        {:?}", l.data_type);
    println!("  curation    {:?}", l.curation);
    println!("  visibility  {:?}", l.visibility);
    println!("  stake       {}", output::open(l.stake_per_contribution));
    println!("  tags        {}", d.tags.join(", "));
    if let Some(q) = &d.quotas {
        println!(
            "  quotas      {} B/file; per contributor per UTC day {} B, {} files; datanet {} B/day",
            q.max_file_bytes,
            q.bytes_per_contributor_per_day,
            q.files_per_contributor_per_day,
            q.bytes_per_datanet_per_day
        );
    }
    println!(
        "  contributions {} (accepted {}, rows {})",
        l.contributions, l.accepted, l.rows_accepted
    );
    println!("  latest version {}", l.latest_version);
    if !d.description.is_empty() {
        println!("\n{}", d.description);
    }
    Ok(())
}

/// `trib datanet versions`.
fn versions(cx: &Ctx<'_>, name: &str) -> anyhow::Result<()> {
    let vs = cx.rt.block_on(cx.client.versions(name))?;
    if cx.g.json {
        return output::json(&vs);
    }
    for v in vs {
        println!(
            "{name}@{:<4} {:>7} rows  root {}  {}",
            v.version,
            v.rows,
            v.root,
            match v.height {
                Some(h) => format!("block {h}"),
                None => "draft (PublishVersion not committed)".into(),
            }
        );
    }
    Ok(())
}

/// `trib datanet contributions`.
fn contributions(cx: &Ctx<'_>, name: &str, page: usize, per_page: usize) -> anyhow::Result<()> {
    let p = cx.rt.block_on(nth_page(page, |after| async move {
        cx.client
            .contributions(name, after.as_deref(), per_page)
            .await
    }))?;
    if cx.g.json {
        return output::json(&p);
    }
    for c in p.items {
        println!(
            "{}  {:>5} rows {:>4} dup  {}  {}  {}",
            c.id, c.rows, c.duplicates_rejected, c.contributor, c.file_name, c.status
        );
    }
    if p.next.is_some() {
        println!("(more: --page {})", page + 1);
    }
    Ok(())
}

/// `trib datanet rows`.
fn rows(
    cx: &Ctx<'_>,
    target: &str,
    page: usize,
    per_page: usize,
    key: Option<&str>,
    pass: &PassphraseArgs,
) -> anyhow::Result<()> {
    let (name, v) = split_version(target)?;
    let reader = cx.reader(key, pass)?;
    let p = cx.rt.block_on(nth_page(page, |after| {
        let (reader, name) = (&reader, &name);
        async move { reader.rows(name, v, after.as_deref(), per_page).await }
    }))?;
    if cx.g.json {
        return output::json(&p);
    }
    for r in p.items {
        let text: String = r
            .text
            .chars()
            .take(100)
            .collect::<String>()
            .replace('\n', " ");
        println!(
            "{:>5} {} {}  {text}",
            r.index,
            r.row_hash.short(),
            r.contributor
        );
    }
    if p.next.is_some() {
        println!("(more: --page {})", page + 1);
    }
    Ok(())
}

/// `trib datanet history`: a key name signs the read; a bare address reads
/// anonymously.
fn history(
    cx: &Ctx<'_>,
    contributor: &str,
    key: Option<String>,
    pass: &PassphraseArgs,
) -> anyhow::Result<()> {
    let who = resolve(&cx.home.keystore()?, contributor)?;
    let signer = key.or_else(|| {
        contributor
            .parse::<Address>()
            .is_err()
            .then(|| contributor.to_string())
    });
    let reader = cx.reader(signer.as_deref(), pass)?;
    let p = cx.rt.block_on(reader.history(&who, None, 1_000))?;
    if cx.g.json {
        return output::json(&p);
    }
    for c in p.items {
        println!(
            "{}  {:>5} rows  {}  {}",
            c.id, c.rows, c.file_name, c.status
        );
    }
    Ok(())
}

/// `trib datanet leaderboard`.
fn leaderboard(cx: &Ctx<'_>, name: &str) -> anyhow::Result<()> {
    let board = cx.rt.block_on(cx.client.leaderboard(name))?;
    if cx.g.json {
        return output::json(&board);
    }
    println!(
        "{:<4} {:<46} {:>7} {:>8} {:>8} {:>8} {:>8} {:>6} {:>5} {:>12} {:>12}",
        "rank",
        "contributor",
        "contribs",
        "accepted",
        "rejected",
        "invalid",
        "rows",
        "rate%",
        "dups",
        "slashed",
        "earned"
    );
    for (i, e) in board.iter().enumerate() {
        println!(
            "{:<4} {:<46} {:>7} {:>8} {:>8} {:>8} {:>8} {:>6.1} {:>5} {:>12} {:>12}",
            i + 1,
            e.contributor.to_string(),
            e.contributions,
            e.accepted,
            e.rejected,
            e.rejected_at_validation,
            e.rows_accepted,
            e.acceptance_bps as f64 / 100.0,
            e.duplicates_rejected,
            output::open(e.slashed),
            output::open(e.earnings)
        );
    }
    Ok(())
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
