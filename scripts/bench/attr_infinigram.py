#!/usr/bin/env python3
"""Token index speed and compatibility vs the `infini-gram` package (2.6.0).

Usage: scripts/bench/attr_infinigram.py [--tokens N] [--work DIR] [--profile release|debug]

1. runs `attr-bench prepare` (our corpus, our index built with libsais, our
   count and trace timings) unless DIR/ours.json exists;
2. builds infini-gram's own index from the same pre-tokenized
   tokenized.0/offset.0 with its indexer (`python -m infini_gram.indexing`),
   with --cpus 1 and 2, and compares its table.0 with ours byte for byte;
3. opens OUR index directory with InfiniGramEngine and checks every count
   against our engine and against infini-gram's own index;
4. times count and attribute (the OLMoTrace span finder) through the engine,
   and compares its spans with our maximal spans.

Needs Python >= 3.11 with `pip install infini-gram==2.6.0` (the script creates
target/attr-py/venv if missing). Results go to DIR/peer.json and a markdown
table on stdout.
"""
import argparse, filecmp, json, os, shutil, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "target/attr-py/venv"


def ensure_venv():
    py = VENV / "bin/python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "infini-gram==2.6.0", "numpy"], check=True)
    return py


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--work", default=str(ROOT / "target/attr-bench"))
    ap.add_argument("--profile", default="release")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work).resolve()
    if not a.inner:
        py = ensure_venv()
        if not (work / "ours.json").exists():
            flag = ["--release"] if a.profile == "release" else []
            subprocess.run(["cargo", "build", "-q", *flag, "-p", "trib-attribution", "--bin", "attr-bench"], check=True, cwd=ROOT)
            exe = ROOT / "target" / a.profile / "attr-bench"
            subprocess.run([str(exe), "prepare", str(work), "--tokens", str(a.tokens)], check=True)
        os.execv(str(py), [str(py), __file__, "--inner", "--work", str(work)])
    run_peer(work)


def run_peer(work: Path):
    from infini_gram.engine import InfiniGramEngine
    import infini_gram
    ours = json.loads((work / "ours.json").read_text())
    pkg_dir = Path(infini_gram.__file__).parent
    build = {}
    for cpus in (1, 2):
        d = work / f"ig-{cpus}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        for f in ("tokenized.0", "offset.0"):
            shutil.copy(work / "raw" / f, d / f)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(work / "raw"),
                        "--save_dir", str(d), "--token_dtype", "u16", "--cpus", str(cpus), "--mem", "8",
                        "--ulimit", "1024"], check=True, cwd=pkg_dir, stdout=subprocess.DEVNULL)
        build[cpus] = time.perf_counter() - t
    identical_table = filecmp.cmp(work / "ig-2/table.0", work / "ours/table.0", shallow=False)

    kw = dict(eos_token_id=0, vocab_size=65535, token_dtype="u16")
    eng_ours = InfiniGramEngine(index_dir=str(work / "ours"), bow_ids_path=str(work / "bow_ids.txt"), **kw)
    eng_ig = InfiniGramEngine(index_dir=str(work / "ig-2"), bow_ids_path=str(work / "bow_ids.txt"), **kw)
    qs, counts = ours["queries"], ours["counts"]
    mism_ours = sum(eng_ours.count(input_ids=q)["count"] != c for q, c in zip(qs, counts))
    mism_ig = sum(eng_ig.count(input_ids=q)["count"] != c for q, c in zip(qs, counts))
    t = time.perf_counter()
    for q in qs:
        eng_ig.count(input_ids=q)
    count_us = (time.perf_counter() - t) * 1e6 / len(qs)

    times, agree, total_ours, total_ig = [], 0, 0, 0
    for ans, our_spans in zip(ours["answers"], ours["our_spans"]):
        t = time.perf_counter()
        r = eng_ig.attribute(input_ids=ans, delim_ids=ours["delim_ids"], min_len=ours["min_len"],
                             max_cnt=ours["max_cnt"], enforce_bow=True)
        times.append((time.perf_counter() - t) * 1e3)
        theirs = {(s["l"], s["r"]) for s in r["spans"]}
        mine = {(s[0], s[1]) for s in our_spans}
        agree += len(theirs & mine)
        total_ours += len(mine)
        total_ig += len(theirs)
    res = dict(
        tokens=ours["tokens"], documents=ours["documents"],
        ours_build_s=ours["build_s"], ig_build_s=build, identical_table=identical_table,
        count_mismatches_engine_on_our_index=mism_ours, count_mismatches_engine_on_its_index=mism_ig,
        queries=len(qs), ours_count_us=ours["count_us"], ig_count_us=count_us,
        ours_span_ms=ours["span_ms_median"], ours_trace_ms=ours["trace_ms_median"],
        ig_attribute_ms=statistics.median(times), spans_ours=total_ours, spans_ig=total_ig, spans_common=agree,
    )
    (work / "peer.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    b1, b2 = float(ours["build_s"]["1"]), float(ours["build_s"]["2"])
    print(f"\n| measure ({res['tokens']:,} tokens, {res['documents']:,} rows) | trib-attribution | infini-gram 2.6.0 | ratio |")
    print("|---|---|---|---|")
    print(f"| index build, 1 thread | {b1:.3f} s | {build[1]:.3f} s | {build[1]/b1:.1f}× |")
    print(f"| index build, 2 threads | {b2:.3f} s | {build[2]:.3f} s | {build[2]/b2:.1f}× |")
    print(f"| count, mean per query ({len(qs)} queries, 1 thread) | {res['ours_count_us']:.1f} µs | {count_us:.1f} µs (via Python) | {count_us/res['ours_count_us']:.1f}× |")
    print(f"| maximal spans of a ~400-token answer (median, 1 thread) | {res['ours_span_ms']:.2f} ms | {res['ig_attribute_ms']:.2f} ms (`attribute`) | {res['ig_attribute_ms']/res['ours_span_ms']:.1f}× |")
    print(f"| full trace incl. ranking, rows, credit (median) | {res['ours_trace_ms']:.2f} ms | — | — |")
    print(f"| table.0 identical | {identical_table} | | |")
    print(f"| count mismatches: engine on our index / on its index | {mism_ours} / {mism_ig} of {len(qs)} | | |")
    print(f"| spans: ours / infini-gram / identical | {total_ours} / {total_ig} / {agree} | | |")


if __name__ == "__main__":
    main()
