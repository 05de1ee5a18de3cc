//! Printing answers: `--json` gives machine-readable JSON, otherwise short
//! human text with amounts in OPEN.

use serde::Serialize;
use trib_node::types::Amount;

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `1.5 OPEN`.
pub fn open(a: Amount) -> String {
    format!("{} OPEN", a.to_open_string())
}

/// `1.5 gOPEN`.
pub fn gopen(a: Amount) -> String {
    format!("{} gOPEN", a.to_open_string())
}
