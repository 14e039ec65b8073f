#!/usr/bin/env python3
"""Measures what retention costs on disk: starts the service binary on a fresh DATA_DIR, stores
COUNT anomalies of one kind, and reports the database's size on disk (file + WAL) per record.

  python3 bench/retention_disk.py BINARY COUNT KIND [VAR=value ...]
  KIND: typical  -- the simulator's web_server log over its response-time rule (~300-byte raw log)
        worst    -- a 64 KiB JSON log (MAX_RAW_LOG_BYTES) with 200 text attributes, the largest a
                    log can be; what is kept of it is bounded by MAX_STORED_ANOMALY_BYTES
e.g. python3 bench/retention_disk.py target/release/aioops-mcp-iforest 20000 worst

KEEP_DATA=1 keeps the data directory (e.g. to time the start-up integrity check on it).
Prints one RESULT line: kind, records stored, bytes on disk, bytes per record.
"""
import json
import os
import random
import shutil
import sys
import tempfile

import service


def typical(rng, i):
    return {"raw_log": json.dumps({
        "timestamp": "2024-01-15T10:00:%02dZ" % rng.randint(0, 59), "level": "ERROR",
        "message": "GET /api/v1/users/%d" % rng.randint(1, 999), "response_time": rng.randint(2500, 6000),
        "bytes_out": rng.randint(200, 20000), "status": 500, "error_rate": round(rng.uniform(0, 0.05), 3),
        "request_id": "req-%08x" % rng.getrandbits(32), "host": "web-%d" % rng.randint(1, 4)}),
        "service": "web_server", "source": "nginx", "format_type": "json"}


def worst(rng, i):
    log = {"level": "ERROR", "response_time": 9000, "error_rate": 0.5}
    for a in range(200):
        log["attr_%03d" % a] = "v%d-%s" % (a, "y" * 40)
    filler = 64 * 1024 - len(json.dumps(log)) - 40
    log["message"] = "%08d " % i + "".join(rng.choice("abcdefghij ") for _ in range(filler))
    return {"raw_log": json.dumps(log), "service": "web_server", "source": "nginx", "format_type": "json"}


def post(url, logs):
    results = service.post(url, {"logs": logs}, timeout=120)
    return sum(r["is_anomaly"] for r in results)


def main():
    binary, count, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    make = {"typical": typical, "worst": worst}[kind]
    extra = dict(v.split("=", 1) for v in sys.argv[4:])
    work = tempfile.mkdtemp()
    process, base = service.start(binary, work + "/data", {
        "LOG_LEVEL": "error", "STORE_SYNCHRONOUS": "normal", "MAX_RECENT_ANOMALIES": str(count),
        **extra})
    try:
        rng = random.Random(7)
        batch = 100 if kind == "typical" else 50
        stored = 0
        while stored < count:
            stored += post(base + "/api/v1/stream/multi-source",
                           [make(rng, stored + j) for j in range(min(batch, count - stored))])
    finally:
        process.terminate()
        process.wait(30)
    data = work + "/data"
    size = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data)
               if f.startswith("aioops.db"))
    if os.environ.get("KEEP_DATA"):
        print("kept", data)
    else:
        shutil.rmtree(work)
    print("RESULT kind=%s records=%d bytes_on_disk=%d bytes_per_record=%d"
          % (kind, stored, size, size // max(stored, 1)))


if __name__ == "__main__":
    main()
