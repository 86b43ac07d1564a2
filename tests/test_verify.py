"""`mlpack verify`: passes on what a build wrote, and one changed byte anywhere fails naming the file."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mlpack.build import BuildResult
from tests.helpers.attested import build_in, key_pair
from tests.helpers.cli import assert_clean_error


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("verify-keys")
    return {kind: key_pair(folder, kind) for kind in ("ecdsa", "ed25519")}


@pytest.fixture(scope="module")
def builds(keys: dict[str, tuple[Path, Path]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    """One unsigned build, one signed with ECDSA P-256, one with Ed25519: each copied per test before tampering."""
    root = tmp_path_factory.mktemp("verify-builds")
    return {
        "unsigned": build_in(root / "unsigned"),
        "ecdsa": build_in(root / "ecdsa", sign={"key_file": str(keys["ecdsa"][0])}),
        "ed25519": build_in(root / "ed25519", sign={"key_file": str(keys["ed25519"][0])}),
    }


def copy_of(build: BuildResult, tmp_path: Path) -> dict[str, Path]:
    """The build's dist/ copied, so that a test can change bytes: kind → path in the copy."""
    folder = build.artifacts["report"].parent
    target = tmp_path / "dist"
    shutil.copytree(folder, target)
    return {kind: target / path.name for kind, path in build.artifacts.items() if path.parent == folder}


def flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["unsigned", "ecdsa", "ed25519"])
def test_verify_passes_on_every_artifact_of_a_build(
    kind: str, builds: dict[str, BuildResult], keys: dict[str, tuple[Path, Path]], run: Any
) -> None:
    build = builds[kind]
    key = [] if kind == "unsigned" else ["--key", keys[kind][1]]
    for artifact in ("wheel", "sdist", "onnx"):
        result = run("verify", build.artifacts[artifact], *key)
        assert result.code == 0, result.err
        assert f"verified: {build.artifacts[artifact].name}" in result.out
        assert ("signatures checked" in result.out) is (kind != "unsigned")
    wheel = run("verify", build.artifacts["wheel"], *key, "--json")
    assert wheel.code == 0 and '"verified": true' in wheel.out
    if kind != "unsigned":
        assert "model-signing's signature" in run("verify", build.artifacts["onnx"], *key).out
        unchecked = run("verify", build.artifacts["onnx"])  # signed, but no key given: said, not hidden
        assert unchecked.code == 0 and "pass --key PUBLIC to check it" in unchecked.out


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_another_key_is_refused(
    kind: str, builds: dict[str, BuildResult], keys: dict[str, tuple[Path, Path]], run: Any
) -> None:
    other = "ed25519" if kind == "ecdsa" else "ecdsa"
    result = run("verify", builds[kind].artifacts["onnx"], "--key", keys[other][1])
    assert_clean_error(result, 1, "does not verify with this key")


def test_a_key_for_an_unsigned_build_is_refused(
    builds: dict[str, BuildResult], keys: dict[str, tuple[Path, Path]], run: Any
) -> None:
    result = run("verify", builds["unsigned"].artifacts["wheel"], "--key", keys["ecdsa"][1])
    assert_clean_error(result, 1, "was not signed", "test-model-1.0.0.provenance.dsse.json")


