#!/usr/bin/env python3
"""How well could any per-log test do on detection_eval's joint_shift scenario?

Knows each service's true normal distribution (detection_eval's generators), turns every numeric
feature into its exact z-score, and sweeps several test statistics over the share of normal logs
they may flag (cuts from 100,000 fresh normal logs per service), printing precision, recall, F1 and
the false-positive rate on the seed-0 joint_shift test stream. Run with the harness's venv:

    bench/.venv/bin/python bench/oracle_sweep.py [--shift-sd 3.0]
        (after python3 bench/detection_eval.py created the venv)

--shift-sd S moves each chosen feature S ± 0.2 standard deviations instead of the harness's
2.8–3.2: how large a joint shift has to be before a per-log test can reach a given F1.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detection_eval as d  # noqa: E402

BUDGETS = [0.0005, 0.001, 0.002, 0.003, 0.005]
NORMAL_LOGS = 100_000


def statistics_of(z):
    squares = np.sort(z * z, axis=1)[:, ::-1]
    return {
        "sum of z^2 (chi-square)": squares.sum(1),
        "sum of the 3 largest z^2": squares[:, :3].sum(1),
        "sum of the 2 largest z^2": squares[:, :2].sum(1),
        "largest z^2": squares[:, 0],
        "sum of max(|z| - 2, 0)": np.maximum(np.abs(z) - 2.0, 0).sum(1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shift-sd", type=float, default=None,
                        help="centre of the joint shift in standard deviations (default: the harness's)")
    args = parser.parse_args()
    if args.shift_sd is not None:
        d.set_joint_shift(args.shift_sd)
    print(f"joint shift: {d.JOINT_SHIFT_SD[0]:.1f}-{d.JOINT_SHIFT_SD[1]:.1f} standard deviations")
    services = d.make_services()
    _, test = d.build_scenario("joint_shift", 0, services)
    rng = np.random.default_rng([99, 1])
    normal_stats, test_stats = {}, {}
    for s, svc in enumerate(services):
        normal = [svc.finish(svc.sample(rng)) for _ in range(NORMAL_LOGS)]
        normal_stats[s] = statistics_of(d.exact_z(svc, normal))
        idx = [k for k, (si, _) in enumerate(test) if si == s]
        test_stats[s] = (idx, statistics_of(d.exact_z(svc, [test[k][1] for k in idx])))
    kinds = [r["kind"] for _, r in test]
    subs = [r["sub"] for _, r in test]
    print("| statistic | budget | precision | recall | F1 | FPR |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in normal_stats[0]:
        for budget in BUDGETS:
            flags = [False] * len(test)
            for s in normal_stats:
                cut = np.quantile(normal_stats[s][name], 1 - budget)
                idx, values = test_stats[s]
                for j, k in enumerate(idx):
                    flags[k] = bool(values[name][j] > cut)
            m = d.metrics(flags, kinds, subs)
            print(f"| {name} | {budget} | {m['precision']:.3f} | {m['recall']:.3f} | "
                  f"{m['f1']:.3f} | {m['fpr']:.4f} |")


if __name__ == "__main__":
    main()
