"""`mlpack score --engine spark`: one Spark task per `_id` range, each scoring with the model wheel.

The driver splits the matching documents into `_id` ranges (`partition.id_ranges`), ships the model
wheel itself to the executors (`SparkContext.addFile`) and runs `score_worker.spark_task` once per
range. `score_worker` travels by value (cloudpickle), so executors need pyspark, pymongo,
onnxruntime and numpy, not mlpack. Writes are upserts, so a retried task rewrites the same documents.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlpack.errors import ConfigError, ExternalError
from mlpack.scoring import worker as score_worker
from mlpack.scoring.partition import id_ranges
from mlpack.scoring.worker import Engine, Progress, ScoreSpec, SliceResult

RANGES_PER_CORE = 2  # a core that finishes its range early takes another while the slowest runs
# The driver's log4j 2 configuration for a session mlpack starts: Spark's own warnings stay (a lost task,
# a retried stage), one line each; without it Spark prints its default profile's banner, the shell's log
# level notice and Hadoop's note that it has no native library (6 lines on every run, in a CI log too).
LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = stderr
appender.console.type = Console
appender.console.name = stderr
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark: %p %c{1}: %m%n%ex
logger.hadoop.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop.level = error
"""


def spark_engine(master: str | None, partitions: int | None) -> Engine:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ConfigError("--engine spark needs pyspark: pip install 'mlpack-onnx[spark]'") from None

    def run(spec: ScoreSpec, wheel: Path, module: Any, collection: Any, count: int, say: Progress) -> SliceResult:
        with spark_session(master) as spark:
            context = spark.sparkContext
            ranges = id_ranges(
                collection, spec.query, count, partitions or RANGES_PER_CORE * context.defaultParallelism
            )
            say(f"spark ({context.master}): {len(ranges)} _id range(s), one task each")
            with _shipped(context, wheel, spec.wheel_sha256) as wheel_file:
                task = functools.partial(score_worker.spark_task, spec, wheel_file)
                rows = _collect(context.parallelize(ranges, len(ranges)).mapPartitions(task))
        total = SliceResult(ranges=0)
        for row in rows:
            total.add(SliceResult(**row))
        return total

    return run


@contextmanager
def spark_session(master: str | None) -> Iterator[Any]:
    """The session already active in this process (a notebook's, a test's), else a new one we stop."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        if master and master != active.sparkContext.master:
            raise ConfigError(
                f"a Spark session on {active.sparkContext.master} is already running here; --master {master} "
                "asks for another (Spark allows one per process)"
            )
        yield active
        return
    master = master or "local[*]"
    # Spark's progress bar redraws one line with carriage returns: on a terminal only, like mlpack's own.
    progress = "true" if sys.stderr.isatty() else "false"
    builder = SparkSession.builder.master(master).appName("mlpack score")
    builder = builder.config("spark.ui.showConsoleProgress", progress)
    if master.startswith("local"):
        # Python workers must be this interpreter (with onnxruntime and pymongo), not any `python3` on
        # PATH; pyspark reads the variable when the context starts.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # Everything runs in this machine: on loopback, not on the address Spark picks (and warns of, two
        # lines, when the host name resolves to 127.0.0.1, as on most CI machines).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="mlpack-spark-log-") as folder:
        config = Path(folder) / "log4j2.properties"
        config.write_text(LOG4J2, encoding="utf-8")
        # Read by the driver's JVM as it starts (log4j 2 takes its properties from the environment too);
        # a configuration of the user's own, in the variable, wins.
        os.environ.setdefault("LOG4J_CONFIGURATION_FILE", str(config))
        try:
            spark = builder.getOrCreate()
        except Exception as exc:  # py4j and pyspark raise their own types; a missing Java is the usual cause
            java = shutil.which("java") or os.environ.get("JAVA_HOME")
            hint = "" if java else " (no Java found: Spark needs a JRE 17+, e.g. Debian's openjdk-17-jre-headless)"
            raise ExternalError(f"could not start Spark on {master}{hint}: {_last_line(exc)}") from None
        finally:
            if os.environ.get("LOG4J_CONFIGURATION_FILE") == str(config):
                del os.environ["LOG4J_CONFIGURATION_FILE"]  # read once the JVM started: no later JVM gets it
    try:
        yield spark
    finally:
        spark.stop()


@contextmanager
def _shipped(context: Any, wheel: Path, sha256: str) -> Iterator[str]:
    """The wheel itself, under a name unique to its content (Spark refuses one name for two files)."""
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(score_worker)
    with tempfile.TemporaryDirectory(prefix="mlpack-spark-") as folder:
        shipped = Path(folder) / f"{sha256[:16]}-{wheel.name}"
        shutil.copyfile(wheel, shipped)
        context.addFile(str(shipped))
        yield shipped.name


def _collect(rdd: Any) -> list[dict[str, Any]]:
    try:
        return list(rdd.collect())
    except Exception as exc:  # a task failed for good (after Spark's retries): its Python error, not the JVM's
        raise ExternalError(f"a Spark scoring task failed: {_last_line(exc)}") from None


def _last_line(exc: BaseException) -> str:
    """The Python error at the bottom of a Spark/py4j message (they carry whole JVM stack traces)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error:" in line or "Exception:" in line:
            return line[:500]
    return (lines[-1] if lines else type(exc).__name__)[:500]
