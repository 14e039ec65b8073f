#!/usr/bin/env python3
"""The checks of scripts/test-observability.sh against the real binary (its path is the argument).

Each check says what it found; the first failure stops the run with a non-zero exit."""
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request

from openapi_spec_validator import validate
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from service import post, start  # noqa: E402  (bench/service.py: start the binary, post JSON)

DASHBOARDS = "helm/aioops-mcp-iforest/dashboards"
OPENMETRICS = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
               "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
# Every route the service serves, as the description must name it.
ROUTES = {
    "/": {"get"}, "/health": {"get"}, "/api/v1/": {"get"},
    "/api/v1/stream/multi-source": {"post"}, "/api/v1/anomalies": {"get", "delete"},
    "/api/v1/train": {"post"}, "/api/v1/train/{job_id}": {"get"}, "/api/v1/models": {"get"},
    "/api/v1/feedback": {"post"}, "/api/v1/metrics": {"get"}, "/api/v1/alerts": {"get"},
    "/api/v1/alerts/stats": {"get"}, "/metrics": {"get"},
}


def step(text):
    print("==> " + text, flush=True)


def fail(text):
    raise SystemExit("FAILED: " + text)


def get(base, path, accept=None):
    request = urllib.request.Request(base + path, headers={"accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers.get("content-type", ""), response.read()


class Receiver(http.server.BaseHTTPRequestHandler):
    """A local alert webhook: answers 200 and counts."""
    received = 0

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Receiver.received += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def samples(families):
    """{(sample name, sorted labels): value} of parsed families."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families for s in family.samples}


def value(table, name, **labels):
    return table.get((name, tuple(sorted(labels.items()))), 0.0)


def json_log(service, fields):
    return {"raw_log": json.dumps(fields), "service": service, "source": "check",
            "format_type": "json"}


def check_metrics(base):
    step("GET /metrics before and after traffic")
    status, content_type, before = get(base, "/metrics")
    if status != 200 or not content_type.startswith("text/plain; version=0.0.4"):
        fail(f"/metrics answered {status} {content_type!r}")
    before = samples(parse_text(before.decode()))
    normal = [json_log("web_server", {"response_time": 100 + i, "error_rate": 0.01})
              for i in range(40)]
    rule = [json_log("web_server", {"response_time": 5000, "error_rate": 0.01}) for _ in range(3)]
    kv = [{"raw_log": "query_time=20ms connection_count=5", "service": "database",
           "source": "check", "format_type": "key_value"} for _ in range(6)]
    broken = [{"raw_log": "{not json", "service": "web_server", "source": "check",
               "format_type": "json"}]
    logs = normal + rule + kv + broken
    results = post(base + "/api/v1/stream/multi-source", {"logs": logs})
    if len(results) != len(logs):
        fail(f"{len(logs)} logs in, {len(results)} results out")
    for _ in range(100):  # the rate alert is delivered by a worker: wait for it (at most 10 s)
        if Receiver.received:
            break
        threading.Event().wait(0.1)
    status, _, text = get(base, "/metrics")
    text = text.decode()
    after = samples(parse_text(text))
    expected = [
        ("aioops_logs_ingested_total", {"format": "json"}, 44),
        ("aioops_logs_ingested_total", {"format": "key_value"}, 6),
        ("aioops_log_parse_errors_total", {"format": "json"}, 1),
        ("aioops_service_logs_total", {"service": "web_server"}, 44),
        ("aioops_service_logs_total", {"service": "database"}, 6),
        ("aioops_anomalies_total", {"detector": "rule"}, 3),
        ("aioops_service_anomalies_total", {"service": "web_server", "detector": "rule"}, 3),
        ("aioops_ingest_stage_duration_seconds_count", {"stage": "parse"}, 1),
        ("aioops_http_requests_total",
         {"method": "POST", "route": "/api/v1/stream/multi-source", "status": "200"}, 1),
    ]
    for name, labels, delta in expected:
        grew = value(after, name, **labels) - value(before, name, **labels)
        if grew != delta:
            fail(f"{name}{labels} grew by {grew}, expected {delta}")
    print(f"    {len(logs)} logs in: every counter grew by what was sent")
    if value(after, "aioops_alert_notifications_total", channel="webhook",
             outcome="delivered") != 1:
        fail("the rate alert's delivery to the webhook is not counted")
    print("    the rate alert's webhook delivery is counted")

    step("promtool check metrics (text format 0.0.4)")
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                             capture_output=True)
    print("    " + (checked.stdout + checked.stderr).strip().replace("\n", "\n    "))
    if checked.returncode != 0:
        fail("promtool check metrics")

    step("prometheus_client's OpenMetrics parser on the OpenMetrics scrape")
    status, content_type, body = get(base, "/metrics", accept=OPENMETRICS)
    if not content_type.startswith("application/openmetrics-text; version=1.0.0"):
        fail(f"asked for OpenMetrics, got {content_type!r}")
    families = list(parse_openmetrics(body.decode()))
    print(f"    {len(families)} families parsed")
    return text, after


def check_dashboards(text):
    step("Dashboard PromQL names only exported metrics")
    # Every series name a family may have, whether or not it has samples yet (a histogram of
    # training runs has none before the first training).
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                "summary": ["_sum", "_count"]}
    exported = set()
    for family in parse_text(text):
        exported.add(family.name)
        exported |= {family.name + suffix for suffix in suffixes.get(family.type, [])}
        exported |= {s.name for s in family.samples}
    names = [os.path.join(DASHBOARDS, f) for f in sorted(os.listdir(DASHBOARDS))
             if f.endswith(".json")]
    if not names:
        fail(f"no dashboard in {DASHBOARDS}")
    for path in names:
        with open(path, encoding="utf-8") as f:
            dashboard = json.load(f)
        exprs = []

        def walk(node):
            if isinstance(node, dict):
                for key, child in node.items():
                    if key in ("expr", "definition") and isinstance(child, str):
                        exprs.append(child)
                    else:
                        walk(child)
            elif isinstance(node, list):
                for child in node:
                    walk(child)

        walk(dashboard)
        if not exprs:
            fail(f"{path} has no PromQL expression")
        for expr in exprs:
            # Label values and matchers are quoted; what is left that starts like our metrics
            # is a metric name.
            bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
            used = set(re.findall(r"\baioops_[a-z0-9_]+\b", bare))
            if not used:
                fail(f"{path}: {expr!r} names no metric of the service")
            unknown = used - exported
            if unknown:
                fail(f"{path}: {expr!r} names {sorted(unknown)}, which the service does not export")
        print(f"    {path}: {len(exprs)} expressions, every metric exported")


def check_openapi(base):
    step("openapi-spec-validator on /openapi.json")
    status, content_type, body = get(base, "/openapi.json")
    spec = json.loads(body)
    if not spec.get("openapi", "").startswith("3.1"):
        fail(f"OpenAPI version {spec.get('openapi')!r}, expected 3.1")
    validate(spec)
    described = {path: set(item) & {"get", "post", "delete", "put", "patch"}
                 for path, item in spec["paths"].items()}
    if described != ROUTES:
        fail(f"the description's operations differ from the routes: {described}")
    print(f"    OpenAPI {spec['openapi']}: valid, {sum(map(len, described.values()))} operations")
    return spec


class Assets(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def check_docs(base):
    step("/docs and its assets from the binary")
    status, content_type, page = get(base, "/docs/")
    if status != 200 or "text/html" not in content_type:
        fail(f"/docs/ answered {status} {content_type!r}")
    parser = Assets()
    parser.feed(page.decode())
    if len(parser.urls) < 3:
        fail(f"/docs/ loads only {parser.urls}")
    for url in parser.urls:
        absolute = urllib.parse.urljoin(base + "/docs/", url)
        if not absolute.startswith(base + "/"):
            fail(f"/docs/ loads {url} from elsewhere")
        status, _, asset = get(absolute, "")
        if status != 200 or not asset:
            fail(f"{absolute} answered {status} with {len(asset)} bytes")
        print(f"    {absolute[len(base):]}: {len(asset)} bytes")
    _, _, initializer = get(base, "/docs/swagger-initializer.js")
    if b"/openapi.json" not in initializer:
        fail("Swagger UI is not pointed at /openapi.json")
    if re.search(rb"https?://", initializer):
        fail("Swagger UI's initializer names a remote URL")


def check_schemathesis(base):
    step("Schemathesis: every check, bounded examples")
    command = ["st", "run", base + "/openapi.json", "--checks", "all",
               "--max-examples", os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"),
               "--seed", "42", "--request-timeout", "20", "--workers", "2"]
    print("    " + " ".join(command))
    returncode, output = run_streaming(command)
    if returncode != 0 and GENERATOR_FLAKE in output:
        # Schemathesis' own example generator sometimes trips Hypothesis' replay check ("Inconsistent
        # results", raised inside schemathesis/specs/openapi/coverage) without any request having
        # failed a check. Its report is above; one more run, with fresh example databases, tells
        # that apart from a failure of the service, which fails again.
        print(f"==> Schemathesis stopped on {GENERATOR_FLAKE!r}; running it once more")
        for database in (".hypothesis", ".schemathesis"):
            shutil.rmtree(database, ignore_errors=True)
        returncode, output = run_streaming(command)
    if returncode != 0:
        fail("Schemathesis found failures (above)")


GENERATOR_FLAKE = "Inconsistent results"


def run_streaming(command, timeout=1800):
    """Runs `command`, echoing its output as it comes; returns its exit code and the output. Killed
    (and the check failed) after `timeout` seconds."""
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "NO_COLOR": "1"}) as process:
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            for line in process.stdout:
                sys.stdout.write(line)
                lines.append(line)
            process.wait()
        finally:
            timed_out = not timer.is_alive()
            timer.cancel()
    sys.stdout.flush()
    if timed_out:
        fail(f"{command[0]} ran longer than {timeout} s")
    return process.returncode, "".join(lines)


def main():
    binary = sys.argv[1]
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = "http://127.0.0.1:%d/hook" % receiver.server_address[1]
    with tempfile.TemporaryDirectory() as data_dir:
        process, base = start(binary, data_dir, {
            "GENERIC_WEBHOOK_URL": hook,
            "COMPLEX_ALERT_RULES": json.dumps(
                {"web_server": {"count": 3, "window_seconds": 60, "pure_count": True}}),
            "ALERT_RETRY_INITIAL_SECONDS": "0.05",
        })
        try:
            text, _ = check_metrics(base)
            check_dashboards(text)
            check_openapi(base)
            check_docs(base)
            check_schemathesis(base)
            status, _, _ = get(base, "/health")
            if status != 200:
                fail(f"/health answered {status} after the run")
        finally:
            process.terminate()
            process.wait(timeout=30)
            receiver.shutdown()
    print("==> observability checks passed")


if __name__ == "__main__":
    main()
