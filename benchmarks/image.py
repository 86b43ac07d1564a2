"""The model image two ways, in one run: mlpack's own writer (no engine) next to `docker build`.

Both start from the same context (the Dockerfile and its dependency wheels, made once per model) and
the same base, the engine's `python:3.11-slim` (for mlpack as the `docker save` archive of it, so
that no engine is involved in its timing). Rounds are interleaved (docker, mlpack, docker, mlpack,
...) so a busy machine slows both alike; each round builds a first model cold (docker: --no-cache)
and then a retrained one (docker: with its cache; mlpack: with the dependency layer the first
build left in its cache, MLPACK_CACHE_DIR, empty before each first build). Reported: median times and their ratio
(mlpack / docker), the size each adds over the base as the engine counts it (the mlpack image is
`docker load`ed for that), the layers a retrain reuses, and container start to the first ready answer.
Goal: mlpack no slower (ratio <= 1) and <= 120 MiB over the base; exit 1 if either is missed.

Uses a real engine: the one DOCKER_HOST names, or Debian's docker.io started as in the tests
(tests/docker_engine.py), with its local python:3.11-slim stand-in base.

    python benchmarks/image.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mlpack.artifacts.oci import build_oci_image  # noqa: E402
from mlpack.build import write_artifacts  # noqa: E402
from mlpack.config import ImageSection  # noqa: E402
from mlpack.source.embedded import free_port  # noqa: E402
from tests.helpers.docker_engine import BASE_IMAGE, docker_engine  # noqa: E402
from tests.helpers.documents import subscribers  # noqa: E402
from tests.helpers.training import config_for, export  # noqa: E402

TARGET_ADDED_MIB = 120
MIB = 2**20


def docker(*args: str | Path) -> str:
    return subprocess.run(["docker", *map(str, args)], capture_output=True, text=True, check=True).stdout.strip()


def model(root: Path, version: str, seed: int) -> tuple[Path, Path, dict]:
    """A 100-tree forest's wheel and image context; returns (context, wheel, metadata)."""
    (root / "mlpack.toml").write_text("[image]\n", encoding="utf-8")
    config = config_for(
        "sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 100, "random_state": 0}
    )
    config = dataclasses.replace(config, path=root / "mlpack.toml", image_configured=True)
    exported = export(config, subscribers(400, seed=seed))
    exported.metadata["version"] = version
    result = write_artifacts(config, exported, root / f"dist-{version}", image="context")
    return result.artifacts["docker"], result.artifacts["wheel"], result.metadata


def docker_build(context: Path, tag: str, *, cache: bool) -> float:
    started = time.perf_counter()
    docker("build", "--network", "none", *([] if cache else ["--no-cache"]), "--tag", tag, context)
    return time.perf_counter() - started


