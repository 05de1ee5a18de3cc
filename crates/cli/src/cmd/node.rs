//! `trib node`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use trib_node::{NodeOverrides, RunningNode};

use crate::Global;

/// Arguments of `trib node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Listen address, overriding config.toml (port 0: any free port).
    #[arg(long, env = "TRIB_LISTEN")]
    listen: Option<SocketAddr>,
    /// Block interval in milliseconds, overriding config.toml.
    #[arg(long)]
    block_interval_ms: Option<u64>,
}

/// Runs the node until Ctrl-C or SIGTERM.
pub fn run(g: &Global, a: NodeArgs) -> anyhow::Result<()> {
    let home = g.home();
    let overrides = NodeOverrides {
        listen: a.listen,
        block_interval: a.block_interval_ms.map(Duration::from_millis),
    };
    super::runtime()?.block_on(async move {
        let node = RunningNode::start(&home, overrides).await?;
        // One parseable line on stdout, for scripts and tests that bind port 0.
        println!("listening on {}", node.url());
        std::io::stdout().flush()?;
        node.run_until(shutdown_signal()).await?;
        Ok(())
    })
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
