"""What runs where the documents are: load a model wheel, score documents, upsert the results.

Both `mlpack score` engines call these functions, the local one in-process and the Spark one inside
each task, so the two write identical documents by construction. On Spark this module is pickled by
value (cloudpickle), so an executor needs pyspark, pymongo, onnxruntime and numpy, and not mlpack:
it imports nothing from mlpack and nothing beyond the standard library and pymongo.
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import MongoClient, ReplaceOne
from pymongo.errors import BulkWriteError

MAX_ERROR_EXAMPLES = 5
_DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class ScoreSpec:
    """Everything a task needs to score one slice of the source collection (picklable)."""

    uri: str
    database: str
    source: str
    into: str
    query: dict[str, Any]
    projection: list[str]
    batch_size: int
    skip_bad: bool  # --on-error skip: bad documents are counted and named, the rest scored
    wheel_sha256: str


@dataclass
class SliceResult:
    """What one slice (the local run, or one Spark task) did; slices add up."""

    read: int = 0
    written: int = 0
    skipped: int = 0
    removed: int = 0  # earlier results of skipped documents, deleted: they no longer describe them
    errors: list[tuple[Any, str]] = field(default_factory=list)  # (_id, message), the first few
    failed: bool = False  # --on-error fail met a bad document and stopped
    ranges: int = 1  # how many slices were added up
    # Time spent reading (the cursor), predicting and writing: where a slice's time went.
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("read", "predict", "write"), 0.0))

    def add(self, other: SliceResult) -> None:
        self.read += other.read
        self.written += other.written
        self.skipped += other.skipped
        self.removed += other.removed
        self.errors = (self.errors + other.errors)[:MAX_ERROR_EXAMPLES]
        self.failed = self.failed or other.failed
        self.ranges += other.ranges
        for stage, spent in other.seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + spent


Progress = Callable[[str], None]
# An engine scores the request's documents: (spec, wheel, loaded package, source collection, count, progress).
Engine = Callable[[ScoreSpec, Path, Any, Any, int, Progress], SliceResult]


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# The same limits as mlpack's own reader of crafted artifacts (artifacts/read.py), which this sealed
# module cannot import: a model wheel holds one .onnx (protobuf caps a file at 2 GiB) and small text.
MAX_MEMBER_BYTES = 2048 * 1024 * 1024
MAX_WHEEL_BYTES = 4096 * 1024 * 1024
MAX_RATIO, RATIO_FROM = 100, 1024 * 1024


def _check_members(archive: zipfile.ZipFile, where: str) -> None:
    """Refuse what unpacking would turn into a problem: a path out of the folder, a zip bomb."""
    total = 0
    for info in archive.infolist():
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
            raise ValueError(f"{where} is not an mlpack model wheel: member {name[:200]!r} leaves its folder")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > MAX_MEMBER_BYTES or (info.file_size > RATIO_FROM and ratio > MAX_RATIO):
            raise ValueError(
                f"{where} is not an mlpack model wheel: {name[:200]} would unpack to {info.file_size} bytes "
                f"({ratio:.0f}:1)"
            )
        total += info.file_size
    if total > MAX_WHEEL_BYTES:
        raise ValueError(f"{where} is not an mlpack model wheel: it would unpack to {total} bytes")


def load_wheel(path: str | os.PathLike[str], sha256: str | None = None) -> Any:
    """The model package inside a model wheel, imported under a private name.

    The wheel is unpacked once per Python process into a temporary folder. The private module name
    (from the wheel's digest) keeps two builds of one model apart in a long-lived Python worker, and
    `sys.modules` is the cache: it outlives the tasks a Spark worker runs one after another.
    """
    digest = sha256 or file_sha256(path)
    name = f"_mlpack_model_{digest[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    folder = Path(tempfile.mkdtemp(prefix="mlpack-wheel-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    with zipfile.ZipFile(path) as archive:
        _check_members(archive, os.fspath(path))
        archive.extractall(folder)
    packages = [p.parent for p in folder.glob("*/model.onnx") if (p.parent / "metadata.json").is_file()]
    if len(packages) != 1:
        raise ValueError(f"{os.fspath(path)} is not an mlpack model wheel (no model.onnx with metadata.json)")
    spec = importlib.util.spec_from_file_location(
        name, packages[0] / "__init__.py", submodule_search_locations=[str(packages[0])]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the package's relative imports (._runtime) find their parent here
    previous = os.environ.get("MLPACK_THREADS")
    # One onnxruntime thread: its multi-threaded tree sums depend on the batch (measured: 198 of 300
    # probabilities differed by one float32 step between batches of 1 and 300), and scoring must give
    # the same document however the collection is split. Engines run ranges in parallel instead.
    os.environ["MLPACK_THREADS"] = "1"
    try:
        spec.loader.exec_module(module)
        module.model.load()
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        if previous is None:
            del os.environ["MLPACK_THREADS"]
        else:
            os.environ["MLPACK_THREADS"] = previous
    return module


def result_documents(module: Any, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`{_id, prediction, probabilities, model, scored_at}` for each document; ValueError names a bad field."""
    model = module.model
    labels, probabilities, _ = model.run(documents)
    stamp = {"name": model.name, "version": model.version}
    # When it was scored (BSON dates hold milliseconds): a rescore replaces the document and its time.
    now = datetime.datetime.now(datetime.UTC)
    scored_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
    classes = [str(c) for c in model.classes] if model.classes is not None else None
    results = []
    for index, document in enumerate(documents):
        result: dict[str, Any] = {"_id": document["_id"], "prediction": labels[index]}
        if probabilities is not None and classes is not None:
            result["probabilities"] = dict(zip(classes, probabilities[index]))
        result["model"] = stamp
        result["scored_at"] = scored_at
        results.append(result)
    return results


def _score_batch(
    module: Any, batch: list[dict[str, Any]], skip_bad: bool, result: SliceResult
) -> tuple[list[Any], list[Any]]:
    """The results of one batch and the `_id`s of its documents that cannot be scored; a batch with
    a bad document is redone one document at a time."""
    try:
        return result_documents(module, batch), []
    except ValueError:
        pass
    good, bad = [], []
    for document in batch:
        try:
            good += result_documents(module, [document])
        except ValueError as exc:
            if len(result.errors) < MAX_ERROR_EXAMPLES:
                result.errors.append((document["_id"], str(exc)))
            result.skipped += 1
            bad.append(document["_id"])
            if not skip_bad:
                result.failed = True
                return [], bad  # fail: nothing from this batch is written
    return good, bad


def _remove(collection: Any, ids: list[Any]) -> int:
    """The results an earlier run wrote for documents that now cannot be scored (updated to a value
    the model refuses): left, they would pass for the current documents' predictions."""
    if not ids:
        return 0
    return int(collection.delete_many({"_id": {"$in": ids}}).deleted_count)


def _write(collection: Any, documents: list[dict[str, Any]]) -> int:
    """Insert the batch; documents whose `_id` is already there (a rerun, a retried Spark task) are
    replaced instead. Never a duplicate, and a first run costs an insert, not an upsert (measured on
    the wire server: upserting every document took 2× the whole find + predict + insert loop)."""
    if not documents:
        return 0
    try:
        collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if not errors or any(error.get("code") != _DUPLICATE_KEY for error in errors):
            raise
        existing = [documents[error["index"]] for error in errors]
        collection.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in existing], ordered=False)
    return len(documents)