def mlpack_build(built: tuple[Path, Path, dict], base: Path, out: Path, tag: str) -> tuple[float, object]:
    context, wheel, metadata = built
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started = time.perf_counter()
    image = build_oci_image(
        out,
        stem=context.name.removesuffix(".docker"),
        tag=tag,
        wheel=wheel,
        metadata=metadata,
        section=ImageSection(base=f"docker-archive:{base}", python="3.11"),
        revision="",
        epoch=int(datetime.strptime(metadata["created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()),
        deps=context / "deps",
    )
    return time.perf_counter() - started, image


def first_answer(tag: str) -> float:
    port = free_port()
    started = time.perf_counter()
    container = docker("run", "--detach", "--network", "host", tag, "--port", str(port))
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).close()
                return time.perf_counter() - started
            except OSError:
                if time.perf_counter() - started > 60:
                    raise
                time.sleep(0.02)
    finally:
        docker("rm", "--force", container)


def size(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag))


def layers(tag: str) -> list[str]:
    return json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", tag))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    rounds = parser.parse_args().rounds
    load_before = os.getloadavg()
    with docker_engine() as env, tempfile.TemporaryDirectory() as scratch:
        os.environ.update(env)
        root = Path(scratch)
        first, second = model(root, "1.0.0", seed=1), model(root, "1.0.1", seed=2)
        base = root / "base.tar"
        docker("save", "--output", base, BASE_IMAGE)
        times: dict[str, list[float]] = {
            key: [] for key in ("docker cold", "docker retrain", "mlpack", "mlpack retrain")
        }
        for number in range(rounds):
            times["docker cold"].append(docker_build(first[0], "bench-docker:1.0.0", cache=False))
            # Cold for mlpack too: an empty cache, so the dependency layer is installed and gzipped anew;
            # the retrain below then finds it there, as docker's finds its layer in the engine's cache.
            os.environ["MLPACK_CACHE_DIR"] = str(root / f"cache-{number}")
            times["mlpack"].append(mlpack_build(first, base, root / "oci-1", "bench-mlpack:1.0.0")[0])
            times["docker retrain"].append(docker_build(second[0], "bench-docker:1.0.1", cache=True))
            seconds, retrained = mlpack_build(second, base, root / "oci-2", "bench-mlpack:1.0.1")
            times["mlpack retrain"].append(seconds)
        _, image = mlpack_build(first, base, root / "oci-1", "bench-mlpack:1.0.0")
        started = time.perf_counter()
        docker("load", "--quiet", "--input", image.archive)  # type: ignore[attr-defined]
        load = time.perf_counter() - started
        docker("load", "--quiet", "--input", retrained.archive)  # type: ignore[attr-defined]

        median = {key: statistics.median(values) for key, values in times.items()}
        base_size = size(BASE_IMAGE)
        added = {name: (size(f"bench-{name}:1.0.0") - base_size) / MIB for name in ("docker", "mlpack")}
        reused = {
            name: sum(a == b for a, b in zip(layers(f"bench-{name}:1.0.0"), layers(f"bench-{name}:1.0.1")))
            for name in ("docker", "mlpack")
        }
        total = len(layers("bench-mlpack:1.0.1"))
        ratio = median["mlpack"] / median["docker cold"]
        load_after = os.getloadavg()
        print(f"base {BASE_IMAGE}: {base_size / MIB:.0f} MiB; {rounds} interleaved rounds, medians")
        print(
            f"machine load (1-minute average): {load_before[0]:.1f} before, {load_after[0]:.1f} after;"
            f" {os.cpu_count()} CPUs"
        )
        print(f"{'':28}{'docker build':>14}{'mlpack (no engine)':>20}{'ratio':>8}")
        print(f"{'first model (cold)':28}{median['docker cold']:>12.1f} s{median['mlpack']:>18.1f} s{ratio:>8.2f}")
        retrain_ratio = median["mlpack retrain"] / median["docker retrain"]
        print(
            f"{'retrained model':28}{median['docker retrain']:>12.1f} s{median['mlpack retrain']:>18.1f} s"
            f"{retrain_ratio:>8.2f}"
        )
        print(f"{'added over the base':28}{added['docker']:>10.0f} MiB{added['mlpack']:>16.0f} MiB")
        print(f"{'layers a retrain reuses':28}{reused['docker']:>14}{reused['mlpack']:>20}   (of {total})")
        compressed = (image.dependency_layer.size + image.layer.size) / MIB  # type: ignore[attr-defined]
        print(f"mlpack's two layers gzipped: {compressed:.0f} MiB (what a registry stores); docker load: {load:.1f} s")
        print(f"container start to first ready answer (mlpack's image): {first_answer('bench-mlpack:1.0.0'):.2f} s")
        print(f"goal: ratio <= 1 and <= {TARGET_ADDED_MIB} MiB added")
        return 0 if ratio <= 1 and added["mlpack"] <= TARGET_ADDED_MIB else 1


if __name__ == "__main__":
    raise SystemExit(main())
