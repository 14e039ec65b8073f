// Emits logs through the real OpenTelemetry JS SDK (@opentelemetry/sdk-logs) and its OTLP/HTTP
// log exporter (@opentelemetry/exporter-logs-otlp-http, which sends OTLP/JSON).
//
// Usage: node emit.js ENDPOINT PHASE, where ENDPOINT is the full /v1/logs URL and PHASE is
// `baseline` (200 ordinary checkout logs) or `probe` (one ordinary and one outlying checkout log,
// and four failed payments whose JSON body breaks a rule). Exits non-zero if an export failed.
'use strict';

const { SeverityNumber } = require('@opentelemetry/api-logs');
const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { BatchLogRecordProcessor, LoggerProvider } = require('@opentelemetry/sdk-logs');

const failures = [];

// The SDK's exporter, remembering every export that did not succeed (result code 0 is SUCCESS).
function checked(exporter) {
  return {
    export(logs, done) {
      exporter.export(logs, (result) => {
        if (result.code !== 0) failures.push(String(result.error));
        done(result);
      });
    },
    forceFlush: () => exporter.forceFlush(),
    shutdown: () => exporter.shutdown(),
  };
}

function provider(endpoint, service) {
  const exporter = checked(new OTLPLogExporter({ url: endpoint }));
  return new LoggerProvider({
    resource: resourceFromAttributes({ 'service.name': service }),
    processors: [new BatchLogRecordProcessor({ exporter })],
  });
}

function checkout(logger, latencyMs, items) {
  logger.emit({
    severityNumber: SeverityNumber.INFO,
    severityText: 'INFO',
    body: 'order placed',
    attributes: { latency_ms: latencyMs, items },
  });
}

async function main(endpoint, phase) {
  const checkoutProvider = provider(endpoint, 'node-checkout');
  const paymentsProvider = provider(endpoint, 'node-payments');
  const checkoutLogger = checkoutProvider.getLogger('node.checkout');
  const paymentsLogger = paymentsProvider.getLogger('node.payments');
  if (phase === 'baseline') {
    for (let i = 0; i < 200; i++) {
      const wobble = ((i * 7919) % 41) - 20;
      checkout(checkoutLogger, 100 + wobble, ((i * 31) % 5) + 1);
    }
  } else if (phase === 'probe') {
    checkout(checkoutLogger, 101, 3);
    checkout(checkoutLogger, 5000, 40);
    for (let attempt = 0; attempt < 4; attempt++) {
      // A JSON body: cpu_usage breaks the built-in default rule (> 95).
      paymentsLogger.emit({
        severityNumber: SeverityNumber.ERROR,
        severityText: 'ERROR',
        body: JSON.stringify({ message: 'payment worker overloaded', attempt, cpu_usage: 99 }),
      });
    }
  } else {
    throw new Error(`unknown phase ${phase}`);
  }
  await checkoutProvider.forceFlush();
  await paymentsProvider.forceFlush();
  await checkoutProvider.shutdown();
  await paymentsProvider.shutdown();
  if (failures.length > 0) {
    throw new Error(`node exporter: ${failures.length} export(s) failed: ${failures.join('; ')}`);
  }
  console.log(`node exporter: phase ${phase} exported`);
}

main(process.argv[2], process.argv[3]).catch((error) => {
  console.error(error);
  process.exit(1);
});
