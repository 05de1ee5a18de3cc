#!/usr/bin/env bash
# Crash test (issue 2): run `trib node`, submit transfers continuously with
# `trib tx`, kill the node with SIGKILL at random moments, restart it, and
# check that every transaction the node had reported committed is still
# committed in the same block; finally `trib ledger verify` must pass.
#
#   scripts/crash-test.sh            # 10 kills
#   ROUNDS=30 scripts/crash-test.sh  # more
#
# The same test runs, shorter, in `cargo test -p trib-cli` (tests/it/crash.rs).
set -euo pipefail

ROUNDS=${ROUNDS:-10}
cd "$(dirname "$0")/.."
# TRIB=/path/to/trib skips the build.
if [ -z "${TRIB:-}" ]; then
  cargo build -q -p trib-cli
  TRIB=$PWD/target/debug/trib
fi
WORK=$(mktemp -d -t trib-crash-XXXXXX)
H=$WORK/home
export TRIB_LOG=warn
trap 'kill -9 ${NODE_PID:-} ${SUB_PID:-} 2>/dev/null || true' EXIT

"$TRIB" --home "$H" init --dev >/dev/null
"$TRIB" --home "$H" keys new sink >/dev/null
SINK=$("$TRIB" --home "$H" keys show sink --json | sed -n 's/.*"address": "\(trib[0-9a-f]*\)".*/\1/p')

start_node() {
  : >"$WORK/node.out"
  TRIB_LOG=info "$TRIB" --home "$H" node --listen 127.0.0.1:0 --block-interval-ms 200 \
    >"$WORK/node.out" 2>>"$WORK/node.log" &
  NODE_PID=$!
  for _ in $(seq 1 600); do
    if grep -q '^listening on ' "$WORK/node.out"; then
      sed -n 's/^listening on //p' "$WORK/node.out" >"$WORK/url"
      return 0
    fi
    sleep 0.1
  done
  echo "node did not start; see $WORK/node.log" >&2
  exit 1
}

# Submits transfers back to back; prints each accepted transaction's hash.
submitter() {
  while true; do
    "$TRIB" --home "$H" --node "$(cat "$WORK/url")" tx transfer --from producer --to "$SINK" 0.001 \
      >>"$WORK/accepted" 2>/dev/null || sleep 0.05
  done
}

# Transaction hashes of block $1 (one per line), as the node reports them.
block_txs() {
  "$TRIB" --node "$(cat "$WORK/url")" query block "$1" --json | grep -E '^    "[0-9a-f]{64}",?$' | tr -d ' ",' || true
}

# Records the transactions of every block committed since the last call:
# $WORK/blocks/<height> lists the hashes the node reported in that block.
NEXT_HEIGHT=1
collect_committed() {
  local head
  head=$("$TRIB" --node "$(cat "$WORK/url")" query status --json | sed -n 's/^  "height": \([0-9]*\),*/\1/p')
  while [ "$NEXT_HEIGHT" -le "$head" ]; do
    block_txs "$NEXT_HEIGHT" >"$WORK/blocks/$NEXT_HEIGHT"
    NEXT_HEIGHT=$((NEXT_HEIGHT + 1))
  done
}

committed_count() {
  cat "$WORK"/blocks/* 2>/dev/null | wc -l
}

mkdir -p "$WORK/blocks"
touch "$WORK/accepted"
start_node
submitter &
SUB_PID=$!

for round in $(seq 1 "$ROUNDS"); do
  sleep "0.$(( (RANDOM % 9) + 1 ))$(( RANDOM % 10 ))"
  collect_committed
  sleep "0.$(( RANDOM % 5 ))"
  kill -9 "$NODE_PID"
  wait "$NODE_PID" 2>/dev/null || true
  start_node
  lost=0
  for f in "$WORK"/blocks/*; do
    h=$(basename "$f")
    if ! block_txs "$h" | cmp -s - "$f"; then
      echo "block $h changed or vanished after SIGKILL" >&2
      lost=1
    fi
  done
  # And by hash, as a user would ask: the last committed transaction.
  last=$(cat "$WORK/blocks/$((NEXT_HEIGHT - 1))" 2>/dev/null | tail -n 1)
  if [ -n "$last" ] && ! grep -q '"status": "committed"' <<<"$("$TRIB" --node "$(cat "$WORK/url")" query tx "$last" --json)"; then
    echo "transaction $last lost after SIGKILL" >&2
    lost=1
  fi
  [ "$lost" = 0 ] || { echo "round $round: committed transactions lost after SIGKILL" >&2; exit 1; }
  echo "round $round: SIGKILL + restart, $(committed_count) committed transactions (blocks 1..$((NEXT_HEIGHT - 1))) all present"
done

kill -9 "$SUB_PID" 2>/dev/null || true
wait "$SUB_PID" 2>/dev/null || true
collect_committed
kill -9 "$NODE_PID"
wait "$NODE_PID" 2>/dev/null || true
"$TRIB" --home "$H" ledger verify
echo "crash test passed: $ROUNDS SIGKILLs, $(committed_count) committed transactions, ledger verified"
rm -rf "$WORK"
