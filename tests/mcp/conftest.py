"""Starts the real service binary on 127.0.0.1 for the MCP client tests.

The binary comes from AIOOPS_BIN (scripts/test-mcp.sh builds it). It runs with an access token, a
low MIN_TRAIN_SAMPLES so a model can be trained quickly, and LOG_LEVEL=trace, its log kept in a
file that the last test reads to check the token never reaches it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest

TOKEN = "mcp-client-test-token-5e1b0c7d9a2f"


@dataclass
class Service:
    base: str
    log: Path
    process: subprocess.Popen[bytes]
    # Every raw HTTP response body and header block a test saw, for the token check.
    seen: list[str] = field(default_factory=list)

    @property
    def mcp_url(self) -> str:
        return f"{self.base}/mcp"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def record(self, response: httpx2.Response) -> httpx2.Response:
        self.seen.append(f"{dict(response.headers)} {response.text}")
        return response


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def service() -> Iterator[Service]:
    binary = os.environ.get("AIOOPS_BIN", "target/debug/aioops-mcp-iforest")
    if not Path(binary).is_file():
        pytest.fail(f"no service binary at {binary}; scripts/test-mcp.sh builds it")
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        log = Path(tmp) / "service.log"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "DATA_DIR": str(Path(tmp) / "data"),
            "API_TOKEN": TOKEN,
            "MIN_TRAIN_SAMPLES": "20",
            "RETRAIN_INTERVAL_SECONDS": "0",
            "STORE_SYNCHRONOUS": "normal",
            "LOG_LEVEL": "trace",
            "LOG_FORMAT": "text",
        }
        with log.open("wb") as log_file:
            process = subprocess.Popen([binary], env=env, stdout=log_file, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the service did not start; its log:\n{log.read_text()}")
            time.sleep(0.1)
        try:
            yield Service(base=base, log=log, process=process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
