//! Who is calling: the one place the HTTP API authenticates a request and
//! the table of who may call each route (`docs/security.md` is that table
//! in words, and a test keeps the two and the router equal).
//!
//! A caller proves an account by signing the request with the account's
//! ed25519 key: the text
//! `tributary signed read v1\n{METHOD}\n{path?query}\n{timestamp}\n{nonce}\n{blake3(body) hex}`
//! (`trib_client::signed_read::message`, the one definition of the signed
//! bytes, shared with every client) and the `x-trib-*` headers carrying
//! the public key, its address, the timestamp (Unix seconds), the nonce and
//! the signature. [`authenticate`], the middleware every route runs
//! through, verifies those headers once: it recomputes the address from
//! the public key, refuses timestamps more than
//! [`READ_SIGNATURE_WINDOW_SECS`] from the node's clock, and remembers
//! every signature it accepted until its timestamp leaves the window
//! ([`ReplayGuard`], kept in a file so a restart does not forget it). It
//! then hands the handlers a typed [`Caller`]: anonymous, an account, or
//! the operator (the account of the node's producer key, which also signs
//! settlements). Handlers state their policy by the extractor they take:
//! [`Caller`] (anyone; what they see may depend on who), or [`SignedBy`]
//! (401 `missing_signature` for an anonymous caller). API keys (the paid
//! OpenAI routes) are checked by those routes' handlers
//! (`api/openai.rs`), since a key names a paying account, not a signer.
//!
//! [`POLICY`] names, for every route, who may call it ([`Access`]). The
//! middleware refuses (500) a route that has no row, so a new route cannot
//! go live without a decision.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use trib_types::{Address, PublicKey, Signature};

use super::ApiError;
use trib_client::signed_read::{
    message, now, HEADER_ADDRESS, HEADER_NONCE, HEADER_PUBLIC_KEY, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, READ_SIGNATURE_WINDOW_SECS,
};

/// Who may call a route (one row of [`POLICY`]; the words are the ones
/// `docs/security.md` uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone, anonymous included: public ledger data and public views.
    Public,
    /// Anyone; a signed caller may see more (its own or granted rows, its
    /// own receipts): what an anonymous caller gets is the public view.
    PublicOrSigned,
    /// A signed request from an account (401 `missing_signature`
    /// otherwise); the handler checks which account.
    Signed,
    /// `Authorization: Bearer <API key>` naming the paying account.
    ApiKey,
}

impl Access {
    /// The word `docs/security.md` uses for this access (the test that
    /// keeps the document and [`POLICY`] equal compares them).
    #[cfg(test)]
    pub(crate) fn word(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::PublicOrSigned => "public, more when signed",
            Access::Signed => "signed",
            Access::ApiKey => "API key",
        }
    }
}

/// Every route of the API and who may call it: `(method, path, access)`.
pub(crate) const POLICY: &[(&str, &str, Access)] = &[
    // Ledger: public data; transactions carry their own signatures.
    ("POST", "/v1/tx", Access::Public),
    ("GET", "/v1/tx/{hash}", Access::Public),
    ("GET", "/v1/accounts/{address}", Access::Public),
    ("GET", "/v1/blocks/latest", Access::Public),
    ("GET", "/v1/blocks/{height}", Access::Public),
    ("GET", "/v1/proposals", Access::Public),
    ("GET", "/v1/proposals/{id}", Access::Public),
    ("GET", "/v1/params", Access::Public),
    ("GET", "/v1/supply", Access::Public),
    ("GET", "/v1/status", Access::Public),
    ("GET", "/v1/proofs", Access::Public),
    // Datanets.
    ("POST", "/v1/datanets", Access::Signed),
    ("GET", "/v1/datanets", Access::Public),
    ("GET", "/v1/datanets/{name}", Access::Public),
    ("POST", "/v1/datanets/{name}/contributions", Access::Signed),
    ("GET", "/v1/datanets/{name}/contributions", Access::Public),
    ("POST", "/v1/datanets/{name}/publish", Access::Public),
    ("GET", "/v1/datanets/{name}/versions", Access::Public),
    (
        "GET",
        "/v1/datanets/{name}/versions/{version}/rows",
        Access::PublicOrSigned,
    ),
    (
        "GET",
        "/v1/datanets/{name}/versions/{version}/export",
        Access::PublicOrSigned,
    ),
    ("GET", "/v1/datanets/{name}/leaderboard", Access::Public),
    (
        "GET",
        "/v1/contributors/{address}/contributions",
        Access::PublicOrSigned,
    ),
    // Models and jobs.
    ("GET", "/v1/models/base", Access::Public),
    ("POST", "/v1/jobs", Access::Signed),
    ("GET", "/v1/jobs", Access::Signed),
    ("GET", "/v1/jobs/{id}", Access::Signed),
    ("DELETE", "/v1/jobs/{id}", Access::Signed),
    ("GET", "/v1/jobs/{id}/events", Access::Signed),
    // Serving (OpenAI-compatible).
    ("GET", "/v1/models", Access::Public),
    ("POST", "/v1/completions", Access::ApiKey),
    ("POST", "/v1/chat/completions", Access::ApiKey),
    ("GET", "/v1/adapters", Access::Public),
    ("POST", "/v1/adapters", Access::ApiKey),
    // API keys: an account manages its own.
    ("GET", "/v1/apikeys", Access::Signed),
    ("POST", "/v1/apikeys", Access::Signed),
    ("DELETE", "/v1/apikeys/{id}", Access::Signed),
    // Receipts and attribution.
    ("GET", "/v1/receipts/{id}", Access::PublicOrSigned),
    ("GET", "/v1/receipts/{id}/verify", Access::Public),
    ("GET", "/v1/payouts", Access::Public),
    ("POST", "/v1/attribution/trace", Access::PublicOrSigned),
    // Operators' Prometheus page: counts and timings only.
    ("GET", "/metrics", Access::Public),
];

