#!/usr/bin/env bash
# The README's main job: fetch (and verify) the demo base model, build the
# `trib` binary in release mode and run the end-to-end demo (a fresh node in a
# temporary home unless --home DIR is given; extra arguments go to `trib demo`).
# --keep-running leaves the demo node up afterwards, serving the web app at the
# URL it prints, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-model.sh >/dev/null
cargo build --release -p trib-cli
exec target/release/trib demo --keep-running "$@"
