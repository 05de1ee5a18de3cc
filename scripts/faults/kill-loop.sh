#!/usr/bin/env bash
# Kill loop (issue 14): SIGKILL `trib node` KILLS times at random moments
# while another process drives transfers, datanet contributions, a training
# job and paid inference (base model and a registered adapter) at it; after
# each kill `trib ledger verify` must pass and, after each restart, nothing
# the node acknowledged may be lost and the adapter must be served again.
# The driver is the CLI end-to-end test crates/cli/tests/it/kill_loop.rs
# (5 kills in `cargo test`); this script runs it longer and prints its counts.
#
#   scripts/faults/kill-loop.sh        # 100 kills (the figure)
#   KILLS=10 scripts/faults/kill-loop.sh
set -euo pipefail

KILLS=${KILLS:-100}
cd "$(dirname "$0")/../.."
REPORT=$(mktemp -t trib-kill-loop-XXXXXX.json)
echo "kill loop: $KILLS SIGKILLs; load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
TRIB_KILL_LOOP_KILLS=$KILLS TRIB_KILL_LOOP_REPORT=$REPORT \
  cargo test -q -p trib-cli --test it kill_loop -- --nocapture --test-threads 1
echo "counts ($REPORT):"
cat "$REPORT"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