/// Who sent a request, as [`authenticate`] proved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// No `x-trib-*` signature headers.
    Anonymous,
    /// A request signed by this account's key.
    Account(Address),
    /// A request signed by the node's operator key (the producer key that
    /// signs blocks and settlements).
    Operator(Address),
}

impl Caller {
    /// The signer's address (`None`: anonymous).
    pub(crate) fn address(&self) -> Option<Address> {
        match self {
            Caller::Anonymous => None,
            Caller::Account(a) | Caller::Operator(a) => Some(*a),
        }
    }

    /// Whether the node's operator signed.
    pub(crate) fn is_operator(&self) -> bool {
        matches!(self, Caller::Operator(_))
    }

    /// Whether the caller may act on something `owner` owns: `owner`
    /// itself or the operator.
    pub(crate) fn acts_for(&self, owner: &Address) -> bool {
        match self {
            Caller::Anonymous => false,
            Caller::Operator(_) => true,
            Caller::Account(a) => a == owner,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .copied()
            .unwrap_or(Caller::Anonymous))
    }
}

/// A signed caller: the extractor of routes that act for an account. An
/// anonymous request is refused with 401 `missing_signature`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SignedBy(pub(crate) Caller);

impl SignedBy {
    /// The signer.
    pub(crate) fn address(&self) -> Address {
        self.0.address().expect("a SignedBy is never anonymous")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SignedBy {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, s).await? {
            Caller::Anonymous => Err(unauthorized(
                "missing_signature",
                format!(
                    "{} {} acts for an account: sign the request with the account's key \
                     (x-trib-* headers over method, path?query, body, timestamp and nonce; \
                     the CLI's --key signs)",
                    parts.method, parts.uri
                ),
            )),
            c => Ok(SignedBy(c)),
        }
    }
}

/// What the middleware needs: the operator's address, the replay guard
/// and the request-body limit (a signed body is read whole to be hashed).
pub(crate) struct Auth {
    pub(crate) operator: Address,
    pub(crate) replays: Arc<ReplayGuard>,
    pub(crate) max_request_bytes: usize,
}

fn unauthorized(code: &'static str, message: String) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code,
        message,
    }
}

