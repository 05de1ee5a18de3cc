#!/usr/bin/env bash
# The README's main job: build the `trib` binary in release mode and run the
# end-to-end demo (a fresh node in a temporary home unless --home DIR is
# given; extra arguments are passed to `trib demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p trib-cli
exec target/release/trib demo "$@"
