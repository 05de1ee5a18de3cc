#!/usr/bin/env bash
# One Python environment for every peer benchmark in scripts/bench/ and for
# scripts/peft_logits_check.py: PyTorch, transformers, PEFT, accelerate, gguf,
# numpy, safetensors, and llama-cpp-python built from the PyPI sdist with
# -DGGML_NATIVE=ON (about 7 minutes on a quiet 2-core machine, 15+ under load).
#
# Usage: scripts/bench/setup-peers.sh        (idempotent; re-run to repair)
# Where: $TRIB_PEER_VENV, default target/peer-venv (git-ignored, next to the
#        cargo build outputs). Logs go to target/peer-logs/.
#
# torch comes from PyPI, whose Linux wheel depends on the CUDA runtime wheels
# (nvidia-*, about 3 GB on disk). A CPU-only install from PyPI alone was tried
# (`pip install --no-deps torch` plus its pure-Python dependencies): `import
# torch` then fails with "libcudart.so.13: cannot open shared object file",
# because libtorch_global_deps links the CUDA libraries even on CPU. The
# CPU-only wheels live on download.pytorch.org, which is not reachable here,
# so the full PyPI install is what works. The peers run on CPU regardless.
#
# Versions are pinned to the ones measured in docs/benchmarks.md ("Peers (same
# run)"); change them there and here together.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${TRIB_PEER_VENV:-"$root/target/peer-venv"}
logs="$root/target/peer-logs"
mkdir -p "$logs"
py=python3.11
command -v "$py" >/dev/null || py=python3

if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv"
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)

# Pure-Python and wheel packages first (minutes, mostly the CUDA wheels).
"${pip[@]}" \
  "torch==2.15.0" "transformers==5.24.0" "peft==0.21.2" "accelerate==1.15.0" \
  "gguf==0.19.0" "safetensors==0.8.0" "numpy==2.4.6" "sentencepiece==0.2.3" \
  "setuptools>=77" >"$logs/pydeps.log" 2>&1 \
  || { echo "pip install failed; see $logs/pydeps.log" >&2; exit 1; }

# llama-cpp-python from source, tuned for this CPU (AVX2/AVX-512 as present).
# Known problem (2026-11-24): with GGML_NATIVE=ON on this Xeon the build
# includes ggml's AMX path and the first generation with default model params
# crashes (SIGSEGV). The peer scripts therefore load models with
# use_extra_bufts = false (peercommon.llama_cpp_without_extra_buffers), which
# costs llama.cpp speed: 19.4 CPU ms/token here vs an earlier probe's 122 tok/s
# (docs/benchmarks.md, "Earlier probe figures").
# Alternative tried in session 4 (2026-11-24 16:30-16:45 UTC): a wheel built
# with CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON
# -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON
# -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON
# -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" (no AMX, so
# the default extra buffer types load without crashing). Same run, 1 thread,
# 128 greedy tokens, two rounds (load 2.4-2.8):
#   this build (NATIVE=ON), extra buffers off:  48.2 / 47.4 tok/s, 19.6 CPU ms/token
#   no-AMX AVX-512 build, extra buffers on:     43.7 / 43.3 tok/s, 21.3-21.4 ms
#   no-AMX AVX-512 build, extra buffers off:    46.7 / 46.6 tok/s, 20.4-20.7 ms
# Both builds report AVX512, AVX512_VNNI, AVX512_BF16 and REPACK in
# llama_print_system_info, so the NATIVE=ON build already runs ggml's
# AVX-512 kernels; only the AMX buffer type is off, and it is not what
# the earlier probe's 122 tok/s came from on this 2-core VM. The NATIVE=ON build stays
# (fastest that runs); docs/benchmarks.md ("Generation (issue 4)") has the
# table.
# The sdist vendors llama.cpp; its LoRA converter (convert_lora_to_gguf.py with
# the `conversion` package and gguf-py) is extracted next to the environment
# for serve_llamacpp.py.
sdist_dir="$root/target/peer-sdist"
sdist="$sdist_dir/llama_cpp_python-0.3.36.tar.gz"
if [ ! -f "$sdist" ]; then
  mkdir -p "$sdist_dir"
  "$venv/bin/python" -m pip download --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
    -d "$sdist_dir" "llama-cpp-python==0.3.36" >"$logs/llama-cpp-sdist.log" 2>&1
fi
if ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "building llama-cpp-python from the PyPI sdist (log: $logs/llama-cpp-python.log)"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "${pip[@]}" "$sdist" >"$logs/llama-cpp-python.log" 2>&1 \
    || { echo "llama-cpp-python build failed; see $logs/llama-cpp-python.log" >&2; exit 1; }
fi
tools="$venv/llama.cpp-tools"
if [ ! -f "$tools/convert_lora_to_gguf.py" ]; then
  tmp=$(mktemp -d)
  tar -xzf "$sdist" -C "$tmp"
  src="$tmp/llama_cpp_python-0.3.36/vendor/llama.cpp"
  mkdir -p "$tools"
  cp -r "$src/convert_lora_to_gguf.py" "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$tools/"
  rm -rf "$tmp"
fi

"$venv/bin/python" - <<'PY'
import llama_cpp, peft, torch, transformers
print(f"peer environment ready: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"peft {peft.__version__}, llama-cpp-python {llama_cpp.__version__}")
PY
