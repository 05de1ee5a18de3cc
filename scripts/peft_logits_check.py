#!/usr/bin/env python3
"""Checks that an adapter saved by trib-model loads in Hugging Face PEFT and
gives the same logits as trib-model's own forward (issue 4).

1. `cargo run --release -p trib-model --example peft_logits_dump -- DIR`
   (skipped with --no-dump) loads SmolLM2-135M-Instruct from the GGUF with f32
   weights, makes a LoRA adapter (r=8, alpha=16, all seven target modules, B
   random and non-zero), saves it with `save_peft` (DIR/adapter), exports the
   base as a Hugging Face directory (DIR/hf) and writes our logits with and
   without the adapter for four prompts (DIR/logits.safetensors).
2. Here, transformers loads the base twice: from DIR/hf (our export) and from
   the same GGUF file (transformers' own dequantizer and q/k un-permutation);
   PEFT applies DIR/adapter to each (`PeftModel.from_pretrained`), and the
   logits of every position are compared with ours: max |difference|, the
   difference relative to the largest |logit|, and top-1 agreement. The same
   comparison without the adapter (`disable_adapter()`) separates base-model
   differences from adapter differences, and the adapter's own effect on the
   logits shows that the LoRA term is not negligible.

Passes (exit 0) when, for both bases and every prompt, max |difference| is
at most --tol (default 1e-2, in logits whose range is about ±30), top-1 agrees at
every position, and the adapter's effect is at least 100 x the difference.

    scripts/bench/setup-peers.sh      # once: the Python environment
    python3 scripts/peft_logits_check.py [--dir DIR] [--no-dump]
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "bench"))
import peercommon as pc  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=os.path.join(pc.ROOT, "target", "peft-logits-check"))
    ap.add_argument("--no-dump", action="store_true", help="reuse DIR from an earlier dump")
    ap.add_argument("--tol", type=float, default=1e-2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    pc.use_peer_venv()
    pc.require_model()
    if not args.no_dump:
        subprocess.check_call(["cargo", "run", "--release", "-q", "-p", "trib-model", "--example",
                               "peft_logits_dump", "--", args.dir], cwd=pc.ROOT)

    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    ours = load_file(os.path.join(args.dir, "logits.safetensors"))
    n = len([k for k in ours if k.startswith("tokens.")])
    gdir, gfile = os.path.split(pc.MODEL)
    bases = {
        "our HF export": lambda: AutoModelForCausalLM.from_pretrained(
            os.path.join(args.dir, "hf"), dtype=torch.float32),
        "transformers from the GGUF": lambda: AutoModelForCausalLM.from_pretrained(
            gdir, gguf_file=gfile, dtype=torch.float32),
    }
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gfile)
    import peft
    import transformers
    print(f"# PEFT logits check: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}; adapter {os.path.join(args.dir, 'adapter')}")
    print("| base loaded by | prompt | tokens | HF tokenizer ids equal | adapter effect max abs | "
          "with adapter: max abs diff | rel. to max abs logit | top-1 agree | "
          "base only: max abs diff | top-1 agree |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for label, load in bases.items():
        model = PeftModel.from_pretrained(load(), os.path.join(args.dir, "adapter"))
        model.eval()
        for i in range(n):
            ids = ours[f"tokens.{i}"].to(torch.long).unsqueeze(0)
            with torch.inference_mode():
                with_adapter = model(input_ids=ids).logits[0]
                with model.disable_adapter():
                    base_only = model(input_ids=ids).logits[0]
            ref_a, ref_b = ours[f"adapter.{i}"], ours[f"base.{i}"]
            diff_a = (with_adapter - ref_a).abs().max().item()
            diff_b = (base_only - ref_b).abs().max().item()
            rel = diff_a / ref_a.abs().max().item()
            top_a = (with_adapter.argmax(-1) == ref_a.argmax(-1)).float().mean().item()
            top_b = (base_only.argmax(-1) == ref_b.argmax(-1)).float().mean().item()
            effect = (ref_a - ref_b).abs().max().item()
            # Informational: would the HF tokenizer give the same ids for the text?
            text = tok.decode(ids[0].tolist())
            same_ids = tok(text, add_special_tokens=False).input_ids == ids[0].tolist()
            print(f"| {label} | {i} | {ids.shape[1]} | {'yes' if same_ids else 'no'} | {effect:.3f} | "
                  f"{diff_a:.2e} | {rel:.1e} | {100 * top_a:.0f}% | {diff_b:.2e} | {100 * top_b:.0f}% |",
                  flush=True)
            if not (diff_a <= args.tol and top_a == 1.0 and effect >= 100 * diff_a):
                ok = False
        del model
    print("PASS: PEFT reproduces our logits with the adapter" if ok else
          f"FAIL: differences above tolerance {args.tol} or top-1 disagreement")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
