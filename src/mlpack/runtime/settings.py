"""The server's settings, read once at start: each from its flag, else its `MLPACK_*` variable, else
the model's `[serve]` (baked into the metadata at build time), else the default here.

The one reader of every `MLPACK_*` variable the runtime takes, so that every bad value is the same
error: `SettingsError`, one line naming where the value came from and what it was
(`MLPACK_DRIFT_WINDOW must be 0 (off) or a positive int, got 'abc'`), exit code 2 at the command
line, never a traceback. An empty variable counts as unset. Part of the runtime copied into every
wheel: the standard library only.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Tuple

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_DRIFT_WINDOW = 1000  # records per worker whose inputs and predictions /metrics compares to training
DEFAULT_LOG_URI_ENV = "MLPACK_INFERENCE_LOG_URI"
# Adaptive batching (serving/batching.py): records in one onnxruntime call of concurrent requests,
# and the longest a request waits for the others its call expects (benchmarks/serve.py chose both).
DEFAULT_BATCH_MAX_RECORDS = 64
DEFAULT_BATCH_WAIT_US = 200
# A JSON value costs Python ~25-80 bytes however short its text ("{}," is 3 bytes, a dict 64): a body
# may hold at most this many values per allowed record, counted (by its commas) before it is parsed.
VALUES_PER_RECORD = 100
# The most one counted element (container, string, comma or colon) was measured to cost once parsed:
# 250,000 {"a":1} took 52.6 MiB for their 1,000,000 elements; 1,000,000 floats 49.8 MiB; lists 40.
VALUE_BYTES = 56
# Bodies up to 64 KiB are parsed on the event loop, one at a time: 64 KiB of "[]," is 44,000 lists.
INLINE_PARSE_BYTES = 4 * 1024 * 1024


class SettingsError(Exception):
    """A setting with a value the server cannot take: one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StartFailure(SettingsError):
    """What the server finds it cannot use as it starts (the inference log's connection string, pymongo
    absent): exit code 2 as for a bad setting. It only carries the line: `serve_args`, where every
    setting's error becomes output, prints it (`error: ...`), in the serving process or a worker."""


@dataclass(frozen=True)
class Limits:
    """What one server process allows. Every field is a flag (`--max-body-bytes`), a variable
    (`MLPACK_MAX_BODY_BYTES`) and a `[serve]` key, and must be positive: adding a field adds all three."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_records: int = 10_000  # records (or v2 rows) in one request
    large_bodies: int = 2  # bodies over 64 KiB read and parsed at once: bounds memory, not requests
    max_connections: int = 4096  # open connections; more wait in the listen backlog
    idle_timeout: float = 60.0  # s: for a request's head or body, or the next request on keep-alive
    write_timeout: float = 30.0  # s: for a client to take an answer (one that never reads is cut off)
    drain_timeout: float = 8.0  # s: SIGTERM waits this long for requests in flight; docker stop waits 10
    log_queue_bytes: int = 0  # the inference log's queue; 0: 1/16 of the memory limit, 4 to 64 MiB

    @property
    def max_values(self) -> int:
        return self.max_records * VALUES_PER_RECORD

    @property
    def worst_case_bytes(self) -> int:
        """The most requests in flight can hold at once beyond the idle process: each large body, its
        copy while it is read, and its parse (VALUE_BYTES per element), plus one inline body's parse."""
        large = 2 * self.max_body_bytes + VALUE_BYTES * self.max_values
        return self.large_bodies * large + INLINE_PARSE_BYTES

    @classmethod
    def resolve(
        cls, serve: Mapping[str, Any], flags: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None
    ) -> Limits:
        """The limits from flags, then the environment, then `serve` ([serve] in the metadata)."""
        reader = _Reader(serve, flags, os.environ if environ is None else environ)
        values = {}
        for spec in fields(cls):
            kind = _kind(spec.type)
            value = reader.get(spec.name, _positive(kind), f"a positive {kind.__name__}")
            if value is not None:
                values[spec.name] = value
        return cls(**values)


@dataclass(frozen=True)
class InferenceLogSettings:
    """Where the inference log goes; the connection string always comes from the environment."""

    uri_env: str  # the variable that held it, for messages: the URI itself is never shown
    uri: str = field(repr=False)  # credentials: never in a repr, a log line or an artifact
    database: str = "mlpack"
    collection: str = "inference_log"


