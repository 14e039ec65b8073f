"""The Helm chart: lint, schema, rendering, Kubernetes schemas, and the security it promises."""

from __future__ import annotations

import base64
import json
import shutil
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from conftest import (
    ALL_ON,
    CHART_DIR,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    SECRET_NAMES,
    SECRET_VALUES,
    load_values_file,
)

# Values sets every structural test runs over.
README_VALUES: dict[str, Any] = {
    # The original README's Kubernetes example, as users copied it.
    "env": {
        "API_HOST": "0.0.0.0",
        "API_PORT": "8000",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/YOUR/SLACK/URL",
        "PAGERDUTY_ROUTING_KEY": "",
        "GENERIC_WEBHOOK_URL": "",
    },
    "log-generator": {"enabled": True},
}
EXISTING_SECRET = {"secrets": {"existingSecret": "aiops-alert-channels"}, "persistence": {"enabled": True, "existingClaim": "aiops-data"}}
# Several replicas on PostgreSQL: the URL in the chart's Secret, a private CA, the log generator.
DATABASE_URL = "postgres://aioops:DBPASSWORD-s3cret@db.example.org:5432/aioops?sslmode=require"
POSTGRES: dict[str, Any] = {
    "replicaCount": 3,
    "secrets": {"DATABASE_URL": DATABASE_URL, "API_TOKEN": "APITOKENSECRET-0123456789abcdef"},
    "database": {"caSecret": {"name": "rds-ca", "key": "global-bundle.pem"}},
    "env": {"DATABASE_POOL_SIZE": "10", "DATABASE_STATEMENT_TIMEOUT_SECONDS": "5"},
    "logGenerator": {"enabled": True},
}
# The URL in an existing Secret, and an autoscaler.
POSTGRES_EXISTING_SECRET_HPA: dict[str, Any] = {
    "secrets": {"existingSecret": "aiops-db"},
    "database": {"urlFromExistingSecret": True},
    "autoscaling": {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 6,
        "targetCPUUtilizationPercentage": 70,
        "targetMemoryUtilizationPercentage": 85,
    },
}
VALUE_SETS = {
    "default": None,
    "all-on": ALL_ON,
    "original-values-file": load_values_file("original-values.yaml"),
    "original-readme": README_VALUES,
    "existing-secret-and-claim": EXISTING_SECRET,
    "postgres-replicas": POSTGRES,
    "postgres-existing-secret-hpa": POSTGRES_EXISTING_SECRET_HPA,
}


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


# --- lint and schema -------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["default", "all-on", "postgres-replicas", "postgres-existing-secret-hpa"])
def test_chart_lints_clean_in_strict_mode(values):
    report = helm.lint(CHART_DIR, VALUE_SETS[values], strict=True, namespace=NAMESPACE, kube_version="v" + KUBE_VERSIONS[-1])
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_schema_accepts_every_supported_values_set(chart, name):
    chart.validate_schema(VALUE_SETS[name])


BAD_VALUES = [
    ({"replicaCount": 2}, "/replicaCount"),
    ({"replicaCount": "1"}, "/replicaCount"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"service": {"type": "ExternalName"}}, "/service/type"),
    ({"service": {"port": 70000}}, "/service/port"),
    ({"persistence": {"size": "lots"}}, "/persistence/size"),
    ({"persistence": {"accessModes": ["ReadWriteSometimes"]}}, "/persistence/accessModes"),
    ({"dataDir": "data"}, "/dataDir"),
    ({"logGenerator": {"anomalyRatio": 1.5}}, "/logGenerator/anomalyRatio"),
    ({"logGenerator": {"batch": 0}}, "/logGenerator/batch"),
    ({"logGenerator": {"duration": "forever"}}, "/logGenerator/duration"),
    ({"logGenerator": {"interval": "soon"}}, "/logGenerator/interval"),
    ({"logGenerator": {"modelServerUrl": "aiops:8000"}}, "/logGenerator/modelServerUrl"),
    ({"env": {"ALERT_CONDITIONS": {"web_server": {"response_time": 1}}}}, "/env/ALERT_CONDITIONS"),
    ({"env": {"bad-name": "x"}}, "bad-name"),
    ({"secrets": {"SLACK_WEBHOOK_URL": 42}}, "/secrets/SLACK_WEBHOOK_URL"),
    ({"secrets": {"SLACK_TOKEN": "x"}}, "/secrets"),
    ({"secrets": {"API_TOKEN": "short"}}, "/secrets/API_TOKEN"),
    ({"secrets": {"API_TOKEN": "has spaces in it, sixteen+"}}, "/secrets/API_TOKEN"),
    ({"mcp": {"allowedHosts": ["https://mcp.example.org/"]}}, "/mcp/allowedHosts/0"),
    ({"mcp": {"allowedOrigins": ["agent.example.org"]}}, "/mcp/allowedOrigins/0"),
    ({"mcp": {"hosts": []}}, "/mcp"),
    ({"resources": {"limits": {"memory": "a lot"}}}, "/resources/limits/memory"),
    ({"logGeneratorEnabled": True}, "logGeneratorEnabled"),
    ({"env": {"DATABASE_URL": DATABASE_URL}}, "/env/DATABASE_URL"),
    ({"secrets": {"DATABASE_URL": "mysql://db.example.org/aioops"}}, "/secrets/DATABASE_URL"),
    ({"database": {"url": DATABASE_URL}}, "/database"),
    ({"database": {"caSecret": {"name": "rds-ca", "key": "certs/ca.pem"}}}, "/database/caSecret/key"),
    ({"podDisruptionBudget": {"minAvailable": "50"}}, "/podDisruptionBudget/minAvailable"),
    ({"podDisruptionBudget": {"maxUnavailable": -1}}, "/podDisruptionBudget/maxUnavailable"),
]


