"""Asserts, through the service's REST API only, that logs the real OpenTelemetry SDKs exported
were judged, stored, learned from and alerted on like REST logs. Standard library only.

Usage:
  check.py BASE wait-model SERVICE     wait (bounded) until SERVICE has a learned model
  check.py BASE verify                 every assertion below; prints 'N passed, M failed'
"""

import json
import re
import sys
import time
import urllib.request

DEADLINE_SECONDS = 60

# What each SDK's probe phase sent (scripts/otlp/emit.py and emit.js).
CLIENTS = {
    "py": {"rule_feature": "error_rate", "rule_value": 0.9, "body": "payment failed attempt=0 error_rate=0.9",
           "scope": "py.payments", "traced": True},
    "node": {"rule_feature": "cpu_usage", "rule_value": 99.0,
             "body": json.dumps({"message": "payment worker overloaded", "attempt": 0, "cpu_usage": 99}),
             "scope": "node.payments", "traced": False},
}
# Logs per client: 200 baseline, 2 checkout probes, 4 payments.
LOGS_PER_CLIENT = 206


def request(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.load(response)


def wait_model(base, service):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        models = request(base, "GET", "/api/v1/models")
        if any(model.get("service") == service for model in models):
            print(f"model learned for {service}")
            return
        time.sleep(0.2)
    raise SystemExit(f"no model for {service} after {DEADLINE_SECONDS} s")


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, condition, detail=""):
        if condition:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name} {detail}")


def violations_of(value):
    return sorted(json.dumps(v, sort_keys=True) for v in value.get("violations") or [])


def verify(base):
    checks = Checks()
    alerts = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        alerts = request(base, "GET", "/api/v1/alerts")
        if {a.get("service") for a in alerts} >= {"py-payments", "node-payments"}:
            break
        time.sleep(0.2)
    for client, sent in CLIENTS.items():
        payments = request(base, "GET", f"/api/v1/anomalies?service={client}-payments")
        checks.check(f"{client}: four rule anomalies stored", len(payments) == 4, payments)
        feature = sent["rule_feature"]
        checks.check(
            f"{client}: each judged by the rule on {feature}, at level ERROR, from its scope",
            all(a["rule_violation"] and a["log_level"] == "ERROR" and a["source"] == sent["scope"]
                and a["features"].get(feature) == sent["rule_value"] for a in payments),
            payments)
        checks.check(f"{client}: the records say they came by OTLP",
                     all(a["metadata"].get("protocol") == "otlp" for a in payments), payments)
        if sent["traced"]:
            checks.check(
                f"{client}: trace and span ids are kept with the anomaly",
                all(re.fullmatch("[0-9a-f]{32}", a["metadata"].get("trace_id", ""))
                    and re.fullmatch("[0-9a-f]{16}", a["metadata"].get("span_id", "")) for a in payments),
                [a["metadata"] for a in payments])
        rest = request(base, "POST", "/api/v1/stream/multi-source", {"logs": [
            {"raw_log": sent["body"], "service": f"{client}-payments", "source": sent["scope"],
             "format_type": "auto"}]})[0]
        checks.check(
            f"{client}: the same body posted to REST with format_type auto gets the same verdict",
            rest["is_anomaly"] == 1 and payments and violations_of(rest) == violations_of(payments[0]),
            f"rest={rest} otlp={payments[:1]}")
        model = request(base, "GET", f"/api/v1/anomalies?service={client}-checkout&detector=model")
        checks.check(f"{client}: the learned model flags the outlier",
                     len(model) == 1 and model[0]["features"].get("latency_ms") == 5000
                     and not model[0]["rule_violation"], model)
        checkout = request(base, "GET", f"/api/v1/anomalies?service={client}-checkout")
        checks.check(f"{client}: and nothing else of the checkout service", len(checkout) == 1, checkout)
        fired = [a for a in alerts if a.get("service") == f"{client}-payments"]
        checks.check(f"{client}: the burst of payment failures raised one rate alert",
                     len(fired) == 1, alerts)
    metrics = request(base, "GET", "/api/v1/metrics")
    expected = LOGS_PER_CLIENT * len(CLIENTS) + len(CLIENTS)
    checks.check(f"every log was judged ({expected}: both SDKs' and the REST comparisons)",
                 metrics["prediction_count"] == expected, metrics)
    print(f"{checks.passed} passed, {checks.failed} failed")
    if checks.failed:
        raise SystemExit(1)


def main():
    base, command = sys.argv[1], sys.argv[2]
    if command == "wait-model":
        wait_model(base, sys.argv[3])
    elif command == "verify":
        verify(base)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
