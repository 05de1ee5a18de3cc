#!/usr/bin/env python3
"""Peer benchmark for OpenLoRA: PyTorch + PEFT serving mixed-adapter batches on CPU.

Same model (SmolLM2-135M-Instruct, the GGUF file dequantized by transformers),
the same random rank-8 q/v PEFT adapters that `serve-bench --adapter-dir DIR`
wrote, the same thread count. For each number of distinct adapters D it runs
batches of CONCURRENCY prompts where request i uses adapter i mod D, through
PEFT's mixed-adapter batch inference (`generate(..., adapter_names=[...])`),
greedy, NEW_TOKENS new tokens each, and prints output tokens/s.

    cargo run --release -p trib-serve --bin serve-bench -- --adapter-dir /tmp/bench-adapters ...
    python3 scripts/bench/serve_peft.py --adapters-dir /tmp/bench-adapters --threads 2

Installs its own dependencies (CPU torch, transformers, peft, gguf) into a
virtual environment under the repository's .venv/ on first run.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# under the repository's git-ignored .venv/
VENV = os.path.join(HERE, "..", "..", ".venv", "serve-peft")
DEPS = ["torch", "transformers>=4.45", "peft>=0.12", "gguf>=0.10", "safetensors", "numpy"]


def ensure_deps():
    """Re-executes inside a private venv with the dependencies installed."""
    if os.environ.get("TRIB_PEER_VENV") == VENV:
        return
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        os.makedirs(os.path.dirname(VENV), exist_ok=True)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        subprocess.check_call(
            [py, "-m", "pip", "install", "--quiet", "--extra-index-url",
             "https://download.pytorch.org/whl/cpu", *DEPS])
    env = dict(os.environ, TRIB_PEER_VENV=VENV)
    os.execve(py, [py, *sys.argv], env)


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


def main():
    ap = argparse.ArgumentParser()
    root = os.path.abspath(os.path.join(HERE, "..", ".."))
    ap.add_argument("--model", default=os.path.join(root, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--adapters-dir", required=True, help="serve-bench --adapter-dir output")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--adapters", default="1,8,64,256")
    args = ap.parse_args()
    ensure_deps()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    gdir, gfile = os.path.split(args.model)
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gfile)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    base = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile, torch_dtype=torch.float32)
    base.eval()

    counts = [int(x) for x in args.adapters.split(",")]
    names = sorted(d for d in os.listdir(args.adapters_dir) if d.startswith("bench-r8-"))
    need = max(counts)
    if len(names) < need:
        sys.exit(f"{args.adapters_dir} holds {len(names)} adapters, {need} needed")
    t = time.time()
    model = PeftModel.from_pretrained(base, os.path.join(args.adapters_dir, names[0]), adapter_name=names[0])
    for n in names[1:need]:
        model.load_adapter(os.path.join(args.adapters_dir, n), adapter_name=n)
    model.eval()
    print(f"loaded {need} adapters in {time.time() - t:.1f} s "
          f"({(time.time() - t) / need * 1e3:.0f} ms each)")

    print(f"# PyTorch {torch.__version__} + PEFT, {args.threads} thread(s), batch {args.concurrency}, "
          f"{args.new_tokens} new tokens, greedy")
    print("| peer | distinct adapters | output tok/s | vs 1 adapter |")
    print("|---|---|---|---|")
    single = None
    for d in counts:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.concurrency)]
        adapter_names = [names[i % d] for i in range(args.concurrency)]
        batch = tok(prompts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            # warm-up
            model.generate(**batch, adapter_names=adapter_names, max_new_tokens=2, do_sample=False)
            t = time.time()
            out = model.generate(**batch, adapter_names=adapter_names, max_new_tokens=args.new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id)
            dt = time.time() - t
        new = out[:, batch["input_ids"].shape[1]:]
        produced = int((new != tok.pad_token_id).sum())
        tps = produced / dt
        single = single or tps
        print(f"| PyTorch + PEFT mixed batch | {d} | {tps:.1f} | {100 * tps / single:.0f}% |")


if __name__ == "__main__":
    main()
