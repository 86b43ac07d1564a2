"""The Grafana dashboard in packaging/grafana: import-ready, and every query names a metric the server exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlpack.build import BuildResult
from tests.helpers.cli import REPO
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess

DASHBOARD = REPO / "packaging" / "grafana" / "mlpack-model-server.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [target["expr"] for panel in _panels(dashboard) for target in panel.get("targets", [])]
    queries += [variable["definition"] for variable in dashboard["templating"]["list"]]
    return queries


def test_the_dashboard_imports_with_a_prometheus_datasource_input(dashboard: dict[str, Any]) -> None:
    (source,) = dashboard["__inputs"]
    assert source["name"] == "DS_PROMETHEUS" and source["type"] == "datasource" and source["pluginId"] == "prometheus"
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == DATASOURCE


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _panels(dashboard):
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_queries_are_balanced(dashboard: dict[str, Any]) -> None:
    for query in _queries(dashboard):
        for opening, closing in ("()", "{}", "[]"):
            assert query.count(opening) == query.count(closing), query
        assert query.count('"') % 2 == 0, query


def test_every_metric_a_panel_queries_is_on_a_real_servers_metrics(
    dashboard: dict[str, Any], built_model: BuildResult
) -> None:
    server = ServerProcess.mlpack(built_model.artifacts["wheel"])
    try:
        assert server.request("POST", "/predict", subscribers(3, absent=False)).status == 200
        exposed = server.request("GET", "/metrics").body.decode()
    finally:
        assert server.stop() == 0
    names = {re.sub(r"_(bucket|sum|count)$", "", line.split("{")[0].split()[0]) for line in exposed.splitlines()}
    names |= {line.split("{")[0].split()[0] for line in exposed.splitlines()}
    queried = {name for query in _queries(dashboard) for name in re.findall(r"\bmlpack_[a-z_]+", query)}
    assert queried, "the dashboard queries no mlpack metric"
    assert queried <= names, f"not exposed by the server: {sorted(queried - names)}"


def test_the_readme_documents_the_dashboard() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert str(DASHBOARD.relative_to(REPO)) in readme
    assert Path(DASHBOARD).is_file()
