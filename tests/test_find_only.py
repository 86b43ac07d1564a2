"""A user whose one right is find() on the source collection (no listCollections, no writes): every
command that needs more says so in one line, exit 3, naming what was refused; none prints a traceback
or reports a success it did not have."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mlpack.source.embedded import embedded_server
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers
from tests.helpers.projects import CHURN_CONFIG


@pytest.fixture(scope="module")
def find_only_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    storage = str(tmp_path_factory.mktemp("find-only-crm"))
    with embedded_server(storage) as uri:
        client: MongoClient[dict[str, Any]] = MongoClient(uri)
        client.admin.command("createUser", "admin", pwd="s3cret", roles=["root"])
        client.crm.customers.insert_many(subscribers())
        finder = [{"resource": {"db": "crm", "collection": "customers"}, "actions": ["find"]}]
        client.crm.command("createRole", "finder", privileges=finder, roles=[])
        client.crm.command("createUser", "bob", pwd="s3cret", roles=["finder"])
        client.close()
    with embedded_server(storage, extra_args=("--auth",)) as uri:
        yield f"mongodb://bob:s3cret@{uri.removeprefix('mongodb://').rstrip('/')}/crm?authSource=crm"


@pytest.fixture
def project(tmp_path: Path, find_only_uri: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLPACK_TEST_URI", find_only_uri)
    folder = tmp_path / "churn"
    folder.mkdir()
    (folder / "mlpack.toml").write_text(textwrap.dedent(CHURN_CONFIG).format(database="crm"), encoding="utf-8")
    return folder


def test_build_score_and_monitor_name_the_right_they_lack(project: Path, run: Any) -> None:
    assert_clean_error(
        run("build", project, "-q"), 3, "did not allow indexing the registry crm.mlpack_models", "was written"
    )
    # The same build without a registry (it needs find() only), so that score and monitor have a build to use.
    config = project / "mlpack.toml"
    config.write_text(config.read_text().replace("[evaluation]", "[registry]\nenabled = false\n\n[evaluation]", 1))
    assert run("build", project, "-q", "--force").code == 0
    assert_clean_error(run("score", project, "--into", "scored"), 3, "did not allow scoring crm.customers into scored")
    assert_clean_error(run("monitor", project), 3, "did not allow reading the inference log")
