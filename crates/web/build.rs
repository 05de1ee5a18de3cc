//! Embeds the built web app: every file under `web/dist` (committed, so a
//! `cargo build` needs no Node.js) becomes a static `Asset` with its bytes
//! (`include_bytes!`), content type and a strong ETag (blake3 of the bytes),
//! written in path order to `$OUT_DIR/assets.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let dist = manifest.join("../../web/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let dist = dist.canonicalize().unwrap_or_else(|e| {
        panic!(
            "web/dist is missing ({e}): it is committed; rebuild it with `npm ci && npm run build` in web/"
        )
    });
    let mut files = Vec::new();
    walk(&dist, &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f == &dist.join("index.html")),
        "web/dist has no index.html: rebuild it with `npm ci && npm run build` in web/"
    );
    let mut out = String::from(
        "/// Every file of the built app, sorted by path.\nstatic ASSETS: &[Asset] = &[\n",
    );
    for f in &files {
        let rel = f
            .strip_prefix(&dist)
            .expect("under dist")
            .to_str()
            .expect("asset paths are UTF-8")
            .replace('\\', "/");
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        let etag = format!("\"{}\"", &blake3::hash(&bytes).to_hex()[..32]);
        writeln!(
            out,
            "    Asset {{ path: {rel:?}, bytes: include_bytes!({:?}), content_type: {:?}, etag: {etag:?} }},",
            f.display().to_string(),
            content_type(&rel),
        )
        .expect("writing to a String");
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("assets.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}
