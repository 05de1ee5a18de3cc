#!/usr/bin/env python3
"""Peer for crates/datanet/examples/ingest_bench.rs: datasketch MinHash + LSH.

Reads rows (one JSON string per line), then for each row: 3-word shingles of
lower-cased alphanumeric words (the same rule as trib-datanet), a 128-
permutation MinHash via update_batch (datasketch's fast path), a query of a
MinHashLSH with 32 bands x 4 rows, a Jaccard estimate check at 0.7 against the
candidates (the best match, as trib-datanet reports the most similar row),
then insertion. Prints JSON: rows, seconds (wall), cpu_seconds,
near_duplicates.
Only the loop is timed (not interpreter start-up or file reading).

    pip install datasketch
    python3 scripts/bench/datasketch_minhash.py rows.jsonl
"""
import json
import platform
import re
import sys
import time

import datasketch
from datasketch import MinHash, MinHashLSH

NUM_PERM = 128
K = 3
THRESHOLD = 0.7
WORD = re.compile(r"[^\W_]+")


def shingles(text):
    words = WORD.findall(text.lower())
    if not words:
        return []
    if len(words) < K:
        return [" ".join(words).encode()]
    return [" ".join(words[i:i + K]).encode() for i in range(len(words) - K + 1)]


def main():
    rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
    lsh = MinHashLSH(num_perm=NUM_PERM, params=(32, 4))
    sigs = {}
    near = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    for i, text in enumerate(rows):
        sh = shingles(text)
        if not sh:
            continue
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch(sh)
        best = max((m.jaccard(sigs[key]) for key in lsh.query(m)), default=0.0)
        if best >= THRESHOLD:
            near += 1
        lsh.insert(i, m, check_duplication=False)
        sigs[i] = m
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    print(json.dumps({
        "rows": len(rows),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "near_duplicates": near,
        "datasketch": getattr(datasketch, "__version__", "?"),
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
