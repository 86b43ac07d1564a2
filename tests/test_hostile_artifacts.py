"""Crafted files from others (issue 13 items 9 and 10): wheels, ONNX files, image archives and input
files that are not what they claim. Each is exit 2 with a message, no traceback, nothing written;
zip bombs are refused before reading, which the peak RSS of the real process proves.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest

from mlpack.build import BuildResult
from tests.helpers.cli import Result, assert_clean_error
from tests.helpers.documents import subscribers

MiB = 1 << 20
BOMB_BYTES = 512 * MiB  # compresses to ~0.5 MiB


# The child reports its own peak (VmHWM of its memory map, which starts at exec): the rusage a
# parent gets (ru_maxrss) also counts the parent's pages the child held between fork and exec.
_REPORTING_MAIN = """
import atexit, os, sys
def report():
    status = open("/proc/self/status").read()
    with open(os.environ["MLPACK_TEST_PEAK_FILE"], "w") as out:
        out.write(status.split("VmHWM:")[1].split()[0])
atexit.register(report)
from mlpack.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _measured(*argv: str | Path) -> tuple[Result, int]:
    """`mlpack ARGS` in its own process: its result and its peak RSS in bytes."""
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak"
        proc = subprocess.run(
            [sys.executable, "-c", _REPORTING_MAIN, *map(str, argv)],
            capture_output=True,
            env={**os.environ, "MLPACK_TEST_PEAK_FILE": str(peak_file)},
            timeout=300,
            check=False,
        )
        peak = int(peak_file.read_text()) * 1024  # kB
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")), peak


def _rewrite_wheel(wheel: Path, target: Path, replace: dict[str, Callable[[zipfile.ZipFile, str], None]]) -> Path:
    """A copy of the wheel with some members written by the given functions instead."""
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            leaf = info.filename.rsplit("/", 1)[-1]
            if leaf in replace:
                replace[leaf](out, info.filename)
            else:
                out.writestr(info, source.read(info.filename))
    return target


def _bytes(content: bytes) -> Callable[[zipfile.ZipFile, str], None]:
    return lambda out, name: out.writestr(name, content)


