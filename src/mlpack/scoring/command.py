"""`mlpack score`: a whole collection through the built model wheel, results upserted into another.

The driver resolves the built wheel, checks the request, connects, and hands the job to an engine
from `ENGINES`: `local` streams batches through the wheel in this process; `spark` splits the
collection into `_id` ranges and runs one Spark task per range (mlpack.spark). Both score with
`score_worker`, so they write the same documents.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bson import json_util
from bson.errors import BSONError

from mlpack.artifacts.dist import BuildDir
from mlpack.config import Config, load_config
from mlpack.errors import ConfigError, DataError, outside
from mlpack.redaction import display_uri
from mlpack.registry import aliases
from mlpack.scoring.worker import (
    Engine,
    Progress,
    ScoreSpec,
    SliceResult,
    describe_errors,
    file_sha256,
    load_wheel,
    score_documents,
)
from mlpack.source import open_database
from mlpack.source.feedback import check_collection

DEFAULT_BATCH_SIZE = 1_000


@dataclass(frozen=True)
class ScoreRequest:
    project: str | Path = "."
    into: str = ""
    engine: str = "local"
    master: str | None = None
    filter: str | None = None  # Extended JSON; default: the whole source collection
    batch_size: int = DEFAULT_BATCH_SIZE
    partitions: int | None = None  # spark: how many _id ranges (default: 2 per core)
    version: str | None = None
    dist: str | Path | None = None
    on_error: str = "fail"


@dataclass
class ScoreResult:
    model: dict[str, str]
    engine: str
    source: str
    into: str
    matched: int
    written: int = 0
    skipped: int = 0
    removed: int = 0  # earlier results of skipped documents, deleted (they would look current)
    seconds: float = 0.0
    ranges: int = 1
    errors: list[tuple[Any, str]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # summed over tasks: parallel tasks overlap

    @property
    def documents_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "engine": self.engine,
            "source": self.source,
            "into": self.into,
            "matched": self.matched,
            "written": self.written,
            "skipped": self.skipped,
            "removed": self.removed,
            "ranges": self.ranges,
            "seconds": round(self.seconds, 3),
            "documents_per_second": round(self.documents_per_second, 1),
            "stage_seconds": {stage: round(spent, 3) for stage, spent in self.stage_seconds.items()},
            "errors": [{"_id": json.loads(json_util.dumps(i)), "message": m} for i, m in self.errors],
        }


# -- the built wheel --------------------------------------------------------------------------
def find_wheel(config: Config, dist: Path, version: str | None) -> Path:
    """The model wheel of one built version (default: the config's; "auto": the newest in `dist`;
    NAME@ALIAS: the version the registry's alias names, from `dist` or the registry's own store)."""
    reference = aliases.project_version(config, version)
    if reference is not None:
        return aliases.resolve(config, reference, kind="wheel", dist=dist).path
    return BuildDir(dist, config.model.name).wheel(version or config.model.version)


# -- the request ------------------------------------------------------------------------------
def parse_query(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        query = json_util.loads(text)
    except (BSONError, ValueError, TypeError) as exc:
        raise ConfigError(f"--filter is not valid (Extended) JSON: {exc}") from None
    if not isinstance(query, dict):
        raise ConfigError(f"--filter must be a JSON object (a MongoDB query), got {text!r}")
    return query


def check_target(into: str, source: str) -> None:
    if not into or "$" in into or "\0" in into or into.startswith("system.") or len(into) > 200:
        raise ConfigError(f"--into {into!r} is not a valid collection name")
    if into == source:
        raise ConfigError(f"--into {into!r} is the source collection: results must go to another collection")


def _check_request(request: ScoreRequest) -> None:
    if request.engine not in ENGINES:
        raise ConfigError(f"unknown engine {request.engine!r} (known: {', '.join(ENGINES)})")
    if request.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {request.batch_size}")
    if request.on_error not in ("fail", "skip"):
        raise ConfigError(f"--on-error must be 'fail' or 'skip', got {request.on_error!r}")
    if request.engine != "spark" and (request.master or request.partitions):
        raise ConfigError("--master and --partitions are for --engine spark")
    if request.partitions is not None and request.partitions < 1:
        raise ConfigError(f"--partitions must be a positive integer, got {request.partitions}")


def projection_of(module: Any) -> list[str]:
    """The document paths the model reads (nothing else crosses the network)."""
    paths = [feature.name for feature in module.model.features]
    return [path for path in paths if not any(path.startswith(f"{other}.") for other in paths)]


# -- engines ---------------------------------------------------------------------------------
def _score_local(spec: ScoreSpec, wheel: Path, module: Any, collection: Any, count: int, say: Progress) -> SliceResult:
    target = collection.database[spec.into]
    cursor = collection.find(spec.query, projection=dict.fromkeys(spec.projection, 1), batch_size=spec.batch_size)
    started = time.monotonic()
    last = [started]

    def report(done: SliceResult) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or done.read == count:
            last[0] = now
            rate = done.read / (now - started) if now > started else 0.0
            say(f"scored {done.read:,} of {count:,} documents ({rate:,.0f}/s)")

    return score_documents(module, cursor, target, spec, progress=report)


def _local_engine(request: ScoreRequest) -> Engine:
    return _score_local


def _spark_engine(request: ScoreRequest) -> Engine:
    from mlpack.scoring.spark import spark_engine  # pyspark is an extra: imported only when asked for

    return spark_engine(master=request.master, partitions=request.partitions)


ENGINES: dict[str, Callable[[ScoreRequest], Engine]] = {"local": _local_engine, "spark": _spark_engine}


def open_wheel(wheel: Path) -> tuple[Any, str]:
    """The model wheel imported (verified by its sha256, which is returned with it)."""
    sha = file_sha256(wheel)
    try:
        return load_wheel(wheel, sha), sha
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot load the model wheel {wheel}: {exc}") from None


def score_spec(
    config: Config, request: ScoreRequest, uri: str, query: dict[str, Any], module: Any, sha: str
) -> ScoreSpec:
    """What one scoring run reads and writes, the same for a batch run and for --watch."""
    return ScoreSpec(
        uri=uri,
        database=config.source.database,
        source=config.source.collection,
        into=request.into,
        query=query,
        projection=projection_of(module),
        batch_size=request.batch_size,
        skip_bad=request.on_error == "skip",
        wheel_sha256=sha,
    )


def _silent(_message: str) -> None:
    pass


def score(request: ScoreRequest, progress: Progress | None = None) -> ScoreResult:
    say = progress or _silent
    _check_request(request)
    engine = ENGINES[request.engine](request)
    config = load_config(request.project)
    check_target(request.into, config.source.collection)
    query = parse_query(request.filter)
    wheel = find_wheel(config, Path(request.dist) if request.dist else config.project_dir / "dist", request.version)
    module, sha = open_wheel(wheel)
    needs = f"scoring needs the database that holds {config.source.collection}"
    with open_database(config.source, persistent_for=needs) as (database, uri):
        spec = score_spec(config, request, uri, query, module, sha)
        collection = database.client[spec.database][spec.source]
        with outside("MongoDB", target=display_uri(uri), action=f"--filter on {collection.full_name}"):
            count = collection.count_documents(query)
        if count == 0:  # a typo in [source].collection reads as an empty collection: "scored 0 of 0"
            check_collection(collection.database, spec.source, "[source].collection")
        model = {"name": module.model.name, "version": module.model.version}
        result = ScoreResult(model, request.engine, collection.full_name, f"{spec.database}.{spec.into}", count)
        say(f"scoring {count:,} documents of {collection.full_name} with {model['name']} {model['version']}")
        started = time.monotonic()
        with outside("MongoDB", target=display_uri(uri), action=f"scoring {collection.full_name} into {spec.into}"):
            done = engine(spec, wheel, module, collection, count, say)
        result.seconds = time.monotonic() - started
    result.written, result.skipped, result.errors = done.written, done.skipped, done.errors
    result.removed = done.removed
    result.ranges, result.stage_seconds = done.ranges, done.seconds
    if done.failed:
        raise DataError(
            f"{done.skipped} document(s) could not be scored; {done.written} results were written "
            "(rerun after fixing them, or pass --on-error skip: results are upserted, never duplicated)",
            details=describe_errors(done.errors),
        )
    return result
