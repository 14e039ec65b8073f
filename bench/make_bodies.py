#!/usr/bin/env python3
"""Writes realistic mixed ingest bodies for the throughput benchmark.

batch_100.json: 100 logs, a third each of web_server JSON, database key=value and application regex
(the original simulator's three kinds), ~5 % of them breaking a rule. batch_1.json: one web_server log.
"""
import json
import random
import sys

PATTERN = (r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+\[(\w+)\]\s+"
           r"Memory usage: (\d+)%\s+CPU usage: (\d+)%\s+Thread count: (\d+)")
MAPPING = {"0": "timestamp", "1": "level", "2": "memory_usage", "3": "cpu_usage", "4": "thread_count"}


def web(rng, spike):
    rt = rng.randint(2500, 6000) if spike else max(5, int(rng.gauss(180, 40)))
    return {"raw_log": json.dumps({
        "timestamp": "2024-01-15T10:00:%02dZ" % rng.randint(0, 59), "level": "INFO",
        "message": "GET /api/v1/users/%d" % rng.randint(1, 999), "response_time": rt,
        "bytes_out": rng.randint(200, 20000), "status": 200, "error_rate": round(rng.uniform(0, 0.05), 3),
        "request_id": "req-%08x" % rng.getrandbits(32), "host": "web-%d" % rng.randint(1, 4)}),
        "service": "web_server", "source": "nginx", "format_type": "json"}


def db(rng, spike):
    qt = rng.randint(6000, 12000) if spike else max(1, int(rng.gauss(40, 15)))
    return {"raw_log": "2024-01-15T10:00:%02dZ INFO query_time=%dms connection_count=%d error_rate=%.3f "
                       "rows=%d table=orders" % (rng.randint(0, 59), qt, rng.randint(10, 120),
                                                 rng.uniform(0, 0.02), rng.randint(1, 500)),
            "service": "database", "source": "postgres", "format_type": "key_value"}


def app(rng, spike):
    cpu = rng.randint(92, 99) if spike else rng.randint(10, 70)
    return {"raw_log": "2024-01-15T10:00:%02dZ [INFO] Memory usage: %d%% CPU usage: %d%% Thread count: %d"
                       % (rng.randint(0, 59), rng.randint(20, 70), cpu, rng.randint(50, 200)),
            "service": "application", "source": "app", "format_type": "regex",
            "custom_config": {"pattern": PATTERN, "field_mapping": MAPPING}}


def main(out_dir):
    rng = random.Random(7)
    kinds = [web, db, app]
    logs = [kinds[i % 3](rng, rng.random() < 0.05) for i in range(100)]
    with open(f"{out_dir}/batch_100.json", "w") as f:
        json.dump({"logs": logs}, f)
    with open(f"{out_dir}/batch_1.json", "w") as f:
        json.dump({"logs": [web(rng, False)]}, f)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
