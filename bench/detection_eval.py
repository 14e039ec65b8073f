#!/usr/bin/env python3
"""Detection quality of the running service on labelled synthetic log streams, against scikit-learn.

What it measures
----------------
For every scenario (and seed), the harness starts the service binary as a subprocess on 127.0.0.1 with
a fresh DATA_DIR (so it starts with no model and no rules of ours), and talks to it over real HTTP:

1. It posts ~2,100 NORMAL training logs per service (three services of different shapes, interleaved,
   batches of 200) to POST /api/v1/stream/multi-source. Each service learns its own baseline from them
   (first model at 50 logs, refitted as its sample doubles up to the reservoir size, 2,048); the harness
   waits until every service's `training_samples` in GET /api/v1/models has stopped growing.
2. It posts a test stream of 3,000 logs per service, ~3 % of them labelled anomalies of the scenario's
   kind, and reads the service's verdict (`is_anomaly`) for every log.

Normal logs look like real service logs: log-normal latencies and sizes (sizes correlated with
latency), Poisson counts, a bounded hit ratio, a status that is mostly 200 with some 201/304 and ~3 %
404 (normal), a constant region, INFO only for one service and INFO with occasional WARN for the
others, a small set of methods/endpoints (tables/ops), and high-cardinality text that must never count
as anomalous by being new: request/trace ids, ~500 hosts, free-text messages holding numbers and ids,
many user agents. `checkout` and `search` send JSON logs, `inventory` sends key=value logs. No
feature or service name matches a built-in threshold rule, so every flag comes from the model.

Scenarios (anomaly kinds in brackets):
  far_spikes            one continuous feature x10-x100 its median, or a size /20 [far_spike]
  new_category          a new value of a constant field (level ERROR, a new region or pool,
                        shard_count 4 -> 8) or of a small categorical one (endpoint, method,
                        table, op) [new_category]
  joint_shift           2-4 features each moved ~3 standard deviations (log scale for log-normal
                        ones) in the same log, each still inside its normal range [joint_shift]
  far_counts            a count (items, retries, queue_depth) at 40-200 where it is ~Poisson(0.2-3)
                        [far_count]
  level_change          latency x4 for a contiguous stretch of 3 % of each service's test stream;
                        every log in it is an anomaly [level_change]
  slow_drift            no anomalies; the medians of latencies, sizes and counts rise smoothly by
                        40-60 % over the test stream. Run with RETRAIN_INTERVAL_SECONDS=1 and the test
                        stream paced (batches of 100, 100 ms pauses), which compresses an hourly
                        retrain schedule over a long drift into ~10 refits over ~10 s. Reports the
                        false-positive rate.
  contaminated_training a mix of far_spike / new_category / joint_shift; 2 % of the TRAINING logs are
                        such anomalies too (labelled); only the test stream is scored.

Side by side, per scenario and service, scikit-learn's IsolationForest(n_estimators=100,
max_samples='auto', random_state=seed) is fitted on the same training logs' numeric features (the
ones the harness generated; missing values -> training median) and judged on the test logs as
  sklearn@0.05   contamination=0.05, predict()
  sklearn@best   the threshold on score_samples() that maximizes F1 on the test set (an oracle;
                 with no anomalies, as in slow_drift, it flags nothing)
  oracle@0.001   not a detector but a ceiling: it knows each service's true normal distribution
                 (the generator's own laws), turns every numeric feature of a log into its exact
                 z-score and flags the 0.1 % least likely normal logs by the sum of their squares
                 (the cut from 100,000 fresh normal logs per service). No detector that learns from
                 logs can beat it on anomalies of unknown shape in numeric features; it sees no text,
                 so it misses every new category.
scikit-learn cannot see text fields, so it is blind to most new categories by construction; where
the anomalies are invisible to it, the F1-maximizing threshold degenerates to flagging most logs.
Ours is not bit-for-bit reproducible from run to run even with the same seed: which logs are in a
service's reservoir when each automatic fit snapshots it depends on timing.

Per scenario (services pooled) it prints precision, recall, F1, false-positive rate (share of normal
test logs flagged) and recall per anomaly kind for ours, sklearn@0.05 and sklearn@best, then recall
per sub-kind, example `reasons` of our anomalies when the service returns them, anything odd the
service did (HTTP errors, logs that failed to parse, rule hits, unscored logs, warnings it logged) and
the total time.

scikit-learn runs in a virtualenv, bench/.venv, created on first use with scikit-learn 1.9.x (as
bench/forest_vs_sklearn.py does), single-threaded.

Usage
-----
    python3 bench/detection_eval.py [--binary target/release/aioops-mcp-iforest] [--only a,b]
        [--seeds N] [--json PATH] [--check] [--extra-env VAR=value ...]
        [--joint-shift-sd S] [--distinct-contaminants]

--joint-shift-sd S moves each feature of a joint shift S ± 0.2 standard deviations (default 3);
--distinct-contaminants gives contaminated_training's training anomalies other new values than its
test anomalies (by default they are the same, each ~3 times in the training sample).

--check exits 1 unless, for ours, every scenario with anomalies has F1 >= 0.9 and every scenario
(slow_drift included) has a false-positive rate <= 0.005. Ports 8300-8399 on 127.0.0.1 are used.
"""

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BINARY = REPO / "target" / "release" / "aioops-mcp-iforest"

PORTS = range(8300, 8400)
HTTP_TIMEOUT = 60.0          # seconds, every request
HEALTH_TIMEOUT = 30.0        # seconds for the service to answer /health
SETTLE_QUIET = 1.5           # training_samples unchanged this long = training has settled
SETTLE_GIVE_UP_QUIET = 4.0   # ... or this long even if not every service reached the expected count
SETTLE_TIMEOUT = 120.0
BATCH = 200
N_TRAIN = 2100               # per service: a little above the reservoir (2048) so the last
                             # automatic fit happens during training, not during the test stream
N_TEST = 3000                # per service
ANOMALY_SHARE = 0.03
TRAIN_CONTAMINATION = 0.02
TOP_UP = 60                  # normal logs per service posted when training settled short
DRIFT_BATCH = 100
DRIFT_PAUSE = 0.1            # seconds between drift batches
DRIFT_RETRAIN_SECONDS = "1"
CHECK_F1 = 0.9
JOINT_SHIFT_SD = (2.8, 3.2)  # a joint shift moves each chosen feature this many standard deviations
DISTINCT_TRAIN_NOVEL = False  # --distinct-contaminants: training's new values differ from the test's
CHECK_FPR = 0.005
METHODS = ["ours", "sklearn@0.05", "sklearn@best", "oracle@0.001"]
ORACLE_BUDGET = 0.001        # the oracle flags this share of normal logs (the service's default budget)
ORACLE_SAMPLE = 100_000      # normal logs per service that set the oracle's cut


