#!/usr/bin/env python3
"""Peer benchmark for OpenLoRA: llama.cpp (llama-cpp-python) with GGUF LoRA adapters.

The random rank-8 q/v PEFT adapters that `serve-bench --adapter-dir DIR` wrote
are converted to llama.cpp's LoRA GGUF by llama.cpp's own
`convert_lora_to_gguf.py` (vendored in the llama-cpp-python sdist;
`setup-peers.sh` extracts it into the peer environment), which also applies
llama.cpp's q/k row permutation. The base config it needs comes from the same
GGUF through transformers. Then the same SmolLM2 Q4_1 GGUF serves
serve-bench's request plan (max(2 x concurrency, D) requests, request i uses
adapter i mod D and prompt i mod 8, 32 new tokens, greedy, stop at EOS) at the
same thread count. llama-cpp-python decodes one sequence at a time, so mixed
adapters cannot share a batch: the active adapter is switched per request
(`llama_set_adapters_lora`) and the KV cache is reset between requests.

    scripts/bench/setup-peers.sh            # once
    python3 scripts/bench/serve_llamacpp.py --adapters-dir /tmp/bench-adapters --threads 2
"""
import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peercommon as pc  # noqa: E402

TOOLS = os.path.join(pc.VENV, "llama.cpp-tools")


def base_config_dir(model_path, out):
    """config.json of the base model, from the GGUF's metadata (the converter needs only this)."""
    from transformers import AutoConfig

    gdir, gfile = os.path.split(model_path)
    cfg = AutoConfig.from_pretrained(gdir, gguf_file=gfile)
    if not cfg.architectures:  # the GGUF loader leaves it unset; the converter dispatches on it
        cfg.architectures = ["LlamaForCausalLM"]
    cfg.save_pretrained(out)
    return out


def content_key(peft_dir):
    """Short hash of an adapter's files: serve-bench rewrites the same adapters on every
    run, so the GGUF cache is keyed by content, not by modification time."""
    h = hashlib.sha256()
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        with open(os.path.join(peft_dir, f), "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()[:12]


def convert(pairs, base_dir):
    """Runs llama.cpp's convert_lora_to_gguf.py on each (PEFT dir, GGUF path) pair, with its
    own vendored gguf-py, in one child process (torch is imported once, not per adapter)."""
    script = os.path.join(TOOLS, "convert_lora_to_gguf.py")
    if not os.path.exists(script):
        sys.exit(f"{script} is absent: run {pc.SETUP}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(TOOLS, "gguf-py"), TOOLS]))
    cmd = [sys.executable, os.path.abspath(__file__), "--convert-batch", script, base_dir]
    cmd += [f"{src}={out}" for src, out in pairs]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    missing = [out for _, out in pairs if not os.path.exists(out)]
    if r.returncode != 0 or missing:
        sys.exit(f"convert_lora_to_gguf.py failed ({len(missing)} of {len(pairs)} not written):\n"
                 f"{r.stderr[-3000:]}")


def convert_batch(script, base_dir, pairs):
    """Child side of convert(): the converter's `__main__` once per adapter, written to a
    temporary name first so an interrupted run leaves no half-written GGUF in the cache."""
    import runpy

    for pair in pairs:
        src, out = pair.split("=", 1)
        tmp = out + ".part"
        sys.argv = [script, "--base", base_dir, "--outtype", "f32", "--outfile", tmp, src]
        runpy.run_path(script, run_name="__main__")
        os.replace(tmp, out)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--convert-batch":
        convert_batch(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    args = pc.serve_args(__doc__.splitlines()[0]).parse_args()
    pc.use_peer_venv()

    import llama_cpp
    from llama_cpp import Llama

    pc.llama_cpp_without_extra_buffers()

    counts = [int(x) for x in args.adapters.split(",")]
    adapters = pc.adapter_dirs(args.adapters_dir, max(counts))
    gguf_dir = os.path.join(args.adapters_dir, "gguf")
    os.makedirs(gguf_dir, exist_ok=True)
    gguf_of = {name: os.path.join(gguf_dir, f"{name}-{content_key(path)}.gguf") for name, path in adapters}
    todo = [(path, gguf_of[name]) for name, path in adapters if not os.path.exists(gguf_of[name])]
    with pc.Measure() as m, tempfile.TemporaryDirectory() as tmp:
        if todo:
            convert(todo, base_config_dir(args.model, os.path.join(tmp, "base")))
    print(f"converted {len(todo)} of {len(adapters)} adapters to GGUF in {m.wall:.1f} s "
          f"(the rest were cached in {gguf_dir})")

    llm = Llama(model_path=args.model, n_ctx=512, n_threads=args.threads,
                n_threads_batch=args.threads, n_batch=512, verbose=False, seed=0)
    handles = []
    with pc.Measure() as m:
        for name, _ in adapters:
            p = gguf_of[name]
            h = llama_cpp.llama_adapter_lora_init(llm._model.model, p.encode())
            if not h:
                sys.exit(f"llama.cpp refused the adapter {p}")
            handles.append(h)
    print(f"loaded {len(handles)} GGUF adapters in {m.wall:.2f} s")

    scale = (ctypes.c_float * 1)(1.0)

    def use(h):
        arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(h)
        if llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, arr, 1, scale) != 0:
            sys.exit("llama_set_adapters_lora failed")

    peer = f"llama.cpp (llama-cpp-python {llama_cpp.__version__}), one sequence at a time"
    print(f"# {peer}, {args.threads} thread(s), {args.new_tokens} new tokens, greedy, "
          f"adapter switched per request")
    print(pc.SERVE_HEADER)

    def complete(prompt, n):
        llm.reset()
        out = llm.create_completion(prompt, max_tokens=n, temperature=0.0, top_k=1)
        return out["usage"]["completion_tokens"]

    use(handles[0])
    complete(pc.PROMPTS[0], 4)  # warm-up
    single = None
    for d in counts:
        plan = pc.request_plan(d, args.concurrency)
        produced = 0
        with pc.Measure() as m:
            for prompt, a in plan:
                use(handles[a])
                produced += complete(prompt, args.new_tokens)
        tps = pc.serve_row(peer, d, len(plan), produced, m, single, args.json, args.threads)
        single = single or tps


if __name__ == "__main__":
    main()
