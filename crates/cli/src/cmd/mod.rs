//! One module per command group.

pub mod apikey;
pub mod attribution;
pub mod bench;
pub mod datanet;
pub mod demo;
pub mod factory;
pub mod generate;
pub mod init;
pub mod keys;
pub mod ledger;
pub mod models;
pub mod node;
pub mod query;
pub mod tx;

use crate::Command;

/// The log filter when `TRIB_LOG` is unset: the node logs its work, other
/// commands only warnings (their output is the answer).
pub fn default_log_filter(cmd: &Command) -> &'static str {
    match cmd {
        Command::Node(_) => "info,tower_http=warn",
        _ => "warn",
    }
}

/// A tokio runtime for the commands that talk HTTP or run a node.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
