"""The service's /mcp door driven by the official MCP Python client (PyPI `mcp`, pinned in
requirements.txt), against the real binary on 127.0.0.1 (conftest.py starts it).

Data is posted over REST first, then every read tool is called and its structured result compared
with what REST says; the write tools must change what REST returns. The client validates each
structured result against the tool's output schema itself.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
import pytest
from conftest import TOKEN, Service
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

pytestmark = pytest.mark.anyio

READ_TOOLS = {
    "query_anomalies",
    "get_anomaly",
    "list_alerts",
    "alert_stats",
    "list_models",
    "get_baseline",
    "training_status",
    "service_metrics",
}
WRITE_TOOLS = {"submit_feedback", "start_training", "ingest_logs"}


@asynccontextmanager
async def connect(service: Service, mode: str = "auto", token: str | None = TOKEN) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        async with Client(streamable_http_client(service.mcp_url, http_client=http), mode=mode) as client:
            yield client


def rest(service: Service, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx2.request(method, f"{service.base}{path}", json=body, headers=headers, timeout=60)
    return service.record(response)


def db_line(query_ms: int, connections: int) -> dict[str, Any]:
    return {
        "raw_log": f"INFO query_time={query_ms}ms connection_count={connections} error_rate=0.01",
        "service": "database",
        "source": "postgres",
        "format_type": "key_value",
    }


def web_json(response_time: float) -> dict[str, Any]:
    return {
        "raw_log": f'{{"level": "ERROR", "message": "GET /checkout", "response_time": {response_time}, "error_rate": 0.01}}',
        "service": "web_server",
        "source": "nginx",
        "format_type": "json",
    }


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


def error_text(result: types.CallToolResult) -> str:
    assert result.is_error, result
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


@pytest.fixture(scope="session")
def seeded(service: Service) -> dict[str, Any]:
    """A database model trained over REST, then rule anomalies of web_server and a model anomaly
    of database ingested over REST."""
    normal = [db_line(100 + (i * 7) % 40, 10 + (i * 3) % 10) for i in range(60)]
    response = rest(service, "POST", "/api/v1/train", {"logs": normal})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 60
    while True:
        job = rest(service, "GET", f"/api/v1/train/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "succeeded", job

    results = rest(service, "POST", "/api/v1/stream/multi-source", {"logs": [web_json(5000 + i) for i in range(5)]})
    assert results.status_code == 200, results.text
    assert all(item["is_anomaly"] == 1 for item in results.json())
    outlier = rest(service, "POST", "/api/v1/stream/multi-source", {"logs": [db_line(4000, 400)]}).json()[0]
    assert outlier["is_anomaly"] == 1 and outlier["detector"] == "model", outlier
    return {"job_id": job_id}


async def test_the_initialize_handshake(service: Service) -> None:
    async with connect(service, mode="legacy") as client:
        assert client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        assert client.server_info is not None and client.server_info.name == "aioops-mcp-iforest"
        assert client.server_capabilities.tools is not None
        tools = await client.list_tools()
        assert {tool.name for tool in tools.tools} >= READ_TOOLS | WRITE_TOOLS


async def test_the_clients_automatic_mode(service: Service) -> None:
    async with connect(service, mode="auto") as client:
        # The automatic mode probes server/discover first: the server answers it, so the
        # connection is on a modern (2026-07-28) version, with no handshake.
        assert client.protocol_version in MODERN_PROTOCOL_VERSIONS
        assert client.server_capabilities.tools is not None
        tools = await client.list_tools()
        assert {tool.name for tool in tools.tools} >= READ_TOOLS | WRITE_TOOLS
        result = await client.call_tool("service_metrics", {})
        assert structured(result)["prediction_count"] >= 0


async def test_tools_have_schemas_and_annotations(service: Service) -> None:
    async with connect(service) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name, tool in tools.items():
        assert tool.description and len(tool.description) > 60, name
        assert tool.input_schema.get("type") == "object", name
        assert tool.output_schema is not None and tool.output_schema.get("type") == "object", name
        assert tool.annotations is not None, name
        assert tool.annotations.read_only_hint is (name in READ_TOOLS), name
    for name in WRITE_TOOLS:
        assert tools[name].annotations.destructive_hint is False, name
    query = tools["query_anomalies"].input_schema["properties"]
    assert query["limit"]["minimum"] == 1 and query["limit"]["maximum"] == 200
    assert set(query["order"].get("enum", [])) == {"time", "score"} or "$ref" in str(query["order"])
    ingest = tools["ingest_logs"].input_schema
    assert ingest["required"] == ["logs"]
    assert ingest["properties"]["logs"]["maxItems"] == 1000
    assert "anomalies" in tools["query_anomalies"].output_schema["properties"]


async def test_every_read_tool_on_ingested_data(service: Service, seeded: dict[str, Any]) -> None:
    async with connect(service) as client:
        # query_anomalies: the same records as REST, filtered and ordered.
        listed = structured(await client.call_tool("query_anomalies", {"limit": 50}))
        via_rest = rest(service, "GET", "/api/v1/anomalies?limit=50").json()
        assert [a["id"] for a in listed["anomalies"]] == [a["id"] for a in via_rest]
        assert listed["count"] == len(via_rest) >= 6
        rules = structured(await client.call_tool("query_anomalies", {"service": "web_server", "detector": "rule"}))
        assert rules["count"] == 5
        assert all("response_time" in a["why"][0] for a in rules["anomalies"])
        by_score = structured(
            await client.call_tool("query_anomalies", {"order": "score", "max_score": 0.0, "limit": 5})
        )
        assert by_score["count"] >= 1
        assert all(a["service"] == "database" and a["detector"] == "model" for a in by_score["anomalies"])

        # get_anomaly: the model anomaly with its explanation.
        model_id = by_score["anomalies"][0]["id"]
        detail = structured(await client.call_tool("get_anomaly", {"id": model_id}))
        assert detail["id"] == model_id and detail["detector"] == "model"
        assert detail["features"]["query_time"] == 4000
        assert detail["explanation"]["model_reasons"], detail["explanation"]
        assert detail["explanation"]["current_model"]["service"] == "database"
        assert "query_time" in detail["explanation"]["summary"] or "connection_count" in detail["explanation"]["summary"]

        # list_alerts and alert_stats: what REST shows.
        alerts = structured(await client.call_tool("list_alerts", {"limit": 200}))
        rest_alerts = rest(service, "GET", "/api/v1/alerts?limit=200").json()
        assert alerts["count"] == len(rest_alerts)
        assert [a["id"] for a in alerts["alerts"]] == [a["id"] for a in rest_alerts]
        stats = structured(await client.call_tool("alert_stats", {}))["stats"]
        rest_stats = rest(service, "GET", "/api/v1/alerts/stats").json()
        assert set(stats) == set(rest_stats)
        assert stats["anomalies_recorded"] == rest_stats["anomalies_recorded"] >= 6

        # list_models and get_baseline: the trained database model.
        models = structured(await client.call_tool("list_models", {}))
        rest_models = rest(service, "GET", "/api/v1/models").json()
        assert [m["service"] for m in models["models"]] == [m["service"] for m in rest_models] == ["database"]
        assert models["models"][0]["source"] == "train_job"
        assert models["models"][0]["job_id"] == seeded["job_id"]
        baseline = structured(await client.call_tool("get_baseline", {"service": "database"}))
        assert baseline["model"]["features"] == rest_models[0]["features"]
        assert baseline["baseline"] == rest_models[0]["baseline"]

        # training_status: the job REST started.
        job = structured(await client.call_tool("training_status", {"job_id": seeded["job_id"]}))
        assert job["status"] == "succeeded"
        assert job["job_id"] == seeded["job_id"]

        # service_metrics: REST's counters.
        metrics = structured(await client.call_tool("service_metrics", {}))
        rest_metrics = rest(service, "GET", "/api/v1/metrics").json()
        for name in ("prediction_count", "anomaly_count", "feedback_received", "models"):
            assert metrics[name] == rest_metrics[name], name
        assert metrics["anomaly_count"] >= 6 and metrics["models"] == 1

        # The prompt and the resources.
        prompts = await client.list_prompts()
        assert [p.name for p in prompts.prompts] == ["triage_anomaly"]
        prompt = await client.get_prompt("triage_anomaly", {"anomaly_id": str(model_id)})
        text = prompt.messages[0].content.text
        assert f"submit_feedback, anomaly_id {model_id}" in text and "database" in text
        resources = await client.list_resources()
        assert {str(r.uri) for r in resources.resources} == {"aioops://metrics", "aioops://models"}
        read = await client.read_resource(f"aioops://anomalies/{model_id}")
        assert f'"id":{model_id}' in read.contents[0].text


async def test_write_tools_change_what_rest_returns(service: Service, seeded: dict[str, Any]) -> None:
    async with connect(service) as client:
        # ingest_logs: the anomaly is stored, with its tags, where REST lists it.
        report = structured(
            await client.call_tool(
                "ingest_logs",
                {"logs": [{**web_json(9999), "source": "mcp-agent"}], "tags": {"via": "mcp"}},
            )
        )
        assert report["count"] == 1 and report["anomalies"] == 1 and report["errors"] == 0
        newest = rest(service, "GET", "/api/v1/anomalies?service=web_server&limit=1").json()[0]
        assert newest["source"] == "mcp-agent" and newest["metadata"]["tags"] == {"via": "mcp"}

        # submit_feedback: a false alarm labelled by id shows in REST's metrics.
        before = rest(service, "GET", "/api/v1/metrics").json()["feedback_received"]
        receipt = structured(
            await client.call_tool("submit_feedback", {"anomaly_id": newest["id"], "is_anomaly": False})
        )
        assert receipt["service"] == "web_server" and receipt["is_anomaly"] is False
        after = rest(service, "GET", "/api/v1/metrics").json()
        assert after["feedback_received"] == before + 1 == receipt["feedback_received"]
        assert after["model_accuracy"] is not None

        # start_training: a job REST can follow.
        normal = [db_line(100 + (i * 5) % 30, 12) for i in range(30)]
        started = structured(await client.call_tool("start_training", {"logs": normal}))
        job_id = started["job_id"]
        deadline = time.monotonic() + 60
        while True:
            job = rest(service, "GET", f"/api/v1/train/{job_id}")
            assert job.status_code == 200, job.text
            if job.json()["status"] in ("succeeded", "failed"):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert job.json()["status"] == "succeeded"
        status = structured(await client.call_tool("training_status", {"job_id": job_id}))
        assert status["status"] == "succeeded"


async def test_a_bad_argument_is_a_tool_error(service: Service) -> None:
    async with connect(service) as client:
        for name, arguments, words in [
            ("query_anomalies", {"limit": 100000}, "limit"),
            ("query_anomalies", {"since": "yesterday"}, "since"),
            ("query_anomalies", {"limit": "ten"}, "Invalid arguments"),
            ("get_anomaly", {"id": 987654321}, "No anomaly"),
            ("get_baseline", {"service": "nobody"}, "no model"),
            ("training_status", {"job_id": "nope"}, "No training job"),
            ("submit_feedback", {"is_anomaly": True}, "exactly one"),
            ("ingest_logs", {"logs": []}, "logs"),
            ("ingest_logs", {"logs": [{**web_json(1), "format_type": "regex"}]}, "custom_config"),
        ]:
            result = await client.call_tool(name, arguments)
            assert words in error_text(result), (name, arguments, result)


async def test_an_unknown_tool_is_a_protocol_error(service: Service) -> None:
    async with connect(service) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("drop_all_tables", {})
        assert raised.value.code in (types.INVALID_PARAMS, types.METHOD_NOT_FOUND)


def initialize_body() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw-http", "version": "1"},
        },
    }


def raw_mcp(service: Service, headers: dict[str, str]) -> httpx2.Response:
    response = httpx2.post(service.mcp_url, json=initialize_body(), headers=headers, timeout=30)
    return service.record(response)


def test_a_post_without_event_stream_in_accept_is_refused_406(service: Service) -> None:
    response = raw_mcp(service, {**service.auth(), "Accept": "application/json"})
    assert response.status_code == 406
    accepted = raw_mcp(service, {**service.auth(), "Accept": "application/json, text/event-stream"})
    assert accepted.status_code == 200


def test_a_foreign_host_is_refused_403(service: Service) -> None:
    headers = {**service.auth(), "Accept": "application/json, text/event-stream"}
    assert raw_mcp(service, {**headers, "Host": "attacker.example.com"}).status_code == 403
    assert raw_mcp(service, {**headers, "Host": "localhost"}).status_code == 200


def test_a_missing_or_wrong_token_is_refused_401_the_right_one_passes(service: Service) -> None:
    accept = {"Accept": "application/json, text/event-stream"}
    for authorization in ({}, {"Authorization": "Bearer wrong-token-0123456789abcdef"}):
        response = raw_mcp(service, {**accept, **authorization})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "Unauthorized" in response.json()["error"]["message"]
        for method, path in [
            ("POST", "/api/v1/stream/multi-source"),
            ("DELETE", "/api/v1/anomalies"),
            ("POST", "/api/v1/train"),
            ("POST", "/api/v1/feedback"),
        ]:
            token = authorization.get("Authorization", "").removeprefix("Bearer ") or None
            refused = rest(service, method, path, {"logs": [db_line(1, 1)]}, token=token)
            assert refused.status_code == 401, (method, path)
            assert isinstance(refused.json()["detail"], str)
            assert refused.headers["www-authenticate"].startswith("Bearer")
    assert raw_mcp(service, {**accept, **service.auth()}).status_code == 200
    assert rest(service, "POST", "/api/v1/stream/multi-source", {"logs": [db_line(110, 12)]}).status_code == 200
    assert rest(service, "GET", "/api/v1/anomalies", token=None).status_code == 200, "reads stay open"


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, as the client's task groups raise them."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_client_is_refused_without_the_right_token(service: Service, mode: str) -> None:
    for token, words in ((None, "Not authenticated"), ("wrong-token-0123456789abcdef", "Invalid bearer token")):
        with pytest.raises(BaseException) as raised:
            async with connect(service, mode=mode, token=token):
                pass
        errors = [e for e in leaves(raised.value) if isinstance(e, MCPError)]
        assert errors, raised.value
        assert errors[0].code == -32001 and "Unauthorized" in errors[0].error.message, errors[0]
        assert words in errors[0].error.message


def test_zz_the_token_is_in_no_response_and_no_log_line(service: Service) -> None:
    # Named to run last: every earlier test's raw responses are in `service.seen`.
    assert len(service.seen) > 20
    for seen in service.seen:
        assert TOKEN not in seen
    log = service.log.read_text(errors="replace")
    assert "Request refused" in log, "the refusals above are logged"
    assert TOKEN not in log
    assert "wrong-token-0123456789abcdef" not in log
