//! Printing answers: `--json` gives machine-readable JSON, otherwise short
//! human text with amounts in OPEN.

use serde::Serialize;
use trib_node::types::Amount;

/// Prints `value` as pretty JSON. A reader that stops early (`| head`,
/// `| grep -q`) is not an error.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// `1.5 OPEN`.
pub fn open(a: Amount) -> String {
    format!("{} OPEN", a.to_open_string())
}

/// `1.5 gOPEN`.
pub fn gopen(a: Amount) -> String {
    format!("{} gOPEN", a.to_open_string())
}
