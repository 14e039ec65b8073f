#!/usr/bin/env python3
"""Writes the bodies of the OTLP throughput benchmark: the same 100 logs (half web_server JSON, half
database key=value, ~5 % breaking a rule, from make_bodies.py) as

- rest_100.json:      the REST body, each log naming its format;
- rest_auto_100.json: the REST body with format_type "auto";
- otlp_100.pb:        an OTLP ExportLogsServiceRequest in protobuf: one resource per service
                      (service.name), the source as the scope's name, each raw log as a record's body;
- otlp_100.json:      the same request in OTLP/JSON.

Needs the opentelemetry-proto package (scripts/test-otlp.sh's virtualenv has it).
"""
import json
import random
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from make_bodies import db, web


def main(out_dir):
    rng = random.Random(7)
    kinds = [web, db]
    logs = [kinds[i % 2](rng, rng.random() < 0.05) for i in range(100)]
    with open(f"{out_dir}/rest_100.json", "w") as f:
        json.dump({"logs": logs}, f)
    with open(f"{out_dir}/rest_auto_100.json", "w") as f:
        json.dump({"logs": [{**log, "format_type": "auto"} for log in logs]}, f)
    request = ExportLogsServiceRequest()
    for service, source in [("web_server", "nginx"), ("database", "postgres")]:
        resource_logs = request.resource_logs.add()
        attribute = resource_logs.resource.attributes.add()
        attribute.key = "service.name"
        attribute.value.string_value = service
        scope_logs = resource_logs.scope_logs.add()
        scope_logs.scope.name = source
        for log in logs:
            if log["service"] == service:
                record = scope_logs.log_records.add()
                record.body.string_value = log["raw_log"]
    with open(f"{out_dir}/otlp_100.pb", "wb") as f:
        f.write(request.SerializeToString())
    with open(f"{out_dir}/otlp_100.json", "w") as f:
        f.write(json_format.MessageToJson(request, indent=None))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
