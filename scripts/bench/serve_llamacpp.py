#!/usr/bin/env python3
"""Peer benchmark for OpenLoRA: llama.cpp (llama-cpp-python) with GGUF LoRA adapters.

llama.cpp applies LoRA adapters converted to GGUF. This script converts the
random rank-8 q/v PEFT adapters written by `serve-bench --adapter-dir DIR` into
llama.cpp's LoRA GGUF layout (`general.type = adapter`, `adapter.type = lora`,
`adapter.lora.alpha`, tensors `blk.N.attn_q.weight.lora_a` / `.lora_b`, with
q's lora_B rows permuted like llama.cpp's converter permutes q weights), loads
the same SmolLM2 GGUF, and for D distinct adapters serves CONCURRENCY requests
(request i uses adapter i mod D), switching the active adapter per request:
llama-cpp-python decodes one sequence at a time, so mixed adapters cannot share
a batch. Same thread count, greedy, NEW_TOKENS new tokens each.

    python3 scripts/bench/serve_llamacpp.py --adapters-dir /tmp/bench-adapters --threads 2

Installs its own dependencies (llama-cpp-python built from PyPI with
-DGGML_NATIVE=ON, about 7 minutes; gguf; safetensors; numpy) into a virtual
environment next to this script on first run.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# under the repository's git-ignored .venv/
VENV = os.path.join(HERE, "..", "..", ".venv", "serve-llamacpp")
DEPS = ["llama-cpp-python", "gguf>=0.10", "safetensors", "numpy"]


def ensure_deps():
    if os.environ.get("TRIB_PEER_VENV") == VENV:
        return
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        os.makedirs(os.path.dirname(VENV), exist_ok=True)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        env = dict(os.environ, CMAKE_ARGS="-DGGML_NATIVE=ON")
        subprocess.check_call([py, "-m", "pip", "install", "--quiet", *DEPS], env=env)
    os.execve(py, [py, *sys.argv], dict(os.environ, TRIB_PEER_VENV=VENV))


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


def permute_rows(w, n_head):
    """llama.cpp's q/k row permutation (convert_hf_to_gguf.py `permute`)."""
    out = w.shape[0]
    return (w.reshape(n_head, 2, out // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def peft_to_gguf(peft_dir, out_path, n_head, n_kv_head):
    import gguf
    from safetensors.numpy import load_file

    cfg = json.load(open(os.path.join(peft_dir, "adapter_config.json")))
    tensors = load_file(os.path.join(peft_dir, "adapter_model.safetensors"))
    w = gguf.GGUFWriter(out_path, "llama")
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(cfg["lora_alpha"]))
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    for key, t in sorted(tensors.items()):
        # base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight
        parts = key.split(".")
        layer, module, half = parts[4], parts[6], parts[7]
        t = t.astype("float32")
        if half == "lora_B" and module == "q_proj":
            t = permute_rows(t, n_head)
        if half == "lora_B" and module == "k_proj":
            t = permute_rows(t, n_kv_head)
        suffix = "lora_a" if half == "lora_A" else "lora_b"
        w.add_tensor(f"blk.{layer}.{names[module]}.weight.{suffix}", t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


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

    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=args.model, n_ctx=512, n_threads=args.threads, n_threads_batch=args.threads,
                n_batch=512, verbose=False, seed=0)
    model_ptr, ctx_ptr = llm._model.model, llm._ctx.ctx
    n_head = int(llm.metadata["llama.attention.head_count"])
    n_kv = int(llm.metadata.get("llama.attention.head_count_kv", n_head))
    counts = [int(x) for x in args.adapters.split(",")]
    names = sorted(d for d in os.listdir(args.adapters_dir) if d.startswith("bench-r8-"))[:max(counts)]
    gguf_dir = os.path.join(args.adapters_dir, "gguf")
    os.makedirs(gguf_dir, exist_ok=True)
    handles = []
    t = time.time()
    for n in names:
        p = os.path.join(gguf_dir, n + ".gguf")
        if not os.path.exists(p):
            peft_to_gguf(os.path.join(args.adapters_dir, n), p, n_head, n_kv)
        h = llama_cpp.llama_adapter_lora_init(model_ptr, p.encode())
        if not h:
            sys.exit(f"llama.cpp refused the adapter {p}")
        handles.append(h)
    print(f"converted and loaded {len(names)} adapters in {time.time() - t:.1f} s")

    print(f"# llama.cpp (llama-cpp-python {llama_cpp.__version__}), {args.threads} thread(s), "
          f"{args.concurrency} requests, {args.new_tokens} new tokens, greedy, adapter switched per request")
    print("| peer | distinct adapters | output tok/s | vs 1 adapter |")
    print("|---|---|---|---|")
    single = None
    for d in counts:
        produced = 0
        t = time.time()
        for i in range(args.concurrency):
            llama_cpp.llama_clear_adapter_lora(ctx_ptr)
            llama_cpp.llama_set_adapter_lora(ctx_ptr, handles[i % d], 1.0)
            llm.reset()
            out = llm.create_completion(PROMPTS[i % len(PROMPTS)], max_tokens=args.new_tokens,
                                        temperature=0.0, top_k=1)
            produced += out["usage"]["completion_tokens"]
        dt = time.time() - t
        tps = produced / dt
        single = single or tps
        print(f"| llama.cpp, one sequence at a time | {d} | {tps:.1f} | {100 * tps / single:.0f}% |")


if __name__ == "__main__":
    main()
