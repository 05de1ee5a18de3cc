"""Shared by the peer benchmarks in scripts/bench/ and scripts/peft_logits_check.py.

- `use_peer_venv()` re-executes the calling script inside the one peer
  environment that `scripts/bench/setup-peers.sh` creates (default
  `target/peer-venv`, or `$TRIB_PEER_VENV`).
- Load, CPU-time and peak-memory probes, so that every table states the
  conditions it was measured under (the machine is shared).
- What the two serving peers (`serve_peft.py`, `serve_llamacpp.py`) share with
  `serve-bench`: its prompts, its request plan (request i uses adapter i mod D,
  max(2 x concurrency, D) requests), the adapters it wrote, and one result
  format (a Markdown row for people, a JSON line for `serve_peers.py`).
"""

import json
import os
import resource
import statistics
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
VENV = os.environ.get("TRIB_PEER_VENV", os.path.join(ROOT, "target", "peer-venv"))
SETUP = "scripts/bench/setup-peers.sh"


def use_peer_venv():
    """Re-executes this script with the peer environment's Python (once)."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        sys.exit(f"the peer environment {VENV} is absent: run {SETUP} first")
    os.execv(py, [py, *sys.argv])


def require_model():
    if not os.path.isfile(MODEL):
        sys.exit(f"{MODEL} is absent: run scripts/fetch-model.sh")
    return MODEL


def load_average():
    """The 1-minute load average, from /proc/loadavg."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_seconds():
    """User + system CPU seconds of this process so far (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mib():
    """Peak resident set size (VmHWM) of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def snapshot_binary(path):
    """Copies a release binary to target/peer-bin/NAME-HASH and returns the copy's path.

    Other engineers rebuild the same target/release binaries while a peer run is
    in progress; running a private copy keeps every round of one run on the
    binary that was built (and described) at its start."""
    import hashlib
    import shutil

    if not os.path.isfile(path):
        sys.exit(f"{path} is absent: build it first (or drop --no-build)")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    out_dir = os.path.join(ROOT, "target", "peer-bin")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"{os.path.basename(path)}-{h.hexdigest()[:12]}")
    if not os.path.exists(out):
        shutil.copy2(path, out + ".tmp")
        os.replace(out + ".tmp", out)
    return out


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def emit(record, as_json):
    """Prints one result: a JSON line (for drivers) or nothing (rows are printed by the caller)."""
    if as_json:
        print("RESULT " + json.dumps(record), flush=True)


def llama_cpp_without_extra_buffers():
    """Makes llama-cpp-python load models with `use_extra_bufts = false`.

    Built with GGML_NATIVE=ON on this Xeon, ggml compiles its AMX path, and
    on this machine the first matmul then crashes the process (SIGSEGV in
    `ggml_backend_amx_mul_mat`, seen in gdb). AMX is reached only through
    ggml's "extra" buffer types (AMX and the CPU repack, which does not
    handle Q4_1), so turning them off gives the plain AVX-512/AVX2 CPU path:
    what llama.cpp runs on any x86 without AMX. Call before `Llama(...)`."""
    import llama_cpp
    import llama_cpp.llama as llama_module

    default = llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    llama_cpp.llama_model_default_params = params
    llama_module.llama_cpp.llama_model_default_params = params


# --- serving: what serve-bench does, so the peers serve the same work ---------

# The prompts of crates/serve/src/bin/serve-bench.rs (`PROMPTS`), in order.
PROMPTS = [
    "The history of the river valley begins with",
    "In a small village by the sea, the fishermen",
    "The main ingredients of a good bread are",
    "Once upon a time, a curious robot",
    "The theory of evolution explains how",
    "To configure a web server, first",
    "The best way to learn a new language is",
    "Mountains are formed when",
]


def serve_args(description):
    """The command line both serving peers take (serve-bench's names)."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--adapters-dir", required=True, help="serve-bench --adapter-dir output")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--adapters", default="1,8,64")
    ap.add_argument("--json", action="store_true", help="print RESULT {json} lines for serve_peers.py")
    return ap


def adapter_dirs(adapters_dir, need):
    """The first `need` adapters serve-bench wrote (`bench-r8-NNN`), as (name, path)."""
    names = sorted(d for d in os.listdir(adapters_dir) if d.startswith("bench-r8-"))
    if len(names) < need:
        sys.exit(f"{adapters_dir} holds {len(names)} adapters, {need} needed: run serve-bench "
                 f"--adapters ...,{need} --adapter-dir {adapters_dir}")
    return [(n, os.path.join(adapters_dir, n)) for n in names[:need]]


def request_plan(distinct, concurrency):
    """serve-bench's plan: max(2 x concurrency, D) requests, request i uses adapter i mod D
    and prompt i mod 8. Returns [(prompt, adapter index)]."""
    n = max(2 * concurrency, distinct)
    return [(PROMPTS[i % len(PROMPTS)], i % distinct) for i in range(n)]


class Measure:
    """Wall and CPU time of one measured section."""

    def __enter__(self):
        self.load = load_average()
        self.t0, self.c0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = cpu_seconds() - self.c0
        return False


def serve_row(peer, distinct, requests, tokens, m, single_tps, as_json, threads):
    """Prints one serving result row (and a RESULT line with --json); returns tokens/s."""
    tps = tokens / m.wall
    single = single_tps or tps
    print(f"| {peer} | {distinct} | {requests} | {tps:.1f} | {100 * tps / single:.0f}% | "
          f"{1e3 * m.cpu / max(tokens, 1):.1f} | {m.load:.1f} |", flush=True)
    emit({"peer": peer, "threads": threads, "adapters": distinct, "requests": requests,
          "tokens": tokens, "wall_s": m.wall, "cpu_s": m.cpu, "tok_s": tps, "load": m.load,
          "peak_rss_mib": peak_rss_mib()}, as_json)
    return tps


SERVE_HEADER = ("| peer | distinct adapters | requests | output tok/s | vs 1 adapter | "
                "CPU ms per output token | load (1 min) |\n|---|---|---|---|---|---|---|")
