"""Emits logs through the real OpenTelemetry Python SDK and its OTLP/HTTP log exporter
(protobuf, gzip), as an application using the standard `logging` module would.

Usage: emit.py ENDPOINT PHASE, where ENDPOINT is the full /v1/logs URL and PHASE is
`baseline` (200 ordinary checkout logs, for the service to learn) or `probe` (one ordinary and one
outlying checkout log, and four failed payments that break a rule, inside a span).
Exits non-zero if any export was not a success.
"""

import logging
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

FAILURES = []


class CheckedExporter(OTLPLogExporter):
    """The SDK's exporter, remembering every export that did not succeed."""

    def export(self, *args, **kwargs):
        result = super().export(*args, **kwargs)
        # SUCCESS is 0 in both the old LogExportResult and the newer LogRecordExportResult.
        if result.value != 0:
            FAILURES.append(result)
        return result


def checkout(logger, latency_ms, items):
    logger.info("order placed", extra={"latency_ms": latency_ms, "items": items})


def main(endpoint, phase):
    def provider_for(service):
        provider = LoggerProvider(resource=Resource.create({"service.name": service}))
        exporter = CheckedExporter(endpoint=endpoint, compression=Compression.Gzip)
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        return provider

    provider = provider_for("py-checkout")
    payments_provider = provider_for("py-payments")

    checkout_logger = logging.getLogger("py.checkout")
    checkout_logger.setLevel(logging.INFO)
    checkout_logger.propagate = False
    checkout_logger.addHandler(LoggingHandler(logger_provider=provider))
    payments_logger = logging.getLogger("py.payments")
    payments_logger.setLevel(logging.INFO)
    payments_logger.propagate = False
    payments_logger.addHandler(LoggingHandler(logger_provider=payments_provider))

    if phase == "baseline":
        for i in range(200):
            wobble = (i * 7919) % 41 - 20
            checkout(checkout_logger, 100 + wobble, (i * 31) % 5 + 1)
    elif phase == "probe":
        checkout(checkout_logger, 101, 3)
        checkout(checkout_logger, 5000, 40)
        trace.set_tracer_provider(TracerProvider())
        tracer = trace.get_tracer("py.payments")
        with tracer.start_as_current_span("charge card"):
            for attempt in range(4):
                # A key=value body: error_rate breaks the built-in default rule (> 0.2).
                payments_logger.error(f"payment failed attempt={attempt} error_rate=0.9")
    else:
        raise SystemExit(f"unknown phase {phase!r}")

    provider.force_flush()
    payments_provider.force_flush()
    provider.shutdown()
    payments_provider.shutdown()
    if FAILURES:
        raise SystemExit(f"python exporter: {len(FAILURES)} export(s) failed: {FAILURES}")
    print(f"python exporter: phase {phase} exported")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
