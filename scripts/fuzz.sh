#!/usr/bin/env bash
# Builds every cargo-fuzz target (fuzz/) on the stable toolchain and runs
# each in turn for SECONDS (default 60), one libFuzzer process at a time at
# the lowest CPU priority, then minimises its corpus and prints one table
# row per target: seconds run, executions, executions per second, coverage
# (libFuzzer's `cov` edges and `ft` features), corpus size, and the verdict.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Environment:
#   FUZZ_TARGETS="a b"  run only these targets (default: every target)
#   FUZZ_CMIN=0         skip the corpus minimisation after each run
#   FUZZ_RSS_MB=N       libFuzzer's memory limit (default 2048): a larger
#                       allocation or resident size is reported as a crash
#
# Needs `cargo install cargo-fuzz --locked`. Builds go to fuzz/target (not
# the workspace's target dir: sanitizer builds share nothing with it). A
# target whose corpus dir is missing is seeded first: from the repository's
# fixtures here, or by the target itself (TRIB_FUZZ_WRITE_SEEDS, see the
# target's doc); a corpus holding only `crash-*` files (fixed crashes kept
# as inputs) is seeded too. Crash inputs land in fuzz/artifacts/TARGET/; the logs of
# the last run in fuzz/target/logs/. docs/reliability.md, "Fuzzing", has
# the figures and what each target checks.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
cmin=${FUZZ_CMIN:-1}
rss=${FUZZ_RSS_MB:-2048}
export RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0
triple=x86_64-unknown-linux-gnu
bin_dir=fuzz/target/$triple/release
logs=fuzz/target/logs
fixtures=crates/datanet/tests/fixtures

command -v cargo-fuzz >/dev/null ||
    { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 2; }

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
nice -n 19 cargo fuzz build
mkdir -p "$logs"

# One seed file: a selector byte (printf escape) followed by a file's bytes.
seed_with() {
    local out=$1 selector=$2 src=$3
    { printf "$selector"; cat "$src"; } >"$out"
}

seed() {
    local t=$1 dir=fuzz/corpus/$1
    mkdir -p "$dir"
    case $t in
    datanet_parse)
        # bits 0-2 the kind: txt md jsonl csv pdf docx; bit 7: from the extension.
        seed_with "$dir/seed-txt" '\x00' "$fixtures/constitution.txt"
        seed_with "$dir/seed-md" '\x01' "$fixtures/declaration.md"
        seed_with "$dir/seed-jsonl" '\x02' "$fixtures/instructions.jsonl"
        seed_with "$dir/seed-jsonl-chat" '\x02' crates/model/tests/fixtures/factory/chat.messages.jsonl
        seed_with "$dir/seed-csv" '\x03' "$fixtures/icd10.csv"
        seed_with "$dir/seed-pdf" '\x04' "$fixtures/sample.pdf"
        seed_with "$dir/seed-docx" '\x05' "$fixtures/sample.docx"
        seed_with "$dir/seed-docx-by-name" '\x85' "$fixtures/sample.docx"
        ;;
    datanet_chunk)
        # (max row size - 16, min row size, text)
        { printf '\xf0\x40'; head -c 4096 "$fixtures/constitution.txt"; } >"$dir/seed-txt"
        { printf '\x30\x10'; head -c 4096 "$fixtures/declaration.md"; } >"$dir/seed-md"
        ;;
    job_config)
        cp examples/jobs/*.toml "$dir/"
        ;;
    *)
        TRIB_FUZZ_WRITE_SEEDS=$dir "$bin_dir/$t"
        ;;
    esac
}

# "name value" from libFuzzer's final stats.
stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -n1; }

rows=()
for t in $targets; do
    # Seeded when the corpus holds nothing but committed crash regressions
    # (`crash-*`, kept as inputs once fixed).
    [ -n "$(find "fuzz/corpus/$t" -type f ! -name 'crash-*' 2>/dev/null | head -n1)" ] || seed "$t"
    log=$logs/$t.log
    start=$(date +%s)
    verdict=ok
    nice -n 19 cargo fuzz run "$t" -- -max_total_time="$secs" -print_final_stats=1 \
        -rss_limit_mb="$rss" -malloc_limit_mb="$rss" -timeout=10 >"$log" 2>&1 || verdict="CRASH (see $log)"
    ran=$(($(date +%s) - start))
    execs=$(stat "$log" number_of_executed_units)
    rate=$(stat "$log" average_exec_per_sec)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)
    if [ "$cmin" = 1 ] && [ "$verdict" = ok ]; then
        nice -n 19 cargo fuzz cmin "$t" >"$logs/$t.cmin.log" 2>&1 || verdict="cmin failed (see $logs/$t.cmin.log)"
    fi
    files=$(find "fuzz/corpus/$t" -type f | wc -l)
    kb=$(($(find "fuzz/corpus/$t" -type f -exec cat {} + | wc -c) / 1024))
    rows+=("| \`$t\` | $ran | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | $files ($kb KB) | $verdict |")
    echo "${rows[-1]}" >&2
done

echo "| target | seconds | executions | exec/s | cov | ft | corpus (files, size) | result |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