def ensure_venv() -> None:
    """Re-runs this script inside bench/.venv, as bench/forest_vs_sklearn.py does."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from forest_vs_sklearn import ensure_venv as ensure_shared_venv

    ensure_shared_venv(__file__)


# ----------------------------------------------------------------------------------------------
# Services: what their normal logs look like
# ----------------------------------------------------------------------------------------------

LOGN, CORR, POIS, RATIO, CHOICE, CONST = "lognormal", "correlated", "poisson", "ratio", "choice", "const"


class Feature:
    """One numeric field of a service's logs and how it is distributed."""

    def __init__(self, name, kind, *, median=None, sigma=None, base=None, slope=None, resid=None,
                 lam=None, a=None, b=None, values=None, probs=None, value=None, decimals=0,
                 size=False, spike=False, count=False, shift=False, drift=False):
        self.name, self.kind = name, kind
        self.median, self.sigma, self.base, self.slope, self.resid = median, sigma, base, slope, resid
        self.lam, self.a, self.b = lam, a, b
        self.values, self.probs, self.value = values, probs, value
        self.decimals = decimals
        self.size = size      # a size: a far spike may also be /20
        self.spike = spike    # a far spike may hit it
        self.count = count    # a far count may hit it
        self.shift = shift    # a joint shift may move it
        self.drift = drift    # its median drifts in slow_drift

    def finish(self, value):
        if self.kind in (POIS, CHOICE, CONST) or self.decimals == 0:
            return int(round(value))
        return round(float(value), self.decimals)


class Service:
    def __init__(self, name, fmt, source, features, levels, consts, cats, novel, render):
        self.name, self.fmt, self.source = name, fmt, source
        self.features = features
        self.by_name = {f.name: f for f in features}
        self.levels = levels          # (values, probabilities)
        self.consts = consts          # constant text fields
        self.cats = cats              # small categorical text fields: name -> (values, probs)
        self.novel = novel            # new-category anomalies: (field, new value)
        self.render = render          # (record, timestamp) -> raw_log

    def numeric_names(self):
        return [f.name for f in self.features]

    def center_sd(self, f):
        """Centre and standard deviation on the scale a joint shift moves the feature on."""
        if f.kind == LOGN:
            return math.log(f.median), f.sigma
        if f.kind == CORR:
            base = self.by_name[f.base]
            return math.log(f.median), math.hypot(f.slope * base.sigma, f.resid)
        if f.kind == POIS:
            return f.lam, math.sqrt(f.lam)
        if f.kind == RATIO:
            s = f.a + f.b
            return f.a / s, math.sqrt(f.a * f.b / (s * s * (s + 1)))
        raise ValueError(f.kind)

    def sample(self, rng, drift=None):
        """A normal record: numeric features, level and text fields."""
        num, z = {}, {}
        for f in self.features:
            m = drift.get(f.name, 1.0) if drift else 1.0
            if f.kind == LOGN:
                z[f.name] = rng.standard_normal()
                v = f.median * m * math.exp(f.sigma * z[f.name])
            elif f.kind == CORR:
                base = self.by_name[f.base]
                v = f.median * m * math.exp(f.slope * base.sigma * z[f.base]
                                            + f.resid * rng.standard_normal())
            elif f.kind == POIS:
                v = rng.poisson(f.lam * m)
            elif f.kind == RATIO:
                v = rng.beta(f.a, f.b)
            elif f.kind == CHOICE:
                v = f.values[rng.choice(len(f.values), p=f.probs)]
            else:
                v = f.value
            num[f.name] = v
        text = dict(self.consts)
        for name, (values, probs) in self.cats.items():
            text[name] = values[rng.choice(len(values), p=probs)]
        values, probs = self.levels
        level = values[rng.choice(len(values), p=probs)] if len(values) > 1 else values[0]
        extra = {
            "host_n": int(rng.integers(500)),
            "uuid": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
            "n1": int(rng.integers(10_000, 99_999)),
            "n2": int(rng.integers(1, 50_000)),
            "ua": (int(rng.integers(len(UA_OS))), int(rng.integers(96, 132)),
                   int(rng.integers(1000, 7000)), int(rng.integers(0, 250))),
            "word": SEARCH_WORDS[int(rng.integers(len(SEARCH_WORDS)))],
        }
        return {"num": num, "text": text, "level": level, "extra": extra}

    def finish(self, record):
        record["num"] = {f.name: f.finish(record["num"][f.name]) for f in self.features}
        return record


UA_OS = ["Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 14_4", "X11; Linux x86_64",
         "iPhone; CPU iPhone OS 17_4 like Mac OS X", "Linux; Android 14; Pixel 8",
         "iPad; CPU OS 17_3 like Mac OS X", "Windows NT 11.0; Win64; x64", "X11; Ubuntu; Linux"]
SEARCH_WORDS = ["shoes", "running shoes", "usb-c cable", "kettle", "desk lamp", "headphones",
                "winter jacket", "coffee beans", "yoga mat", "phone case", "backpack", "monitor 27",
                "gift card", "socks", "water bottle", "keyboard", "sunglasses", "charger 65w"]


def user_agent(ua):
    os_i, major, build, patch = ua
    return (f"Mozilla/5.0 ({UA_OS[os_i]}) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{major}.0.{build}.{patch} Safari/537.36")


def render_checkout(r, ts):
    n, t, e = r["num"], r["text"], r["extra"]
    log = {
        "timestamp": ts,
        "level": r["level"],
        "message": (f"{t['method']} {t['endpoint']} completed for order {e['n1']} "
                    f"user u{e['n2']} in {n['latency_ms']}ms"),
        "latency_ms": n["latency_ms"], "bytes": n["bytes"], "items": n["items"],
        "retries": n["retries"], "cache_hit_ratio": n["cache_hit_ratio"], "status": n["status"],
        "method": t["method"], "endpoint": t["endpoint"], "region": t["region"],
        "host": f"web-{e['host_n']:04d}", "request_id": e["uuid"],
        "user_agent": user_agent(e["ua"]),
    }
    return json.dumps(log, separators=(",", ":"))


def render_search(r, ts):
    n, t, e = r["num"], r["text"], r["extra"]
    log = {
        "timestamp": ts,
        "level": r["level"],
        "message": (f"query \"{e['word']}\" page {1 + e['n2'] % 5} returned {n['results']} hits "
                    f"for session s{e['n1']}"),
        "latency_ms": n["latency_ms"], "db_ms": n["db_ms"], "bytes": n["bytes"],
        "results": n["results"], "queue_depth": n["queue_depth"],
        "cache_hit_ratio": n["cache_hit_ratio"], "shard_count": n["shard_count"],
        "status": n["status"], "method": t["method"], "endpoint": t["endpoint"],
        "region": t["region"], "host": f"search-{e['host_n']:03d}", "request_id": e["uuid"],
        "user_agent": user_agent(e["ua"]),
    }
    return json.dumps(log, separators=(",", ":"))