@pytest.mark.parametrize(
    ("changed", "checked", "named"),
    [
        ("onnx", "onnx", "test-model-1.0.0.onnx does not match its sha256"),
        ("sdist", "sdist", "test_model-1.0.0.tar.gz does not match its sha256"),
        ("sbom", "onnx", "test-model-1.0.0.cdx.json does not match its sha256"),
        ("provenance", "onnx", "test-model-1.0.0.provenance.json is not the statement signed"),
        ("provenance_envelope", "onnx", "test-model-1.0.0.provenance.dsse.json"),
        ("model_signature", "onnx", "test-model-1.0.0.model.sig"),
    ],
)
def test_one_changed_byte_fails_naming_the_file(
    changed: str,
    checked: str,
    named: str,
    builds: dict[str, BuildResult],
    keys: dict[str, tuple[Path, Path]],
    run: Any,
    tmp_path: Path,
) -> None:
    files = copy_of(builds["ecdsa"], tmp_path)
    assert run("verify", files[checked], "--key", keys["ecdsa"][1]).code == 0
    # JSON documents: a byte inside a hex digest, so the file still parses and only its content lies.
    target = files[changed]
    data = target.read_bytes()
    offset = data.rindex(b'"', 0, len(data) // 2) - 3 if target.suffix == ".json" else None
    flip(target, offset)
    assert_clean_error(run("verify", files[checked], "--key", keys["ecdsa"][1]), 1, named)


def rewrite_member(wheel: Path, member: str, change: Any) -> None:
    """The wheel re-zipped with one member's bytes changed: RECORD, untouched, no longer matches it."""
    with zipfile.ZipFile(wheel) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in entries:
            target.writestr(info, change(data) if info.filename == member else data)
    wheel.write_bytes(buffer.getvalue())


def test_a_changed_file_inside_the_wheel_is_named(
    builds: dict[str, BuildResult], keys: dict[str, tuple[Path, Path]], run: Any, tmp_path: Path
) -> None:
    files = copy_of(builds["ecdsa"], tmp_path)
    rewrite_member(files["wheel"], "test_model/model.onnx", lambda data: data[:-1] + bytes([data[-1] ^ 1]))
    assert_clean_error(
        run("verify", files["wheel"], "--key", keys["ecdsa"][1]),
        1,
        "test_model-1.0.0-py3-none-any.whl: test_model/model.onnx does not match its RECORD hash",
    )


def test_a_wheel_changed_outside_its_files_fails_on_its_own_digest(
    builds: dict[str, BuildResult], run: Any, tmp_path: Path
) -> None:
    files = copy_of(builds["unsigned"], tmp_path)
    with zipfile.ZipFile(files["wheel"], "a") as archive:
        archive.comment = b"x"  # every member still matches RECORD; the wheel's bytes do not
    assert_clean_error(run("verify", files["wheel"]), 1, "test_model-1.0.0-py3-none-any.whl does not match its sha256")


def test_a_file_added_to_the_wheel_is_named(builds: dict[str, BuildResult], run: Any, tmp_path: Path) -> None:
    files = copy_of(builds["unsigned"], tmp_path)
    with zipfile.ZipFile(files["wheel"], "a") as archive:
        archive.writestr("test_model/extra.py", "print('hello')\n")
    assert_clean_error(run("verify", files["wheel"]), 1, "test_model/extra.py is not in its RECORD")


def test_the_model_signature_alone_is_checked_against_the_model(
    builds: dict[str, BuildResult], keys: dict[str, tuple[Path, Path]], run: Any, tmp_path: Path
) -> None:
    """A .model.sig of another model (here: the Ed25519 build's, same key kind swapped in) is refused."""
    files = copy_of(builds["ecdsa"], tmp_path)
    other = builds["ed25519"].artifacts["model_signature"]
    files["model_signature"].write_bytes(other.read_bytes())
    assert_clean_error(run("verify", files["onnx"], "--key", keys["ecdsa"][1]), 1, "test-model-1.0.0.model.sig")


def test_no_provenance_next_to_the_artifact(run: Any, tmp_path: Path, builds: dict[str, BuildResult]) -> None:
    lone = tmp_path / builds["unsigned"].artifacts["onnx"].name
    lone.write_bytes(builds["unsigned"].artifacts["onnx"].read_bytes())
    assert_clean_error(run("verify", lone), 1, "no provenance in", "names test-model-1.0.0.onnx")
    assert_clean_error(run("verify", tmp_path / "missing.whl"), 2, "does not exist")


def test_a_bad_public_key_is_a_usage_error(builds: dict[str, BuildResult], run: Any, tmp_path: Path) -> None:
    junk = tmp_path / "key.pem"
    junk.write_text("not a key\n")
    assert_clean_error(run("verify", builds["ecdsa"].artifacts["onnx"], "--key", junk), 2, "is not a PEM public key")
    missing = tmp_path / "absent.pem"
    assert_clean_error(run("verify", builds["ecdsa"].artifacts["onnx"], "--key", missing), 2, "cannot be read")


@pytest.mark.parametrize(
    "craft",
    [
        lambda d: {**d, "subject": [["not", "a", "descriptor"]]},
        lambda d: {**d, "subject": [{**s, "annotations": "kind"} for s in d["subject"]]},
        lambda d: {**d, "_type": "https://in-toto.io/Statement/v0.1"},
        lambda d: [d],
    ],
)
def test_a_crafted_provenance_is_one_line_exit_1(
    craft: Any, builds: dict[str, BuildResult], run: Any, tmp_path: Path
) -> None:
    files = copy_of(builds["unsigned"], tmp_path)
    document = json.loads(files["provenance"].read_bytes())
    files["provenance"].write_text(json.dumps(craft(document)))
    assert_clean_error(run("verify", files["onnx"]), 1)


def test_a_crafted_sbom_whose_digest_the_provenance_names_is_refused(
    builds: dict[str, BuildResult], run: Any, tmp_path: Path
) -> None:
    """Unsigned, a provenance can be rewritten to vouch for anything: the SBOM's shape is still checked."""
    files = copy_of(builds["unsigned"], tmp_path)
    files["sbom"].write_text(json.dumps({"components": "none", "metadata": []}))
    statement = json.loads(files["provenance"].read_bytes())
    for subject in statement["subject"]:
        if subject["name"] == files["sbom"].name:
            subject["digest"]["sha256"] = hashlib.sha256(files["sbom"].read_bytes()).hexdigest()
    files["provenance"].write_text(json.dumps(statement))
    assert_clean_error(run("verify", files["onnx"]), 1, "is not one mlpack writes")


def test_a_wheel_that_is_no_zip_is_named(builds: dict[str, BuildResult], run: Any, tmp_path: Path) -> None:
    files = copy_of(builds["unsigned"], tmp_path)
    files["wheel"].write_bytes(b"PK\x03\x04 not really")
    assert_clean_error(run("verify", files["wheel"]), 1, "is not a readable wheel")


def test_a_changed_byte_inside_a_compressed_file_of_the_wheel_is_named(
    builds: dict[str, BuildResult], run: Any, tmp_path: Path
) -> None:
    """One byte of model.onnx's deflated data flipped in place: zipfile's CRC check fails as the member
    is read, which was a BadZipFile traceback instead of the changed file's name."""
    files = copy_of(builds["unsigned"], tmp_path)
    with zipfile.ZipFile(files["wheel"]) as archive:
        info = archive.getinfo("test_model/model.onnx")
    assert info.compress_type == zipfile.ZIP_DEFLATED
    header = files["wheel"].read_bytes()[info.header_offset : info.header_offset + 30]
    data_start = (
        info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    )
    flip(files["wheel"], data_start + info.compress_size // 2)
    assert_clean_error(
        run("verify", files["wheel"]), 1, "test_model-1.0.0-py3-none-any.whl: test_model/model.onnx was changed"
    )


@pytest.mark.parametrize("absent", ["cyclonedx", "cryptography"])
def test_verify_without_the_attest_extra_says_what_to_install(
    absent: str, builds: dict[str, BuildResult], run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, absent, None)  # as if not installed: find_spec answers None
    result = run("verify", builds["unsigned"].artifacts["wheel"])
    assert_clean_error(result, 2, f"needs the {absent} package", "pip install 'mlpack-onnx[attest]'")


def test_a_wheel_s_model_is_said_to_match_the_provenance_not_the_file_beside_it(
    builds: dict[str, BuildResult], run: Any, tmp_path: Path
) -> None:
    """The wheel is whole when the .onnx next to it changed, and the report said its model "is
    test-model-1.0.0.onnx, byte for byte": a claim about a file that was never read, and was false."""
    files = copy_of(builds["unsigned"], tmp_path)
    flip(files["onnx"])
    result = run("verify", files["wheel"])
    assert result.code == 0, result.err
    assert "test_model/model.onnx is the provenance's test-model-1.0.0.onnx (its sha256)" in result.out
    assert "byte for byte" not in result.out
    assert_clean_error(run("verify", files["onnx"]), 1, "test-model-1.0.0.onnx does not match its sha256")


@pytest.mark.parametrize("given", ["mlpack.toml", "dist", "model.html"])
def test_a_file_no_build_ships_is_a_usage_error(given: str, run: Any, tmp_path: Path) -> None:
    """`mlpack verify mlpack.toml` (or the dist folder, or the card) names no artifact: exit 2 saying what to
    give, not exit 1 as though an artifact had failed its check."""
    path = tmp_path / given
    if given == "dist":
        path.mkdir()
    else:
        path.write_text("[model]\n", encoding="utf-8")
    assert_clean_error(run("verify", path), 2, f"{given} is not an artifact mlpack builds", "give a wheel, .onnx")
