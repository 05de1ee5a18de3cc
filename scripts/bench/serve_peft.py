#!/usr/bin/env python3
"""Peer benchmark for OpenLoRA: PyTorch + PEFT serving mixed-adapter batches on CPU.

Same model (SmolLM2-135M-Instruct, the GGUF file dequantized to f32 by
transformers), the same random rank-8 q/v PEFT adapters that
`serve-bench --adapter-dir DIR` wrote, the same thread count, the same request
plan as serve-bench (max(2 x concurrency, D) requests, request i uses adapter
i mod D and prompt i mod 8, 32 new tokens, greedy, stop at EOS). Requests run
in batches of CONCURRENCY through PEFT's mixed-adapter batch inference
(`generate(..., adapter_names=[...])`, left padding). Prints output tokens/s
per number of distinct adapters D.

    scripts/bench/setup-peers.sh            # once
    cargo run --release -p trib-serve --bin serve-bench -- --adapters 1,8,64 --adapter-dir /tmp/bench-adapters
    python3 scripts/bench/serve_peft.py --adapters-dir /tmp/bench-adapters --threads 2

`scripts/bench/serve_peers.py` runs this, serve-bench and the llama.cpp peer
alternately in one run.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peercommon as pc  # noqa: E402


def main():
    args = pc.serve_args(__doc__.splitlines()[0]).parse_args()
    pc.use_peer_venv()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    counts = [int(x) for x in args.adapters.split(",")]
    gdir, gfile = os.path.split(args.model)
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gfile)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    base = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile, dtype=torch.float32)
    base.eval()

    adapters = pc.adapter_dirs(args.adapters_dir, max(counts))
    with pc.Measure() as m:
        model = PeftModel.from_pretrained(base, adapters[0][1], adapter_name=adapters[0][0])
        for name, path in adapters[1:]:
            model.load_adapter(path, adapter_name=name)
    model.eval()
    print(f"loaded {len(adapters)} adapters in {m.wall:.1f} s ({m.wall / len(adapters) * 1e3:.0f} ms each)")

    peer = f"PyTorch {torch.__version__.split('+')[0]} + PEFT {__import__('peft').__version__}, mixed batch"
    print(f"# {peer}, {args.threads} thread(s), batches of {args.concurrency}, "
          f"{args.new_tokens} new tokens, greedy")
    print(pc.SERVE_HEADER)
    names = [n for n, _ in adapters]
    single = None
    with torch.inference_mode():
        # Warm-up: first-touch allocations and thread pools.
        warm = tok(pc.PROMPTS[:4], return_tensors="pt", padding=True)
        model.generate(**warm, adapter_names=names[:1] * 4, max_new_tokens=4, do_sample=False,
                       pad_token_id=tok.pad_token_id)
        for d in counts:
            plan = pc.request_plan(d, args.concurrency)
            produced = 0
            with pc.Measure() as m:
                for start in range(0, len(plan), args.concurrency):
                    part = plan[start:start + args.concurrency]
                    batch = tok([p for p, _ in part], return_tensors="pt", padding=True)
                    out = model.generate(**batch, adapter_names=[names[a] for _, a in part],
                                         max_new_tokens=args.new_tokens, do_sample=False,
                                         pad_token_id=tok.pad_token_id)
                    new = out[:, batch["input_ids"].shape[1]:]
                    # Tokens up to and including EOS; after it generate pads.
                    for row in new.tolist():
                        n = len(row)
                        if tok.eos_token_id in row:
                            n = row.index(tok.eos_token_id) + 1
                        produced += n
            tps = pc.serve_row(peer, d, len(plan), produced, m, single, args.json, args.threads)
            single = single or tps


if __name__ == "__main__":
    main()
