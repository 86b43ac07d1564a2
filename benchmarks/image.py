"""The model image: size over its base, build time cold and after a retrain, start to first answer.

Uses a real engine: the one DOCKER_HOST names, or Debian's docker.io started as in the tests
(see tests/docker_engine.py), with a local `python:3.11-slim` stand-in base.

    python benchmarks/image.py
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mlpack.build import write_artifacts  # noqa: E402
from mlpack.source.embedded import free_port  # noqa: E402
from tests.helpers.docker_engine import BASE_IMAGE, docker_engine  # noqa: E402
from tests.helpers.documents import subscribers  # noqa: E402
from tests.helpers.training import config_for, export  # noqa: E402

TARGET_ADDED_MIB = 150


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def timed_build(context: Path, tag: str, *, cache: bool) -> float:
    started = time.perf_counter()
    docker("build", "--network", "none", *([] if cache else ["--no-cache"]), "--tag", tag, str(context))
    return time.perf_counter() - started


def model_context(root: Path, version: str, seed: int) -> Path:
    (root / "mlpack.toml").write_text("[image]\n", encoding="utf-8")
    config = config_for(
        "sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 100, "random_state": 0}
    )
    config = dataclasses.replace(config, path=root / "mlpack.toml", image_configured=True)
    exported = export(config, subscribers(400, seed=seed))
    exported.metadata["version"] = version
    result = write_artifacts(config, exported, root / f"dist-{version}", image_context=True)
    return result.artifacts["docker"]


def main() -> int:
    with docker_engine() as env, tempfile.TemporaryDirectory() as scratch:
        os.environ.update(env)
        root = Path(scratch)
        first = model_context(root, "1.0.0", seed=1)
        second = model_context(root, "1.0.1", seed=2)
        cold = timed_build(first, "bench-model:1.0.0", cache=False)
        retrain = timed_build(second, "bench-model:1.0.1", cache=True)
        base_size = int(docker("image", "inspect", "--format", "{{.Size}}", BASE_IMAGE))
        size = int(docker("image", "inspect", "--format", "{{.Size}}", "bench-model:1.0.0"))
        layers = json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", "bench-model:1.0.1"))
        before = json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", "bench-model:1.0.0"))
        reused = sum(a == b for a, b in zip(before, layers))

        port = free_port()
        started = time.perf_counter()
        container = docker("run", "--detach", "--network", "host", "bench-model:1.0.0", "--port", str(port))
        try:
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).close()
                    break
                except OSError:
                    if time.perf_counter() - started > 60:
                        raise
                    time.sleep(0.02)
            first_answer = time.perf_counter() - started
        finally:
            docker("rm", "--force", container)

        added = (size - base_size) / 2**20
        print(f"base {BASE_IMAGE}: {base_size / 2**20:.0f} MiB; model image: {size / 2**20:.0f} MiB")
        print(
            f"added over the base: {added:.0f} MiB (target <= {TARGET_ADDED_MIB} MiB; "
            "MLflow's sklearn images run ~0.9-3 GB in all)"
        )
        print(f"build, cold (no cache, no network): {cold:.1f} s")
        print(f"build after a retrain (new model, cache): {retrain:.1f} s; {reused}/{len(layers)} layers reused")
        print(f"container start to first ready answer: {first_answer:.2f} s")
        return 0 if added <= TARGET_ADDED_MIB else 1


if __name__ == "__main__":
    raise SystemExit(main())
