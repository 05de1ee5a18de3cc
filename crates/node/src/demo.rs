//! `trib demo`: the README's main job, as a sequence of named steps.
//!
//! It creates a fresh node home (a temporary directory unless one is given)
//! with a development genesis (short voting, timelock and unbonding periods),
//! starts the node in this process on a free loopback port, and then drives
//! it over HTTP exactly as a user of the `trib` binary would: keys,
//! transfers, a stake, a delegation, a parameter-change proposal taken
//! through deposit, votes, voting period, timelock and execution, and finally
//! a full replay verification of the ledger and a state proof checked by the
//! independent verifier.
//!
//! Later issues add steps (datanets, training, paid inference, payouts): each
//! step is one method of [`Demo`], called in order by [`run`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use trib_ledger::{
    verify_proof, Action, ParamChange, ProofError, ProposalStatus, StateKey, VerifyError,
    VoteChoice,
};
use trib_types::{Address, Amount, Hash, SecretKey, TxHash};

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::home::{HomeError, InitOptions, InitReport, NodeHome};
use crate::keystore::{Keystore, KeystoreError};
use crate::node::{NodeOverrides, RunningNode};
use trib_client::{ClientError, NodeClient};

/// Block interval of the demo node: short, so that the governance periods
/// of the dev genesis (counted in blocks) pass in seconds.
const DEMO_BLOCK_INTERVAL: Duration = Duration::from_millis(200);
/// How long to wait for one transaction to be committed.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the proposal to run its course.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(60);
/// The users the demo creates.
const USERS: [&str; 3] = ["alice", "bob", "carol"];

/// Where progress goes: stdout, or stderr when stdout carries `--json`.
static TO_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

macro_rules! say {
    ($($arg:tt)*) => {
        if TO_STDERR.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!($($arg)*)
        } else {
            println!($($arg)*)
        }
    };
}

