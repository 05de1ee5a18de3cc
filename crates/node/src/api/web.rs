//! The web app at `/`: the node's fallback route serves the embedded
//! assets of `trib-web` (built from `web/`, see docs/web.md).
//!
//! Paths under `/v1` (or any `/vN`) that no route matched keep the API's
//! typed 404. Any other `GET` or `HEAD` gets the embedded file at that
//! path, or, when the path names no file (no `.` in its last segment), the app's
//! `index.html`, so a deep link such as `/explorer/block/7` loads the app
//! and the app picks the page. Hashed files under `/assets/` are cacheable
//! forever; `index.html` is revalidated on every load (`no-cache` with a
//! strong ETag, answered 304 when it still matches). HTML carries a strict
//! Content-Security-Policy with no remote origin (the app loads nothing
//! from anywhere but this node), `frame-ancestors 'none'`, a no-referrer
//! policy and `nosniff`; every asset carries `nosniff`.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The page's Content-Security-Policy: only this origin, no inline
/// script, no plugins, no framing, no form posts elsewhere.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The router's fallback: the web app for browser paths, the API's typed
/// 404 under `/v1` and for other methods.
pub(super) async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if is_api_path(path) || (method != Method::GET && method != Method::HEAD) {
        return ApiError::not_found("no such route: see docs/node.md for the API").into_response();
    }
    let asset = match trib_web::asset(path) {
        Some(a) => a,
        None if is_app_route(path) => trib_web::index(),
        None => {
            return ApiError::not_found(format!("no such file in the web app: {path}"))
                .into_response()
        }
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(asset.bytes));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if asset.is_immutable() {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.is_html() {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    tracing::debug!(target: "trib::web", path, asset = asset.path, not_modified = fresh, "web asset");
    resp
}

/// A path in the API's namespace: `/v1/…`, or any other version
/// (`/v2/…`), which the app never uses.
fn is_api_path(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    first.len() > 1 && first.starts_with('v') && first[1..].bytes().all(|b| b.is_ascii_digit())
}

/// A path the app routes itself: its last segment names no file.
fn is_app_route(path: &str) -> bool {
    !path.rsplit('/').next().unwrap_or("").contains('.')
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/v1/status", get(|| async { "ok" }))
            .fallback(fallback)
    }

    async fn call(method: Method, path: &str, etag: Option<&str>) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = etag {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn get_header<'a>(r: &'a Response, name: header::HeaderName) -> &'a str {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn the_root_and_deep_links_get_the_app_page_with_security_headers() {
        for path in ["/", "/wallet", "/explorer/block/7", "/validators", "/v"] {
            let r = call(Method::GET, path, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(
                get_header(&r, header::CONTENT_TYPE),
                "text/html; charset=utf-8"
            );
            assert_eq!(get_header(&r, header::CACHE_CONTROL), "no-cache");
            let csp = get_header(&r, header::CONTENT_SECURITY_POLICY);
            assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
            assert!(!csp.contains("http"), "no remote origin in {csp}");
            assert_eq!(get_header(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(get_header(&r, header::REFERRER_POLICY), "no-referrer");
            let body = to_bytes(r.into_body(), 1 << 20).await.unwrap();
            assert_eq!(&body[..], trib_web::index().bytes);
        }
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_and_revalidation_answers_304() {
        let js = trib_web::assets()
            .iter()
            .find(|a| a.path.ends_with(".js"))
            .expect("the app has a script");
        let r = call(Method::GET, &format!("/{}", js.path), None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            get_header(&r, header::CACHE_CONTROL),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(get_header(&r, header::ETAG), js.etag);
        assert_eq!(get_header(&r, header::CONTENT_SECURITY_POLICY), "");
        let r = call(Method::GET, "/", Some(trib_web::index().etag)).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get_header(&r, header::ETAG), trib_web::index().etag);
        let r = call(Method::GET, "/", Some("\"other\"")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn api_paths_missing_files_and_other_methods_keep_the_typed_404() {
        for (method, path) in [
            (Method::GET, "/v1/nope"),
            (Method::GET, "/v1"),
            (Method::GET, "/v2/nothing"),
            (Method::GET, "/assets/missing-abc.js"),
            (Method::POST, "/wallet"),
        ] {
            let r = call(method.clone(), path, None).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
            let body = to_bytes(r.into_body(), 1 << 20).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], "not_found", "{method} {path}");
        }
        assert_eq!(
            call(Method::GET, "/v1/status", None).await.status(),
            StatusCode::OK
        );
    }
}
