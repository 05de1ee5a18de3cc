//! `trib`: the Tributary command-line binary.
//!
//! Thin by design: it parses arguments (clap), installs the tracing
//! subscriber, calls the libraries (`trib-client` to talk to a node,
//! `trib-node` to run one, the demo and the local home) and maps errors to
//! exit codes. Each command group is one module under `cmd/`; adding one is
//! a variant in [`Command`] and a line in [`run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod cmd;
mod output;
mod passphrase;

/// Tributary: payable AI with an auditable OPEN ledger.
#[derive(Parser)]
#[command(name = "trib", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command understands.
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// Node home directory [default: ~/.tributary].
    #[arg(long, global = true, env = "TRIB_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// URL of a running node, for commands that talk to one.
    #[arg(
        long,
        global = true,
        env = "TRIB_NODE",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    node: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

impl Global {
    /// The node home selected by `--home`, `TRIB_HOME` or the default.
    pub fn home(&self) -> trib_node::NodeHome {
        trib_node::NodeHome::new(
            self.home
                .clone()
                .unwrap_or_else(trib_node::NodeHome::default_root),
        )
    }

    /// A client for `--node`.
    pub fn client(&self) -> anyhow::Result<trib_client::NodeClient> {
        Ok(trib_client::NodeClient::new(&self.node)?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create a node home: genesis, config and the block producer's key.
    Init(cmd::init::InitArgs),
    /// Manage the local ed25519 keystore.
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),
    /// Run the node: HTTP API and block production.
    Node(cmd::node::NodeArgs),
    /// Sign a transaction with a keystore key and submit it to a node.
    #[command(subcommand)]
    Tx(cmd::tx::TxCommand),
    /// Read ledger state from a node.
    #[command(subcommand)]
    Query(cmd::query::QueryCommand),
    /// Verify, and prove entries of, the home's ledger file.
    #[command(subcommand)]
    Ledger(cmd::ledger::LedgerCommand),
    /// Run the end-to-end demo on a fresh node.
    Demo(cmd::demo::DemoArgs),
    /// Datanets: create, contribute, curate, publish, export, browse.
    #[command(subcommand)]
    Datanet(cmd::datanet::DatanetCommand),
    /// Base models: pull, list, show, register.
    #[command(subcommand)]
    Models(cmd::models::ModelsCommand),
    /// Generate text with a local model (and adapter), streamed.
    Generate(cmd::generate::GenerateArgs),
    /// ModelFactory: LoRA training, evaluation, merge; node jobs.
    #[command(subcommand)]
    Factory(cmd::factory::FactoryCommand),
    /// API keys for the OpenAI-compatible endpoints, bound to ledger accounts.
    #[command(subcommand)]
    Apikey(cmd::apikey::ApikeyCommand),
    /// Inference receipts, payout lines, and verifying a served answer.
    #[command(subcommand)]
    Attribution(cmd::attribution::AttributionCommand),
    /// Benchmarks against a running node (`trib bench serve`).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => cmd::init::run(g, a),
        Command::Keys(c) => cmd::keys::run(g, c),
        Command::Node(a) => cmd::node::run(g, a),
        Command::Tx(c) => cmd::tx::run(g, c),
        Command::Query(c) => cmd::query::run(g, c),
        Command::Ledger(c) => cmd::ledger::run(g, c),
        Command::Demo(a) => cmd::demo::run(g, a),
        Command::Datanet(c) => cmd::datanet::run(g, c),
        Command::Models(c) => cmd::models::run(g, c),
        Command::Generate(a) => cmd::generate::run(g, a),
        Command::Factory(c) => cmd::factory::run(g, c),
        Command::Apikey(c) => cmd::apikey::run(g, c),
        Command::Attribution(c) => cmd::attribution::run(g, c),
        Command::Bench(c) => cmd::bench::run(g, c),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("TRIB_LOG")
                .unwrap_or_else(|_| EnvFilter::new(cmd::default_log_filter(&cli.command))),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the
/// message already contains (library errors often include their source's
/// message, so `{:#}` would print it twice).
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