mod datanets_steps;
mod serving_steps;
pub use datanets_steps::DemoArtifacts;
pub use serving_steps::DemoInference;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The node home could not be created.
    #[error("demo home: {0}")]
    Home(#[from] HomeError),
    /// The node failed to start or stop.
    #[error("demo node: {0}")]
    Node(#[from] NodeError),
    /// A call to the node failed.
    #[error("demo request: {0}")]
    Client(#[from] ClientError),
    /// A key could not be created or loaded.
    #[error("demo keystore: {0}")]
    Keystore(#[from] KeystoreError),
    /// The ledger failed to verify (this would be a bug worth reporting).
    /// Boxed: the replay error is large and every step returns this enum.
    #[error("ledger verification failed: {0}")]
    Verify(Box<VerifyError>),
    /// The state proof did not verify (a bug worth reporting).
    #[error("state proof failed: {0}")]
    Proof(#[from] ProofError),
    /// The ledger could not be reopened after the node stopped.
    #[error("ledger: {0}")]
    Ledger(#[from] trib_ledger::LedgerError),
    /// Something ended differently from what the demo expects.
    #[error("demo step {step:?}: {what}")]
    Unexpected {
        /// The step.
        step: &'static str,
        /// What happened.
        what: String,
    },
}

impl From<VerifyError> for DemoError {
    fn from(e: VerifyError) -> Self {
        DemoError::Verify(Box::new(e))
    }
}

/// What the demo did, for `--json` and for tests.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    /// The node home used.
    pub home: PathBuf,
    /// Whether the home was temporary (and is now deleted, or with
    /// `--keep-running` deleted when the node stops).
    pub temporary_home: bool,
    /// Chain id.
    pub chain_id: String,
    /// Final height.
    pub height: u64,
    /// Transactions the demo committed.
    pub transactions: usize,
    /// Each user's final account.
    pub accounts: Vec<DemoAccount>,
    /// The governance proposal's id.
    pub proposal_id: u64,
    /// The change it executed.
    pub param_change: String,
    /// The parameter's value before.
    pub param_before: String,
    /// The parameter's value after.
    pub param_after: String,
    /// Blocks replayed by the verification.
    pub verified_blocks: u64,
    /// Transactions replayed by the verification.
    pub verified_txs: u64,
    /// The verified head state root.
    pub state_root: Hash,
    /// The paid inference request and its receipt (absent when the demo
    /// model is not in `models/`).
    pub inference: Option<DemoInference>,
}

/// One user's final state.
#[derive(Debug, Clone, Serialize)]
pub struct DemoAccount {
    /// Key name.
    pub name: String,
    /// Address.
    pub address: Address,
    /// Spendable OPEN.
    pub balance: Amount,
    /// gOPEN.
    pub staked: Amount,
    /// Voting power (own plus delegated gOPEN).
    pub voting_power: Amount,
}

/// The demo's state between steps.
struct Demo {
    client: NodeClient,
    keystore: Keystore,
    producer: SecretKey,
    users: Vec<(String, SecretKey)>,
    committed: usize,
    step: usize,
    /// Where node jobs write (the node home's jobs directory).
    jobs_root: PathBuf,
    /// What the datanet and factory steps produced, for the steps after them.
    artifacts: Option<DemoArtifacts>,
    /// The node home's root (adapters and API keys live there).
    home_root: PathBuf,
    /// Whether the node serves a base model (the demo model was found).
    serving: bool,
    /// What the paid-inference steps did.
    inference: Option<DemoInference>,
}

/// Number of numbered steps printed.
const STEPS: usize = 16;

/// Runs the whole demo. With `home`, the node home is created there (it
/// must not exist or be empty) and kept; otherwise a temporary one is used
/// and removed at the end. Progress is printed on stdout, or on stderr with
/// `progress_to_stderr` (when stdout is reserved for the JSON summary).
pub async fn run(
    home: Option<PathBuf>,
    progress_to_stderr: bool,
) -> Result<DemoSummary, DemoError> {
    run_then(
        home,
        progress_to_stderr,
        None::<fn(String) -> std::future::Ready<()>>,
    )
    .await
}

/// [`run`], then (`trib demo --keep-running`) the node starts again on the
/// demo's home and address with all its data, says which URL to open (the
/// web app is at `/`) and serves until the future `until(url)` returns;
/// a temporary home is removed only then. The summary is the same as
/// [`run`]'s, returned when the node has stopped.
pub async fn run_then<F, Fut>(
    home: Option<PathBuf>,
    progress_to_stderr: bool,
    keep_running: Option<F>,
) -> Result<DemoSummary, DemoError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    TO_STDERR.store(progress_to_stderr, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let tmp;
    let (root, temporary) = match home {
        Some(h) => (h, false),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("trib-demo-")
                .tempdir()
                .map_err(|source| HomeError::Io {
                    path: std::env::temp_dir(),
                    source,
                })?;
            (tmp.path().join("home"), true)
        }
    };

    say!("Tributary demo: a node, four accounts, OPEN transfers, gOPEN staking and delegation,");
    say!("a governance proposal executed by the ledger, and a full replay verification.\n");
    let (home, report, serving) = init_home(&root)?;
    let node = start_node(&home).await?;
    let keystore = home.keystore()?;
    let producer = keystore.load(&report.producer.name, None)?;
    let mut demo = Demo {
        client: NodeClient::new(&node.url())?,
        keystore,
        producer,
        users: Vec::new(),
        committed: 0,
        step: 2,
        jobs_root: home.jobs_dir(),
        artifacts: None,
        home_root: root.clone(),
        serving,
        inference: None,
    };

    let result = demo.steps().await;
    let addr = node.addr();
    // Stop the node whatever happened, so the ledger file is closed cleanly.
    let stopped = node.shutdown().await;
    let governance = result?;
    stopped?;

    let summary = demo.verify_and_summarise(&home, temporary, governance)?;
    print_summary(&summary, started.elapsed(), keep_running.is_some());
    if let Some(until) = keep_running {
        keep_serving(&home, addr, temporary, until).await?;
    }
    Ok(summary)
}

/// `--keep-running`: the demo's node again, on its home (verified, with
/// every account, datanet, adapter and receipt of the run) and its address
/// when that is still free, serving until `until(url)` returns.
async fn keep_serving<F, Fut>(
    home: &NodeHome,
    addr: std::net::SocketAddr,
    temporary: bool,
    until: F,
) -> Result<(), DemoError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let overrides = |listen| NodeOverrides {
        listen: Some(listen),
        block_interval: Some(DEMO_BLOCK_INTERVAL),
    };
    let node = match RunningNode::start(home, overrides(addr)).await {
        Ok(node) => node,
        Err(e) => {
            tracing::warn!(target: "trib::demo", %addr, error = %e, "demo address taken; using a free port");
            RunningNode::start(
                home,
                overrides(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            )
            .await?
        }
    };
    let url = node.url();
    say!("\nThe demo node keeps running with its data: open {url}/ in a browser for the web app.");
    say!(
        "Stop it with Ctrl-C{}.",
        if temporary {
            " (its temporary home is removed then)"
        } else {
            ""
        }
    );
    node.run_until(until(url)).await?;
    Ok(())
}

/// Step 1: a dev-genesis home at `root`, serving the demo model when it is
/// present; returns the home, its init report and whether it serves.
fn init_home(root: &Path) -> Result<(NodeHome, InitReport, bool), DemoError> {
    step_header(1, "create a node home with a development genesis");
    // The node serves the demo model (OpenAI-compatible API) when it is
    // present, so the paid-inference steps can query the trained adapter.
    let served = demo_model();
    let serving = served.is_some();
    let config = NodeConfig {
        listen: "127.0.0.1:0".parse().expect("valid"),
        base_model: served.clone(),
        ..NodeConfig::default()
    };
    let report = NodeHome::init(
        root,
        InitOptions {
            dev: true,
            config,
            ..InitOptions::default()
        },
    )?;
    // Node jobs train only from the home's models directory: the operator
    // (the demo) links the demo model there.
    if let Some(model) = &served {
        link_into(model, &NodeHome::new(root).models_dir())
            .map_err(|e| unexpected("link the demo model into the home", e.to_string()))?;
    }
    say!(
        "      home {}  chain {}",
        root.display(),
        report.genesis.chain_id
    );
    say!(
        "      producer {} holds {} at genesis",
        report.producer.address,
        fmt_open(report.genesis.allocations[0].1)
    );
    Ok((NodeHome::new(root), report, serving))
}

/// Step 2: the node in this process, on a free loopback port.
async fn start_node(home: &NodeHome) -> Result<RunningNode, DemoError> {
    step_header(
        2,
        "start the node (HTTP API on a free loopback port, a block every 200 ms)",
    );
    let node = RunningNode::start(
        home,
        NodeOverrides {
            listen: None,
            block_interval: Some(DEMO_BLOCK_INTERVAL),
        },
    )
    .await?;
    say!("      listening on {}", node.url());
    Ok(node)
}

/// The governance step's outcome: proposal id, the change, the value
/// before and after.
type Governance = (u64, ParamChange, String, String);

fn step_header(n: usize, what: &str) {
    say!("[{n}/{STEPS}] {what}");
}

fn fmt_open(a: Amount) -> String {
    format!("{} OPEN", a.to_open_string())
}

fn print_summary(s: &DemoSummary, elapsed: Duration, kept_running: bool) {
    say!("\nSummary");
    say!(
        "  chain {} at height {}, {} demo transactions committed",
        s.chain_id,
        s.height,
        s.transactions
    );
    say!(
        "  {:<6} {:<44} {:>14} {:>12} {:>14}",
        "user",
        "address",
        "OPEN",
        "gOPEN",
        "voting power"
    );
    for a in &s.accounts {
        say!(
            "  {:<6} {:<44} {:>14} {:>12} {:>14}",
            a.name,
            a.address.to_string(),
            a.balance.to_open_string(),
            a.staked.to_open_string(),
            a.voting_power.to_open_string()
        );
    }
    say!(
        "  governance: proposal {} executed {} ({} -> {})",
        s.proposal_id,
        s.param_change,
        s.param_before,
        s.param_after
    );
    say!(
        "  ledger verified: {} blocks, {} transactions, state root {}",
        s.verified_blocks,
        s.verified_txs,
        s.state_root
    );
    if let Some(i) = &s.inference {
        say!(
            "  paid inference: receipt {} fee {} OPEN in {} payout lines ({}), verified {}",
            i.receipt,
            i.fee.to_open_string(),
            i.lines.len(),
            i.method,
            i.verified
        );
    }
    if s.temporary_home && kept_running {
        say!("  (temporary home, removed when the node stops; keep one with --home DIR)");
    } else if s.temporary_home {
        say!("  (temporary home removed; keep one with --home DIR)");
    } else {
        say!(
            "  node home kept at {} (inspect with: trib --home {} ledger verify)",
            s.home.display(),
            s.home.display()
        );
    }
    say!("  done in {:.1?}", elapsed);
}

impl Demo {
    /// Steps 3–8, against the running node.
    async fn steps(&mut self) -> Result<Governance, DemoError> {
        self.create_keys()?;
        self.fund_users().await?;
        self.transfer_between_users().await?;
        self.stake_and_delegate().await?;
        let (id, change, before, after) = self.govern().await?;
        let jobs_root = self.jobs_root.clone();
        self.artifacts = Some(self.datanets_and_factory(&jobs_root).await?);
        self.show_balances().await?;
        let home_root = self.home_root.clone();
        self.inference = self.paid_inference(&home_root, self.serving).await?;
        Ok((id, change, before, after))
    }

    /// The last step, after the node stopped: replays the ledger from
    /// genesis, checks a state proof with the independent verifier and
    /// gathers the summary.
    fn verify_and_summarise(
        &mut self,
        home: &NodeHome,
        temporary_home: bool,
        (proposal_id, change, before, after): Governance,
    ) -> Result<DemoSummary, DemoError> {
        step_header(
            STEPS,
            "stop the node, replay the ledger from genesis and check a state proof",
        );
        // `shutdown` joined every thread that held the ledger: it opens at once.
        let ledger = home.open_ledger()?;
        let verified = ledger.verify_chain(|_, _| {})?;
        say!(
            "      replayed {} blocks and {} transactions: every transactions root and state root matches",
            verified.blocks, verified.txs
        );
        let alice = self.users[0].1.address();
        let proof = ledger.prove(StateKey::Account(alice), None)?;
        verify_proof(verified.state_root, &proof)?;
        say!(
            "      proof of account/{alice} verifies against state root {}",
            verified.state_root.short()
        );

        let mut accounts = Vec::new();
        for (name, key) in &self.users {
            let a = ledger.account(&key.address())?;
            let voting_power = ledger.voting_power(&key.address())?;
            accounts.push(DemoAccount {
                name: name.clone(),
                address: key.address(),
                balance: a.balance,
                staked: a.staked,
                voting_power,
            });
        }
        Ok(DemoSummary {
            home: self.home_root.clone(),
            temporary_home,
            chain_id: ledger.chain_id().to_string(),
            height: ledger.height(),
            transactions: self.committed,
            accounts,
            proposal_id,
            param_change: change.to_string(),
            param_before: before,
            param_after: after,
            verified_blocks: verified.blocks,
            verified_txs: verified.txs,
            state_root: verified.state_root,
            inference: self.inference.take(),
        })
    }

    fn next_step(&mut self, what: &str) {
        self.step += 1;
        step_header(self.step, what);
    }

    fn user(&self, name: &str) -> &SecretKey {
        &self
            .users
            .iter()
            .find(|(n, _)| n == name)
            .expect("demo user exists")
            .1
    }

    /// Submits every `(signer, action)` and waits until all are committed.
    async fn submit_all(
        &mut self,
        txs: Vec<(SecretKey, Action)>,
    ) -> Result<Vec<TxHash>, DemoError> {
        let mut hashes = Vec::new();
        for (key, action) in txs {
            let stx = self.client.sign_and_submit(&key, None, action).await?;
            hashes.push(stx.hash());
        }
        for h in &hashes {
            let v = self.client.wait_for_commit(h, COMMIT_TIMEOUT).await?;
            self.committed += 1;
            say!(
                "      committed {} in block {}",
                h.0.short(),
                v.height.unwrap_or_default()
            );
        }
        Ok(hashes)
    }

    fn create_keys(&mut self) -> Result<(), DemoError> {
        self.next_step("create keys for alice, bob and carol in the node's keystore");
        for name in USERS {
            let info = self.keystore.generate(name, None)?;
            say!("      {name:<6} {}", info.address);
            self.users
                .push((name.to_string(), self.keystore.load(name, None)?));
        }
        Ok(())
    }

    async fn fund_users(&mut self) -> Result<(), DemoError> {
        self.next_step(
            "the producer funds the users (three transfers from the genesis allocation)",
        );
        let p = self.producer.clone();
        let txs = [("alice", 10_000), ("bob", 5_000), ("carol", 2_000)]
            .into_iter()
            .map(|(n, v)| {
                (
                    p.clone(),
                    Action::Transfer {
                        to: self.user(n).address(),
                        amount: Amount::open(v),
                    },
                )
            })
            .collect();
        self.submit_all(txs).await?;
        Ok(())
    }

    async fn transfer_between_users(&mut self) -> Result<(), DemoError> {
        self.next_step("alice sends 250.5 OPEN to bob; bob sends 0.25 OPEN to carol");
        let amount = Amount::parse_open("250.5").expect("valid amount");
        let txs = vec![
            (
                self.user("alice").clone(),
                Action::Transfer {
                    to: self.user("bob").address(),
                    amount,
                },
            ),
            (
                self.user("bob").clone(),
                Action::Transfer {
                    to: self.user("carol").address(),
                    amount: Amount::parse_open("0.25").expect("valid"),
                },
            ),
        ];
        self.submit_all(txs).await?;
        Ok(())
    }

    async fn stake_and_delegate(&mut self) -> Result<(), DemoError> {
        self.next_step("stake OPEN for gOPEN (alice 3000, bob 1000, carol 500); carol delegates her votes to alice");
        let txs = vec![
            (
                self.user("alice").clone(),
                Action::Stake {
                    amount: Amount::open(3_000),
                },
            ),
            (
                self.user("bob").clone(),
                Action::Stake {
                    amount: Amount::open(1_000),
                },
            ),
            (
                self.user("carol").clone(),
                Action::Stake {
                    amount: Amount::open(500),
                },
            ),
        ];
        self.submit_all(txs).await?;
        let carol = self.user("carol").clone();
        self.submit_all(vec![(
            carol,
            Action::Delegate {
                to: self.user("alice").address(),
            },
        )])
        .await?;
        let a = self.client.account(&self.user("alice").address()).await?;
        say!(
            "      alice now votes with {} gOPEN (3000 own + 500 delegated by carol)",
            a.voting_power.to_open_string()
        );
        Ok(())
    }

    async fn govern(&mut self) -> Result<Governance, DemoError> {
        self.next_step("governance: alice proposes min_fee=0.0005, alice votes yes, bob votes no");
        let params = self.client.params().await?;
        let before = fmt_open(params.min_fee);
        let change = ParamChange::MinFee(Amount::parse_open("0.0005").expect("valid amount"));
        let next_id = self
            .client
            .proposals()
            .await?
            .iter()
            .map(|p| p.id + 1)
            .max()
            .unwrap_or(0);
        let propose = Action::Propose {
            title: "Raise the minimum fee".into(),
            description: "Spam protection: raise min_fee from 0.000001 to 0.0005 OPEN.".into(),
            change: change.clone(),
            deposit: params.gov_min_deposit,
        };
        self.submit_all(vec![(self.user("alice").clone(), propose)])
            .await?;
        let id = next_id;
        let p = self.client.proposal(id).await?;
        say!(
            "      proposal {id}: deposit {} reached, status {}",
            fmt_open(p.total_deposit),
            p.status
        );
        self.submit_all(vec![
            (
                self.user("alice").clone(),
                Action::Vote {
                    proposal: id,
                    choice: VoteChoice::Yes,
                },
            ),
            (
                self.user("bob").clone(),
                Action::Vote {
                    proposal: id,
                    choice: VoteChoice::No,
                },
            ),
        ])
        .await?;

        // Watch the proposal through the end of voting and the timelock.
        let start = Instant::now();
        let mut last = p.status;
        loop {
            let p = self.client.proposal(id).await?;
            if p.status != last {
                let h = self.client.status().await?.height;
                say!("      block {h}: proposal {id} is {}", p.status);
                last = p.status;
            }
            match p.status {
                ProposalStatus::Executed => break,
                ProposalStatus::DepositPeriod | ProposalStatus::Voting | ProposalStatus::Passed => {
                }
                other => {
                    return Err(DemoError::Unexpected {
                        step: "govern",
                        what: format!("proposal {id} ended {other}, expected executed"),
                    })
                }
            }
            if start.elapsed() > PROPOSAL_TIMEOUT {
                return Err(DemoError::Unexpected {
                    step: "govern",
                    what: format!(
                        "proposal {id} still {} after {PROPOSAL_TIMEOUT:?}",
                        p.status
                    ),
                });
            }
            tokio::time::sleep(DEMO_BLOCK_INTERVAL / 2).await;
        }
        let after_params = self.client.params().await?;
        let after = fmt_open(after_params.min_fee);
        if after_params.min_fee != Amount::parse_open("0.0005").expect("valid") {
            return Err(DemoError::Unexpected {
                step: "govern",
                what: format!("min_fee is {after} after execution"),
            });
        }
        say!("      min_fee changed by the ledger itself: {before} -> {after}");
        Ok((id, change, before, after))
    }

    async fn show_balances(&mut self) -> Result<(), DemoError> {
        self.next_step("balances and supply, read over HTTP");
        for (name, key) in &self.users {
            let a = self.client.account(&key.address()).await?;
            say!(
                "      {name:<6} {:>14} OPEN  {:>8} gOPEN  voting power {}",
                a.balance.to_open_string(),
                a.staked.to_open_string(),
                a.voting_power.to_open_string()
            );
        }
        let s = self.client.supply().await?;
        say!(
            "      supply: {} OPEN in balances, {} gOPEN, {} in deposits, {} burned; total {} (conserved)",
            s.supply.open.to_open_string(),
            s.supply.gopen.to_open_string(),
            s.supply.deposits.to_open_string(),
            s.supply.burned.to_open_string(),
            s.total.to_open_string()
        );
        Ok(())
    }
}

/// The demo base model: `<repo>/models` (where scripts/fetch-model.sh puts it)
/// or `./models`, sha256-verified. `None` when absent: the model steps skip.
fn demo_model() -> Option<PathBuf> {
    let repo_models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    [repo_models, PathBuf::from("models")]
        .into_iter()
        .find_map(|d| trib_model::locate_smollm2(&d).ok())
}

/// Links `model` into `dir` under its own file name (a copy where links
/// are not available).
fn link_into(model: &Path, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = model.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the model path has no file name",
        )
    })?;
    let target = dir.join(name);
    if target.exists() {
        return Ok(());
    }
    let source = model.canonicalize()?;
    #[cfg(unix)]
    return std::os::unix::fs::symlink(&source, &target);
    #[cfg(not(unix))]
    return std::fs::copy(&source, &target).map(|_| ());
}