def render_inventory(r, ts):
    n, t, e = r["num"], r["text"], r["extra"]
    trace = e["uuid"].replace("-", "")[:16]
    msg = f"reserved {n['rows']} units of sku-{e['n1']} for batch {e['n2']}"
    return (f"{ts} {r['level']} query_ms={n['query_ms']} rows={n['rows']} retries={n['retries']} "
            f"buffer_hit_ratio={n['buffer_hit_ratio']} table={t['table']} op={t['op']} "
            f"pool={t['pool']} region={t['region']} host=db-{e['host_n']:03d} trace_id={trace} "
            f"client=inventory-worker-{e['n2'] % 700}/{e['ua'][1]}.{e['ua'][3]} msg=\"{msg}\"")


STATUS = dict(values=[200, 201, 304, 404], probs=[0.85, 0.07, 0.05, 0.03])


def make_services():
    checkout = Service(
        "checkout", "json", "k8s/checkout",
        [
            Feature("latency_ms", LOGN, median=120.0, sigma=0.35, decimals=1,
                    spike=True, shift=True, drift=True),
            Feature("bytes", CORR, median=5200.0, base="latency_ms", slope=0.8, resid=0.25,
                    size=True, spike=True, shift=True, drift=True),
            Feature("items", POIS, lam=3.0, count=True, shift=True, drift=True),
            Feature("retries", POIS, lam=0.2, count=True),
            Feature("cache_hit_ratio", RATIO, a=9.0, b=1.5, decimals=3, shift=True),
            Feature("status", CHOICE, **STATUS),
        ],
        levels=(["INFO"], [1.0]),
        consts={"region": "eu-west-1"},
        cats={"method": (["GET", "POST"], [0.6, 0.4]),
              "endpoint": (["/api/cart", "/api/checkout", "/api/orders", "/api/payment-methods"],
                           [0.4, 0.25, 0.25, 0.1])},
        novel=[("level", "ERROR"), ("region", "sa-east-1"), ("endpoint", "/api/admin/export"),
               ("method", "DELETE")],
        render=render_checkout,
    )
    search = Service(
        "search", "json", "k8s/search",
        [
            Feature("latency_ms", LOGN, median=45.0, sigma=0.45, decimals=1,
                    spike=True, shift=True, drift=True),
            Feature("db_ms", CORR, median=18.0, base="latency_ms", slope=0.9, resid=0.25,
                    decimals=2, spike=True, shift=True, drift=True),
            Feature("bytes", CORR, median=14000.0, base="latency_ms", slope=0.5, resid=0.3,
                    size=True, spike=True, shift=True, drift=True),
            Feature("results", POIS, lam=25.0, shift=True, drift=True),
            Feature("queue_depth", POIS, lam=2.0, count=True, shift=True, drift=True),
            Feature("cache_hit_ratio", RATIO, a=6.0, b=3.0, decimals=3, shift=True),
            Feature("shard_count", CONST, value=4),
            Feature("status", CHOICE, values=[200, 304, 404], probs=[0.9, 0.07, 0.03]),
        ],
        levels=(["INFO", "WARN"], [0.97, 0.03]),
        consts={"region": "us-east-1", "method": "GET"},
        cats={"endpoint": (["/search", "/suggest", "/facets"], [0.6, 0.3, 0.1])},
        novel=[("level", "ERROR"), ("region", "ap-northeast-1"), ("shard_count", 8),
               ("endpoint", "/internal/reindex"), ("method", "PUT")],
        render=render_search,
    )
    inventory = Service(
        "inventory", "key_value", "syslog/inventory",
        [
            Feature("query_ms", LOGN, median=12.0, sigma=0.5, decimals=2,
                    spike=True, shift=True, drift=True),
            Feature("rows", CORR, median=40.0, base="query_ms", slope=0.7, resid=0.3,
                    size=True, spike=True, shift=True, drift=True),
            Feature("retries", POIS, lam=2.0, count=True, shift=True, drift=True),
            Feature("buffer_hit_ratio", RATIO, a=20.0, b=2.0, decimals=3, shift=True),
        ],
        levels=(["INFO", "WARN"], [0.98, 0.02]),
        consts={"region": "ap-south-1", "pool": "primary"},
        cats={"table": (["orders", "items", "stock", "suppliers"], [0.4, 0.3, 0.2, 0.1]),
              "op": (["select", "update", "insert"], [0.7, 0.2, 0.1])},
        novel=[("level", "ERROR"), ("region", "eu-central-1"), ("pool", "replica-9"),
               ("table", "audit_log"), ("op", "delete")],
        render=render_inventory,
    )
    return [checkout, search, inventory]


# ----------------------------------------------------------------------------------------------
# Anomalies
# ----------------------------------------------------------------------------------------------

def far_spike(svc, r, rng):
    f = [f for f in svc.features if f.spike][int(rng.integers(sum(f.spike for f in svc.features)))]
    if f.size and rng.random() < 0.5:
        r["num"][f.name] = f.median / 20.0 * rng.uniform(0.8, 1.25)
        return f"far_spike/{f.name}/div20"
    r["num"][f.name] = f.median * math.exp(rng.uniform(math.log(10), math.log(100)))
    return f"far_spike/{f.name}"


def new_category(svc, r, rng, distinct=False):
    field, value = svc.novel[int(rng.integers(len(svc.novel)))]
    if distinct:  # another new value of the same field: "CRITICAL", "sa-east-1-b", 8 -> 16
        value = ("CRITICAL" if field == "level" else
                 value * 2 if isinstance(value, (int, float)) else f"{value}-b")
    if field == "level":
        r["level"] = value
    elif field in svc.by_name:
        r["num"][field] = value
    else:
        r["text"][field] = value
    return f"new_category/{field}"


def joint_shift(svc, r, rng):
    cands = [f for f in svc.features if f.shift]
    k = int(rng.integers(2, min(4, len(cands)) + 1))
    chosen = [cands[i] for i in sorted(rng.choice(len(cands), size=k, replace=False))]
    for f in chosen:
        center, sd = svc.center_sd(f)
        z = rng.uniform(*JOINT_SHIFT_SD)
        if f.kind in (LOGN, CORR):
            sign = 1.0 if rng.random() < 0.5 else -1.0
            r["num"][f.name] = math.exp(center + sign * z * sd)
        elif f.kind == POIS:          # counts can only go up by 3 sd
            r["num"][f.name] = center + z * sd
        else:                          # a ratio near 1 can only go down by 3 sd
            r["num"][f.name] = min(1.0, max(0.0, center - z * sd))
    return "joint_shift/" + "+".join(f.name for f in chosen)


