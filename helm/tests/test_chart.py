"""The Helm chart: lint, schema, rendering, Kubernetes schemas, and the security it promises."""

from __future__ import annotations

import base64
import json
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
VALUE_SETS = {
    "default": None,
    "all-on": ALL_ON,
    "original-values-file": load_values_file("original-values.yaml"),
    "original-readme": README_VALUES,
    "existing-secret-and-claim": EXISTING_SECRET,
}


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


# --- lint and schema -------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["default", "all-on"])
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
]


@pytest.mark.parametrize("values,where", BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_schema_rejects_bad_values_and_says_where(chart, values, where):
    with pytest.raises(helm.HelmValuesError) as error:
        chart.validate_schema(values)
    assert where in str(error.value)


def test_rendering_enforces_the_schema_too(chart):
    with pytest.raises(helm.HelmValuesError, match="replicaCount"):
        chart.render({"replicaCount": 3}, name=RELEASE, namespace=NAMESPACE)


def test_autoscaling_is_refused_with_a_reason(chart):
    with pytest.raises(helm.HelmRenderError, match="single replica"):
        chart.render({"autoscaling": {"enabled": True}}, name=RELEASE, namespace=NAMESPACE)


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