/// A demo step saw something it did not expect.
fn unexpected(step: &'static str, what: impl Into<String>) -> DemoError {
    DemoError::Unexpected {
        step,
        what: what.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Runs `keep_serving` on `home` at `addr`; the stop future checks the
    /// web app and the ledger over HTTP and returns the URL it served at.
    async fn serve_once(home: &NodeHome, addr: std::net::SocketAddr) -> String {
        let served = Arc::new(Mutex::new(None));
        let s = served.clone();
        keep_serving(home, addr, false, move |url| async move {
            let page = reqwest::get(format!("{url}/")).await.unwrap();
            assert_eq!(page.status(), 200);
            let ct = page.headers()["content-type"].to_str().unwrap().to_string();
            assert!(ct.starts_with("text/html"), "{ct}");
            let status: serde_json::Value = reqwest::get(format!("{url}/v1/status"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(status["chain_id"], "tributary-dev");
            *s.lock().unwrap() = Some(url);
        })
        .await
        .unwrap();
        let url = served.lock().unwrap().take();
        url.expect("the stop future ran")
    }

    /// `--keep-running` serves the home's ledger and the web app at the
    /// demo's address until told to stop, and falls back to a free port
    /// when that address is taken.
    #[tokio::test(flavor = "multi_thread")]
    async fn keep_running_serves_the_web_app_and_the_ledger_until_told_to_stop() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        NodeHome::init(
            &root,
            InitOptions {
                dev: true,
                ..Default::default()
            },
        )
        .unwrap();
        let home = NodeHome::new(&root);
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let url = serve_once(&home, addr).await;
        assert_ne!(url, format!("http://{addr}"), "the address was taken");
        drop(taken);
        assert_eq!(serve_once(&home, addr).await, format!("http://{addr}"));
    }
}
