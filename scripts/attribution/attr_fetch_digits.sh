#!/usr/bin/env bash
# Fetches scikit-learn's bundled `digits` data set (1,797 × 64, 10 classes) as
# CSV from the scikit-learn wheel on PyPI (no scikit-learn install needed) and
# caches it under target/attr-data/ (git-ignored). Used by `attr-eval`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/attr-data
mkdir -p "$out"
if [[ -s "$out/digits.csv" ]]; then
  echo "$out/digits.csv already present"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" scikit-learn
wheel=$(ls "$tmp"/scikit_learn-*.whl | head -n1)
python3 - "$wheel" "$out/digits.csv" <<'PY'
import gzip, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    data = gzip.decompress(z.read("sklearn/datasets/data/digits.csv.gz"))
lines = data.decode().strip().splitlines()
assert len(lines) == 1797 and len(lines[0].split(",")) == 65, "unexpected digits layout"
open(dest + ".tmp", "w").write("\n".join(lines) + "\n")
import os; os.replace(dest + ".tmp", dest)
print(f"wrote {dest}: {len(lines)} rows (scikit-learn wheel {wheel.rsplit('/',1)[-1]})")
PY
