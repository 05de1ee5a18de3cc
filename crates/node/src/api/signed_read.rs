//! Verifying signed requests: which address signed a request, for the
//! routes that read permissioned datanets (rows, export, contributor
//! histories) and for job submissions that name an owner.
//!
//! The client signs, with its ed25519 key, the text
//! `tributary signed read v1\n{METHOD}\n{path?query}\n{timestamp}\n{nonce}\n{blake3(body) hex}`
//! ([`message`]) and sends the public key, its address, the timestamp (Unix
//! seconds), the nonce (random hex) and the signature in the `x-trib-*`
//! headers. [`verify`] recomputes the address from the public key, refuses
//! timestamps more than [`READ_SIGNATURE_WINDOW_SECS`] away from the node's
//! clock, and remembers every signature it accepted until its timestamp
//! leaves the window ([`ReplayGuard`]), so a captured request cannot be
//! replayed. Every refusal is a 401 naming the problem (429 when too many
//! signatures are remembered). It lives in the HTTP layer because it reads
//! headers and answers with statuses; the signing half (the message, the
//! headers, signing) is `trib_client::signed_read`, whose [`message`] this
//! module rebuilds, so the signed text has one definition.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, StatusCode};
use trib_types::{Address, PublicKey, Signature};

use super::ApiError;
use trib_client::signed_read::{
    message, HEADER_ADDRESS, HEADER_NONCE, HEADER_PUBLIC_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    READ_SIGNATURE_WINDOW_SECS,
};

/// Signatures remembered at once (beyond it, signed reads get 429 until
/// old ones leave the window).
const MAX_REMEMBERED: usize = 200_000;

fn unauthorized(code: &'static str, message: String) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code,
        message,
    }
}

/// Signatures accepted within the window (replay protection).
#[derive(Default)]
pub(crate) struct ReplayGuard {
    seen: Mutex<HashMap<[u8; 64], u64>>,
}

impl ReplayGuard {
    /// Records `sig` (valid until `expires`, Unix seconds); refuses one
    /// seen before.
    fn admit(&self, sig: &Signature, expires: u64, now: u64) -> Result<(), ApiError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains_key(&sig.0) {
            return Err(unauthorized(
                "replayed_signature",
                "this signed request was already used: sign every request anew (fresh nonce and timestamp)".into(),
            ));
        }
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, e| *e >= now);
        }
        if seen.len() >= MAX_REMEMBERED {
            return Err(ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "too_many_signed_reads",
                message: format!(
                    "over {MAX_REMEMBERED} signed reads in the last {READ_SIGNATURE_WINDOW_SECS} s; retry later"
                ),
            });
        }
        seen.insert(sig.0, expires);
        Ok(())
    }
}

