#!/usr/bin/env python3
"""Training peer for ModelFactory (issue 4): PyTorch + PEFT LoRA steps on CPU,
interleaved in one run with ours (`factory_bench`).

Both sides: SmolLM2-135M-Instruct from the same Q4_1 GGUF, dequantized to f32
(transformers' GGUF loader on the peer side), LoRA r=8, alpha=16, dropout 0 on
q_proj and v_proj, the same 128 tokens (the start of the US Constitution
fixture), one 128-token sequence per optimiser step, AdamW at lr 1e-4,
STEPS steps of which the first (one-off allocations) is left out of the means.

For each round and each thread count T it runs, one after the other,
  ours: target/release/examples/factory_bench STEPS  (RAYON_NUM_THREADS=T)
  peer: this script --inner (torch.set_num_threads(T), OMP_NUM_THREADS=T)
each in a fresh process, so the peak RSS (VmHWM / ru_maxrss, whole process,
model loading included) is per engine. Prints every sample, then medians and
the ratio (PEFT s/step / ours s/step: above 1 means ours is faster), by wall
time and by CPU time per step (user+system, all threads: the figure the
machine's load disturbs least).

    scripts/bench/setup-peers.sh     # once
    python3 scripts/bench/peft_train.py [--threads 1 2] [--rounds 3] [--steps 6] [--no-build]
        [--precision auto f32] [--autocast]

--precision runs ours once per value (`[train] precision`; the engine name
says what ran, e.g. "BF16 (amx-bf16)"); --autocast adds PyTorch + PEFT under
torch.autocast("cpu", bfloat16) as a second peer. Ratios in the summary are
each row's time divided by the first of our engines.
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

TEXT = os.path.join(pc.ROOT, "crates", "model", "tests", "fixtures", "factory", "constitution.txt")
OURS = os.path.join(pc.ROOT, "target", "release", "examples", "factory_bench")


def run_inner(threads, steps, autocast=False):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    gdir, gfile = os.path.split(pc.MODEL)
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gfile)
    model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.train()
    text = open(TEXT).read().replace("\n\n", " ")
    ids = tok(text, return_tensors="pt").input_ids[:, :128]
    assert ids.shape[1] == 128, ids.shape
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times, cpu, losses = [], [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), pc.cpu_seconds()
        if autocast:
            # PyTorch's CPU mixed precision: matmuls in bf16 (oneDNN, AMX where
            # present), f32 master weights and optimiser.
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(input_ids=ids, labels=ids)
        else:
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        cpu.append(pc.cpu_seconds() - c0)
        losses.append(round(out.loss.item(), 4))
    rest = times[1:]
    print("RESULT " + json.dumps({
        "engine": f"PyTorch {torch.__version__.split('+')[0]} + PEFT {__import__('peft').__version__}"
                  + (" (bf16 autocast)" if autocast else ""),
        "threads": threads, "mean": sum(rest) / len(rest), "min": min(rest),
        "cpu": sum(cpu[1:]) / len(cpu[1:]), "rss": pc.peak_rss_mib(), "losses": losses}), flush=True)


ROW = re.compile(r"^\| (trib ModelFactory[^|]*)\| *(\S+) *\| *(\d+) *\| *([\d.]+) *\| *([\d.]+) *\| *\d+ *\| *([\d.]+) *\| *([\d.]+) MiB")


def ours(threads, steps, precision="auto"):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([OURS, str(steps), precision], env=env, capture_output=True, text=True,
                         check=True).stdout
    m = next((ROW.match(line) for line in out.splitlines() if ROW.match(line)), None)
    if not m:
        sys.exit(f"could not read factory_bench's row:\n{out}")
    losses = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("losses:")), "")
    return {"engine": m.group(1).strip(), "threads": threads, "mean": float(m.group(4)),
            "min": float(m.group(5)), "cpu": float(m.group(6)), "rss": float(m.group(7)), "losses": losses}


def peer(threads, steps, autocast=False):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--inner", "--threads", str(threads),
                          "--steps", str(steps)] + (["--autocast"] if autocast else []),
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"the PEFT run failed:\n{out.stderr[-3000:]}")
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "f32", "bf16"],
                    help="our [train] precision values to run (each is one engine)")
    ap.add_argument("--autocast", action="store_true",
                    help="also run PyTorch + PEFT under bf16 autocast (a second peer)")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    pc.use_peer_venv()
    pc.require_model()
    if args.inner:
        run_inner(args.threads[0], args.steps, args.autocast)
        return
    if not args.no_build:
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "trib-model", "--example",
                               "factory_bench"], cwd=pc.ROOT)
    global OURS
    OURS = pc.snapshot_binary(OURS)
    commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", "crates/model"], cwd=pc.ROOT,
                            capture_output=True, text=True).stdout.strip()
    print(f"# training peers, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: LoRA r8 q,v, "
          f"128-token sequence per step, {args.steps} steps (first left out), {args.rounds} rounds; "
          f"ours at crates/model {commit} (plus any uncommitted edits), binary {os.path.relpath(OURS, pc.ROOT)}")
    print("| round | engine | threads | s/step (mean) | s/step (min) | tokens/s | CPU s/step | peak RSS | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    samples = {}
    losses = {}
    for r in range(args.rounds):
        for t in args.threads:
            runs = [lambda t, n, p=p: ours(t, n, p) for p in args.precision] + [peer]
            if args.autocast:
                runs.append(lambda t, n: peer(t, n, autocast=True))
            for run in runs:
                load0 = pc.load_average()
                s = run(t, args.steps)
                s["load"] = (load0 + pc.load_average()) / 2
                samples.setdefault((s["engine"], t), []).append(s)
                losses[s["engine"]] = s["losses"]
                print(f"| {r + 1} | {s['engine']} | {t} | {s['mean']:.3f} | {s['min']:.3f} | "
                      f"{128 / s['mean']:.0f} | {s['cpu']:.2f} | {s['rss']:.0f} MiB | {s['load']:.1f} |",
                      flush=True)
    print()
    print("| engine | threads | s/step (median) | tokens/s | CPU s/step (median) | peak RSS (max) | "
          "this ÷ ours, wall | this ÷ ours, CPU | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in args.threads:
        rows = {e: v for (e, tt), v in samples.items() if tt == t}
        med = {e: (pc.median([s["mean"] for s in v]), pc.median([s["cpu"] for s in v])) for e, v in rows.items()}
        # "ours" is the first of our engines (the first --precision value);
        # above 1 in the ratio columns means ours is faster than that row.
        ours_key = next(e for e in rows if e.startswith("trib"))
        for e, v in rows.items():
            wall, cpu = med[e]
            ratio = ("", "") if e == ours_key else \
                (f"{wall / med[ours_key][0]:.2f}", f"{cpu / med[ours_key][1]:.2f}")
            print(f"| {e} | {t} | {wall:.3f} | {128 / wall:.0f} | {cpu:.2f} | {max(s['rss'] for s in v):.0f} MiB | "
                  f"{ratio[0]} | {ratio[1]} | {min(s['load'] for s in v):.1f}–{max(s['load'] for s in v):.1f} |")
    for e, l in losses.items():
        print(f"# losses ({e}): {l}")


if __name__ == "__main__":
    main()
