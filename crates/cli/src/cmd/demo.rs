//! `trib demo`.

use clap::Args;

use crate::Global;

/// Arguments of `trib demo`. Its node home is `--home` (or `TRIB_HOME`) when
/// given, which must not exist yet or be empty; otherwise a temporary
/// directory, removed at the end.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// After the loop, keep the demo node running with its data and print
    /// the URL of the web app; Ctrl-C stops it (and removes a temporary
    /// home). With --json the summary is printed when it stops.
    #[arg(long)]
    keep_running: bool,
}

/// Runs the demo.
pub fn run(g: &Global, a: DemoArgs) -> anyhow::Result<()> {
    let keep = a
        .keep_running
        .then_some(|_url: String| super::node::shutdown_signal());
    let summary =
        super::runtime()?.block_on(trib_node::demo::run_then(g.home.clone(), g.json, keep))?;
    if g.json {
        crate::output::json(&summary)?;
    }
    Ok(())
}