@dataclass(frozen=True)
class ServeSettings:
    """Everything `serve` reads from flags, the environment and [serve], read once before it listens."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    limits: Limits = field(default_factory=Limits)
    drift_window: int = DEFAULT_DRIFT_WINDOW  # 0: drift tracking off
    inference_log: Optional[InferenceLogSettings] = None  # None: off
    # [serve].inference_log is on but the variable it names is empty: the server warns and serves on.
    inference_log_missing: str = ""
    threads: Optional[int] = 1  # MLPACK_THREADS: onnxruntime's intra-op threads (1 unless it says more)
    batch_max_records: int = DEFAULT_BATCH_MAX_RECORDS  # records in one model call of many requests; 1: off
    batch_wait_us: int = DEFAULT_BATCH_WAIT_US  # µs a request may wait for others to join its call

    @classmethod
    def read(
        cls, serve: Mapping[str, Any], flags: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None
    ) -> ServeSettings:
        """`serve`: the model's [serve] (from its metadata); `flags`: the command line's values by setting
        name, None where not given; `environ`: the variables (default: os.environ)."""
        environ = os.environ if environ is None else environ
        serve = serve if isinstance(serve, Mapping) else {}  # a crafted wheel's metadata
        reader = _Reader(serve, flags, environ)
        # Where to listen and how many processes are the deployment's to say, not the model's: no [serve] key.
        host = reader.get("host", _host, "a host name or address", in_serve=False)
        port = reader.get("port", _port, "a port number (0-65535)", in_serve=False)
        workers = reader.get("workers", _positive(int), "a positive int", in_serve=False)
        drift = reader.get("drift_window", _non_negative_int, "0 (off) or a positive int")
        batch = reader.get("batch_max_records", _positive(int), "a positive int (1: no batching)")
        wait = reader.get("batch_wait_us", _non_negative_int, "0 or a positive int (microseconds)")
        log, missing = inference_log(serve, environ)
        return cls(
            host=host if host is not None else cls.host,
            port=port if port is not None else cls.port,
            workers=workers if workers is not None else cls.workers,
            limits=Limits.resolve(serve, flags, environ),
            drift_window=drift if drift is not None else DEFAULT_DRIFT_WINDOW,
            inference_log=log,
            inference_log_missing=missing,
            threads=session_threads(environ),
            batch_max_records=batch if batch is not None else DEFAULT_BATCH_MAX_RECORDS,
            batch_wait_us=wait if wait is not None else DEFAULT_BATCH_WAIT_US,
        )


def session_threads(environ: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """MLPACK_THREADS, onnxruntime's intra-op threads for every session; unset: one.

    One thread is the default everywhere (the wheel, `mlpack predict`, the server, the parity check):
    with more, onnxruntime sums a tree ensemble's trees in an order that depends on the batch and the
    thread count, so a forest's 0.5 becomes 0.49999997 in one process and 0.50000003 in another and a
    label flips between the wheel and the server. MLPACK_THREADS=N trades that for speed on big batches.
    """
    raw = (os.environ if environ is None else environ).get("MLPACK_THREADS") or None
    if raw is None:
        return 1
    value = _positive(int)(raw)
    if value is None:
        raise SettingsError(f"MLPACK_THREADS must be a positive int, got {raw!r}")
    return value


# -- reading one setting ------------------------------------------------------------------------
class _Reader:
    def __init__(self, serve: Mapping[str, Any], flags: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        self.serve, self.flags, self.environ = serve, flags, environ

    def get(self, name: str, check: Callable[[Any], Any], wanted: str, in_serve: bool = True) -> Any:
        """The first of `--name`, `MLPACK_NAME` and `[serve].name` (`in_serve`) that is set, checked by
        `check` (the value, or None when it is not `wanted`); None if none is set."""
        env = f"MLPACK_{name.upper()}"
        sources: Tuple[Tuple[str, Any], ...] = (
            (f"--{name.replace('_', '-')}", self.flags.get(name)),
            (env, self.environ.get(env) or None),
        )
        if in_serve:
            sources += ((f"[serve].{name}", self.serve.get(name)),)
        for source, raw in sources:
            if raw is None:
                continue
            value = check(raw)
            if value is None:
                raise SettingsError(f"{source} must be {wanted}, got {raw!r}")
            return value
        return None


def _kind(annotation: Any) -> type:
    return int if annotation in ("int", int) else float


def _number(kind: type, raw: Any) -> Any:
    """`raw` (a flag's or [serve]'s value, or a variable's text) as an int or float; None if it is not one.
    A bool is not a number, and int("2.5") or a float 2.5 is not an int (it would quietly become 2)."""
    if isinstance(raw, bool):
        return None
    if kind is int:
        if isinstance(raw, float):
            return None
        try:
            return int(raw)
        except (TypeError, ValueError):
            return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _positive(kind: type) -> Callable[[Any], Any]:
    def check(raw: Any) -> Any:
        value = _number(kind, raw)
        return value if value is not None and value > 0 else None

    return check


def _non_negative_int(raw: Any) -> Optional[int]:
    value = _number(int, raw)
    return value if value is not None and value >= 0 else None


def _port(raw: Any) -> Optional[int]:
    value = _number(int, raw)
    return value if value is not None and 0 <= value <= 65535 else None


def _host(raw: Any) -> Optional[str]:
    text = str(raw).strip()
    return text if text and text.isprintable() and " " not in text else None


# -- the inference log's location ---------------------------------------------------------------
_BAD_DATABASE = set('/\\. "$\x00')
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,20}://")


def mongodb_uri_problem(uri: str, variable: str) -> str:
    """Why `uri` is no MongoDB connection string ("" when it is one by its scheme), for every command
    that takes one. pymongo takes text without a scheme as a host name ("notauri" is looked up in DNS
    and waited on for the whole server selection); mlpack's variables hold connection strings only.
    The text itself is never quoted: a value that is not a URI may still be a credential."""
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        return ""
    scheme = _SCHEME.match(uri)
    if scheme is None:
        given = "it has no scheme (a host alone is written mongodb://HOST:PORT)"
    elif scheme.group().lower() in ("mongodb://", "mongodb+srv://"):
        given = f"its scheme {scheme.group()} must be written in lower case"
    else:
        given = f"it is a {scheme.group()} URI"
    return f"{variable} is not a MongoDB connection string: it must start with mongodb:// or mongodb+srv://; {given}"


def inference_log(serve: Mapping[str, Any], environ: Mapping[str, str]) -> Tuple[Optional[InferenceLogSettings], str]:
    """The one reading of where the log goes, for the server and for `mlpack monitor`, which reads it back.
    On when the variable [serve].inference_log_uri_env names (or MLPACK_INFERENCE_LOG_URI) is set.
    Returns the settings (None: off) and, when [serve] asks for a log no variable gives, its name."""
    uri_env = serve.get("inference_log_uri_env") or DEFAULT_LOG_URI_ENV
    if not isinstance(uri_env, str):
        raise SettingsError(f"[serve].inference_log_uri_env must be a variable name, got {uri_env!r}")
    uri = environ.get(uri_env, "").strip()
    held_by = uri_env
    if not uri:
        uri, held_by = environ.get(DEFAULT_LOG_URI_ENV, "").strip(), DEFAULT_LOG_URI_ENV
    if not uri:
        return None, uri_env if serve.get("inference_log") else ""
    problem = mongodb_uri_problem(uri, held_by)
    if problem:
        raise SettingsError(problem)
    database = _name(environ, serve, "db", "inference_log_database", "mlpack", _database_name)
    collection = _name(environ, serve, "collection", "inference_log_collection", "inference_log", _collection_name)
    return InferenceLogSettings(uri_env, uri, database, collection), ""


def _name(
    environ: Mapping[str, str],
    serve: Mapping[str, Any],
    suffix: str,
    key: str,
    default: str,
    check: Callable[[str], str],
) -> str:
    env = f"MLPACK_INFERENCE_LOG_{suffix.upper()}"
    for source, raw in ((env, environ.get(env) or None), (f"[serve].{key}", serve.get(key))):
        if raw is None:
            continue
        problem = check(raw) if isinstance(raw, str) else "must be a string"
        if problem:
            raise SettingsError(f"{source} {problem}, got {raw!r}")
        return raw
    return default


def _database_name(name: str) -> str:
    if not 0 < len(name.encode()) < 64:
        return "must be 1 to 63 bytes"
    if _BAD_DATABASE & set(name):
        return 'must not hold / \\ . space " $ or NUL (MongoDB refuses them in a database name)'
    return ""


def _collection_name(name: str) -> str:
    if not name or "$" in name or "\x00" in name:
        return "must be a non-empty name without $ or NUL"
    if name.startswith("system."):
        return "must not start with system. (MongoDB keeps those)"
    return ""


__all__ = [
    "DEFAULT_BATCH_MAX_RECORDS",
    "DEFAULT_BATCH_WAIT_US",
    "DEFAULT_DRIFT_WINDOW",
    "InferenceLogSettings",
    "Limits",
    "inference_log",
    "mongodb_uri_problem",
    "ServeSettings",
    "SettingsError",
    "session_threads",
]
