//! The Tributary web app, embedded: the files Vite builds into `web/dist`
//! (committed to the repository, so building the binary needs no Node.js),
//! compiled into the binary by `build.rs`.
//!
//! This crate owns the assets alone: a path gives an [`Asset`] (bytes,
//! content type, strong ETag). It knows nothing of HTTP; the node's
//! `api/web.rs` serves them at `/` with caching and security headers and
//! the single-page-app fallback. The app itself, its build and its tests
//! are described in `docs/web.md`.

/// One embedded file of the built app.
#[derive(Debug)]
pub struct Asset {
    /// Path under `web/dist`, `/`-separated, no leading slash
    /// (`index.html`, `assets/index-ivzI8aIp.js`).
    pub path: &'static str,
    /// The file's bytes.
    pub bytes: &'static [u8],
    /// Its media type (`text/html; charset=utf-8`, …).
    pub content_type: &'static str,
    /// A strong ETag: the quoted first 128 bits of the bytes' blake3, hex.
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

impl Asset {
    /// Whether the file name carries a content hash (Vite's `assets/`
    /// folder), so a client may cache it forever.
    pub fn is_immutable(&self) -> bool {
        self.path.starts_with("assets/")
    }

    /// Whether this is an HTML document (it gets the page security headers).
    pub fn is_html(&self) -> bool {
        self.content_type.starts_with("text/html")
    }
}

/// The asset at `path` (a leading `/` is ignored; `""` is `index.html`).
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = path.trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS
        .binary_search_by(|a| a.path.cmp(path))
        .ok()
        .map(|i| &ASSETS[i])
}

/// The app's page, which every in-app route loads.
pub fn index() -> &'static Asset {
    asset("index.html").expect("build.rs refuses a dist without index.html")
}

/// Every embedded asset, sorted by path.
pub fn assets() -> &'static [Asset] {
    ASSETS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_embedded_and_names_only_embedded_local_assets() {
        let index = index();
        assert!(index.is_html());
        assert!(!index.is_immutable());
        assert_eq!(asset("/").map(|a| a.path), Some("index.html"));
        let html = std::str::from_utf8(index.bytes).unwrap();
        // Every script and stylesheet the page loads is one of ours, by
        // absolute local path: no CDN, no remote origin.
        let mut referenced = 0;
        for attr in ["src=\"", "href=\""] {
            for part in html.split(attr).skip(1) {
                let target = part.split('"').next().unwrap();
                if target.starts_with("data:") {
                    continue;
                }
                assert!(target.starts_with('/'), "{target} is not a local path");
                let a = asset(target).unwrap_or_else(|| panic!("{target} is not embedded"));
                assert!(a.is_immutable());
                referenced += 1;
            }
        }
        assert!(referenced >= 2, "the page loads its script and stylesheet");
    }

    #[test]
    fn assets_are_sorted_typed_and_tagged_by_content() {
        let all = assets();
        assert!(all.windows(2).all(|w| w[0].path < w[1].path));
        for a in all {
            assert_eq!(a.etag.len(), 34, "{}", a.path);
            if a.path.ends_with(".js") {
                assert_eq!(a.content_type, "text/javascript; charset=utf-8");
            }
            if a.path.ends_with(".css") {
                assert_eq!(a.content_type, "text/css; charset=utf-8");
            }
        }
        let etags: std::collections::HashSet<_> = all.iter().map(|a| a.etag).collect();
        assert_eq!(etags.len(), all.len(), "distinct files get distinct ETags");
        assert!(asset("assets/none.js").is_none());
    }
}
