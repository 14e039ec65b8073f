#!/usr/bin/env python3
"""Accuracy and speed of our isolation forest against scikit-learn's, on the ODDS datasets.

For every CSV in the datasets folder (default ../shared/datasets relative to the repository, or
$FOREST_DATASETS, or --datasets) and every seed 0..N-1, this runs

* ours:    target/release/aioops-mcp-iforest score-csv --trees 100 --max-samples 256 --seed S
           --threads 1 --timings   (fit + score time as the binary measures it, and the process time)
* sklearn: IsolationForest(n_estimators=100, max_samples=256, random_state=S, n_jobs=1)
           .fit(X) then .score_samples(X), timed in-process, single-threaded

and computes ROC AUC of -score against `label` for both from the scores. It prints, per dataset,
mean AUC +- standard error for each side, the difference, and median times with the speed ratio;
a dataset is FLAGGED when |ours - sklearn| > 0.01 + 2 standard errors of the difference.

It creates its own virtualenv (bench/.venv) with scikit-learn 1.9.x on first use and builds the
release binary (skip with --no-build). Usage:

    python3 bench/forest_vs_sklearn.py [--seeds 10] [--only http,cover] [--datasets DIR]
"""

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / "bench" / ".venv"
OUT = REPO / "bench" / "out"
BINARY = REPO / "target" / "release" / "aioops-mcp-iforest"
SKLEARN_REQUIREMENT = "scikit-learn>=1.9,<1.10"
ORDER = [
    "http", "cover", "smtp", "shuttle", "mammography", "annthyroid", "satellite", "pima",
    "breastw", "arrhythmia", "ionosphere", "cardio",
]
LARGE = ["http", "cover", "shuttle"]
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
}


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure_venv(script: str = __file__) -> None:
    """Re-runs `script` (this one by default) inside bench/.venv, created with scikit-learn if
    missing. bench/detection_eval.py uses it too."""
    if in_venv():
        return
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"Creating {VENV} with {SKLEARN_REQUIREMENT} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", SKLEARN_REQUIREMENT],
                       check=True)
    env = dict(os.environ, **SINGLE_THREAD_ENV)
    os.execve(str(python), [str(python), script, *sys.argv[1:]], env)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_data = os.environ.get("FOREST_DATASETS", str(REPO / ".." / "shared" / "datasets"))
    parser.add_argument("--datasets", default=default_data, help="folder of <name>.csv files")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--only", default="", help="comma-separated dataset names")
    parser.add_argument("--no-build", action="store_true", help="use the existing binary")
    return parser.parse_args()


def load(path: Path):
    import numpy as np

    with open(path) as f:
        header = f.readline().strip().split(",")
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    label = header.index("label")
    features = [i for i in range(len(header)) if i != label]
    return data[:, features], data[:, label].astype(int)


def run_ours(path: Path, seed: int, out: Path):
    command = [
        str(BINARY), "score-csv", "--input", str(path), "--output", str(out),
        "--seed", str(seed), "--trees", "100", "--max-samples", "256", "--threads", "1",
        "--timings",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    process_ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        sys.exit(f"ours failed on {path.name}: {done.stderr.strip()}")
    timings = {}
    for line in done.stderr.splitlines():
        if line.startswith("timings:"):
            for item in line.split()[1:]:
                key, value = item.split("=")
                timings[key] = float(value)
    import numpy as np

    return np.loadtxt(out, ndmin=1), timings["fit_score_ms"], process_ms


def run_sklearn(X, seed: int):
    from sklearn.ensemble import IsolationForest

    started = time.perf_counter()
    model = IsolationForest(n_estimators=100, max_samples=256, random_state=seed, n_jobs=1)
    model.fit(X)
    scores = model.score_samples(X)
    return scores, (time.perf_counter() - started) * 1000


def mean_se(values):
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def main() -> None:
    ensure_venv()
    args = parse_args()
    import sklearn
    from sklearn.metrics import roc_auc_score

    datasets = Path(args.datasets).resolve()
    names = [n for n in ORDER if (datasets / f"{n}.csv").exists()]
    names += sorted(p.stem for p in datasets.glob("*.csv") if p.stem not in ORDER)
    if args.only:
        wanted = args.only.split(",")
        names = [n for n in names if n in wanted]
    if not names:
        sys.exit(f"no datasets found in {datasets}")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "aioops-mcp-iforest"],
                       cwd=REPO, check=True)
    OUT.mkdir(parents=True, exist_ok=True)
    seeds = range(args.seeds)
    print(f"scikit-learn {sklearn.__version__}; seeds 0..{args.seeds - 1}; datasets {datasets}")
    print("| dataset | rows | ours AUC | sklearn AUC | diff | ours fit+score ms | ours process ms "
          "| sklearn fit+score ms | speed-up |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    flagged, ratios = [], {}
    for name in names:
        path = datasets / f"{name}.csv"
        X, y = load(path)
        ours_auc, sk_auc, ours_ms, ours_proc, sk_ms = [], [], [], [], []
        for seed in seeds:
            scores, fit_score_ms, process_ms = run_ours(path, seed, OUT / f"{name}-{seed}.txt")
            ours_auc.append(roc_auc_score(y, -scores))
            ours_ms.append(fit_score_ms)
            ours_proc.append(process_ms)
            scores, ms = run_sklearn(X, seed)
            sk_auc.append(roc_auc_score(y, -scores))
            sk_ms.append(ms)
        (om, ose), (sm, sse) = mean_se(ours_auc), mean_se(sk_auc)
        diff = om - sm
        noise = 2 * math.hypot(ose, sse)
        flag = abs(diff) > 0.01 + noise
        if flag:
            flagged.append(name)
        ratio = statistics.median(sk_ms) / statistics.median(ours_ms)
        ratios[name] = ratio
        mark = " **FLAG**" if flag else (" (noise)" if abs(diff) > 0.01 else "")
        print(f"| {name} | {len(y)} | {om:.4f} ± {ose:.4f} | {sm:.4f} ± {sse:.4f} | "
              f"{diff:+.4f}{mark} | {statistics.median(ours_ms):.1f} | "
              f"{statistics.median(ours_proc):.1f} | {statistics.median(sk_ms):.1f} | "
              f"{ratio:.1f}x |", flush=True)
    large = [ratios[n] for n in LARGE if n in ratios]
    if large:
        print(f"\nMedian speed-up on {', '.join(n for n in LARGE if n in ratios)}: "
              f"{statistics.median(large):.1f}x (single-threaded fit + score)")
    if flagged:
        print(f"FLAGGED (|diff| > 0.01 beyond 2 standard errors): {', '.join(flagged)}")
    else:
        print("No dataset differs by more than 0.01 beyond seed noise (2 standard errors).")


if __name__ == "__main__":
    main()
