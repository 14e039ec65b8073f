"""Shared helpers: load the chart once, render it with given values, parse the manifests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "aioops-mcp-iforest"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

RELEASE = "aioops-mcp-iforest"
NAMESPACE = "aiops"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one.
KUBE_VERSIONS = ("1.25.0", "1.31.0")

SECRET_NAMES = ("SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY", "GENERIC_WEBHOOK_URL", "API_TOKEN")

# Every option on: persistence, secrets, the log generator with every knob, extra metadata.
ALL_ON: dict[str, Any] = {
    "image": {"repository": "registry.example.org/aioops-mcp-iforest", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry-credentials"}],
    "serviceAccount": {"create": True, "name": "aioops", "annotations": {"example.org/role": "detector"}},
    "podAnnotations": {"prometheus.io/scrape": "false"},
    "podLabels": {"team": "sre"},
    "service": {"type": "LoadBalancer", "port": 8080, "annotations": {"example.org/lb": "internal"}},
    "otlp": {"enabled": True, "port": 4318},
    "persistence": {
        "enabled": True,
        "storageClass": "fast-ssd",
        "size": "5Gi",
        "annotations": {"example.org/backup": "daily"},
        "keepOnUninstall": True,
    },
    "secrets": {
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/SLACKSECRET",
        "PAGERDUTY_ROUTING_KEY": "PDSECRETKEY0123456789",
        "GENERIC_WEBHOOK_URL": "https://hooks.example.org/aioops?token=WEBHOOKSECRET",
        "API_TOKEN": "APITOKENSECRET-0123456789abcdef",
    },
    "mcp": {
        "allowedHosts": ["mcp.example.org", "mcp.example.org:443"],
        "allowedOrigins": ["https://agent.example.org:443", "http://localhost:*"],
    },
    "logGenerator": {
        "enabled": True,
        "image": {"repository": "registry.example.org/aioops-mcp-log-generator", "tag": "1.2.3", "pullPolicy": "Always"},
        "interval": 2,
        "batch": 20,
        "anomalyRatio": 0.1,
        "warmup": 100,
        "duration": "10m",
        "extraArgs": ["--seed", "42", "--services", "web_server,database"],
        "backoffLimit": 1,
        "ttlSecondsAfterFinished": 3600,
    },
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "aiops", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}
                ]
            }
        }
    },
    "env": {
        "ANOMALY_THRESHOLD": "-0.05",
        "ALERT_CONDITIONS": '{"web_server": {"response_time": 1500}}',
        "COMPLEX_ALERT_RULES": '{"web_server": {"count": 5, "window_seconds": 60}}',
        "LOG_LEVEL": "DEBUG",
        "MIN_TRAIN_SAMPLES": 100,
    },
}

SECRET_VALUES = tuple(ALL_ON["secrets"][name] for name in SECRET_NAMES)


def load_values_file(name: str) -> dict[str, Any]:
    with open(FIXTURES / name, encoding="utf-8") as file:
        return yaml.safe_load(file)


@pytest.fixture(scope="session")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


class Rendered:
    """The manifests of one render: by template path, parsed, and by kind."""

    def __init__(self, raw: dict[str, str]):
        self.raw = raw
        self.notes = next((text for path, text in raw.items() if path.endswith("NOTES.txt")), "")
        self.docs: list[dict[str, Any]] = []
        for path, text in sorted(raw.items()):
            if path.endswith("NOTES.txt"):
                continue
            self.docs.extend(doc for doc in yaml.safe_load_all(text) if doc)

    def kinds(self) -> list[str]:
        return sorted(doc["kind"] for doc in self.docs)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]

    def text(self) -> str:
        """Every manifest as text (NOTES excluded)."""
        return "\n".join(text for path, text in self.raw.items() if not path.endswith("NOTES.txt"))


@pytest.fixture(scope="session")
def render(chart):
    def _render(values: dict[str, Any] | None = None, *, revision: int = 1) -> Rendered:
        raw = chart.render(
            copy.deepcopy(values) if values else None,
            name=RELEASE,
            namespace=NAMESPACE,
            revision=revision,
            is_install=revision == 1,
            is_upgrade=revision > 1,
        )
        return Rendered(raw)

    return _render