def _bomb(prefix: bytes, fill: bytes, suffix: bytes) -> Callable[[zipfile.ZipFile, str], None]:
    """A member that really decompresses to BOMB_BYTES, streamed so the test itself stays small."""

    def write(out: zipfile.ZipFile, name: str) -> None:
        chunk = fill * (MiB // len(fill))
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with out.open(info, "w", force_zip64=True) as stream:
            stream.write(prefix)
            for _ in range(BOMB_BYTES // MiB):
                stream.write(chunk)
            stream.write(suffix)

    return write


@pytest.fixture(scope="module")
def wheel(built_model: BuildResult) -> Path:
    return built_model.artifacts["wheel"]


@pytest.fixture(scope="module")
def bomb_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bombs")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("records") / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in subscribers(3, seed=9, absent=False)), encoding="utf-8")
    return path


ODD_METADATA = [
    ("a list", b"[]", "metadata is list"),
    ("an empty object", b"{}", "has no 'name'"),
    ("no name", json.dumps({"version": "1.0.0"}).encode(), "has no 'name'"),
    ("binary", b"\xff\xfe\x00\x01garbage", "metadata is not JSON"),
    ("a number", b"42", "metadata is int"),
    ("100k-deep JSON", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("wrong types", None, "has the wrong shape"),  # filled in from the real metadata below
]


@pytest.mark.parametrize("command", ["inspect", "inspect --json", "predict", "serve"])
@pytest.mark.parametrize(("case", "content", "needle"), ODD_METADATA, ids=[c[0] for c in ODD_METADATA])
def test_odd_metadata_is_not_an_mlpack_model(
    case: str, content: bytes | None, needle: str, command: str, wheel: Path, records: Path, run: Any, tmp_path: Path
) -> None:
    if content is None:
        with zipfile.ZipFile(wheel) as source:
            name = next(n for n in source.namelist() if n.endswith("/metadata.json"))
            metadata = json.loads(source.read(name))
        metadata["features"] = "tenure_months"
        content = json.dumps(metadata).encode()
    crafted = _rewrite_wheel(wheel, tmp_path / wheel.name, {"metadata.json": _bytes(content)})
    argv: list[str | Path] = [*command.split(), crafted]
    if command == "predict":
        argv += ["--input", records]
    if command == "serve":
        argv += ["--port", "0"]
    result = run(*argv)
    assert_clean_error(result, 2, "not an mlpack model", needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name]


@pytest.mark.parametrize(
    ("member", "prefix", "fill", "suffix", "needle"),
    [
        ("metadata.json", b'{"name": "', b" ", b'"}', "metadata.json is compressed"),
        ("model.onnx", b"", b"\x00", b"", "model.onnx is compressed"),
    ],
    ids=["metadata bomb", "model bomb"],
)
@pytest.mark.parametrize("command", ["inspect", "predict"])
def test_zip_bombs_are_refused_before_reading(
    member: str,
    prefix: bytes,
    fill: bytes,
    suffix: bytes,
    needle: str,
    command: str,
    wheel: Path,
    records: Path,
    bomb_folder: Path,
) -> None:
    crafted = bomb_folder / member / wheel.name
    if not crafted.exists():  # one bomb per member, shared by the commands
        crafted.parent.mkdir()
        _rewrite_wheel(wheel, crafted, {member: _bomb(prefix, fill, suffix)})
    assert crafted.stat().st_size < 4 * MiB  # a small file ...
    argv: list[str | Path] = [command, crafted] + (["--input", records] if command == "predict" else [])
    baseline, baseline_rss = _measured(*[wheel if a == crafted else a for a in argv])
    assert baseline.code == 0, baseline.err
    result, peak = _measured(*argv)
    assert_clean_error(result, 2, "not an mlpack model wheel", needle)
    # ... that would unpack to 512 MiB: the process stayed within 64 MiB of reading a real wheel.
    print(f"peak RSS, {command} of a {member} bomb: {peak / MiB:.0f} MiB (real wheel: {baseline_rss / MiB:.0f} MiB)")
    assert peak < baseline_rss + 64 * MiB, (peak / MiB, baseline_rss / MiB)


def test_onnx_file_with_odd_metadata(built_model: BuildResult, run: Any, tmp_path: Path) -> None:
    for label, value, needle in [
        ("list", "[]", "not an mlpack model"),
        ("deep", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("no name", json.dumps({"version": "1"}), "has no 'name'"),
    ]:
        model = onnx.load(str(built_model.artifacts["onnx"]))
        for prop in model.metadata_props:
            if prop.key == "mlpack.metadata":
                prop.value = value
        crafted = tmp_path / f"{label}.onnx"
        onnx.save(model, str(crafted))
        assert_clean_error(run("inspect", crafted), 2, needle)


def _docker_save(path: Path, manifest: Any, config: Any = None, *, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, content in [("manifest.json", manifest), ("config.json", config)]:
            if content is None:
                continue
            data = content if isinstance(content, bytes) else json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("case", "manifest", "config", "mode", "needle"),
    [
        ("empty manifest", [], None, "w", "not a docker image archive"),
        ("manifest not a list", {"Config": "x"}, None, "w", "not a docker image archive"),
        ("no labels", [{"Config": "config.json"}], {"config": {}}, "w", "no mlpack metadata label"),
        (
            "label not JSON",
            [{"Config": "config.json"}],
            {"config": {"Labels": {"io.mlpack.metadata": "{not json"}}},
            "w",
            "not JSON",
        ),
        (
            "label a list",
            [{"Config": "config.json"}],
            {"config": {"Labels": {"io.mlpack.metadata": "[]"}}},
            "w",
            "not a JSON object",
        ),
        (
            "label without features",
            [{"Config": "config.json"}],
            {"config": {"Labels": {"io.mlpack.metadata": '{"name": "x"}'}}},
            "w",
            "not an mlpack model",
        ),
        ("gzip-compressed", [{"Config": "config.json"}], {"config": {}}, "w:gz", "not a docker image archive"),
    ],
)
def test_crafted_image_archives(
    case: str, manifest: Any, config: Any, mode: str, needle: str, run: Any, tmp_path: Path
) -> None:
    archive = _docker_save(tmp_path / "image.tar", manifest, config, mode=mode)
    assert_clean_error(run("inspect", archive), 2, needle)


def test_inspect_reads_an_image_build_context(built_model: BuildResult, run: Any, tmp_path: Path) -> None:
    """The `.docker` folder a build leaves: its model/ tree holds the unpacked wheel."""
    context = tmp_path / "test-model-1.0.0.docker"
    with zipfile.ZipFile(built_model.artifacts["wheel"]) as archive:
        archive.extractall(context / "model" / "opt" / "model-app")
    result = run("inspect", context, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == built_model.metadata
    assert_clean_error(run("inspect", tmp_path), 2, "not an mlpack image build context")
    assert_clean_error(run("inspect", tmp_path / "absent.docker"), 2, "artifact not found")


@pytest.mark.parametrize(
    ("case", "suffix", "content", "needle"),
    [
        ("100k-deep JSON", ".json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("CSV field over 128 KiB", ".csv", b"tenure_months,contract\n" + b"1," + b"x" * 200_000 + b"\n", "CSV"),
        ("not UTF-8", ".jsonl", b'{"contract": "\xff\xfe"}\n', "not UTF-8"),
        # A .json file is one document: when it does not parse or holds no records, no record can be named.
        ("JSON that does not parse", ".json", b'[{"contract": "monthly"},', "not valid JSON"),
        ("JSON that holds no records", ".json", b"42", "expected a record, a list of records"),
    ],
)
def test_crafted_input_files(
    case: str, suffix: str, content: bytes, needle: str, built_model: BuildResult, run: Any, tmp_path: Path
) -> None:
    source = tmp_path / f"in{suffix}"
    source.write_bytes(content)
    result = run("predict", built_model.artifacts["onnx"], "--input", source)
    assert_clean_error(result, 2, "--input", needle)


def _crafted_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("members", "needle"),
    [
        ({"../escape.py": b"x = 1\n", "m/model.onnx": b"", "m/metadata.json": b"{}"}, "leaves its folder"),
        ({"/etc/evil.py": b"x = 1\n"}, "leaves its folder"),
        ({"m/model.onnx": b"\0" * (64 * 1024 * 1024), "m/metadata.json": b"{}"}, "would unpack to"),  # a zip bomb
    ],
)
def test_the_spark_worker_refuses_a_crafted_wheel_before_unpacking_it(
    tmp_path: Path, members: dict[str, bytes], needle: str
) -> None:
    """The Spark worker cannot import mlpack's artifact reader, so it holds the same limits itself:
    nothing is written outside its folder and no bomb is unpacked (the worker's errors are ValueError)."""
    from mlpack.scoring.worker import load_wheel

    wheel = _crafted_wheel(tmp_path / "crafted-1.0.0-py3-none-any.whl", members)
    with pytest.raises(ValueError, match=needle):
        load_wheel(wheel)
    assert not (tmp_path / "escape.py").exists()
