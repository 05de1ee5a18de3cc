#!/usr/bin/env python3
"""Peer benchmark for ModelFactory: PyTorch + PEFT LoRA training on CPU.

Same model (SmolLM2-135M-Instruct, the same Q4_1 GGUF file, dequantized to
f32 by transformers' GGUF loader), same LoRA (r=8, alpha=16, dropout 0, q_proj
and v_proj), same data (the first 128 tokens of the US Constitution fixture),
one 128-token sequence per optimiser step, AdamW at lr 1e-4. Prints one
Markdown table row per thread count in the format of
`cargo run --release -p trib-model --example factory_bench`.

Usage:
    python3 scripts/bench/peft_train.py [--threads 1 2] [--steps 6]

On first run it creates a virtual environment in $PEFT_BENCH_VENV
(default /tmp/trib-peft-venv) and pip-installs torch, transformers, peft,
gguf, accelerate and numpy from PyPI. torch's Linux wheel from PyPI pulls the
CUDA runtime packages too: expect a download of several GB. Each thread count
runs in a fresh process so that torch's thread pool is set before first use.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = ROOT / "crates" / "model" / "tests" / "fixtures" / "factory" / "constitution.txt"
VENV = Path(os.environ.get("PEFT_BENCH_VENV", "/tmp/trib-peft-venv"))
PACKAGES = ["torch", "transformers", "peft", "gguf", "accelerate", "numpy", "sentencepiece", "protobuf"]


def ensure_venv() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(py), "-m", "pip", "install", "--upgrade", "pip"])
        subprocess.check_call([str(py), "-m", "pip", "install", *PACKAGES])
    return py


def run_one(threads: int, steps: int) -> None:
    import resource

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(MODEL.parent), gguf_file=MODEL.name, torch_dtype=torch.float32
    )
    model = get_peft_model(
        model,
        LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    model.train()
    text = TEXT.read_text().replace("\n\n", " ")
    ids = tok(text, return_tensors="pt").input_ids[:, :128]
    assert ids.shape[1] == 128, ids.shape
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times, cpu, losses = [], [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        c0 = time.process_time()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        losses.append(round(out.loss.item(), 4))
    rest = times[1:]
    mean = sum(rest) / len(rest)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"| PyTorch {torch.__version__} + PEFT | {threads} | 128 | {mean:.3f} | {min(rest):.3f} | "
        f"{128 / mean:.0f} | {sum(cpu[1:]) / len(cpu[1:]):.2f} | {peak_mib:.0f} MiB |"
    )
    print(f"losses: {losses}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not MODEL.is_file():
        sys.exit(f"{MODEL} is absent: run scripts/fetch-model.sh")
    if args.inner:
        run_one(args.threads[0], args.steps)
        return
    py = ensure_venv()
    print("| engine | threads | tokens/step | s/step (mean) | s/step (min) | tokens/s | CPU s/step | peak RSS (VmHWM) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
        subprocess.check_call(
            [str(py), __file__, "--inner", "--threads", str(n), "--steps", str(args.steps)], env=env
        )


if __name__ == "__main__":
    main()
