#!/usr/bin/env python3
"""DataInf speed and agreement vs `dattri` (IFAttributorDataInf) on CPU, same gradients.

Usage: scripts/bench/attr_dattri.py [--train N --dim D --tests T --threads K]

Runs `attr-bench datainf` (random per-example gradients, our DataInf, timings
and scores written to target/attr-bench-datainf/), then feeds the *same*
gradients to dattri's DataInf test-representation transform (the code path of
`IFAttributorDataInf.transform_test_rep`, followed by the inner product with
the training representations, as its `attribute` does) with the same damping
(dattri's `regularization` defaults to 0, so it is set explicitly to our λ),
times it, and reports pairs/s and the Spearman correlation of the scores.
Needs a venv with `pip install dattri torch` (target/attr-py/dattri-venv).
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "target/attr-py/dattri-venv"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--tests", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", default="release")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = ROOT / "target/attr-bench-datainf"
    if not a.inner:
        py = VENV / "bin/python"
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", "dattri", "torch"], check=True)
        flag = ["--release"] if a.profile == "release" else []
        subprocess.run(["cargo", "build", "-q", *flag, "-p", "trib-attribution", "--bin", "attr-bench"], check=True, cwd=ROOT)
        env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
        subprocess.run([str(ROOT / "target" / a.profile / "attr-bench"), "datainf", str(work), "--train", str(a.train),
                        "--dim", str(a.dim), "--tests", str(a.tests)], check=True, env=env)
        os.execv(str(py), [str(py), __file__, "--inner", "--threads", str(a.threads)])
    peer(work, a.threads)


def peer(work: Path, threads: int):
    import numpy as np
    import torch
    from scipy.stats import spearmanr
    from dattri.algorithm import IFAttributorDataInf

    torch.set_num_threads(threads)
    raw = (work / "grads.bin").read_bytes()
    n, d, t = np.frombuffer(raw[:12], dtype="<u4")
    arr = np.frombuffer(raw[12:], dtype="<f4")
    g = torch.from_numpy(arr[: n * d].reshape(n, d).copy())
    v = torch.from_numpy(arr[n * d:].reshape(t, d).copy())
    ours = json.loads((work / "ours_datainf.json").read_text())
    lam = float(ours["lambda"])

    # dattri's DataInf transform on our gradients: bypass gradient generation
    # (no model) by filling the cache its `cache()` would fill, one layer.
    att = IFAttributorDataInf.__new__(IFAttributorDataInf)
    att.regularization = lam
    att._cached_train_reps = {0: g}
    att._get_layer_wise_reps = lambda ckpt_idx, q: (q,)
    best = float("inf")
    for _ in range(3):
        s = time.perf_counter()
        with torch.no_grad():
            q = att.transform_test_rep(0, v)
            scores = (g @ q.T).T  # tests × train, as the inner-product attributor does
        best = min(best, time.perf_counter() - s)
    theirs = scores.numpy().ravel()
    mine = np.asarray(ours["scores"])
    rho = spearmanr(theirs, mine).statistic
    res = dict(n=int(n), d=int(d), tests=int(t), lambda_=lam, threads=threads,
               ours_s=ours["seconds"], ours_pairs_per_s=ours["pairs_per_s"],
               dattri_s=best, dattri_pairs_per_s=int(n) * int(t) / best, spearman=float(rho),
               max_rel_diff=float(np.max(np.abs(theirs - mine)) / np.max(np.abs(mine))))
    (work / "peer.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    print(f"\n| DataInf, n = {n}, d = {d}, {t} test gradients, {threads} threads | trib-attribution | dattri {__import__('importlib.metadata').metadata.version('dattri')} (torch {torch.__version__}) | ratio |")
    print("|---|---|---|---|")
    print(f"| time | {ours['seconds']:.3f} s | {best:.3f} s | {best/ours['seconds']:.1f}× |")
    print(f"| influence pairs / s | {ours['pairs_per_s']:,.0f} | {res['dattri_pairs_per_s']:,.0f} | |")
    print(f"| Spearman between the two score sets | {rho:.6f} | | |")


if __name__ == "__main__":
    main()