/// The address that signed this request; `None` when it carries no
/// `x-trib-*` header at all (an anonymous read). A partial, malformed,
/// stale, replayed or wrong signature is a 401 naming the problem.
pub(crate) fn verify(
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now: u64,
    replays: &ReplayGuard,
) -> Result<Option<Address>, ApiError> {
    let names = [
        HEADER_PUBLIC_KEY,
        HEADER_TIMESTAMP,
        HEADER_NONCE,
        HEADER_SIGNATURE,
    ];
    let values: Vec<Option<&str>> = names
        .iter()
        .map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
        .collect();
    if values.iter().all(Option::is_none) && headers.get(HEADER_ADDRESS).is_none() {
        return Ok(None);
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(unauthorized(
            "missing_signature",
            format!(
                "signed read is missing the header(s) {}",
                missing.join(", ")
            ),
        ));
    }
    let [pk, ts, nonce, sig] =
        [values[0], values[1], values[2], values[3]].map(|v| v.expect("checked above"));
    let pk: PublicKey = pk.parse().map_err(|_| {
        unauthorized(
            "bad_signature",
            format!("{HEADER_PUBLIC_KEY} is not a 32-byte hex public key"),
        )
    })?;
    let address = pk.address();
    if let Some(claimed) = headers.get(HEADER_ADDRESS) {
        let claimed = claimed.to_str().unwrap_or_default();
        if claimed != address.to_string() {
            return Err(unauthorized(
                "bad_signature",
                format!(
                    "{HEADER_ADDRESS} {claimed} is not the address of the public key ({address})"
                ),
            ));
        }
    }
    let ts: u64 = ts.parse().map_err(|_| {
        unauthorized(
            "bad_signature",
            format!("{HEADER_TIMESTAMP} {ts:?} is not Unix seconds"),
        )
    })?;
    if ts.abs_diff(now) > READ_SIGNATURE_WINDOW_SECS {
        return Err(unauthorized(
            "expired_signature",
            format!(
                "signed read timestamp {ts} is {} s from the node's clock ({now}); the window is ±{READ_SIGNATURE_WINDOW_SECS} s",
                ts.abs_diff(now)
            ),
        ));
    }
    if nonce.is_empty() || nonce.len() > 128 {
        return Err(unauthorized(
            "bad_signature",
            format!("{HEADER_NONCE} must be 1 to 128 characters"),
        ));
    }
    let sig: Signature = sig.parse().map_err(|_| {
        unauthorized(
            "bad_signature",
            format!("{HEADER_SIGNATURE} is not a 64-byte hex signature"),
        )
    })?;
    pk.verify(&message(method, path_and_query, ts, nonce, body), &sig)
        .map_err(|_| {
            unauthorized(
                "bad_signature",
                format!(
                    "the signature does not verify for {address} over {method} {path_and_query} (signed another request, or with another key)"
                ),
            )
        })?;
    replays.admit(&sig, ts + READ_SIGNATURE_WINDOW_SECS, now)?;
    Ok(Some(address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trib_client::signed_read::sign;
    use trib_types::SecretKey;

    fn headers(h: &[(&'static str, String)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in h {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    const PATH: &str = "/v1/datanets/law/versions/1/rows?limit=5";

    #[test]
    fn a_signed_read_names_its_signer_once() {
        let key = SecretKey::from_seed([7; 32]);
        let g = ReplayGuard::default();
        let h = headers(&sign(&key, "GET", PATH, b"", 1_000));
        assert_eq!(
            verify(&h, "GET", PATH, b"", 1_000, &g).unwrap(),
            Some(key.address())
        );
        let again = verify(&h, "GET", PATH, b"", 1_001, &g).unwrap_err();
        assert_eq!(again.code, "replayed_signature");
        assert_eq!(
            verify(&HeaderMap::new(), "GET", PATH, b"", 1_000, &g).unwrap(),
            None
        );
    }

    #[test]
    fn tampered_stale_partial_and_foreign_signatures_are_refused_by_name() {
        let key = SecretKey::from_seed([7; 32]);
        let other = SecretKey::from_seed([8; 32]);
        let g = ReplayGuard::default();
        let signed = sign(&key, "GET", PATH, b"", 1_000);
        // Another path (e.g. another datanet) with the same headers.
        let e = verify(
            &headers(&signed),
            "GET",
            "/v1/datanets/x/versions/1/rows",
            b"",
            1_000,
            &g,
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UNAUTHORIZED, "bad_signature")
        );
        // Stale, both ways, just past the window; inside it at the edge.
        for now in [
            1_000 + READ_SIGNATURE_WINDOW_SECS + 1,
            1_000 - READ_SIGNATURE_WINDOW_SECS - 1,
        ] {
            let e = verify(&headers(&signed), "GET", PATH, b"", now, &g).unwrap_err();
            assert_eq!(e.code, "expired_signature", "{}", e.message);
        }
        assert!(verify(
            &headers(&signed),
            "GET",
            PATH,
            b"",
            1_000 + READ_SIGNATURE_WINDOW_SECS,
            &g
        )
        .is_ok());
        // A header missing.
        let partial: Vec<_> = signed
            .iter()
            .filter(|(k, _)| *k != HEADER_NONCE)
            .cloned()
            .collect();
        let e = verify(&headers(&partial), "GET", PATH, b"", 1_000, &g).unwrap_err();
        assert_eq!(e.code, "missing_signature");
        assert!(e.message.contains(HEADER_NONCE), "{}", e.message);
        // Someone else's address claimed with my key.
        let mut claimed = sign(&key, "GET", PATH, b"", 1_000);
        for (k, v) in claimed.iter_mut() {
            if *k == HEADER_ADDRESS {
                *v = other.address().to_string();
            }
        }
        let e = verify(&headers(&claimed), "GET", PATH, b"", 1_000, &g).unwrap_err();
        assert_eq!(e.code, "bad_signature");
        // Another key's signature under my public key.
        let mut swapped = sign(&key, "GET", PATH, b"", 1_000);
        let theirs = sign(&other, "GET", PATH, b"", 1_000);
        for (k, v) in swapped.iter_mut() {
            if *k == HEADER_SIGNATURE {
                *v = theirs
                    .iter()
                    .find(|(k, _)| *k == HEADER_SIGNATURE)
                    .unwrap()
                    .1
                    .clone();
            }
        }
        let e = verify(&headers(&swapped), "GET", PATH, b"", 1_000, &g).unwrap_err();
        assert_eq!(e.code, "bad_signature");
        // The body is covered.
        let posted = sign(&key, "POST", PATH, b"abc", 1_000);
        let e = verify(&headers(&posted), "POST", PATH, b"abd", 1_000, &g).unwrap_err();
        assert_eq!(e.code, "bad_signature");
    }
}
