"""What an artifact holds of the training data: what the model needs and nothing more.

A text field's vocabulary is the model (it is in the graph); the texts themselves are not. A
categorical field's categories are listed only as far as the model tells them apart
([preprocessing].max_categories): a rarer customer id is no part of the model and appears nowhere.
Every artifact is scanned, compressed ones (wheel, sdist) after decompressing them.
"""

from __future__ import annotations

import json
import random
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from tests.helpers.projects import Project

FIRST = ["Owen", "Florence", "Laina", "Lily", "William", "Elisabeth", "Timothy", "Augusta", "Hanna", "Bertha"]
LAST = ["Braund", "Cumings", "Heikkinen", "Futrelle", "Allen", "Moran", "McCarthy", "Palsson", "Johnson", "Nasser"]
TITLES = ["Mr.", "Mrs.", "Miss", "Master", "Dr.", "Rev."]

CONFIG = """
[model]
name = "voyage"
version = "1.0.0"
task = "classification"

[source]
uri_env = "MLPACK_TEST_URI"
database = "{database}"
collection = "passengers"

[features]
numeric = ["age"]
categorical = ["ticket"]
text = ["name"]
target = "survived"

[preprocessing]
max_categories = 8

[estimator]
class = "sklearn.linear_model.LogisticRegression"

[image]
base = "python:3.11-slim"
"""


def _passengers(n: int = 260) -> list[dict[str, Any]]:
    rng = random.Random(3)
    documents = []
    for index in range(n):
        # A few tickets are shared by many (the model keeps those); most are one passenger's own id.
        ticket = f"PC {17599 + index % 5}" if index % 3 == 0 else f"A/5 {21171 + index}"
        name = f"{rng.choice(LAST)}, {rng.choice(TITLES)} {rng.choice(FIRST)} {rng.choice(FIRST)} {index:04d}"
        age = None if index % 17 == 0 else rng.randint(1, 80)
        survived = (age or 30) < 16 or "Mrs." in name or "Miss" in name or rng.random() < 0.2
        documents.append({"_id": index, "name": name, "ticket": ticket, "age": age, "survived": survived})
    return documents


def _contents(folder: Path) -> dict[str, bytes]:
    """Every file under the output folder, wheels and sdists opened up (their members are compressed)."""
    found: dict[str, bytes] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found[str(path.relative_to(folder))] = data
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                found.update({f"{path.name}!{n}": wheel.read(n) for n in wheel.namelist()})
        elif path.name.endswith(".tar.gz"):
            with tarfile.open(path) as sdist:
                for member in sdist.getmembers():
                    handle = sdist.extractfile(member)
                    if handle is not None:
                        found[f"{path.name}!{member.name}"] = handle.read()
    return found


def test_no_training_text_or_unused_identifier_is_in_any_artifact(
    tmp_path: Path, mongo_uri: str, mongo_client: MongoClient[dict[str, Any]], database_name: str, run, monkeypatch
) -> None:
    documents = _passengers()
    mongo_client[database_name]["passengers"].insert_many(documents)
    project = Project(tmp_path / "voyage", database_name, mongo_uri)
    project.path.mkdir()
    project.write_config(CONFIG)
    monkeypatch.setenv("MLPACK_TEST_URI", mongo_uri)
    result = run("build", project.path, "--json")  # with [image]: the image context is scanned too
    assert result.code == 0, result.err
    out = project.path / "dist"
    report = json.loads((out / "voyage-1.0.0.json").read_text())
    features = {f["name"]: f for f in report["features"]}
    kept = set(features["ticket"]["categories"])
    # The five shared tickets and seven of the one-passenger ones fill the cap of 8 - 1 columns + other.
    assert {f"PC {17599 + k}" for k in range(5)} <= kept and len(kept) <= 7
    assert features["ticket"]["other"] > 100  # most training tickets share the "other" column
    assert "categories" not in features["name"]
    assert set(report["baseline"]["features"]["ticket"]["categories"]) <= kept | {"__missing__"}

    contents = _contents(out)
    assert any(name.endswith(".whl!voyage/model.onnx") for name in contents), sorted(contents)
    assert any(name.startswith("voyage-1.0.0.docker/") for name in contents), sorted(contents)
    texts = [d["name"] for d in documents]
    unused = [d["ticket"] for d in documents if d["ticket"] not in kept]
    assert len(unused) > 150
    for name, data in contents.items():
        for needle in [*texts, *unused]:
            assert needle.encode() not in data, f"{needle!r} is in {name}"
    # The test can see a leak: the kept tickets, and the vocabulary's words, are in the graph.
    onnx_bytes = contents["voyage-1.0.0.onnx"]
    assert all(ticket.encode() in onnx_bytes for ticket in kept)
    assert b"braund" in onnx_bytes
