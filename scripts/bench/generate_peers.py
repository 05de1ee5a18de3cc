#!/usr/bin/env python3
"""Generation peers for issue 4, interleaved with ours in one run.

Three engines generate from the same 42-token ChatML prompt (SmolLM2's chat
template around "Write a long story about a dragon who learns to paint."),
greedy, exactly N new tokens (64 by default), at the same thread count:

  A. ours: `target/release/examples/bench_generate N` (trib-model, built by
     this script with `cargo build --release -p trib-model --example
     bench_generate` unless --no-build), RAYON_NUM_THREADS=T, its default
     weight path (`quick`; --full runs all its paths and batch sizes);
  B. llama.cpp through llama-cpp-python, the same Q4_1 GGUF, n_threads=T;
  C. Hugging Face transformers `generate`, the GGUF dequantized to f32,
     torch.set_num_threads(T).

They run alternately, A B C A B C ..., for each thread count in each round,
so that the load from other processes on the shared machine falls on all
three alike. B and C are long-lived worker processes (loaded once, one per
engine and thread count) that run one sample per request; A is a fresh
process per sample (it loads the model itself; its figures exclude loading).
Every sample is, like bench_generate's, the best of 3 generations after a
warm-up; the table gives the median over rounds. Decode tok/s is defined as
bench_generate defines it: N new tokens / time of the N - 1 single-token
forwards after the prefill (sampling included). Also printed: decode-phase
CPU ms per token (process CPU time, all threads, mean of the 3 generations;
bench_generate prints the same in its RESULT lines), its ratio to llama.cpp
(the load-independent comparison), and the 1-minute load average.

    scripts/bench/setup-peers.sh       # once
    python3 scripts/bench/generate_peers.py [--threads 1 2] [--rounds 3] [--tokens 64]
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

USER_MESSAGE = "Write a long story about a dragon who learns to paint."
OURS = os.path.join(pc.ROOT, "target", "release", "examples", "bench_generate")


def prompt_ids():
    from transformers import AutoTokenizer

    gdir, gfile = os.path.split(pc.MODEL)
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gfile)
    ids = tok.apply_chat_template([{"role": "user", "content": USER_MESSAGE}],
                                  add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return [int(i) for i in ids]


# --- workers (B and C): one sample per line read from stdin -------------------

def llama_worker(threads, ids, n):
    import llama_cpp
    from llama_cpp import Llama

    pc.llama_cpp_without_extra_buffers()

    llm = Llama(model_path=pc.MODEL, n_ctx=512, n_threads=threads, n_threads_batch=threads,
                n_batch=512, verbose=False, seed=0)
    name = f"llama.cpp (llama-cpp-python {llama_cpp.__version__}, Q4_1)"

    def once(n_new):
        llm.reset()
        t0 = time.perf_counter()
        got, t1, c1 = 0, None, None
        for _ in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0,
                              reset=True):
            got += 1
            if got == 1:
                t1, c1 = time.perf_counter(), pc.cpu_seconds()
            if got == n_new:
                break
        t2, c2 = time.perf_counter(), pc.cpu_seconds()
        return len(ids) / (t1 - t0), n_new / (t2 - t1), c2 - c1

    return name, once


def hf_worker(threads, ids, n):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    gdir, gfile = os.path.split(pc.MODEL)
    model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile, dtype=torch.float32)
    model.eval()
    x = torch.tensor([ids])
    name = f"HF transformers generate (torch {torch.__version__.split('+')[0]}, f32)"

    def gen(k):
        with torch.inference_mode():
            t, c = time.perf_counter(), pc.cpu_seconds()
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=k,
                                 min_new_tokens=k, do_sample=False, pad_token_id=0)
            assert out.shape[1] == len(ids) + k, out.shape
            return time.perf_counter() - t, pc.cpu_seconds() - c

    def once(n_new):
        t_first, c_first = gen(1)  # prefill + the first token
        t_all, c_all = gen(n_new)
        return len(ids) / t_first, n_new / (t_all - t_first), c_all - c_first

    return name, once


def worker_main(kind, threads, n, ids):
    name, once = (llama_worker if kind == "llama" else hf_worker)(threads, ids, n)
    once(4)  # warm-up
    print(json.dumps({"ready": name}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        load0 = pc.load_average()
        runs = [once(n) for _ in range(3)]
        prefill, decode, _ = max(runs, key=lambda r: r[1])
        # Decode-phase CPU time (all threads), mean over the 3 runs, per token: as bench_generate.
        cpu = sum(r[2] for r in runs) / len(runs)
        print(json.dumps({"engine": name, "prefill": prefill, "decode": decode,
                          "cpu_ms_per_token": 1e3 * cpu / n,
                          "load": (load0 + pc.load_average()) / 2}), flush=True)


class Worker:
    def __init__(self, kind, threads, n, ids):
        self.kind = kind
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        self.p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", kind, "--threads", str(threads),
             "--tokens", str(n), "--ids", ",".join(map(str, ids))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.name = self._read()["ready"]

    def _read(self):
        # Protocol lines are JSON objects; anything else a library printed is passed on.
        while True:
            line = self.p.stdout.readline()
            if not line:
                sys.exit(f"a {self.kind} worker exited (code {self.p.wait()})")
            if line.startswith("{"):
                return json.loads(line)
            print(f"# {self.kind} worker: {line.rstrip()}", file=sys.stderr)

    def sample(self):
        self.p.stdin.write("run\n")
        self.p.stdin.flush()
        return self._read()

    def close(self):
        self.p.stdin.close()
        self.p.wait()


# --- ours (A) ------------------------------------------------------------------

ROW = re.compile(r"^\|\s*([^|]+?)\s*\|\s*(\S+)\s*\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|")


def ours_sample(threads, n, full):
    """One run of bench_generate: {path: (prefill, decode, prompt tokens, new tokens)}, RESULT lines."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    load0 = pc.load_average()
    cmd = [OURS, str(n)] + ([] if full else ["quick"])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    paths, results = {}, []
    for line in out.splitlines():
        if line.startswith("RESULT"):
            results.append(line)
            kv = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
            # Single-sequence generation lines (the batched ones carry no prompt_tokens).
            if "prompt_tokens" in kv and "decode_tok_s" in kv:
                paths[kv["path"]] = (float(kv["prefill_tok_s"]), float(kv["decode_tok_s"]),
                                     int(kv["prompt_tokens"]), int(kv["new_tokens"]),
                                     float(kv.get("decode_cpu_ms_per_token", "nan")))
    if not paths:  # an older bench_generate without RESULT lines: read its table
        for line in out.splitlines():
            m = ROW.match(line)
            if m:
                paths[m.group(1)] = (float(m.group(4)), float(m.group(6)), int(m.group(3)),
                                     int(m.group(5)), float("nan"))
    if not paths:
        sys.exit(f"could not read bench_generate's table:\n{out}")
    return paths, results, (load0 + pc.load_average()) / 2, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--full", action="store_true",
                    help="run all of bench_generate's paths and batches (default: its `quick` mode, the default path)")
    ap.add_argument("--worker", choices=["llama", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--ids", help=argparse.SUPPRESS)
    args = ap.parse_args()
    pc.use_peer_venv()
    pc.require_model()
    if args.worker:
        worker_main(args.worker, args.threads[0], args.tokens, [int(i) for i in args.ids.split(",")])
        return
    if not args.no_build:
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "trib-model",
                               "--example", "bench_generate"], cwd=pc.ROOT)
    global OURS
    OURS = pc.snapshot_binary(OURS)
    commit = subprocess.run(["git", "log", "-1", "--format=%h %cI", "--", "crates/model/src"],
                            cwd=pc.ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "crates/model/src"],
                           cwd=pc.ROOT, capture_output=True, text=True).stdout.strip()
    ids = prompt_ids()
    print(f"# generation peers, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{len(ids)}-token prompt, {args.tokens} new tokens, greedy, {args.rounds} rounds")
    print(f"# ours: crates/model at {commit}{' + uncommitted edits in crates/model/src' if dirty else ''}, "
          f"binary {os.path.relpath(OURS, pc.ROOT)}")
    samples = {}  # (engine, threads) -> list of (prefill, decode, cpu_ms, load)
    ours_results = []
    for t in args.threads:
        workers = [Worker("llama", t, args.tokens, ids), Worker("hf", t, args.tokens, ids)]
        for r in range(args.rounds):
            paths, results, load, raw = ours_sample(t, args.tokens, args.full)
            ours_results += results
            for p, (pre, dec, pt, nt, cpu) in paths.items():
                if nt != args.tokens and "batch" not in p:
                    print(f"# note: ours '{p}' produced {nt} tokens, not {args.tokens}", file=sys.stderr)
                if pt != len(ids) and "batch" not in p:
                    print(f"# note: ours '{p}' had a {pt}-token prompt, peers {len(ids)}", file=sys.stderr)
                samples.setdefault((f"trib-model: {p}", t), []).append((pre, dec, cpu, load))
            for w in workers:
                s = w.sample()
                samples.setdefault((s["engine"], t), []).append(
                    (s["prefill"], s["decode"], s["cpu_ms_per_token"], s["load"]))
            line = ", ".join(f"{k[0]} {v[-1][1]:.1f}" for k, v in samples.items() if k[1] == t)
            print(f"# round {r + 1}, {t} thread(s), load {load:.1f}: decode tok/s: {line}", flush=True)
        for w in workers:
            w.close()

    print()
    print("| engine | threads | prefill tok/s (median) | decode tok/s (median) | decode tok/s (all rounds) "
          "| vs llama.cpp | decode CPU ms per token (median) | vs llama.cpp per CPU-second | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in args.threads:
        rows = {k[0]: v for k, v in samples.items() if k[1] == t}
        ref = next((v for e, v in rows.items() if e.startswith("llama.cpp")), None)
        ref_dec = pc.median([s[1] for s in ref]) if ref else None
        ref_cpu = pc.median([s[2] for s in ref]) if ref else None
        for e, v in rows.items():
            dec = pc.median([s[1] for s in v])
            cpu = pc.median([s[2] for s in v])
            ratio = f"{dec / ref_dec:.2f}×" if ref_dec else "—"
            cpu_ratio = f"{ref_cpu / cpu:.2f}×" if ref_cpu and cpu == cpu else "—"
            pre = pc.median([s[0] for s in v])
            print(f"| {e} | {t} | {pre:.1f} | {dec:.1f} | {', '.join(f'{s[1]:.1f}' for s in v)} | {ratio} | "
                  f"{'—' if cpu != cpu else f'{cpu:.1f}'} | {cpu_ratio} | "
                  f"{min(s[3] for s in v):.1f}–{max(s[3] for s in v):.1f} |")
    for line in ours_results:
        print(line)


if __name__ == "__main__":
    main()
