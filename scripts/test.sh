#!/usr/bin/env bash
# The README's test command (and exactly what .ci/run runs): the Rust
# workspace's tests, then the web app's checks (docs/web.md, "Tests"):
#   1. npm ci from web/package-lock.json;
#   2. Vitest unit tests, including the browser encoders against the
#      vectors the Rust tests write (web/tests/vectors/);
#   3. the committed web/dist must equal a fresh build byte for byte;
#   4. the browser tests: Debian's Chromium (playwright-core) against a real
#      `trib node` on a free port in a temp home, saving docs/screenshots/.
# Needs: the Rust toolchain, Node.js >= 20.19 with npm, /usr/bin/chromium
# (or $CHROMIUM), and the demo model in models/ for the real-model tests.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cargo test --workspace
# The binary the browser tests start (debug; cargo test built its crates).
cargo build -p trib-cli
target_dir=${CARGO_TARGET_DIR:-$root/target}
export TRIB_BIN=${TRIB_BIN:-$target_dir/debug/trib}

cd web
npm ci --no-audit --no-fund
npx vitest run
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npx vite build --logLevel warn --outDir "$tmp/dist" --emptyOutDir
if ! diff -r dist "$tmp/dist"; then
  echo "web/dist differs from a fresh build of web/: run 'npm ci && npm run build' in web/ and commit web/dist" >&2
  exit 1
fi
npx vitest run --config vitest.e2e.config.ts
