#!/usr/bin/env python3
"""Peer for the adapter cold-load row of docs/benchmarks.md (## OpenLoRA):
PyTorch + PEFT loading the same PEFT adapters onto SmolLM2-135M-Instruct.

Loads the base model (the GGUF file dequantized to f32 by transformers), then
every adapter that `serve-bench --adapter-dir DIR` wrote, one after the other
with `PeftModel.load_adapter` (read the files, build the LoRA modules, copy the
weights in), timing each load (wall and this process's CPU seconds). Prints
the latency percentiles and the memory each loaded adapter costs: the bytes of
its LoRA parameters, and the resident-memory growth per adapter.

    cargo run --release -p trib-serve --bin serve-bench -- --adapters 256 --adapter-dir /tmp/bench-adapters --no-naive
    python3 scripts/bench/adapter_load_peft.py --adapters-dir /tmp/bench-adapters --count 256
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peercommon as pc  # noqa: E402


def rss_mib():
    """Current resident set size (VmRSS) of this process, MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=pc.MODEL)
    ap.add_argument("--adapters-dir", required=True)
    ap.add_argument("--count", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    pc.use_peer_venv()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import peft
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    gdir, gfile = os.path.split(args.model)
    base = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile, dtype=torch.float32)
    base.eval()
    adapters = pc.adapter_dirs(args.adapters_dir, args.count)
    rss_base = rss_mib()
    load = pc.load_average()

    walls, cpus = [], []
    model = None
    for name, path in adapters:
        t0, c0 = time.perf_counter(), pc.cpu_seconds()
        if model is None:
            model = PeftModel.from_pretrained(base, path, adapter_name=name)
        else:
            model.load_adapter(path, adapter_name=name)
        walls.append(time.perf_counter() - t0)
        cpus.append(pc.cpu_seconds() - c0)
    rss_all = rss_mib()
    first = adapters[0][0]
    lora_bytes = sum(p.numel() * p.element_size()
                     for n, p in model.named_parameters() if f".{first}." in n)
    # The first load also wraps the model (PeftModel.from_pretrained): left
    # out of the percentiles, shown apart.
    rest_w, rest_c = walls[1:], cpus[1:]
    peer = f"PyTorch {torch.__version__.split('+')[0]} + PEFT {peft.__version__}"
    print(f"# {peer}: load_adapter, {len(adapters)} adapters, {args.threads} thread(s), load {load:.1f}")
    print("| metric | value |")
    print("|---|---|")
    print(f"| load latency p50 (load_adapter) | {1e3 * pct(rest_w, 0.5):.1f} ms |")
    print(f"| load latency p99 | {1e3 * pct(rest_w, 0.99):.1f} ms |")
    print(f"| CPU per load, p50 | {1e3 * pct(rest_c, 0.5):.1f} ms |")
    print(f"| first load (wraps the model in PeftModel) | {1e3 * walls[0]:.1f} ms |")
    print(f"| all {len(adapters)} loaded in | {sum(walls):.2f} s |")
    print(f"| LoRA parameter bytes per adapter | {lora_bytes} ({lora_bytes / 2**20:.2f} MiB) |")
    print(f"| resident memory: base / with {len(adapters)} adapters | {rss_base:.0f} MiB / {rss_all:.0f} MiB "
          f"({(rss_all - rss_base) / len(adapters):.2f} MiB per adapter) |")


if __name__ == "__main__":
    main()
