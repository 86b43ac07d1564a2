"""Config values from others (issue 13 items 7 and 10): every value another tool will read is
checked against that tool's grammar before any data is read — exit 2 naming the key, no traceback,
nothing written, no database asked (the URI points at a closed port: reaching it would be exit 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlpack.source.embedded import free_port
from tests.helpers.cli import artifacts_in, assert_clean_error, build_before_imports

BASE = """
[model]
name = "hostile-model"
version = "1.0.0"
task = "classification"
description = "A model"

[source]
uri_env = "MLPACK_HOSTILE_CONFIG_URI"
database = "crm"
collection = "customers"

[features]
numeric = ["tenure_months"]
categorical = ["contract"]
target = "label"

[estimator]
class = "sklearn.linear_model.LogisticRegression"

[image]
base = "python:3.11-slim"
"""

KELVIN, LONG_S = "\u212a", "\u017f"

# (case, text replaced, replacement (TOML source), the key the message must name)
CASES = [
    (
        "base with a second Dockerfile instruction",
        'base = "python:3.11-slim"',
        'base = "python:3.11-slim AS deps\\nRUN echo INJECTED > /injected"',
        "[image].base",
    ),
    ("base with spaces", 'base = "python:3.11-slim"', 'base = "python:3.11 AS x"', "[image].base"),
    ("base with a $ variable", 'base = "python:3.11-slim"', 'base = "${EVIL}"', "[image].base"),
    (
        "tag with a trailing newline",
        'base = "python:3.11-slim"',
        'base = "python:3.11-slim"\ntag = "evil:1\\n"',
        "[image].tag",
    ),
    ("tag in upper case", 'base = "python:3.11-slim"', 'base = "python:3.11-slim"\ntag = "Evil:1"', "[image].tag"),
    (
        "tag with a digest",
        'base = "python:3.11-slim"',
        'base = "python:3.11-slim"\ntag = "a:1@sha256:' + "0" * 64 + '"',
        "[image].tag",
    ),
    (
        "python with a newline",
        'base = "python:3.11-slim"',
        'base = "python:3.11-slim"\npython = "3.11\\n"',
        "[image].python",
    ),
    (
        "python not a version",
        'base = "python:3.11-slim"',
        'base = "python:3.11-slim"\npython = "3.11; rm -rf /"',
        "[image].python",
    ),
    ("port 0", 'base = "python:3.11-slim"', 'base = "python:3.11-slim"\nport = 0', "[image].port"),
    ("port 70000", 'base = "python:3.11-slim"', 'base = "python:3.11-slim"\nport = 70000', "[image].port"),
    ("unknown arch", 'base = "python:3.11-slim"', 'base = "python:3.11-slim"\narch = "sparc"', "[image].arch"),
    (
        "find_links missing",
        'base = "python:3.11-slim"',
        'base = "python:3.11-slim"\nfind_links = "wheels"',
        "[image].find_links",
    ),
    (
        "find_links with a newline",
        'base = "python:3.11-slim"',
        'base = "python:3.11-slim"\nfind_links = "w\\nRUN x"',
        "[image].find_links",
    ),
    (
        "unknown builder",
        'base = "python:3.11-slim"',
        'base = "python:3.11-slim"\nbuilder = "kaniko"',
        "[image].builder",
    ),
    ("docker builder, local base", 'base = "python:3.11-slim"', 'base = "oci:b"\nbuilder = "docker"', "[image].base"),
    (
        "registry CA missing",
        'base = "python:3.11-slim"',
        'base = "python:3.11-slim"\nregistry_ca = "ca.pem"',
        "[image].registry_ca",
    ),
    ("registry base, bad", 'base = "python:3.11-slim"', 'base = "docker://Bad Name"', "[image].base"),
    (
        "plain HTTP with a CA",
        'base = "python:3.11-slim"',
        'base = "python:3.11-slim"\nplain_http = true\nregistry_ca = "ca.pem"',
        "[image].plain_http has no TLS",
    ),
    (
        "plain HTTP not a boolean",
        'base = "python:3.11-slim"',
        'base = "python:3.11-slim"\nplain_http = "yes"',
        "[image].plain_http",
    ),
    ("name with the long s", 'name = "hostile-model"', f'name = "ca{LONG_S}e"', "[model].name"),
    ("name with the Kelvin sign", 'name = "hostile-model"', f'name = "{KELVIN}elvin"', "[model].name"),
    ("name of 300 characters", 'name = "hostile-model"', f'name = "{"n" * 300}"', "[model].name"),
    ("name with a slash", 'name = "hostile-model"', 'name = "../evil"', "[model].name"),
    ("version of 400 characters", 'version = "1.0.0"', f'version = "1.{"0" * 398}"', "[model].version"),
    ("version with a newline", 'version = "1.0.0"', 'version = "1.0.0\\n"', "[model].version"),
    (
        "description with a newline",
        'description = "A model"',
        'description = "A model\\nRUN evil"',
        "[model].description",
    ),
    ("description with NUL", 'description = "A model"', 'description = "A\\u0000model"', "[model].description"),
    ("description with ESC", 'description = "A model"', 'description = "A \\u001b[31mred"', "[model].description"),
    ("description of 600 characters", 'description = "A model"', f'description = "{"d" * 600}"', "[model].description"),
    ("database with a space", 'database = "crm"', 'database = "my db"', "[source].database"),
    ("database with a slash", 'database = "crm"', 'database = "a/b"', "[source].database"),
    ("database with a dot", 'database = "crm"', 'database = "a.b"', "[source].database"),
    ("database of 70 characters", 'database = "crm"', f'database = "{"d" * 70}"', "[source].database"),
    ("empty database", 'database = "crm"', 'database = ""', "[source].database"),
    ("collection with $", 'collection = "customers"', 'collection = "cu$tomers"', "[source].collection"),
    ("system collection", 'collection = "customers"', 'collection = "system.users"', "[source].collection"),
    ("uri_env with a space", 'uri_env = "MLPACK_HOSTILE_CONFIG_URI"', 'uri_env = "A B"', "[source].uri_env"),
    ("registry collection with $", "[image]", '[registry]\ncollection = "$x"\n[image]', "[registry].collection"),
    (
        "deeply nested filter",
        'collection = "customers"',
        'collection = "customers"\nfilter = { a = ' + "[" * 5000 + "]" * 5000 + " }",
        "nested too deeply",
    ),
]


@pytest.mark.parametrize(("case", "old", "new", "key"), CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_exit_2_naming_the_key(
    case: str, old: str, new: str, key: str, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPACK_HOSTILE_CONFIG_URI", f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300")
    project = tmp_path / "p"
    project.mkdir()
    assert old in BASE
    (project / "mlpack.toml").write_text(BASE.replace(old, new, 1), encoding="utf-8")
    result = run("build", project, "--out", tmp_path / "out")
    assert_clean_error(result, 2, key)
    assert "INJECTED" not in result.err or "[image].base" in result.err
    assert artifacts_in(tmp_path / "out") == []
    assert artifacts_in(project) == ["mlpack.toml"]


@pytest.mark.parametrize(
    ("version", "needle"),
    [("1." + "0" * 398, "at most 64"), ("1.0.0\n", "PEP 440"), ("1.0.0 ; RUN x", "PEP 440")],
)
def test_bad_version_flag_is_exit_2(version: str, needle: str, run: Any, tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "mlpack.toml").write_text(BASE, encoding="utf-8")
    result = run("build", project, "--version", version, "--out", tmp_path / "out")
    assert_clean_error(result, 2, "--version", needle)
    assert artifacts_in(tmp_path / "out") == []


@pytest.mark.parametrize("name", [f"ca{LONG_S}e", f"{KELVIN}elvin", "n" * 300, "x-"])
def test_init_refuses_the_same_names(name: str, run: Any, tmp_path: Path) -> None:
    result = run("init", name, "--directory", tmp_path)
    assert_clean_error(result, 2, "model name")
    assert artifacts_in(tmp_path) == []


def test_a_default_image_tag_is_made_valid_from_a_local_version() -> None:
    from mlpack.config import ImageSection

    assert ImageSection().tag_for("Churn.Model", "1.0.0+local.7") == "churn.model:1.0.0-local.7"


def test_a_config_mistake_is_answered_before_the_build_imports_scikit_learn(tmp_path: Path) -> None:
    """A typo in mlpack.toml is one line at once: scikit-learn, skl2onnx and onnx (seconds of imports) are
    loaded only once the configuration reads. A fresh process, as a user runs it: the test's own
    process has them all imported already."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "mlpack.toml").write_text(BASE.replace("[image]", "[image]\nbogus = 1", 1), encoding="utf-8")
    out, err = build_before_imports(project)
    assert "[image].bogus" in err
    assert out == "2 []", out + err
