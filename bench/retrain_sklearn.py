#!/usr/bin/env python3
"""scikit-learn fitting the same feature matrices the service's retrain benchmark trained on.

Reads bench/out/retrain_<n>.csv (written by `cargo bench --bench retrain`) and times
IsolationForest(n_estimators=100, max_samples="auto", contamination=0.05) fit + score_samples on the
training rows (what a retrain does before it swaps), single-threaded, median of 3.
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import IsolationForest

out = Path(__file__).resolve().parent / "out"
for n in (10_000, 100_000):
    path = out / f"retrain_{n}.csv"
    if not path.exists():
        sys.exit(f"{path} is missing: run `cargo bench --bench retrain` first")
    matrix = np.loadtxt(path, delimiter=",", skiprows=1)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        forest = IsolationForest(n_estimators=100, max_samples="auto", contamination=0.05,
                                 random_state=42, n_jobs=1).fit(matrix)
        forest.score_samples(matrix)
        times.append((time.perf_counter() - started) * 1000)
    print(f"SKLEARN logs={n} fit_and_score_ms={statistics.median(times):.1f} (median of 3, n_jobs=1)")