def set_joint_shift(sd):
    """Joint shifts move each chosen feature `sd` ± 0.2 standard deviations from now on."""
    global JOINT_SHIFT_SD
    JOINT_SHIFT_SD = (sd - 0.2, sd + 0.2)


def far_count(svc, r, rng):
    cands = [f for f in svc.features if f.count]
    f = cands[int(rng.integers(len(cands)))]
    r["num"][f.name] = int(rng.integers(40, 201))
    return f"far_count/{f.name}"


MUTATORS = {"far_spike": far_spike, "new_category": new_category, "joint_shift": joint_shift,
            "far_count": far_count}
STEP_FEATURE = {"checkout": "latency_ms", "search": "latency_ms", "inventory": "query_ms"}


# ----------------------------------------------------------------------------------------------
# Scenarios: labelled training and test streams
# ----------------------------------------------------------------------------------------------

SCENARIOS = {
    "far_spikes": dict(kinds=["far_spike"]),
    "new_category": dict(kinds=["new_category"]),
    "joint_shift": dict(kinds=["joint_shift"]),
    "far_counts": dict(kinds=["far_count"]),
    "level_change": dict(step=True),
    "slow_drift": dict(drift=True),
    "contaminated_training": dict(kinds=["far_spike", "new_category", "joint_shift"],
                                  train_kinds=["far_spike", "new_category", "joint_shift"]),
}


def labelled_stream(svc, rng, n, kinds, share, drift_rates=None, step=False, training=False):
    """n records of one service; `share` of them (at random places) anomalies of `kinds`."""
    n_anom = int(round(share * n)) if (kinds or step) else 0
    anomalous = set()
    if step and n_anom:
        start = int(rng.integers(int(0.1 * n), int(0.85 * n)))
        anomalous = set(range(start, start + n_anom))
    elif n_anom:
        anomalous = set(int(i) for i in rng.choice(n, size=n_anom, replace=False))
    out = []
    for i in range(n):
        drift = None
        if drift_rates:
            frac = i / max(1, n - 1)
            drift = {name: 1.0 + rate * frac for name, rate in drift_rates.items()}
        r = svc.sample(rng, drift)
        kind = sub = None
        if i in anomalous:
            if step:
                name = STEP_FEATURE[svc.name]
                r["num"][name] *= 4.0
                kind, sub = "level_change", f"level_change/{name}"
            else:
                kind = kinds[int(rng.integers(len(kinds)))]
                if kind == "new_category" and training and DISTINCT_TRAIN_NOVEL:
                    sub = new_category(svc, r, rng, distinct=True)
                else:
                    sub = MUTATORS[kind](svc, r, rng)
        r = svc.finish(r)
        r["kind"], r["sub"] = kind, sub
        out.append(r)
    return out


def interleave(rng, streams):
    """One stream of (service index, record), each service's order kept."""
    order = []
    for s, stream in enumerate(streams):
        order += [s] * len(stream)
    order = [int(x) for x in rng.permutation(order)]
    pos = [0] * len(streams)
    merged = []
    for s in order:
        merged.append((s, streams[s][pos[s]]))
        pos[s] += 1
    return merged


def build_scenario(name, seed, services):
    import numpy as np

    spec = SCENARIOS[name]
    rng = np.random.default_rng([seed, list(SCENARIOS).index(name), 20240115])
    train, test = [], []
    for svc in services:
        train.append(labelled_stream(svc, rng, N_TRAIN, spec.get("train_kinds"),
                                     TRAIN_CONTAMINATION, training=True))
        drift_rates = None
        if spec.get("drift"):
            drift_rates = {f.name: rng.uniform(0.4, 0.6) for f in svc.features if f.drift}
        test.append(labelled_stream(svc, rng, N_TEST, spec.get("kinds"), ANOMALY_SHARE,
                                    drift_rates=drift_rates, step=spec.get("step", False)))
    return interleave(rng, train), interleave(rng, test)


def to_payload(services, merged, start):
    logs = []
    for k, (s, r) in enumerate(merged):
        svc = services[s]
        t = start + timedelta(milliseconds=100 * k)
        ts = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        logs.append({"raw_log": svc.render(r, ts), "service": svc.name, "source": svc.source,
                     "format_type": svc.fmt})
    return logs


# ----------------------------------------------------------------------------------------------
# The service under test
# ----------------------------------------------------------------------------------------------

class HttpFailure(Exception):
    pass


