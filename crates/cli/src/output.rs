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

/// Unix milliseconds as `2026-12-07 18:40:05 UTC` (proleptic Gregorian,
/// H. Hinnant's days-to-civil).
pub fn time_ms(ms: u64) -> String {
    let secs = ms / 1_000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_milliseconds_print_as_utc_dates() {
        assert_eq!(time_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time_ms(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(time_ms(1_796_668_805_123), "2026-12-07 18:40:05 UTC");
    }
}
