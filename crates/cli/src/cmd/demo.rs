//! `trib demo`.

use clap::Args;

use crate::Global;

/// Arguments of `trib demo`. Its node home is `--home` (or `TRIB_HOME`) when
/// given, which must not exist yet or be empty; otherwise a temporary
/// directory, removed at the end.
#[derive(Args, Debug)]
pub struct DemoArgs {}

/// Runs the demo.
pub fn run(g: &Global, _a: DemoArgs) -> anyhow::Result<()> {
    let summary = super::runtime()?.block_on(trib_node::demo::run(g.home.clone(), g.json))?;
    if g.json {
        crate::output::json(&summary)?;
    }
    Ok(())
}
