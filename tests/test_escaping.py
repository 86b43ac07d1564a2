"""Values travel through three formats (issue 13 item 8): Dockerfile LABELs, the wheel's METADATA
and the Markdown/HTML model card. What `docker inspect` and `importlib.metadata` give back equals
what the config and the data said; nothing in them becomes a tag, a variable or a line break.
Run under `flock /tmp/mlpack-docker.lock` (it builds an image on the real engine).
"""

from __future__ import annotations

import json
import zipfile
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from pymongo import MongoClient

from tests.helpers.images import image_inspect
from tests.helpers.projects import Project

DESCRIPTION = 'Churn $HOME ${HOME} $(id) `id` "quoted" back\\slash ü 漢字 <script>alert(1)</script> *bold* | pipe'
CATEGORY = "<script>alert(2)</script>"


def _hostile_project(project: Project, client: MongoClient[Any]) -> None:
    project.edit('description = "Which subscribers will cancel next month"', f"description = {json.dumps(DESCRIPTION)}")
    project.edit('collection = "customers"', 'collection = "customers"\nfilter = { tenure_months = { "$gte" = 0 } }')
    client[project.database]["customers"].update_many({"contract": "yearly"}, {"$set": {"contract": CATEGORY}})


def test_values_round_trip_through_the_wheel_and_the_card(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any], tmp_path: Path
) -> None:
    _hostile_project(churn_project, mongo_client)
    result = run("build", churn_project.path, "--no-image", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["description"] == DESCRIPTION
    assert report["data"]["filter"] == {"tenure_months": {"$gte": 0}}

    # The wheel's METADATA, read by importlib.metadata.
    site = tmp_path / "site"
    with zipfile.ZipFile(churn_project.path / "dist" / report["artifacts"]["wheel"]["file"]) as archive:
        archive.extractall(site)
    (dist,) = [d for d in distributions(path=[str(site)]) if d.metadata["Name"] == "churn-model"]
    assert dist.metadata["Summary"] == DESCRIPTION
    readme = dist.metadata.get_payload()  # type: ignore[attr-defined]  # the long description: the card
    assert "<script>" not in readme

    # Rendered as PyPI would (CommonMark with raw HTML allowed, tables): text, never a tag.
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(readme)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the description, shown as text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html  # the category, shown as text
    assert "$HOME ${HOME}" in html and "漢字" in html

    card = (churn_project.path / "dist" / report["artifacts"]["card"]["file"]).read_text(encoding="utf-8")
    assert "<script>alert" not in card and "&lt;script&gt;alert(1)&lt;/script&gt;" in card


@pytest.mark.usefixtures("docker_env")
def test_labels_round_trip_through_the_docker_engine(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    """The builder expands nothing in a LABEL and keeps non-ASCII text as it is."""
    _hostile_project(churn_project, mongo_client)
    churn_project.config.write_text(
        # A tag of its own: where both pytest-xdist workers share one engine (an engine already running),
        # test_image.py may build churn-model:1.0.0 at the same moment.
        churn_project.config.read_text() + '\n[image]\nbase = "python:3.11-slim"\ntag = "escaping-model:1.0.0"\n',
        encoding="utf-8",
    )
    result = run("build", churn_project.path, "--image", "--json")
    assert result.code == 0, result.err
    labels = image_inspect(json.loads(result.out)["image"]["tag"])["Config"]["Labels"]
    assert labels["org.opencontainers.image.description"] == DESCRIPTION
    metadata = json.loads(labels["io.mlpack.metadata"])
    assert metadata["description"] == DESCRIPTION
    assert metadata["data"]["filter"] == {"tenure_months": {"$gte": 0}}
