#!/usr/bin/env python3
"""Serving peers for OpenLoRA (issue 5), interleaved in one run with ours.

For each round: `serve-bench` (ours, mixed batches only: --no-naive), then
`serve_peft.py` (PyTorch + PEFT mixed-adapter batches), then
`serve_llamacpp.py` (llama.cpp, adapter switched per request), each in a fresh
process, all at the same thread count, concurrency, new tokens and numbers of
distinct adapters (default 1, 8, 64), on the same random r8 q/v adapters
(serve-bench writes them with --adapter-dir; the peers read them) and the same
request plan (peercommon.request_plan). Prints every sample, then the median
output tokens/s per engine and D, and ours ÷ each peer.

    scripts/bench/setup-peers.sh     # once
    python3 scripts/bench/serve_peers.py [--threads 2] [--rounds 2] [--adapters 1,8,64] [--no-build]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peercommon as pc  # noqa: E402

OURS = os.path.join(pc.ROOT, "target", "release", "serve-bench")
ROW = re.compile(r"^\| OpenLoRA mixed batch \| (\d+) \| (\d+) \| ([\d.]+) \|")
RSS = re.compile(r"^peak RSS (\d+) MiB")


def ours(a):
    cmd = [OURS, "--threads", str(a.threads), "--concurrency", str(a.concurrency), "--new-tokens",
           str(a.new_tokens), "--adapters", a.adapters, "--no-naive", "--adapter-dir", a.adapters_dir]
    load0 = pc.load_average()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"serve-bench failed:\n{out.stderr[-3000:]}")
    load = (load0 + pc.load_average()) / 2
    rss = next((float(m.group(1)) for m in map(RSS.match, out.stdout.splitlines()) if m), float("nan"))
    rows = []
    for m in map(ROW.match, out.stdout.splitlines()):
        if m:
            rows.append({"peer": "trib OpenLoRA (serve-bench), mixed batch", "adapters": int(m.group(1)),
                         "requests": int(m.group(2)), "tok_s": float(m.group(3)), "cpu_s": float("nan"),
                         "tokens": float("nan"), "load": load, "peak_rss_mib": rss})
    if not rows:
        sys.exit(f"could not read serve-bench's table:\n{out.stdout}")
    return rows


def peer(script, a):
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), script),
           "--adapters-dir", a.adapters_dir, "--threads", str(a.threads), "--concurrency", str(a.concurrency),
           "--new-tokens", str(a.new_tokens), "--adapters", a.adapters, "--json"]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{script} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return [json.loads(line[len("RESULT "):]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--adapters", default="1,8,64")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--adapters-dir", default=os.path.join(pc.ROOT, "target", "serve-bench-adapters"))
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    pc.use_peer_venv()
    pc.require_model()
    if not a.no_build:
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "trib-serve", "--bin", "serve-bench"],
                              cwd=pc.ROOT)
    global OURS
    OURS = pc.snapshot_binary(OURS)
    commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", "crates/serve", "crates/model"],
                            cwd=pc.ROOT, capture_output=True, text=True).stdout.strip()
    print(f"# serving peers, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {a.threads} thread(s), "
          f"concurrency {a.concurrency}, {a.new_tokens} new tokens, greedy, adapters {a.adapters}, "
          f"{a.rounds} rounds; ours at {commit} (plus any uncommitted edits), binary {os.path.relpath(OURS, pc.ROOT)}")
    print("| round | engine | distinct adapters | requests | output tok/s | CPU ms per output token | "
          "peak RSS | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|")
    samples = {}
    for r in range(a.rounds):
        for run in (ours, lambda a: peer("serve_peft.py", a), lambda a: peer("serve_llamacpp.py", a)):
            for s in run(a):
                samples.setdefault((s["peer"], s["adapters"]), []).append(s)
                cpu = s["cpu_s"] / s["tokens"] * 1e3 if s["cpu_s"] == s["cpu_s"] else float("nan")
                print(f"| {r + 1} | {s['peer']} | {s['adapters']} | {s['requests']} | {s['tok_s']:.1f} | "
                      f"{'—' if cpu != cpu else f'{cpu:.1f}'} | {s['peak_rss_mib']:.0f} MiB | {s['load']:.1f} |",
                      flush=True)
    print()
    engines = list(dict.fromkeys(e for e, _ in samples))
    counts = sorted({d for _, d in samples})
    ours_name = engines[0]
    print("| engine | " + " | ".join(f"{d} adapter{'s' if d > 1 else ''}: tok/s" for d in counts)
          + " | " + " | ".join(f"ours ÷ engine at {d}" for d in counts) + " |")
    print("|---|" + "---|" * (2 * len(counts)))
    med = {k: pc.median([s["tok_s"] for s in v]) for k, v in samples.items()}
    for e in engines:
        cells = [f"{med.get((e, d), float('nan')):.1f}" for d in counts]
        ratios = [f"{med[(ours_name, d)] / med[(e, d)]:.2f}×" if (e, d) in med and e != ours_name else ""
                  for d in counts]
        print(f"| {e} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
