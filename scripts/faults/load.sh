#!/usr/bin/env bash
# Load test (issue 14): a dev `trib node` serving the demo's base model
# (SmolLM2-135M-Instruct Q4_1, scripts/fetch-model.sh) with ADAPTERS random
# rank-8 LoRA adapters registered on the ledger, driven from a separate
# process (`trib bench serve`, at nice 5; the node is not niced) by STREAMS
# concurrent streaming chat clients for DURATION seconds on loopback.
#
#   scripts/faults/load.sh           # the figure: 600 s, 200 streams, 64 adapters
#   scripts/faults/load.sh --short   # a quick check: 30 s, 20 streams, 4 adapters
#   DURATION=120 STREAMS=50 ADAPTERS=16 scripts/faults/load.sh
#
# Four payer accounts each hold one API key; clients use them in turn. Three
# approve the operator for a large allowance; the fourth for SMALL_ALLOWANCE
# OPEN, which the run spends, so its clients meet the allowance (402).
# The node runs with [serving] max_running = MAX_RUNNING and max_queued =
# MAX_QUEUED, so the streams beyond them are refused with 429.
#
# Checked at the end (exit 1 when one fails):
# - no request failed except with 429 (any key) or 402 (the small key);
# - every answer streamed to the end names its receipt (no settlement error);
# - once the mempool is empty, each account's allowance went down by exactly
#   the fees of its keys' receipts (never more: no answer charged twice or
#   beyond the allowance; never less: no served answer left unpaid).
# Printed: the bench report (TTFT and per-token latency p50/p99), the node's
# RSS sampled every 5 s (first sample after warm-up, peak, last), the load
# average during the run and the CPU model. Results stay in $WORK (printed).
set -euo pipefail

DURATION=${DURATION:-600}
STREAMS=${STREAMS:-200}
ADAPTERS=${ADAPTERS:-64}
if [ "${1:-}" = "--short" ]; then
  DURATION=${SHORT_DURATION:-30}
  STREAMS=20
  ADAPTERS=4
fi
MAX_RUNNING=${MAX_RUNNING:-64}
MAX_QUEUED=${MAX_QUEUED:-64}
MAX_TOKENS=${MAX_TOKENS:-32}
SMALL_ALLOWANCE=${SMALL_ALLOWANCE:-0.02}

cd "$(dirname "$0")/../.."
ROOT=$PWD
MODEL=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$MODEL" ] || { echo "no $MODEL: run scripts/fetch-model.sh first" >&2; exit 1; }
# TRIB=/path/to/trib skips the build.
if [ -z "${TRIB:-}" ]; then
  cargo build -q -p trib-cli
  TRIB=$ROOT/target/debug/trib
fi
WORK=$(mktemp -d -t trib-load-XXXXXX)
H=$WORK/home
export TRIB_LOG=warn
trap 'kill ${SAMPLER_PID:-} 2>/dev/null || true; kill -9 ${NODE_PID:-} 2>/dev/null || true' EXIT

"$TRIB" --home "$H" init --dev >/dev/null
mkdir -p "$H/models"
cp "$MODEL" "$H/models/"
# base_model at the top (outside any table), then the serving limits.
sed -i "1i base_model = \"$H/models/$(basename "$MODEL")\"" "$H/config.toml"
if grep -q '^\[serving\]' "$H/config.toml"; then
  sed -i "/^\[serving\]/a max_running = $MAX_RUNNING\nmax_queued = $MAX_QUEUED" "$H/config.toml"
else
  printf '\n[serving]\nmax_running = %s\nmax_queued = %s\n' "$MAX_RUNNING" "$MAX_QUEUED" >>"$H/config.toml"
fi

TRIB_LOG=info "$TRIB" --home "$H" node --listen 127.0.0.1:0 --block-interval-ms 500 \
  >"$WORK/node.out" 2>"$WORK/node.log" &
NODE_PID=$!
for _ in $(seq 1 600); do
  grep -q '^listening on ' "$WORK/node.out" && break
  kill -0 "$NODE_PID" 2>/dev/null || { echo "node exited; see $WORK/node.log" >&2; exit 1; }
  sleep 0.1
done
URL=$(sed -n 's/^listening on //p' "$WORK/node.out")
[ -n "$URL" ] || { echo "node did not start; see $WORK/node.log" >&2; exit 1; }
N=(--node "$URL")
t() { "$TRIB" --home "$H" "$@"; }

t models register smollm2 --model "$(basename "$MODEL")" --key producer "${N[@]}" >/dev/null
t bench adapters --count "$ADAPTERS" --key producer "${N[@]}" >"$WORK/adapters"
KEYS=()
for p in 1 2 3 4; do
  t keys new "payer$p" >/dev/null
  t tx transfer --from producer --to "payer$p" 20000 --wait "${N[@]}" >/dev/null
  allowance=10000
  [ "$p" = 4 ] && allowance=$SMALL_ALLOWANCE
  KEYS+=("$(t apikey new --key "payer$p" --allowance "$allowance" "${N[@]}" 2>>"$WORK/setup.log" | tr -d '[:space:]')")
  t apikey list --key "payer$p" --json "${N[@]}" >"$WORK/allowance-before-$p.json"