/// The middleware of every route: refuses a route without a [`POLICY`]
/// row, verifies the signature headers when present (401 naming the
/// problem when they do not verify) and puts the [`Caller`] into the
/// request for the handlers. An unsigned request passes untouched (its
/// body still streams); a signed one has its body read (within
/// `max_request_bytes`, 413 past it) to check the body hash.
pub(crate) async fn authenticate(
    State(auth): State<Arc<Auth>>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    // A path without any policy row is refused; a method the path does not
    // route is left to the router's 405 (the route test keeps every routed
    // method in the table).
    if let Some(path) = &matched {
        if !POLICY.iter().any(|(_, p, _)| *p == path.as_str()) {
            return ApiError::internal(format!(
                "{} {} has no access policy (add it to POLICY in api/auth.rs and to docs/security.md)",
                req.method(),
                path.as_str()
            ))
            .into_response();
        }
    }
    match caller_of(&auth, req).await {
        Ok((caller, mut req)) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The caller of `req` and the request to pass on (its body read back in
/// when it was signed).
async fn caller_of(auth: &Auth, req: Request) -> Result<(Caller, Request), ApiError> {
    if !signed(req.headers()) {
        return Ok((Caller::Anonymous, req));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, auth.max_request_bytes)
        .await
        .map_err(|_| ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "oversize",
            message: format!(
                "the signed request's body is over this node's request limit ({} bytes, \
                 max_request_bytes in config.toml)",
                auth.max_request_bytes
            ),
        })?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let signer = verify(
        &parts.headers,
        parts.method.as_str(),
        path_and_query,
        &bytes,
        now(),
        &auth.replays,
    )?
    .expect("signed() saw a signature header");
    let caller = if signer == auth.operator {
        Caller::Operator(signer)
    } else {
        Caller::Account(signer)
    };
    tracing::debug!(target: "trib::api::auth", %signer, operator = caller.is_operator(), "signed request");
    Ok((
        caller,
        Request::from_parts(parts, axum::body::Body::from(bytes)),
    ))
}

/// Whether any `x-trib-*` signature header is present.
fn signed(headers: &HeaderMap) -> bool {
    [
        HEADER_PUBLIC_KEY,
        HEADER_ADDRESS,
        HEADER_TIMESTAMP,
        HEADER_NONCE,
        HEADER_SIGNATURE,
    ]
    .iter()
    .any(|h| headers.contains_key(*h))
}

/// Signatures remembered at once (beyond it, signed requests get 429 until
/// old ones leave the window).
const MAX_REMEMBERED: usize = 200_000;

/// Signatures accepted within the window (replay protection), kept in a
/// file when opened with [`ReplayGuard::open`]: one line per accepted
/// signature (`<signature hex> <expiry>`), appended before the request is
/// served and read back at start, so a signed request captured before a
/// restart is still refused after it.
#[derive(Default)]
pub(crate) struct ReplayGuard {
    inner: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    seen: HashMap<[u8; 64], u64>,
    /// The file and the lines written to it since it was last compacted.
    log: Option<(PathBuf, std::fs::File, usize)>,
}

/// Why the replay guard's file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("replay guard file {}: {source}", path.display())]
pub(crate) struct ReplayLogError {
    path: PathBuf,
    source: std::io::Error,
}

impl ReplayGuard {
    /// The guard kept in `path`: the signatures still inside the window at
    /// `now` are read back (expired lines and a torn last line are dropped)
    /// and the file is rewritten with them.
    pub(crate) fn open(path: &Path, now: u64) -> Result<Self, ReplayLogError> {
        let err = |source| ReplayLogError {
            path: path.to_path_buf(),
            source,
        };
        let mut seen = HashMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    let Some((sig, expires)) = line.split_once(' ') else {
                        continue;
                    };
                    let (Ok(sig), Ok(expires)) = (sig.parse::<Signature>(), expires.parse::<u64>())
                    else {
                        continue;
                    };
                    if expires >= now {
                        seen.insert(sig.0, expires);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let file = write_log(path, &seen).map_err(err)?;
        tracing::info!(target: "trib::api::auth", file = %path.display(), remembered = seen.len(), "replay guard opened");
        Ok(ReplayGuard {
            inner: Mutex::new(Remembered {
                seen,
                log: Some((path.to_path_buf(), file, 0)),
            }),
        })
    }

    /// Records `sig` (valid until `expires`, Unix seconds); refuses one
    /// seen before.
    fn admit(&self, sig: &Signature, expires: u64, now: u64) -> Result<(), ApiError> {
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if r.seen.contains_key(&sig.0) {
            return Err(unauthorized(
                "replayed_signature",
                "this signed request was already used: sign every request anew (fresh nonce and timestamp)".into(),
            ));
        }
        if r.seen.len() >= MAX_REMEMBERED {
            r.seen.retain(|_, e| *e >= now);
        }
        if r.seen.len() >= MAX_REMEMBERED {
            return Err(ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "too_many_signed_requests",
                message: format!(
                    "over {MAX_REMEMBERED} signed requests in the last {READ_SIGNATURE_WINDOW_SECS} s; retry later"
                ),
            });
        }
        r.seen.insert(sig.0, expires);
        let Remembered { seen, log } = &mut *r;
        if let Some((path, file, lines)) = log {
            let written = if *lines > seen.len() * 2 + 1024 {
                // Mostly expired lines: rewrite the file with the live ones.
                seen.retain(|_, e| *e >= now);
                write_log(path, seen).map(|f| {
                    *file = f;
                    *lines = 0;
                })
            } else {
                writeln!(file, "{} {expires}", hex::encode(sig.0)).map(|()| *lines += 1)
            };
            if let Err(e) = written {
                seen.remove(&sig.0);
                return Err(ApiError::internal(format!(
                    "cannot record the signature in {} ({e}): refusing the request, \
                     since it could be replayed after a restart",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}

/// Writes `seen` to `path` (through a temporary file renamed over it) and
/// returns the file opened for appending.
fn write_log(path: &Path, seen: &HashMap<[u8; 64], u64>) -> std::io::Result<std::fs::File> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        let mut text = String::with_capacity(seen.len() * 140);
        for (sig, expires) in seen {
            text.push_str(&hex::encode(sig));
            text.push(' ');
            text.push_str(&expires.to_string());
            text.push('\n');
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::OpenOptions::new().append(true).open(path)
}

/// The address that signed this request; `None` when it carries no
/// `x-trib-*` header at all (an anonymous request). A partial, malformed,
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
                "signed request is missing the header(s) {}",
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
                "signed request timestamp {ts} is {} s from the node's clock ({now}); the window is ±{READ_SIGNATURE_WINDOW_SECS} s",
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

    #[test]
    fn a_signature_accepted_before_a_restart_is_refused_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signed-requests.log");
        let key = SecretKey::from_seed([7; 32]);
        let early = headers(&sign(&key, "GET", PATH, b"", 1_000));
        let late = headers(&sign(&key, "GET", PATH, b"", 1_200));
        {
            let g = ReplayGuard::open(&path, 1_000).unwrap();
            verify(&early, "GET", PATH, b"", 1_000, &g).unwrap();
            verify(&late, "GET", PATH, b"", 1_200, &g).unwrap();
        }
        // The node restarts 100 s later: both are still inside the window.
        let g = ReplayGuard::open(&path, 1_300).unwrap();
        for h in [&early, &late] {
            let e = verify(h, "GET", PATH, b"", 1_300, &g).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::UNAUTHORIZED, "replayed_signature")
            );
        }
        // Once the first has left the window it is dropped from the file
        // (and would be refused as expired anyway); the second is kept.
        let after = 1_000 + READ_SIGNATURE_WINDOW_SECS + 1;
        drop(g);
        let _g = ReplayGuard::open(&path, after).unwrap();
        let lines = std::fs::read_to_string(&path).unwrap();
        assert_eq!(lines.lines().count(), 1, "{lines}");
        // A fresh signature is accepted after the restart.
        let g = ReplayGuard::open(&path, 1_300).unwrap();
        let fresh = headers(&sign(&key, "GET", PATH, b"", 1_300));
        assert_eq!(
            verify(&fresh, "GET", PATH, b"", 1_300, &g).unwrap(),
            Some(key.address())
        );
    }

    #[test]
    fn a_torn_last_line_is_ignored_when_the_guard_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signed-requests.log");
        let key = SecretKey::from_seed([7; 32]);
        let h = headers(&sign(&key, "GET", PATH, b"", 1_000));
        {
            let g = ReplayGuard::open(&path, 1_000).unwrap();
            verify(&h, "GET", PATH, b"", 1_000, &g).unwrap();
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"abcd").unwrap();
        let g = ReplayGuard::open(&path, 1_000).unwrap();
        assert_eq!(
            verify(&h, "GET", PATH, b"", 1_000, &g).unwrap_err().code,
            "replayed_signature"
        );
    }

    #[test]
    fn callers_act_for_their_own_things_and_the_operator_for_all() {
        let a = SecretKey::from_seed([1; 32]).address();
        let b = SecretKey::from_seed([2; 32]).address();
        assert!(Caller::Account(a).acts_for(&a));
        assert!(!Caller::Account(b).acts_for(&a));
        assert!(Caller::Operator(b).acts_for(&a));
        assert!(!Caller::Anonymous.acts_for(&a));
        assert_eq!(Caller::Anonymous.address(), None);
    }

    /// The `(METHOD, path)` of every `.route("path", get(..).post(..))`
    /// in the API's source files.
    fn routes_in_source() -> std::collections::BTreeSet<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        let mut out = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            // Route modules only (tests and this file build example routers).
            if !name.ends_with(".rs") || name.ends_with("tests.rs") || name == "auth.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices(".route(") {
                let rest = &text[at + ".route(".len()..];
                let rest = rest.trim_start();
                let Some(rest) = rest.strip_prefix('"') else {
                    continue;
                };
                let route = &rest[..rest.find('"').unwrap()];
                // The arguments up to the matching parenthesis.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|(_, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .unwrap()
                    .0;
                let args = &rest[..end];
                for m in ["get", "post", "put", "delete", "patch"] {
                    let found = args.match_indices(&format!("{m}(")).any(|(i, _)| {
                        i == 0
                            || !args.as_bytes()[i - 1].is_ascii_alphanumeric()
                                && args.as_bytes()[i - 1] != b'_'
                    });
                    if found {
                        out.insert((m.to_ascii_uppercase(), route.to_string()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_route_of_the_router_has_a_policy_row_and_docs_security_names_it() {
        let policy: std::collections::BTreeSet<(String, String)> = POLICY
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(policy.len(), POLICY.len(), "a route is listed twice");
        let routes = routes_in_source();
        assert!(
            routes.len() > 30,
            "the route scan found too few: {routes:?}"
        );
        let unlisted: Vec<_> = routes.difference(&policy).collect();
        assert!(
            unlisted.is_empty(),
            "routes without a row in POLICY (api/auth.rs) and docs/security.md: {unlisted:?}"
        );
        let stale: Vec<_> = policy.difference(&routes).collect();
        assert!(
            stale.is_empty(),
            "POLICY rows of routes that no longer exist: {stale:?}"
        );

        // docs/security.md: one table row `| METHOD | `path` | access | …`
        // per route, with the access word of POLICY.
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/security.md"),
        )
        .unwrap();
        let mut documented = std::collections::BTreeMap::new();
        for line in doc.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 5 || !cells[2].starts_with("`/") {
                continue;
            }
            let key = (
                cells[1].trim_matches('`').to_string(),
                cells[2].trim_matches('`').to_string(),
            );
            assert!(
                documented
                    .insert(key.clone(), cells[3].to_string())
                    .is_none(),
                "docs/security.md lists {key:?} twice"
            );
        }
        for (m, p, access) in POLICY {
            let key = (m.to_string(), p.to_string());
            match documented.get(&key) {
                None => panic!("docs/security.md has no row for {m} {p}"),
                Some(word) => assert_eq!(
                    word,
                    access.word(),
                    "docs/security.md says {m} {p} is {word:?}, POLICY says {:?}",
                    access.word()
                ),
            }
        }
        let extra: Vec<_> = documented.keys().filter(|k| !policy.contains(*k)).collect();
        assert!(
            extra.is_empty(),
            "docs/security.md documents routes that do not exist: {extra:?}"
        );
    }

    #[tokio::test]
    async fn a_route_without_a_policy_row_is_refused_and_a_bad_signature_never_reaches_a_handler() {
        use tower::ServiceExt;
        let auth = Arc::new(Auth {
            operator: SecretKey::from_seed([9; 32]).address(),
            replays: Arc::default(),
            max_request_bytes: 1024,
        });
        let app = axum::Router::new()
            .route("/v1/unlisted", axum::routing::get(|| async { "served" }))
            .route(
                "/v1/status",
                axum::routing::get(|c: Caller| async move { format!("{c:?}") }),
            )
            .layer(axum::middleware::from_fn_with_state(auth, authenticate));
        let call = |req: axum::http::Request<axum::body::Body>| {
            let app = app.clone();
            async move {
                let r = app.oneshot(req).await.unwrap();
                let status = r.status();
                let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
                (status, String::from_utf8_lossy(&body).to_string())
            }
        };
        let get = |uri: &str| {
            axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let (s, body) = call(get("/v1/unlisted")).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert!(body.contains("no access policy"), "{body}");
        assert_eq!(
            call(get("/v1/status")).await,
            (StatusCode::OK, "Anonymous".into())
        );

        let key = SecretKey::from_seed([7; 32]);
        let mut req = get("/v1/status");
        for (k, v) in sign(&key, "GET", "/v1/status", b"", now()) {
            req.headers_mut().insert(k, v.parse().unwrap());
        }
        let (s, body) = call(req).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body, format!("Account({:?})", key.address()));
        // Signed for another path: refused before the handler.
        let mut req = get("/v1/status");
        for (k, v) in sign(&key, "GET", "/v1/params", b"", now()) {
            req.headers_mut().insert(k, v.parse().unwrap());
        }
        let (s, body) = call(req).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("bad_signature"), "{body}");
    }
}
