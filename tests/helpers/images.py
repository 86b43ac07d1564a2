"""Fixtures for the image tests: Debian's docker.io started for the module, and docker inspect."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.docker_engine import EngineUnavailable, docker_engine


# One engine per test process (each pytest-xdist worker its own: docker_engine.py), started when a test
# first needs it: per module, it was stopped and started again for each of the four modules.
@pytest.fixture(scope="session")
def engine() -> Iterator[dict[str, str]]:
    try:
        with docker_engine() as env:
            yield env
    except EngineUnavailable as exc:
        if os.environ.get("MLPACK_REQUIRE_DOCKER"):
            raise
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture
def docker_env(engine: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in engine.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    return engine


def image_inspect(reference: str) -> dict[str, Any]:
    return json.loads(docker("image", "inspect", reference).stdout)[0]


def docker(*args: str | Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(map(str, args))}: {result.stderr[-2000:]}")
    return result
