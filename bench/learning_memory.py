#!/usr/bin/env python3
"""Learning memory under the widest rows the limits allow: the figure behind env.example's bound.

    python3 bench/learning_memory.py BINARY [SERVICES] [RESERVOIR_SIZE] [FEATURES] [NAME_CHARS] [CATEGORIES]

Starts BINARY (the service) on a free port with a fresh DATA_DIR, MAX_TRACKED_SERVICES=SERVICES
(default 8), RESERVOIR_SIZE (default 2048) and MAX_FEATURES_PER_SERVICE=FEATURES (default 64), and
fills every service's reservoir with the worst row the limits let through: FEATURES numeric fields
named with NAME_CHARS (default 128, MAX_FIELD_NAME_CHARS) characters, the same names in every log of
a service so that each row keeps all of them, plus 16 text attributes with 64-character names and
values (the most a row keeps as categories; CATEGORIES sets how many). The automatic fits run as each sample doubles. It
prints the resident set before, the peak (VmHWM) and the resident set after, and the bytes per
sampled row: (peak - before) / (SERVICES x RESERVOIR_SIZE).
"""
import json
import sys
import tempfile
import time

import service


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise SystemExit(f"no {field}")


def main():
    binary = sys.argv[1]
    services = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    reservoir = int(sys.argv[3]) if len(sys.argv) > 3 else 2048
    features = int(sys.argv[4]) if len(sys.argv) > 4 else 64
    name_chars = int(sys.argv[5]) if len(sys.argv) > 5 else 128
    categories = int(sys.argv[6]) if len(sys.argv) > 6 else 16
    data = tempfile.mkdtemp()
    child, base = service.start(binary, data, {
        "MAX_TRACKED_SERVICES": str(services),
        "RESERVOIR_SIZE": str(reservoir),
        "MAX_FEATURES_PER_SERVICE": str(features),
    })
    try:
        before = status(child.pid, "VmRSS")
        started = time.time()
        per_request = 800
        for s in range(services):
            names = [f"s{s}_f{k:03d}_".ljust(name_chars, "x") for k in range(features)]
            attributes = {f"s{s}_a{k:02d}_".ljust(64, "y"): "v" * 63 + str(k % 10) for k in range(categories)}
            sent = 0
            while sent < reservoir + per_request:
                logs = []
                for i in range(sent, sent + per_request):
                    record = {name: (i * 7 + k * 13) % 997 for k, name in enumerate(names)}
                    record.update(attributes)
                    logs.append({"raw_log": json.dumps(record), "service": f"svc-{s}",
                                 "source": "bench", "format_type": "json"})
                service.post(base + "/api/v1/stream/multi-source", {"logs": logs})
                sent += per_request
        # Let the last automatic fits finish.
        time.sleep(5)
        peak = status(child.pid, "VmHWM")
        after = status(child.pid, "VmRSS")
        rows = services * reservoir
        print(json.dumps({
            "services": services, "reservoir_size": reservoir, "features": features,
            "name_chars": name_chars, "categories": categories, "rss_before_mib": round(before / 2**20, 1),
            "peak_mib": round(peak / 2**20, 1), "rss_after_mib": round(after / 2**20, 1),
            "bytes_per_row_peak": round((peak - before) / rows),
            "bytes_per_row_steady": round((after - before) / rows),
            "seconds": round(time.time() - started, 1),
        }))
    finally:
        child.kill()
        child.wait()


if __name__ == "__main__":
    main()
