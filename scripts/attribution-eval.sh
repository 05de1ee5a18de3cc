#!/usr/bin/env bash
# Reproduces every quality table of docs/attribution.md §5 in one command:
#   1. LDS (logistic regression, MLP) and mislabel AUROC on scikit-learn's
#      digits: `attr-eval` (about 4 minutes on 2 shared cores) -> attr-eval.md;
#   2. the same with the stronger L2 penalty quoted in §5 (`--reg 0.01`)
#      -> attr-eval-reg0.01.md;
#   3. planted recall on a real LoRA adapter trained on SmolLM2-135M:
#      the `planted_recall` example (about 12 minutes of CPU, 20 minutes of
#      wall time on 2 loaded shared cores) -> planted_recall.md and
#      planted_recall.json (every answer, every method's rank).
# Outputs go to target/attribution/ (git-ignored).
#
# Usage: scripts/attribution-eval.sh [--quick]
#   --quick: attr-eval's 10-second smoke run and a 4-island, 1-epoch planted
#   run (checks the pipeline; the numbers are not the published ones), written
#   under target/attribution/quick/ instead.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [[ "${1:-}" == "--quick" ]]; then quick=1; fi
out=target/attribution
# A smoke run must not overwrite the published run's outputs.
if [[ $quick == 1 ]]; then out=target/attribution/quick; fi
mkdir -p "$out"

scripts/attribution/attr_fetch_digits.sh
[[ -s models/SmolLM2-135M-Instruct.Q4_1.gguf ]] || scripts/fetch-model.sh

cargo build --release -p trib-attribution --bin attr-eval --example planted_recall

if [[ $quick == 1 ]]; then
  target/release/attr-eval --quick | tee "$out/attr-eval.md"
  target/release/examples/planted_recall --out "$out" \
    --contributors 4 --filler 2 --epochs 1 | tee "$out/planted_recall.md"
else
  target/release/attr-eval | tee "$out/attr-eval.md"
  target/release/attr-eval --reg 0.01 | tee "$out/attr-eval-reg0.01.md"
  target/release/examples/planted_recall --out "$out" | tee "$out/planted_recall.md"
fi
echo "tables: $out/attr-eval*.md $out/planted_recall.md; details: $out/planted_recall.json"