@pytest.mark.parametrize("values,where", BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_schema_rejects_bad_values_and_says_where(chart, values, where):
    with pytest.raises(helm.HelmValuesError) as error:
        chart.validate_schema(values)
    assert where in str(error.value)


def test_rendering_enforces_the_schema_too(chart):
    with pytest.raises(helm.HelmValuesError, match="replicaCount"):
        chart.render({"replicaCount": 3}, name=RELEASE, namespace=NAMESPACE)


@pytest.fixture(scope="module")
def schemaless_chart(tmp_path_factory):
    """The chart without values.schema.json, as `helm install --skip-schema-validation` renders it:
    the templates' own checks must still refuse what the schema refuses."""
    copy = tmp_path_factory.mktemp("chart") / CHART_DIR.name
    shutil.copytree(CHART_DIR, copy)
    (copy / "values.schema.json").unlink()
    with helm.Chart.load(copy) as loaded:
        yield loaded


WITH_URL: dict[str, Any] = {"secrets": {"DATABASE_URL": DATABASE_URL}}

# Values one replica on SQLite cannot honour: what the schema names, and the template's reason.
REFUSED = [
    pytest.param({"replicaCount": 2}, ["/secrets/DATABASE_URL", "/database/urlFromExistingSecret", "/replicaCount"], "replicaCount=2: without a database URL", id="replicas-without-url"),
    pytest.param({"autoscaling": {"enabled": True}}, ["/secrets/DATABASE_URL", "/autoscaling/enabled"], "runs as a single replica", id="autoscaling-without-url"),
    pytest.param({"autoscaling": {"enabled": True, "maxReplicas": 5}}, ["/secrets/DATABASE_URL", "/autoscaling/enabled"], "single replica", id="autoscaling-to-5-without-url"),
    pytest.param(
        {"replicaCount": 2, "secrets": {"existingSecret": "aiops-secrets"}},
        ["/database/urlFromExistingSecret"],
        "database.urlFromExistingSecret=true",
        id="replicas-with-existing-secret-not-said-to-hold-the-url",
    ),
    pytest.param(
        {"replicaCount": 2, "secrets": {"DATABASE_URL": DATABASE_URL}, "persistence": {"enabled": True}},
        ["/persistence/enabled"],
        "a ReadWriteOnce claim for DATA_DIR cannot be shared",
        id="replicas-with-persistence",
    ),
    pytest.param(
        {"autoscaling": {"enabled": True, "maxReplicas": 4}, "secrets": {"DATABASE_URL": DATABASE_URL}, "persistence": {"enabled": True, "existingClaim": "aiops-data"}},
        ["/persistence/enabled"],
        "up to 4 replicas",
        id="autoscaling-with-persistence",
    ),
    pytest.param({"env": {"DATABASE_URL": DATABASE_URL}}, ["/env/DATABASE_URL"], "env.DATABASE_URL: the database URL is a credential", id="url-in-env"),
    pytest.param({"database": {"urlFromExistingSecret": True}}, ["/secrets/existingSecret"], "secrets.existingSecret, which is empty", id="url-from-no-secret"),
    pytest.param(
        {"secrets": {"existingSecret": "aiops-secrets", "DATABASE_URL": DATABASE_URL}},
        ["/secrets/DATABASE_URL"],
        "the chart creates no Secret to hold it",
        id="url-beside-existing-secret",
    ),
]


@pytest.mark.parametrize("values, where, _reason", REFUSED)
def test_schema_refuses_what_one_sqlite_replica_cannot_honour(chart, values, where, _reason):
    with pytest.raises(helm.HelmValuesError) as error:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    for path in where:
        assert path in str(error.value), path


@pytest.mark.parametrize("values, _where, reason", REFUSED)
def test_templates_refuse_it_too_with_the_reason(schemaless_chart, values, _where, reason):
    with pytest.raises(helm.HelmRenderError) as error:
        schemaless_chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert reason in str(error.value)
    if "DATABASE_URL" in values.get("secrets", {}) or "DATABASE_URL" in values.get("env", {}):
        assert DATABASE_URL not in str(error.value)


@pytest.mark.parametrize(
    "values, reason",
    [
        # What the schema cannot compare, or does not know.
        ({**WITH_URL, "autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}, "autoscaling.maxReplicas (2) is below autoscaling.minReplicas (4)"),
        ({**WITH_URL, "autoscaling": {"enabled": True, "minReplicas": 0, "maxReplicas": 2}}, "autoscaling.minReplicas must be at least 1"),
        ({"database": {"caSecret": {"name": "rds-ca"}}}, "database.caSecret is set but the pods get no database URL"),
        ({**WITH_URL, "replicaCount": 2, "podDisruptionBudget": {"minAvailable": None}}, "set minAvailable or maxUnavailable"),
    ],
    ids=["max-below-min", "min-zero", "ca-without-url", "pdb-without-bound"],
)
def test_templates_refuse_inconsistent_database_settings(chart, values, reason):
    with pytest.raises(helm.HelmRenderError) as error:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert reason in str(error.value)


# --- what gets rendered ----------------------------------------------------------------------------


def test_default_values_render_the_server_only(render):
    rendered = render()
    assert rendered.kinds() == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]


def test_every_option_on_renders_secret_claim_and_job(render):
    rendered = render(ALL_ON)
    assert rendered.kinds() == [
        "ConfigMap",
        "Deployment",
        "Job",
        "PersistentVolumeClaim",
        "Secret",
        "Service",
        "ServiceAccount",
    ]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_manifest_is_valid_kubernetes(render, name, kube_version):
    rendered = render(VALUE_SETS[name])
    assert rendered.docs
    for doc in rendered.docs:
        # strict: unknown fields (a typo in a template) fail too.
        kubernetes_validate.validate(doc, kube_version, strict=True)


def test_release_named_like_the_chart_gives_the_readmes_service_name(render):
    service = render().one("Service")
    assert service["metadata"]["name"] == "aioops-mcp-iforest"
    assert service["spec"]["ports"][0]["port"] == 8000


def test_service_selects_the_server_pods_only(render):
    rendered = render(ALL_ON)
    selector = rendered.one("Service")["spec"]["selector"]
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    job_labels = rendered.one("Job")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert not selector.items() <= job_labels.items()
    # The original README's pod listing works: kubectl get pods -l app.kubernetes.io/name=aioops-mcp-iforest
    assert pod_labels["app.kubernetes.io/name"] == "aioops-mcp-iforest"


def test_probes_use_the_container_port_and_only_readiness_checks_storage(render):
    deployment = render().one("Deployment")
    server = container(deployment["spec"]["template"]["spec"], "server")
    assert server["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    # A full disk makes /health 503: that must take the pod out of the Service, not restart it.
    for probe in ("startupProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/", "port": "http"}, probe
    assert server["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_api_port_in_env_moves_the_container_port(render):
    rendered = render({"env": {"API_PORT": "9000"}})
    server = container(rendered.one("Deployment")["spec"]["template"]["spec"], "server")
    assert server["ports"][0]["containerPort"] == 9000
    assert rendered.one("ConfigMap")["data"]["API_PORT"] == "9000"


def test_the_otlp_port_is_off_by_default_and_opens_on_pod_and_service_when_enabled(render):
    rendered = render()
    assert "OTLP_HTTP_PORT" not in rendered.one("ConfigMap")["data"]
    assert [p["name"] for p in rendered.one("Service")["spec"]["ports"]] == ["http"]
    rendered = render({"otlp": {"enabled": True, "port": 4318}})
    assert rendered.one("ConfigMap")["data"]["OTLP_HTTP_PORT"] == "4318"
    server = container(rendered.one("Deployment")["spec"]["template"]["spec"], "server")
    assert {"name": "otlp-http", "containerPort": 4318, "protocol": "TCP"} in server["ports"]
    ports = rendered.one("Service")["spec"]["ports"]
    assert {"name": "otlp-http", "port": 4318, "targetPort": "otlp-http", "protocol": "TCP"} in ports


def test_configmap_carries_env_and_the_container_settings(render):
    data = render(ALL_ON).one("ConfigMap")["data"]
    assert data["API_HOST"] == "0.0.0.0"
    assert data["DATA_DIR"] == "/data"
    assert data["LOG_LEVEL"] == "DEBUG"
    assert data["MIN_TRAIN_SAMPLES"] == "100"
    assert data["ALERT_CONDITIONS"] == '{"web_server": {"response_time": 1500}}'
    assert all(isinstance(v, str) for v in data.values())


# Measured bytes of one typical sampled row (env.example, bench/learning_memory.py) and what the
# server takes besides its samples, with room to spare.
TYPICAL_ROW_BYTES = 2 * 1024
SERVER_BASE_BYTES = 128 * 1024 * 1024


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


@pytest.mark.parametrize("values", [{}, "original-values.yaml"])
def test_the_default_learning_memory_fits_the_memory_limit(render, values):
    rendered = render(load_values_file(values) if isinstance(values, str) else values)
    data = rendered.one("ConfigMap")["data"]
    services = int(data["MAX_TRACKED_SERVICES"])
    reservoir = int(data.get("RESERVOIR_SIZE", "2048"))
    server = container(rendered.one("Deployment")["spec"]["template"]["spec"], "server")
    limit = memory_bytes(server["resources"]["limits"]["memory"])
    assert services * reservoir * TYPICAL_ROW_BYTES + SERVER_BASE_BYTES <= limit


def test_a_settings_change_rolls_the_pods(render):
    def checksum(values):
        annotations = render(values).one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/config"], annotations["checksum/secret"]

    base = checksum(None)
    assert checksum({"env": {"LOG_LEVEL": "DEBUG"}})[0] != base[0]
    assert checksum({"secrets": {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/x"}})[1] != base[1]


def test_data_dir_is_an_empty_dir_without_persistence_and_notes_warn(render):
    rendered = render()
    volumes = {v["name"]: v for v in rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["data"]
    assert "lost whenever the pod restarts" in rendered.notes


def test_persistence_mounts_a_claim_and_recreates_instead_of_rolling(render):
    rendered = render(ALL_ON)
    deployment = rendered.one("Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = rendered.one("PersistentVolumeClaim")
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert "lost whenever" not in rendered.notes


def test_an_existing_claim_is_used_as_is(render):
    rendered = render(EXISTING_SECRET)
    assert rendered.all("PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "aiops-data"


def test_notes_give_port_forward_and_curl_lines(render):
    notes = render().notes
    assert f"kubectl --namespace {NAMESPACE} port-forward svc/aioops-mcp-iforest 8000:8000" in notes
    assert "curl -s localhost:8000/health" in notes
    assert "/api/v1/stream/multi-source" in notes


# --- the log generator -----------------------------------------------------------------------------


def job_container(rendered) -> dict[str, Any]:
    return container(rendered.one("Job")["spec"]["template"]["spec"], "log-generator")


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def test_log_generator_posts_to_the_charts_own_service(render):
    rendered = render(ALL_ON)
    env = env_of(job_container(rendered))
    service = rendered.one("Service")
    assert env["MODEL_SERVER_URL"] == (
        f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/api/v1/stream/multi-source"
    )
    assert env["INTERVAL"] == "2"


def test_log_generator_passes_its_settings_as_flags(render):
    args = job_container(render(ALL_ON))["args"]
    assert args == [
        "--batch=20",
        "--anomaly-ratio=0.1",
        "--warmup=100",
        "--duration=10m",
        "--seed",
        "42",
        "--services",
        "web_server,database",
    ]


def test_log_generator_job_name_changes_per_revision(render):
    first = render(ALL_ON, revision=1).one("Job")["metadata"]["name"]
    second = render(ALL_ON, revision=2).one("Job")["metadata"]["name"]
    assert first != second


def test_the_original_values_file_still_applies(render):
    rendered = render(load_values_file("original-values.yaml"))
    # The original's log generator URL named a Service this chart does not create.
    assert env_of(job_container(rendered))["MODEL_SERVER_URL"] == (
        "http://aioops-mcp-iforest:8000/api/v1/stream/multi-source"
    )
    assert env_of(job_container(rendered))["INTERVAL"] == "5"
    # Its placeholder secrets are not real channels: no Secret, no secret env, a note.
    assert rendered.all("Secret") == []
    server = container(rendered.one("Deployment")["spec"]["template"]["spec"], "server")
    assert "env" not in server
    data = rendered.one("ConfigMap")["data"]
    assert not set(SECRET_NAMES) & set(data)
    assert data["MAX_RECENT_ANOMALIES"] == "500"
    assert "placeholder" in rendered.notes
    # Its empty securityContext does not switch off the hardening.
    assert server["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_original_readmes_log_generator_key_is_honoured(render):
    rendered = render(README_VALUES)
    assert len(rendered.all("Job")) == 1


def test_a_custom_model_server_url_is_kept(render):
    url = "http://ingest.example.org/api/v1/stream/multi-source"
    rendered = render({"logGenerator": {"enabled": True, "modelServerUrl": url}})
    assert env_of(job_container(rendered))["MODEL_SERVER_URL"] == url


# --- security --------------------------------------------------------------------------------------


def pod_specs(rendered) -> list[tuple[str, dict[str, Any]]]:
    specs = [("Deployment", rendered.one("Deployment")["spec"]["template"]["spec"])]
    specs += [("Job", job["spec"]["template"]["spec"]) for job in rendered.all("Job")]
    return specs


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_pods_run_non_root_read_only_without_capabilities(render, name):
    for kind, spec in pod_specs(render(VALUE_SETS[name])):
        assert spec["securityContext"]["runAsNonRoot"] is True, kind
        assert spec["securityContext"]["runAsUser"] != 0, kind
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, kind
        assert spec["automountServiceAccountToken"] is False, kind
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, (kind, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (kind, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (kind, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (kind, c["name"])
            assert "add" not in sc["capabilities"], (kind, c["name"])
            assert "resources" in c and c["resources"]["limits"]["memory"], (kind, c["name"])


def test_the_server_can_write_only_to_its_data_dir_and_tmp(render):
    spec = render(ALL_ON).one("Deployment")["spec"]["template"]["spec"]
    server = container(spec, "server")
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    assert mounts == {"/data": "data", "/tmp": "tmp"}
    assert all(not m.get("readOnly") for m in server["volumeMounts"])
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["tmp"]


SECRETS_IN_ENV = {"env": dict(zip(SECRET_NAMES, SECRET_VALUES))}


@pytest.mark.parametrize("values", [ALL_ON, SECRETS_IN_ENV], ids=["secrets", "env"])
def test_secrets_reach_the_pod_only_through_the_secret(render, values):
    rendered = render(values)
    secret = rendered.one("Secret")
    stored = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert stored == dict(zip(SECRET_NAMES, SECRET_VALUES))
    # No other manifest holds a secret value, in clear or as a ConfigMap entry.
    others = [doc for doc in rendered.docs if doc["kind"] != "Secret"]
    for doc in others:
        text = repr(doc)
        for value in SECRET_VALUES:
            assert value not in text, doc["kind"]
    assert not set(SECRET_NAMES) & set(rendered.one("ConfigMap")["data"])
    server = container(rendered.one("Deployment")["spec"]["template"]["spec"], "server")
    for entry in server["env"]:
        assert "value" not in entry, entry
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] == entry["name"]
    assert {e["name"] for e in server["env"]} == set(SECRET_NAMES)
    for source in server["envFrom"]:
        assert set(source) <= {"configMapRef", "secretRef"}
    for value in SECRET_VALUES:
        assert value not in rendered.notes


def test_an_existing_secret_is_referenced_and_none_created(render):
    rendered = render(EXISTING_SECRET)
    assert rendered.all("Secret") == []
    server = container(rendered.one("Deployment")["spec"]["template"]["spec"], "server")
    names = {e["valueFrom"]["secretKeyRef"]["name"] for e in server["env"]}
    assert names == {"aiops-alert-channels"}
    assert all(e["valueFrom"]["secretKeyRef"]["optional"] is True for e in server["env"])


def test_values_given_under_secrets_win_over_env(render):
    rendered = render({"env": {"SLACK_WEBHOOK_URL": "https://old"}, "secrets": {"SLACK_WEBHOOK_URL": "https://new"}})
    data = rendered.one("Secret")["data"]
    assert base64.b64decode(data["SLACK_WEBHOOK_URL"]).decode() == "https://new"


# --- Prometheus and Grafana ------------------------------------------------------------------------

METRICS_ON: dict[str, Any] = {
    "metrics": {
        "serviceMonitor": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "interval": "15s",
            "scrapeTimeout": "5s",
        },
        "grafanaDashboard": {
            "enabled": True,
            "namespace": "monitoring",
            "annotations": {"grafana_folder": "AIOps"},
        },
    },
    "env": {"API_PORT": "9000"},
}


def test_pods_carry_scrape_annotations_by_default(render):
    annotations = render().one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_scrape_annotations_follow_the_port_and_pod_annotations_win(render):
    moved = render({"env": {"API_PORT": "9000"}}).one("Deployment")["spec"]["template"]["metadata"]
    assert moved["annotations"]["prometheus.io/port"] == "9000"
    # ALL_ON sets prometheus.io/scrape: "false" under podAnnotations.
    overridden = render(ALL_ON).one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert overridden["prometheus.io/scrape"] == "false"
    assert overridden["prometheus.io/path"] == "/metrics"
    off = render({"metrics": {"scrapeAnnotations": False}}).one("Deployment")
    assert not any(key.startswith("prometheus.io/") for key in off["spec"]["template"]["metadata"]["annotations"])


def test_service_monitor_and_dashboard_are_off_by_default(render):
    assert "ServiceMonitor" not in render().kinds()
    assert len(render().all("ConfigMap")) == 1


def test_service_monitor_scrapes_the_services_http_port(render):
    rendered = render(METRICS_ON)
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}
    assert any(port["name"] == "http" for port in service["spec"]["ports"])


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar(render):
    rendered = render(METRICS_ON)
    dashboards = [c for c in rendered.all("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert len(dashboards) == 1
    dashboard = dashboards[0]
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "AIOps"}
    content = json.loads(dashboard["data"]["aioops-mcp-iforest.json"])
    with open(CHART_DIR / "dashboards" / "aioops-mcp-iforest.json", encoding="utf-8") as file:
        assert content == json.load(file)
    titles = " ".join(panel["title"] for panel in content["panels"]).lower()
    for topic in ("ingest rate", "latency", "anomaly rate per service", "alert deliveries", "outbox", "model age"):
        assert topic in titles, topic


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_metrics_manifests_of_kubernetes_kinds_are_valid(render, kube_version):
    for doc in render(METRICS_ON).docs:
        if doc["kind"] == "ServiceMonitor":
            continue  # a CRD: its fields are checked above
        kubernetes_validate.validate(doc, kube_version, strict=True)


@pytest.mark.parametrize(
    "values, where",
    [
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "/metrics/serviceMonitor/interval"),
        ({"metrics": {"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}}, "/metrics/grafanaDashboard/labels"),
        ({"metrics": {"scrape": True}}, "scrape"),
    ],
)
def test_schema_rejects_bad_metrics_values(chart, values, where):
    with pytest.raises(helm.HelmValuesError) as error:
        chart.validate_schema(values)
    assert where in str(error.value)


# --- access control and the MCP endpoint -----------------------------------------------------------


def test_mcp_answers_the_services_own_names_and_the_configured_hosts(render):
    default = render().one("ConfigMap")["data"]
    hosts = default["MCP_ALLOWED_HOSTS"].split(",")
    service = "aioops-mcp-iforest"
    for name in (service, f"{service}.{NAMESPACE}", f"{service}.{NAMESPACE}.svc", f"{service}.{NAMESPACE}.svc.cluster.local", "localhost", "127.0.0.1"):
        assert name in hosts, name
    assert "MCP_ALLOWED_ORIGINS" not in default
    configured = render(ALL_ON).one("ConfigMap")["data"]
    assert configured["MCP_ALLOWED_HOSTS"].split(",")[-2:] == ["mcp.example.org", "mcp.example.org:443"]
    assert configured["MCP_ALLOWED_ORIGINS"] == "https://agent.example.org:443,http://localhost:*"
    replaced = render({"env": {"MCP_ALLOWED_HOSTS": "only.example.org"}}).one("ConfigMap")["data"]
    assert replaced["MCP_ALLOWED_HOSTS"] == "only.example.org"


def test_the_token_comes_from_the_secret_for_the_server_and_the_log_generator(render):
    rendered = render(ALL_ON)
    secret_name = rendered.one("Secret")["metadata"]["name"]
    for c in (container(rendered.one("Deployment")["spec"]["template"]["spec"], "server"), job_container(rendered)):
        ref = env_of(c)["API_TOKEN"]["secretKeyRef"]
        assert ref == {"name": secret_name, "key": "API_TOKEN", "optional": True}, c["name"]
    existing = render({**EXISTING_SECRET, "logGenerator": {"enabled": True}})
    assert env_of(job_container(existing))["API_TOKEN"]["secretKeyRef"]["name"] == "aiops-alert-channels"


def test_notes_give_the_mcp_url_and_warn_without_a_token(render):
    open_notes = render().notes
    assert f"aioops-mcp-iforest.{NAMESPACE}.svc:8000/mcp" in open_notes
    assert "no API_TOKEN is set" in open_notes
    assert "no API_TOKEN is set" not in render(ALL_ON).notes
    assert "no API_TOKEN is set" not in render(EXISTING_SECRET).notes


# --- several replicas on PostgreSQL ----------------------------------------------------------------


def server_of(rendered) -> dict[str, Any]:
    return container(rendered.one("Deployment")["spec"]["template"]["spec"], "server")


def volumes_of(rendered) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]}


def test_several_replicas_on_postgres_share_the_database_and_roll(render):
    rendered = render(POSTGRES)
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["replicas"] == 3
    # New pods become ready before old ones stop: nothing in DATA_DIR is owned by one pod.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
    }
    assert rendered.all("PersistentVolumeClaim") == []
    assert "emptyDir" in volumes_of(rendered)["data"]
    assert "HorizontalPodAutoscaler" not in rendered.kinds()
    assert "lost whenever the pod restarts" not in rendered.notes
    assert "stored in PostgreSQL" in rendered.notes
    # 3 replicas, 4 during a rollout (maxSurge 25 % rounds up), DATABASE_POOL_SIZE=10 each.
    assert "3 replica(s), 4 during a rolling update" in rendered.notes
    assert "need up to 40 connections" in rendered.notes


def test_the_database_url_is_stored_in_the_secret_and_required_by_the_pod(render):
    rendered = render(POSTGRES)
    secret = rendered.one("Secret")
    stored = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert stored["DATABASE_URL"] == DATABASE_URL
    ref = env_of(server_of(rendered))["DATABASE_URL"]["secretKeyRef"]
    # Not optional: a missing key keeps the pod from starting instead of giving it a SQLite of its own.
    assert ref == {"name": secret["metadata"]["name"], "key": "DATABASE_URL", "optional": False}
    # The log generator has no use for it.
    assert "DATABASE_URL" not in env_of(job_container(rendered))


@pytest.mark.parametrize("values", [POSTGRES, {**POSTGRES, "replicaCount": 1}], ids=["3-replicas", "1-replica"])
def test_the_database_url_never_appears_outside_the_secret(render, values):
    rendered = render(values)
    password = "DBPASSWORD-s3cret"
    for doc in rendered.docs:
        if doc["kind"] != "Secret":
            assert password not in repr(doc), doc["kind"]
    assert password not in rendered.notes
    assert "DATABASE_URL" not in rendered.one("ConfigMap")["data"]
    for c in (server_of(rendered), job_container(rendered)):
        for entry in c.get("env", []):
            assert "value" not in entry or entry["name"] != "DATABASE_URL", entry
            assert "value" not in entry or password not in entry["value"], entry
    # The tuning settings are plain settings.
    data = rendered.one("ConfigMap")["data"]
    assert data["DATABASE_POOL_SIZE"] == "10"
    assert data["DATABASE_STATEMENT_TIMEOUT_SECONDS"] == "5"


def test_the_database_url_can_come_from_an_existing_secret(render):
    values = {"replicaCount": 2, "secrets": {"existingSecret": "aiops-db"}, "database": {"urlFromExistingSecret": True}}
    rendered = render(values)
    assert rendered.all("Secret") == []
    assert rendered.one("Deployment")["spec"]["replicas"] == 2
    ref = env_of(server_of(rendered))["DATABASE_URL"]["secretKeyRef"]
    assert ref == {"name": "aiops-db", "key": "DATABASE_URL", "optional": False}
    assert rendered.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert 'DATABASE_URL from Secret "aiops-db"' in rendered.notes


def test_an_existing_secret_not_said_to_hold_the_url_keeps_sqlite(render):
    rendered = render(EXISTING_SECRET)
    assert "DATABASE_URL" not in env_of(server_of(rendered))
    assert rendered.one("Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert rendered.all("PodDisruptionBudget") == []


def test_one_replica_on_postgres_rolls_and_needs_no_budget(render):
    rendered = render({"secrets": {"DATABASE_URL": DATABASE_URL}})
    assert rendered.one("Deployment")["spec"]["replicas"] == 1
    assert rendered.one("Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    # A budget over one pod would block every node drain.
    assert rendered.all("PodDisruptionBudget") == []


def test_one_replica_on_postgres_with_a_claim_still_recreates(render):
    # A ReadWriteOnce claim attaches to one node: the old pod must let go before the new one mounts it.
    rendered = render({"secrets": {"DATABASE_URL": DATABASE_URL}, "persistence": {"enabled": True}})
    assert rendered.one("Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert len(rendered.all("PersistentVolumeClaim")) == 1


def test_the_pod_disruption_budget_selects_the_server_pods(render):
    rendered = render(POSTGRES)
    pdb = rendered.one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    job_labels = rendered.one("Job")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert not selector.items() <= job_labels.items()


@pytest.mark.parametrize(
    "budget, spec",
    [
        ({"minAvailable": 2}, {"minAvailable": 2}),
        ({"minAvailable": "50%"}, {"minAvailable": "50%"}),
        ({"maxUnavailable": 1}, {"maxUnavailable": 1}),
        ({"maxUnavailable": "25%"}, {"maxUnavailable": "25%"}),
    ],
    ids=["min-2", "min-50%", "max-1", "max-25%"],
)
def test_the_pod_disruption_budget_is_configurable(render, budget, spec):
    rendered = render({**POSTGRES, "podDisruptionBudget": budget})
    pdb = rendered.one("PodDisruptionBudget")
    assert {k: v for k, v in pdb["spec"].items() if k != "selector"} == spec
    for kube_version in KUBE_VERSIONS:
        kubernetes_validate.validate(pdb, kube_version, strict=True)


def test_the_pod_disruption_budget_can_be_turned_off(render):
    assert render({**POSTGRES, "podDisruptionBudget": {"enabled": False}}).all("PodDisruptionBudget") == []


def test_a_private_ca_is_mounted_read_only_and_named_by_database_ca_file(render):
    rendered = render(POSTGRES)
    server = server_of(rendered)
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert mounts["database-ca"]["readOnly"] is True
    ca_dir = mounts["database-ca"]["mountPath"]
    # Only DATA_DIR and /tmp stay writable.
    assert {m["mountPath"] for m in server["volumeMounts"] if not m.get("readOnly")} == {"/data", "/tmp"}
    volume = volumes_of(rendered)["database-ca"]["secret"]
    assert volume["secretName"] == "rds-ca"
    assert volume["items"] == [{"key": "global-bundle.pem", "path": "global-bundle.pem"}]
    assert rendered.one("ConfigMap")["data"]["DATABASE_CA_FILE"] == f"{ca_dir}/global-bundle.pem"


def test_without_a_ca_secret_nothing_is_mounted(render):
    rendered = render({"secrets": {"DATABASE_URL": DATABASE_URL}})
    assert "database-ca" not in volumes_of(rendered)
    assert "DATABASE_CA_FILE" not in rendered.one("ConfigMap")["data"]
    key_defaulted = render({**WITH_URL, "database": {"caSecret": {"name": "cloudsql-ca"}}})
    assert key_defaulted.one("ConfigMap")["data"]["DATABASE_CA_FILE"].endswith("/ca.crt")


def test_autoscaling_on_postgres_renders_a_cpu_autoscaler(render):
    rendered = render(POSTGRES_EXISTING_SECRET_HPA)
    hpa = rendered.one("HorizontalPodAutoscaler")
    deployment = rendered.one("Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 70},
        "memory": {"type": "Utilization", "averageUtilization": 85},
    }
    # The autoscaler owns the replica count: an upgrade must not reset it.
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    # minReplicas 2: a budget keeps one of them up.
    assert rendered.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    # 6 replicas, 8 during a rollout, 8 connections each (the default pool).
    assert "6 replica(s), 8 during a rolling update" in rendered.notes
    assert "need up to 64 connections" in rendered.notes


def test_an_autoscaler_down_to_one_pod_gets_no_budget(render):
    rendered = render({**WITH_URL, "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}})
    assert len(rendered.all("HorizontalPodAutoscaler")) == 1
    assert rendered.all("PodDisruptionBudget") == []
    metrics = rendered.one("HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["resource"]["name"] for m in metrics] == ["cpu"]