def _batches(documents: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for document in documents:
        batch.append(document)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_documents(
    module: Any,
    documents: Iterable[dict[str, Any]],
    target: Any,
    spec: ScoreSpec,
    progress: Any = None,
) -> SliceResult:
    """Score documents batch by batch into the target collection; stops at a bad one unless skipping."""
    result = SliceResult()
    batches = _batches(documents, spec.batch_size)
    clock = time.perf_counter()
    for batch in batches:
        scored_at = time.perf_counter()
        result.read += len(batch)
        results, bad = _score_batch(module, batch, spec.skip_bad, result)
        written_at = time.perf_counter()
        result.written += _write(target, results)
        result.removed += _remove(target, bad)
        now = time.perf_counter()
        result.seconds["read"] += scored_at - clock
        result.seconds["predict"] += written_at - scored_at
        result.seconds["write"] += now - written_at
        clock = now
        if progress is not None:
            progress(result)
        if result.failed:
            break
    return result


def score_range(spec: ScoreSpec, wheel_path: str, id_range: dict[str, Any]) -> SliceResult:
    """One Spark task: read the documents of one `_id` range with pymongo, score, bulk-write."""
    module = load_wheel(wheel_path, spec.wheel_sha256)
    client: MongoClient[dict[str, Any]] = MongoClient(spec.uri, appname="mlpack-score")
    try:
        database = client[spec.database]
        query = {"$and": [spec.query, id_range]} if spec.query else id_range
        cursor = database[spec.source].find(
            query, projection=dict.fromkeys(spec.projection, 1), batch_size=spec.batch_size
        )
        return score_documents(module, cursor, database[spec.into], spec)
    finally:
        client.close()


def spark_task(spec: ScoreSpec, wheel_file: str, id_ranges: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The body of one Spark task (mapPartitions): its range(s), scored; a plain dict goes back."""
    from pyspark import SparkFiles  # on an executor, where the driver's addFile put the wheel

    for id_range in id_ranges:
        result = score_range(spec, SparkFiles.get(wheel_file), id_range)
        yield {
            name: getattr(result, name)
            for name in ("read", "written", "skipped", "removed", "errors", "failed", "seconds")
        }


def describe_errors(errors: list[tuple[Any, str]]) -> str:
    return "\n".join(f"  _id {json.dumps(_id, default=str)}: {message}" for _id, message in errors)