def http(method, url, body=None, timeout=HTTP_TIMEOUT):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")[:500]
        raise HttpFailure(f"{method} {url} -> HTTP {e.code}: {text}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, socket.timeout) as e:
        raise HttpFailure(f"{method} {url} -> {e}") from None


def free_port():
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    sys.exit("no free port in 8300-8399")


class Server:
    def __init__(self, binary, extra_env):
        self.binary, self.extra_env = binary, extra_env
        self.proc = None
        self.dir = None

    def start(self):
        for _attempt in range(3):
            self.dir = Path(tempfile.mkdtemp(prefix="detection-eval-"))
            port = free_port()
            self.base = f"http://127.0.0.1:{port}"
            env = dict(os.environ, DATA_DIR=str(self.dir / "data"), API_HOST="127.0.0.1",
                       API_PORT=str(port), LOG_LEVEL="warn", **self.extra_env)
            self.log_path = self.dir / "service.log"
            self.log_file = open(self.log_path, "wb")
            # cwd is the temp dir: the service reads a `.env` in its working directory.
            self.proc = subprocess.Popen([str(self.binary)], env=env, cwd=self.dir,
                                         stdout=self.log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + HEALTH_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    status, _ = http("GET", self.base + "/health", timeout=2)
                    if status == 200:
                        return
                except HttpFailure:
                    pass
                time.sleep(0.1)
            tail = self.output()[-2000:]
            self.stop(keep=False)
            print(f"service did not come up on port {port}; output:\n{tail}", file=sys.stderr)
        sys.exit("the service failed to start three times")

    def output(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, keep=False):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if getattr(self, "log_file", None):
            self.log_file.close()
            self.log_file = None
        if self.dir is not None and not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def models(self):
        _, body = http("GET", self.base + "/api/v1/models")
        return {m["service"]: m for m in body}


def post_stream(server, logs, odd, batch=BATCH, pause=0.0, on_batch=None):
    results = []
    for i in range(0, len(logs), batch):
        chunk = logs[i:i + batch]
        try:
            _, body = http("POST", server.base + "/api/v1/stream/multi-source", {"logs": chunk})
        except HttpFailure as e:
            odd["http_errors"].append(str(e))
            body = None
        if not isinstance(body, list) or len(body) != len(chunk):
            if body is not None:
                odd["http_errors"].append(f"batch at {i}: {len(body) if isinstance(body, list) else type(body).__name__} "
                                          f"results for {len(chunk)} logs")
            body = [None] * len(chunk)
        results.extend(body)
        if on_batch:
            on_batch()
        if pause:
            time.sleep(pause)
    return results


def wait_settled(server, names, expected):
    """Until every service's training_samples has stopped growing; returns the model list."""
    started = time.monotonic()
    last, since = None, time.monotonic()
    while True:
        try:
            models = server.models()
        except HttpFailure:
            models = {}
        samples = {n: models.get(n, {}).get("training_samples") for n in names}
        now = time.monotonic()
        if samples != last:
            last, since = samples, now
        quiet = now - since
        complete = all(samples[n] is not None and (expected is None or samples[n] >= expected)
                       for n in names)
        if (quiet >= SETTLE_QUIET and complete) or quiet >= SETTLE_GIVE_UP_QUIET:
            return models, now - started, complete
        if now - started > SETTLE_TIMEOUT:
            return models, now - started, complete
        time.sleep(0.25)


def output_kinds(lines):
    """What the service logged (at warn or above), grouped: {level and message shape: count}."""
    import re

    kinds = {}
    for line in lines:
        try:
            entry = json.loads(line)
            text = f"{entry.get('level', '?')} {entry.get('message', line)}"
        except ValueError:
            text = line
        shape = re.sub(r"'[^']*'", "'…'", re.sub(r"\d+(\.\d+)?", "N", text))[:110]
        kinds[shape] = kinds.get(shape, 0) + 1
    return kinds


def note_results(results, test_labels, odd, reasons_out):
    for r, (svc_name, kind, sub) in zip(results, test_labels):
        if r is None:
            odd["missing_results"] += 1
            continue
        if r.get("error"):
            odd["log_errors"] += 1
            if len(odd["log_error_examples"]) < 3:
                odd["log_error_examples"].append(f"{svc_name}: {r['error']}")
        if r.get("detector") == "rule" or r.get("violations"):
            odd["rule_hits"] += 1
            if len(odd["rule_examples"]) < 3:
                odd["rule_examples"].append(f"{svc_name}: {r.get('violations')}")
        if r.get("score") is None and not r.get("error"):
            odd["unscored"] += 1
        if r.get("service") not in (None, svc_name):
            odd["service_mismatch"] += 1
        reasons = r.get("reasons")
        if reasons and r.get("is_anomaly"):
            odd["with_reasons"] += 1
            if not kind:
                first = reasons[0] if isinstance(reasons[0], dict) else {}
                label = f"{svc_name}/{first.get('kind')}/{first.get('feature') or first.get('field') or ''}"
                odd["false_positive_reasons"][label] = odd["false_positive_reasons"].get(label, 0) + 1
            bucket = "true" if kind else "false"
            if len([x for x in reasons_out if x["bucket"] == bucket]) < (4 if kind else 2):
                reasons_out.append({
                    "bucket": bucket, "service": svc_name, "kind": sub or "normal",
                    "score": r.get("score"),
                    "summaries": [x.get("summary") if isinstance(x, dict) else str(x)
                                  for x in reasons][:4],
                })


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------

def counts(flags, labels):
    tp = sum(1 for f, k in zip(flags, labels) if f and k)
    fp = sum(1 for f, k in zip(flags, labels) if f and not k)
    fn = sum(1 for f, k in zip(flags, labels) if not f and k)
    tn = sum(1 for f, k in zip(flags, labels) if not f and not k)
    return tp, fp, fn, tn


def metrics(flags, kinds, subs):
    tp, fp, fn, tn = counts(flags, kinds)
    if tp + fn == 0:
        precision = None      # no anomalies to find: precision means nothing
    else:
        precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    by_kind, by_sub = {}, {}
    for key, table in ((kinds, by_kind), (subs, by_sub)):
        for flag, k in zip(flags, key):
            if k:
                hit, total = table.get(k, (0, 0))
                table[k] = (hit + bool(flag), total + 1)
    return {
        "tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": precision, "recall": recall,
        "f1": f1, "fpr": fp / (fp + tn) if fp + tn else None,
        "recall_by_kind": {k: h / t for k, (h, t) in sorted(by_kind.items())},
        "recall_by_subkind": {k: h / t for k, (h, t) in sorted(by_sub.items())},
        "anomalies_by_kind": {k: t for k, (h, t) in sorted(by_kind.items())},
        "anomalies_by_subkind": {k: t for k, (h, t) in sorted(by_sub.items())},
    }


def best_threshold_flags(scores, positive):
    """Flags score <= t for the t maximizing F1 (lower score = more anomalous); none if no positives."""
    import numpy as np

    total_pos = int(positive.sum())
    if total_pos == 0:
        return np.zeros(len(scores), dtype=bool), None
    order = np.argsort(scores, kind="stable")
    s, p = scores[order], positive[order]
    tp = np.cumsum(p)
    k = np.arange(1, len(s) + 1)
    f1 = 2 * tp / (k + total_pos)
    # Only cut where the score changes, so tied scores are all in or all out.
    valid = np.append(s[1:] != s[:-1], True)
    f1 = np.where(valid, f1, -1.0)
    best = int(np.argmax(f1))
    threshold = float(s[best])
    return scores <= threshold, threshold


def sklearn_flags(svc, train, test, seed):
    import numpy as np
    from sklearn.ensemble import IsolationForest

    names = svc.numeric_names()

    def matrix(records):
        return np.array([[float(r["num"].get(n, np.nan)) for n in names] for r in records])

    X_train, X_test = matrix(train), matrix(test)
    medians = np.nanmedian(X_train, axis=0)
    for X in (X_train, X_test):
        idx = np.where(np.isnan(X))
        X[idx] = np.take(medians, idx[1])
    model = IsolationForest(n_estimators=100, max_samples="auto", contamination=0.05,
                            random_state=seed, n_jobs=1).fit(X_train)
    at_005 = model.predict(X_test) == -1
    positive = np.array([r["kind"] is not None for r in test])
    best, threshold = best_threshold_flags(model.score_samples(X_test), positive)
    return at_005, best, threshold


def exact_z(svc, records):
    """Exact z-scores of the records' numeric features under the service's true normal
    distribution (the generator's own log-normal, correlated, Poisson (mid-p) and Beta laws): one
    column per feature that varies."""
    import numpy as np
    from scipy import stats

    cols, z_of = [], {}
    for f in svc.features:
        if f.kind in (CHOICE, CONST):
            continue
        v = np.array([float(r["num"][f.name]) for r in records])
        if f.kind == LOGN:
            z = (np.log(np.maximum(v, 1e-9)) - math.log(f.median)) / f.sigma
            z_of[f.name] = z
        elif f.kind == CORR:
            base = svc.by_name[f.base]
            z = (np.log(np.maximum(v, 1e-9)) - math.log(f.median)
                 - f.slope * base.sigma * z_of[f.base]) / f.resid
        elif f.kind == POIS:
            k = np.round(v)
            u = stats.poisson.cdf(k - 1, f.lam) + 0.5 * stats.poisson.pmf(k, f.lam)
            z = stats.norm.ppf(np.clip(u, 1e-300, 1 - 1e-16))
        else:  # RATIO
            u = stats.beta.cdf(v, f.a, f.b)
            z = stats.norm.ppf(np.clip(u, 1e-300, 1 - 1e-16))
        cols.append(z)
    return np.stack(cols, axis=1)


def oracle_statistic(svc, records):
    """Sum of squared exact z-scores ([`exact_z`]) of each record's numeric features.

    A detector learned from logs can only approach a test that knows the normal distribution
    exactly; flagging the least likely normal logs by this statistic is that test for anomalies of
    unknown shape (a new text value is outside it: it sees numeric features only)."""
    z = exact_z(svc, records)
    return (z * z).sum(axis=1)


_ORACLE_CUTS = {}


def oracle_flags(svc, test):
    """The oracle's verdicts: statistic above its (1 - ORACLE_BUDGET) quantile on fresh normal logs."""
    import numpy as np

    if svc.name not in _ORACLE_CUTS:
        rng = np.random.default_rng([99, len(svc.features)])
        normal = [svc.finish(svc.sample(rng)) for _ in range(ORACLE_SAMPLE)]
        _ORACLE_CUTS[svc.name] = float(np.quantile(oracle_statistic(svc, normal), 1 - ORACLE_BUDGET))
    return oracle_statistic(svc, test) > _ORACLE_CUTS[svc.name]


# ----------------------------------------------------------------------------------------------
# Running one scenario
# ----------------------------------------------------------------------------------------------

def new_odd():
    return {"http_errors": [], "log_errors": 0, "log_error_examples": [], "rule_hits": 0,
            "rule_examples": [], "unscored": 0, "missing_results": 0, "service_mismatch": 0,
            "with_reasons": 0, "false_positive_reasons": {}, "service_output": [], "settle_incomplete": False, "top_ups": []}


def run_scenario(name, seed, args, services):
    spec = SCENARIOS[name]
    t0 = time.monotonic()
    train, test = build_scenario(name, seed, services)
    names = [s.name for s in services]
    extra = dict(args.extra_env)
    if spec.get("drift"):
        extra.setdefault("RETRAIN_INTERVAL_SECONDS", DRIFT_RETRAIN_SECONDS)
    odd = new_odd()
    reasons = []
    server = Server(args.binary, extra)
    server.start()
    try:
        base = datetime(2024, 1, 15, 8, 0, tzinfo=timezone.utc)
        train_results = post_stream(server, to_payload(services, train, base), odd)
        reservoir = int(extra.get("RESERVOIR_SIZE", "2048"))
        # With the reservoir no larger than the training set, the last automatic fit is on a full
        # reservoir; otherwise the harness only waits for training_samples to stop growing.
        expected = reservoir if reservoir <= N_TRAIN else None
        models, settle_s, complete = wait_settled(server, names, expected)
        # A fit that comes due while another fit of the service is running is not queued: it
        # waits for the service's next log. If training settled short of the reservoir, post a
        # few more normal logs of the services concerned (they join the training set of the
        # baselines too), so the test stream is judged by the final model.
        import numpy as np

        for round_ in range(3):
            if complete:
                break
            short = [s for s, n in enumerate(names)
                     if (models.get(n, {}).get("training_samples") or 0) < (expected or 1)]
            odd["top_ups"].append({names[s]: models.get(names[s], {}).get("training_samples")
                                   for s in short})
            top_rng = np.random.default_rng([seed, list(SCENARIOS).index(name), 77, round_])
            streams = [labelled_stream(services[s], top_rng, TOP_UP, None, 0.0)
                       if s in short else [] for s in range(len(services))]
            extra_train = interleave(top_rng, streams)
            start = base + timedelta(milliseconds=100 * len(train))
            train_results += post_stream(server, to_payload(services, extra_train, start), odd)
            train += extra_train
            models, more_s, complete = wait_settled(server, names, expected)
            settle_s += more_s
        odd["settle_incomplete"] = not complete
        before = {n: dict(models.get(n, {})) for n in names}
        test_payload = to_payload(services, test, base + timedelta(hours=2))
        refits = {n: set() for n in names}

        def track_refits():
            try:
                for n, m in server.models().items():
                    if n in refits:
                        refits[n].add(m.get("trained_at"))
            except HttpFailure as e:
                odd["http_errors"].append(str(e))

        if spec.get("drift"):
            test_results = post_stream(server, test_payload, odd, batch=DRIFT_BATCH,
                                       pause=DRIFT_PAUSE, on_batch=track_refits)
        else:
            test_results = post_stream(server, test_payload, odd)
        try:
            after = server.models()
        except HttpFailure as e:
            odd["http_errors"].append(str(e))
            after = {}
    finally:
        output = server.output() if server.dir else ""
        server.stop()
    lines = [ln for ln in output.splitlines() if ln.strip()]
    odd["service_output_lines"] = len(lines)
    odd["service_output"] = lines[:5]
    odd["service_output_kinds"] = output_kinds(lines)
    labels = [(names[s], r["kind"], r["sub"]) for s, r in test]
    note_results(test_results, labels, odd, reasons)
    train_flagged = sum(1 for r in train_results if r and r.get("is_anomaly"))

    # ours and the two sklearn readings, per service and pooled
    ours = [bool(r and r.get("is_anomaly")) for r in test_results]
    kinds = [r["kind"] for _, r in test]
    subs = [r["sub"] for _, r in test]
    flags = {m: [False] * len(test) for m in METHODS}
    flags["ours"] = ours
    per_service = {}
    thresholds = {}
    for s, svc in enumerate(services):
        idx = [k for k, (si, _) in enumerate(test) if si == s]
        tr = [r for si, r in train if si == s]
        te = [test[k][1] for k in idx]
        at_005, best, threshold = sklearn_flags(svc, tr, te, seed)
        thresholds[svc.name] = threshold
        oracle = oracle_flags(svc, te)
        for j, k in enumerate(idx):
            flags["sklearn@0.05"][k] = bool(at_005[j])
            flags["sklearn@best"][k] = bool(best[j])
            flags["oracle@0.001"][k] = bool(oracle[j])
        per_service[svc.name] = {
            m: metrics([flags[m][k] for k in idx], [kinds[k] for k in idx], [subs[k] for k in idx])
            for m in METHODS
        }
    pooled = {m: metrics(flags[m], kinds, subs) for m in METHODS}
    # where in the test stream the false positives fall (thirds of the merged stream)
    thirds = {}
    for m in METHODS:
        out = []
        for t in range(3):
            lo, hi = t * len(test) // 3, (t + 1) * len(test) // 3
            normal = [flags[m][k] for k in range(lo, hi) if not kinds[k]]
            out.append(sum(normal) / len(normal) if normal else None)
        thirds[m] = out
    model_info = {
        n: {"after_training": {k: before[n].get(k) for k in
                               ("features", "training_samples", "trained_at", "threshold", "source")},
            "after_test": {k: after.get(n, {}).get(k) for k in
                           ("training_samples", "trained_at", "threshold")},
            "refits_seen_during_test": max(0, len(refits[n] - {before[n].get("trained_at")}))
            if spec.get("drift") else None}
        for n in names
    }
    return {
        "scenario": name, "seed": seed, "seconds": time.monotonic() - t0,
        "settle_seconds": settle_s, "extra_env": extra,
        "train_logs": len(train), "train_anomalies": sum(1 for _, r in train if r["kind"]),
        "train_flagged_by_ours": train_flagged,
        "test_logs": len(test), "test_anomalies": sum(1 for k in kinds if k),
        "metrics": pooled, "fpr_by_third": thirds, "per_service": per_service, "sklearn_best_thresholds": thresholds,
        "models": model_info, "oddities": odd, "reasons_examples": reasons,
    }


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------

def mean_of(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarize(runs):
    """Mean over seeds of every pooled metric, per method."""
    out = {}
    for m in METHODS:
        ms = [r["metrics"][m] for r in runs]
        kinds = sorted({k for x in ms for k in x["recall_by_kind"]})
        subs = sorted({k for x in ms for k in x["recall_by_subkind"]})
        out[m] = {
            key: mean_of([x[key] for x in ms]) for key in ("precision", "recall", "f1", "fpr")
        }
        out[m]["recall_by_kind"] = {k: mean_of([x["recall_by_kind"].get(k) for x in ms])
                                    for k in kinds}
        out[m]["recall_by_subkind"] = {k: mean_of([x["recall_by_subkind"].get(k) for x in ms])
                                       for k in subs}
    return out


def fmt(v, digits=3):
    return "—" if v is None else f"{v:.{digits}f}"


def print_report(summary, all_runs, args, elapsed):
    seeds = args.seeds
    print(f"\n## Detection quality ({'mean over ' + str(seeds) + ' seeds' if seeds > 1 else 'seed 0'}; "
          f"{len(make_services())} services x {N_TEST} test logs per scenario, "
          f"~{ANOMALY_SHARE:.0%} anomalies)\n")
    print("| scenario | method | precision | recall | F1 | FPR | recall by kind |")
    print("|---|---|---:|---:|---:|---:|---|")
    for name, s in summary.items():
        for m in METHODS:
            x = s[m]
            kinds = ", ".join(f"{k} {fmt(v, 2)}" for k, v in x["recall_by_kind"].items()) or "—"
            print(f"| {name} | {m} | {fmt(x['precision'])} | {fmt(x['recall'])} | {fmt(x['f1'])} "
                  f"| {fmt(x['fpr'], 4)} | {kinds} |")
    print("\n### Recall by sub-kind (ours / sklearn@0.05 / sklearn@best / oracle@0.001)\n")
    print("| scenario | sub-kind | n | ours | sklearn@0.05 | sklearn@best | oracle@0.001 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, s in summary.items():
        runs = all_runs[name]
        grouped = {}
        for sub in s["ours"]["recall_by_subkind"]:
            parts = sub.split("/")
            # joint shifts grouped by how many features moved
            key = (f"joint_shift/{len(parts[1].split('+'))} features" if parts[0] == "joint_shift"
                   else sub)
            grouped.setdefault(key, []).append(sub)
        for key, members in sorted(grouped.items()):
            vals, n = [], 0
            for m in METHODS:
                hit = tot = 0
                for r in runs:
                    mm = r["metrics"][m]
                    for sub in members:
                        if sub in mm["recall_by_subkind"]:
                            t = mm["anomalies_by_subkind"][sub]
                            hit += mm["recall_by_subkind"][sub] * t
                            tot += t
                vals.append(hit / tot if tot else None)
                n = tot
            print(f"| {name} | {key} | {n} | " + " | ".join(fmt(v, 2) for v in vals) + " |")

    drift = all_runs.get("slow_drift")
    if drift:
        refits = [v["refits_seen_during_test"] for r in drift for v in r["models"].values()]
        print(f"\nslow_drift: RETRAIN_INTERVAL_SECONDS={drift[0]['extra_env'].get('RETRAIN_INTERVAL_SECONDS')} "
              f"and the test stream posted in batches of {DRIFT_BATCH} with {int(DRIFT_PAUSE * 1000)} ms "
              f"pauses ({statistics.fmean(r['seconds'] for r in drift):.0f} s for the whole scenario): "
              f"this compresses an hourly retrain schedule over a long drift. Refits seen per "
              f"service during the test stream: {refits}. sklearn is fitted once on the training "
              f"logs and never refitted; sklearn@best flags nothing when there are no anomalies.")
        for m in METHODS[:2]:
            by_third = [mean_of([r["fpr_by_third"][m][t] for r in drift]) for t in range(3)]
            print(f"  FPR by third of the drift stream, {m}: "
                  + " / ".join(fmt(v, 4) for v in by_third))

    print("\n### Models after training (seed 0)\n")
    for name, runs in all_runs.items():
        r = runs[0]
        parts = []
        for svc, info in r["models"].items():
            a = info["after_training"]
            nfeat = len(a["features"]) if a.get("features") else 0
            parts.append(f"{svc}: {a.get('training_samples')} samples, {nfeat} features, "
                         f"threshold {fmt(a.get('threshold'), 4) if isinstance(a.get('threshold'), (int, float)) else a.get('threshold')}")
        print(f"- {name} (settled in {r['settle_seconds']:.1f} s; ours flagged "
              f"{r['train_flagged_by_ours']} of {r['train_logs']} training logs, "
              f"{r['train_anomalies']} labelled anomalous): " + "; ".join(parts))

    examples = []
    for name, runs in all_runs.items():
        found = runs[0]["reasons_examples"]
        for bucket in ("true", "false"):      # one caught anomaly and one false positive each
            examples += [(name, e) for e in found if e["bucket"] == bucket][:1]
    print("\n### Example reasons for our anomalies (seed 0; all examples are in --json)\n")
    if not examples:
        print("The service returned no `reasons` field (older build).")
    for name, e in examples:
        label = e["kind"] if e["bucket"] == "true" else "normal log (false positive)"
        print(f"- {name} / {e['service']} [{label}], score {fmt(e['score'], 4) if isinstance(e['score'], (int, float)) else e['score']}: "
              + " | ".join(str(s) for s in e["summaries"]))

    print("\n### Service behaviour\n")
    any_odd = False
    for name, runs in all_runs.items():
        for r in runs:
            o = r["oddities"]
            notes = []
            if o["http_errors"]:
                notes.append(f"{len(o['http_errors'])} HTTP failures, e.g. {o['http_errors'][0]}")
            if o["missing_results"]:
                notes.append(f"{o['missing_results']} test logs without a result")
            if o["log_errors"]:
                notes.append(f"{o['log_errors']} logs with an error, e.g. {o['log_error_examples']}")
            if o["rule_hits"]:
                notes.append(f"{o['rule_hits']} rule hits, e.g. {o['rule_examples']}")
            if o["unscored"]:
                notes.append(f"{o['unscored']} test logs with a null score")
            if o["service_mismatch"]:
                notes.append(f"{o['service_mismatch']} results naming another service")
            if o["top_ups"]:
                notes.append(f"training settled short of a full reservoir "
                             f"(training_samples {o['top_ups']}): a fit that came due while "
                             f"another was running waited for the next log; posted {TOP_UP} more "
                             f"normal training logs per service concerned")
            if o["settle_incomplete"]:
                notes.append("training_samples did not reach the reservoir size before the test stream")
            if o["service_output_lines"]:
                shapes = "; ".join(f"{n} x \"{k}\"" for k, n in o["service_output_kinds"].items())
                notes.append(f"{o['service_output_lines']} lines logged at warn+: {shapes}")
            if notes:
                any_odd = True
                print(f"- {name} seed {r['seed']}: " + "; ".join(notes))
    if not any_odd:
        print("Nothing odd: no HTTP errors, no log failed to parse, no rule fired, every test log "
              "was scored, and the service logged nothing at warn or above.")
    print(f"\nTotal time: {elapsed:.1f} s")


def check(summary):
    failures = []
    for name, s in summary.items():
        x = s["ours"]
        if not SCENARIOS[name].get("drift") and (x["f1"] is None or x["f1"] < CHECK_F1):
            failures.append(f"{name}: F1 {fmt(x['f1'])} < {CHECK_F1}")
        if x["fpr"] is None or x["fpr"] > CHECK_FPR:
            failures.append(f"{name}: FPR {fmt(x['fpr'], 4)} > {CHECK_FPR}")
    return failures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=f"Scenarios: {', '.join(SCENARIOS)}. See the module docstring for what each does.")
    parser.add_argument("--binary", default=str(BINARY),
                        help="service binary (default target/release/aioops-mcp-iforest)")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1; means are reported")
    parser.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 unless ours has F1 >= {CHECK_F1} in every scenario with "
                             f"anomalies and FPR <= {CHECK_FPR} in every scenario")
    parser.add_argument("--extra-env", action="append", default=[], metavar="VAR=value",
                        help="environment variable for the service (repeatable)")
    parser.add_argument("--joint-shift-sd", type=float, default=None, metavar="S",
                        help="move each feature of a joint shift S +- 0.2 standard deviations "
                             "(default 2.8-3.2)")
    parser.add_argument("--distinct-contaminants", action="store_true",
                        help="contaminated_training's training anomalies use other new values "
                             "than its test anomalies (CRITICAL, sa-east-1-b, shard_count 16, ...)")
    args = parser.parse_args()
    if args.distinct_contaminants:
        globals()["DISTINCT_TRAIN_NOVEL"] = True
    if args.joint_shift_sd is not None:
        if not 0.5 <= args.joint_shift_sd <= 20:
            parser.error("--joint-shift-sd must be between 0.5 and 20")
        set_joint_shift(args.joint_shift_sd)
    pairs = []
    for item in args.extra_env:
        if "=" not in item:
            parser.error(f"--extra-env expects VAR=value, got {item!r}")
        pairs.append(tuple(item.split("=", 1)))
    args.extra_env = pairs
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in SCENARIOS]
        if unknown:
            parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
        args.scenarios = [n for n in SCENARIOS if n in wanted]
    else:
        args.scenarios = list(SCENARIOS)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return args


def main() -> None:
    args = parse_args()       # before the venv, so --help works without it
    ensure_venv()
    import sklearn

    binary = Path(args.binary)
    if not binary.is_absolute():
        binary = (Path.cwd() / binary).resolve()
    if not binary.exists():
        sys.exit(f"no binary at {binary} (build it, or pass --binary)")
    args.binary = binary
    started = time.monotonic()
    services = make_services()
    print(f"binary {binary}; scikit-learn {sklearn.__version__}; scenarios "
          f"{', '.join(args.scenarios)}; seeds 0..{args.seeds - 1}", flush=True)
    all_runs = {}
    for name in args.scenarios:
        for seed in range(args.seeds):
            run = run_scenario(name, seed, args, services)
            all_runs.setdefault(name, []).append(run)
            m = run["metrics"]["ours"]
            print(f"  {name} seed {seed}: ours P {fmt(m['precision'])} R {fmt(m['recall'])} "
                  f"F1 {fmt(m['f1'])} FPR {fmt(m['fpr'], 4)} ({run['seconds']:.1f} s)",
                  file=sys.stderr, flush=True)
    summary = {name: summarize(runs) for name, runs in all_runs.items()}
    elapsed = time.monotonic() - started
    print_report(summary, all_runs, args, elapsed)
    failures = check(summary)
    if args.json:
        out = {
            "binary": str(binary), "sklearn": sklearn.__version__, "seeds": args.seeds,
            "extra_env": dict(args.extra_env), "total_seconds": elapsed,
            "settings": {"n_train_per_service": N_TRAIN, "n_test_per_service": N_TEST,
                         "anomaly_share": ANOMALY_SHARE, "train_contamination": TRAIN_CONTAMINATION,
                         "batch": BATCH, "drift_batch": DRIFT_BATCH, "drift_pause_s": DRIFT_PAUSE,
                         "joint_shift_sd": list(JOINT_SHIFT_SD),
                         "distinct_contaminants": DISTINCT_TRAIN_NOVEL},
            "summary": summary,
            "runs": all_runs,
            "check_failures": failures,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"Wrote {args.json}")
    if args.check:
        if failures:
            print("CHECK FAILED: " + "; ".join(failures))
            sys.exit(1)
        print("CHECK PASSED")


if __name__ == "__main__":
    main()