done

# Node RSS and the load average every 5 s.
(
  start=$(date +%s)
  while kill -0 "$NODE_PID" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$NODE_PID/status" 2>/dev/null || true)
    echo "$(($(date +%s) - start)) ${rss:-0} $(cut -d' ' -f1 /proc/loadavg)" >>"$WORK/samples"
    sleep 5
  done
) &
SAMPLER_PID=$!

echo "load: $STREAMS streams over $ADAPTERS adapters for $DURATION s against $URL (work dir $WORK)"
set +e
nice -n 5 "$TRIB" --json bench serve --api-key "$(IFS=,; echo "${KEYS[*]}")" \
  --concurrency "$STREAMS" --duration-s "$DURATION" --max-tokens "$MAX_TOKENS" \
  --timeout-s 900 "${N[@]}" >"$WORK/bench.json"
bench_rc=$?
set -e
kill "$SAMPLER_PID" 2>/dev/null || true
[ "$bench_rc" = 0 ] || { echo "trib bench serve failed ($bench_rc)" >&2; cat "$WORK/bench.json" >&2; exit 1; }

# Settlements still in the mempool count once committed.
for _ in $(seq 1 600); do
  t query status --json "${N[@]}" | grep -q '"mempool_size": 0' && break
  sleep 0.5
done
for p in 1 2 3 4; do
  t apikey list --key "payer$p" --json "${N[@]}" >"$WORK/allowance-after-$p.json"
done
grep -E '^VmHWM' "/proc/$NODE_PID/status" | awk '{print $2}' >"$WORK/vmhwm" || true

python3 - "$WORK" "$MAX_RUNNING" "$MAX_QUEUED" <<'PY'
import json, sys, os
work, max_running, max_queued = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(f"{work}/bench.json"))
ok = True
print(f"requests {r['requests']}: {r['ok']} ok, failed by status {r['failed_by']} "
      f"(limits: max_running {max_running}, max_queued {max_queued})")
print(f"output {r['completion_tokens']} tokens in {r['wall_s']:.0f} s = {r['output_tok_per_s']:.1f} tok/s")
print(f"TTFT p50 {r['ttft_ms_p50']:.0f} ms p99 {r['ttft_ms_p99']:.0f} ms; "
      f"per-token p50 {r['tpot_ms_p50']:.1f} ms p99 {r['tpot_ms_p99']:.1f} ms; "
      f"end-to-end p50 {r['e2e_ms_p50']:.0f} ms p99 {r['e2e_ms_p99']:.0f} ms")
for i, k in enumerate(r["keys"], start=1):
    allowed = {"429", "402"} if i == 4 else {"429"}
    bad = {s: n for s, n in k["failed_by"].items() if s not in allowed}
    before = int(json.load(open(f"{work}/allowance-before-{i}.json"))["allowance"] or 0)
    after = int(json.load(open(f"{work}/allowance-after-{i}.json"))["allowance"] or 0)
    spent, fees = before - after, int(k["fees"])
    line = (f"payer{i}: {k['ok']} answers, {k['settled']} settled, fees {fees}, "
            f"allowance {before} -> {after} (spent {spent}), failed {k['failed_by']}")
    print(line)
    if bad:
        print(f"  FAIL: failures other than {sorted(allowed)}: {bad}"); ok = False
    if k["settlement_errors"] or k["settled"] != k["ok"]:
        print(f"  FAIL: {k['ok'] - k['settled']} answers unsettled, "
              f"{k['settlement_errors']} settlement errors"); ok = False
    if spent != fees:
        print(f"  FAIL: allowance spent {spent} != fees of the receipts {fees}"); ok = False
samples = [l.split() for l in open(f"{work}/samples")]
rss = [(int(s), int(kb)) for s, kb, _ in samples if int(kb) > 0]
load = [float(l) for _, _, l in samples]
if rss:
    warm = [x for x in rss if x[0] >= min(60, rss[-1][0] // 10)] or rss
    peak = max(kb for _, kb in rss)
    print(f"node RSS: {warm[0][1] // 1024} MiB at {warm[0][0]} s, peak {peak // 1024} MiB, "
          f"last {rss[-1][1] // 1024} MiB at {rss[-1][0]} s ({len(rss)} samples)")
hwm = open(f"{work}/vmhwm").read().strip()
if hwm:
    print(f"node VmHWM (peak RSS since start, setup included): {int(hwm) // 1024} MiB")
if load:
    print(f"load average (1 min) during the run: mean {sum(load) / len(load):.1f}, max {max(load):.1f}; "
          f"bench: before {r['load_avg_before']}, after {r['load_avg_after']}")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {cpu}, {os.cpu_count()} CPUs")
print("load test " + ("passed" if ok else "FAILED"))
sys.exit(0 if ok else 1)
PY
