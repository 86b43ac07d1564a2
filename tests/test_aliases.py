"""Registry aliases (`mlpack promote`, NAME@ALIAS) and artifacts kept in the registry (GridFS)."""

from __future__ import annotations

import getpass
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mlpack.registry import Registry
from mlpack.registry.aliases import Aliases
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess
from tests.helpers.projects import Project

RECORD = subscribers(1, seed=4)[0]  # what a client asks production about


def _build(project: Project, run: Any, version: str) -> None:
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        "\n".join(f'version = "{version}"' if line.startswith("version = ") else line for line in text.splitlines()),
        encoding="utf-8",
    )
    result = run("build", project.path, "-q")
    assert result.code == 0, result.err


def _version_of(run: Any, reference: str, *flags: str | Path) -> str:
    result = run("inspect", reference, *flags, "--json")
    assert result.code == 0, result.err
    return str(json.loads(result.out)["version"])


@pytest.fixture
def two_builds(churn_project: Project, run: Any) -> Project:
    _build(churn_project, run, "1.0.0")
    _build(churn_project, run, "1.0.1")
    return churn_project


def test_promote_roll_back_history_and_every_command_by_alias(
    two_builds: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    config = ("--config", two_builds.path)
    assert run("promote", "churn-model", "1.0.0", "--alias", "production", *config).code == 0
    moved = run("promote", "churn-model", "1.0.1", "--alias", "production", "--reason", "better recall", *config)
    assert moved.code == 0 and "churn-model@production: 1.0.0 -> 1.0.1" in moved.out
    assert _version_of(run, "churn-model@production", *config) == "1.0.1"
    assert run("promote", "churn-model", "1.0.1", "--alias", "staging", *config).code == 0

    # serve answers with the aliased version; after a rollback (a promote of the earlier version), with that one.
    server = ServerProcess.mlpack("churn-model@production", "--config", str(two_builds.path))  # type: ignore[arg-type]
    try:
        assert json.loads(server.request("GET", "/metadata").body)["version"] == "1.0.1"
        assert server.request("POST", "/predict", RECORD).json()["model"] == {"name": "churn-model", "version": "1.0.1"}
    finally:
        assert server.stop() == 0
    back = run("promote", "churn-model", "1.0.0", "--alias", "production", "--reason", "rollback", *config, "--json")
    assert back.code == 0 and json.loads(back.out)["move"]["from"] == "1.0.1"
    server = ServerProcess.mlpack("churn-model@production", "--config", str(two_builds.path))  # type: ignore[arg-type]
    try:
        assert json.loads(server.request("GET", "/metadata").body)["version"] == "1.0.0"
        assert server.request("POST", "/predict", RECORD).json()["model"] == {"name": "churn-model", "version": "1.0.0"}
    finally:
        assert server.stop() == 0
    assert _version_of(run, "churn-model@production", *config) == "1.0.0"
    manifests = run("k8s", "churn-model@staging", *config, "--json")
    assert manifests.code == 0, manifests.err
    assert "churn-model:1.0.1" in manifests.out and "churn-model:1.0.0" not in manifests.out
    again = run("promote", "churn-model", "1.0.0", "--alias", "production", *config)
    assert again.code == 0 and "already 1.0.0" in again.out

    history = json.loads(run("models", "churn-model", "--history", "--json", *config).out)
    production = [move for move in history if move["alias"] == "production"]
    assert [(m["from"], m["to"]) for m in production] == [(None, "1.0.0"), ("1.0.0", "1.0.1"), ("1.0.1", "1.0.0")]
    assert [m["reason"] for m in production] == ["", "better recall", "rollback"]
    assert {m["who"] for m in history} == {getpass.getuser()}
    assert all(m["when"].endswith("Z") for m in history)
    stored = mongo_client[two_builds.database]["mlpack_models.aliases"].find_one({"alias": "production"})
    assert stored["version"] == "1.0.0" and stored["moves"] == 3 and len(stored["history"]) == 3

    rows = {row["version"]: row["aliases"] for row in json.loads(run("models", "--json", *config).out)}
    assert rows == {"1.0.0": ["production"], "1.0.1": ["staging"]}
    table = run("models", *config).out
    assert "aliases" in table.splitlines()[0] and "production" in table and "staging" in table
    assert "1.0.1 -> 1.0.0" not in table and "rollback" in run("models", "--history", *config).out

    # score and monitor take it for --version (the project's model; @ALIAS for short).
    scored = run("score", two_builds.path, "--into", "scored", "--version", "churn-model@staging", "--json")
    assert scored.code == 0, scored.err
    assert json.loads(scored.out)["model"] == {"name": "churn-model", "version": "1.0.1"}
    watched = run("monitor", two_builds.path, "--version", "@production")
    assert_clean_error(watched, 1, "no inference log records of churn-model 1.0.0")
    watched = run("monitor", two_builds.path, "--model", "churn-model@staging")
    assert_clean_error(watched, 1, "no inference log records of churn-model 1.0.1")
    assert_clean_error(
        run("score", two_builds.path, "--into", "x", "--version", "other@production"), 2, "names another model"
    )


def test_what_cannot_be_promoted_or_resolved_is_one_clear_line(
    two_builds: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    config = ("--config", two_builds.path)
    two_builds.edit("gates = { accuracy = 0.6 }", "gates = { accuracy = 0.9999 }")
    _rejected = run("build", two_builds.path, "-q", "--version", "1.0.2")
    assert _rejected.code == 1, _rejected.err
    assert_clean_error(
        run("promote", "churn-model", "1.0.2", "--alias", "production", *config),
        2,
        "churn-model 1.0.2 was rejected",
        "only a built version can be promoted",
    )
    assert_clean_error(
        run("promote", "churn-model", "9.9.9", "--alias", "production", *config),
        2,
        "churn-model 9.9.9 is not in the registry (built versions: 1.0.0, 1.0.1)",
    )
    assert_clean_error(
        run("promote", "churn-modle", "1.0.0", "--alias", "production", *config),
        2,
        "no model named 'churn-modle' in the registry (known: churn-model)",
    )
    for alias in ("Production", "1.0.0", "prod uction", "x" * 41, ""):
        assert_clean_error(run("promote", "churn-model", "1.0.0", "--alias", alias, *config), 2, "is not a valid alias")
    assert_clean_error(run("inspect", "churn-model@canary", *config), 2, "churn-model has no alias 'canary'")
    # A typo in the model's name is named as one, not as "churn-modle has no alias 'production' (it has none)".
    assert_clean_error(
        run("inspect", "churn-modle@production", *config),
        2,
        "no model named 'churn-modle' in the registry (known: churn-model)",
    )
    assert_clean_error(run("inspect", "churn-model@Canary", *config), 2, "'Canary' is not a valid alias")
    assert_clean_error(
        run("serve", "churn-model@canary", "--config", two_builds.path / "nowhere"),
        2,
        "churn-model@canary is resolved through the registry of a project (--config)",
    )
    # dist/ holding a different build of the version than the registry recorded is refused.
    assert run("promote", "churn-model", "1.0.0", "--alias", "production", *config).code == 0
    aliases = mongo_client[two_builds.database]["mlpack_models.aliases"]
    aliases.update_one({"alias": "production"}, {"$set": {"version": "../../1.0.0"}})
    assert_clean_error(run("inspect", "churn-model@production", *config), 2, "which is not a version")
    aliases.update_one({"alias": "production"}, {"$set": {"version": "1.0.0"}})
    wheel = two_builds.path / "dist" / "churn_model-1.0.0-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    assert_clean_error(run("inspect", "churn-model@production", *config), 2, "does not match its build report")
    assert_clean_error(
        run("k8s", "churn-model@production", *config, "--dist", two_builds.path / "empty"),
        2,
        "neither in",
        "[registry].store_artifacts = true",
    )


def test_concurrent_promotes_lose_no_move(mongo_client: MongoClient[Any], database_name: str) -> None:
    collection = mongo_client[database_name]["mlpack_models"]
    versions = [f"1.0.{i}" for i in range(4)]
    collection.insert_many([{"name": "m", "version": v, "status": "built"} for v in versions])
    moved: list[dict[str, Any]] = []
    lock = threading.Lock()

    def promoter(offset: int) -> None:
        aliases = Aliases(Registry(collection))
        for step in range(12):
            move = aliases.promote("m", versions[(offset + step) % len(versions)], "production", reason=f"{offset}")
            if move is not None:
                with lock:
                    moved.append(move)

    threads = [threading.Thread(target=promoter, args=(offset,)) for offset in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    history = Aliases(Registry(collection)).history("m", "production")
    assert len(history) == len(moved) > 12
    assert history[0]["from"] is None
    assert all(later["from"] == earlier["to"] for earlier, later in zip(history, history[1:]))
    document = collection.database["mlpack_models.aliases"].find_one({"name": "m"})
    assert document["moves"] == len(history) and document["version"] == history[-1]["to"]


STORE = "\n[registry]\nstore_artifacts = true\n"


def test_stored_artifacts_serve_an_alias_without_dist_and_refuse_a_tampered_blob(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    churn_project.config.write_text(churn_project.config.read_text(encoding="utf-8") + STORE, encoding="utf-8")
    _build(churn_project, run, "1.0.0")
    config = ("--config", churn_project.path)
    assert run("promote", "churn-model", "1.0.0", "--alias", "production", *config).code == 0
    database = mongo_client[churn_project.database]
    record = database["mlpack_models"].find_one({"version": "1.0.0"})
    files = {f["metadata"]["kind"]: f for f in database["mlpack_models.artifacts.files"].find()}
    assert sorted(files) == ["onnx", "wheel"]
    assert files["wheel"]["metadata"]["sha256"] == record["artifacts"]["wheel"]["sha256"]
    assert record["artifacts"]["wheel"]["stored"]["id"] == files["wheel"]["_id"]

    # Another machine: no dist/ (an empty one), its own cache.
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(cache))
    elsewhere = ("--dist", tmp_path / "no-dist")
    assert _version_of(run, "churn-model@production", *config, *elsewhere) == "1.0.0"
    fetched = cache / "artifacts" / "churn-model" / "1.0.0" / "churn_model-1.0.0-py3-none-any.whl"
    assert fetched.read_bytes() == (churn_project.path / "dist" / fetched.name).read_bytes()
    assert [p.name for p in fetched.parent.iterdir()] == [fetched.name]  # nothing half-written left

    # A tampered cached copy is fetched again; a tampered blob is refused, and nothing is left of it.
    fetched.write_bytes(b"not a wheel")
    assert _version_of(run, "churn-model@production", *config, *elsewhere) == "1.0.0"
    chunks = database["mlpack_models.artifacts.chunks"]
    first = chunks.find_one({"files_id": files["wheel"]["_id"], "n": 0})
    chunks.update_one({"_id": first["_id"]}, {"$set": {"data": bytes([first["data"][0] ^ 1]) + first["data"][1:]}})
    fetched.unlink()
    assert_clean_error(
        run("inspect", "churn-model@production", *config, *elsewhere),
        2,
        "the wheel of churn-model 1.0.0 stored in the registry does not match the sha256 its record holds",
    )
    assert list(fetched.parent.iterdir()) == []
    chunks.delete_many({"files_id": files["wheel"]["_id"]})
    assert_clean_error(run("inspect", "churn-model@production", *config, *elsewhere), 2, "cannot be read")

    # A forced rebuild replaces the stored blobs; the dist/ copy still serves when it is the registered one.
    churn_project.edit("n_estimators = 30", "n_estimators = 31")
    assert run("build", churn_project.path, "-q", "--force").code == 0
    assert database["mlpack_models.artifacts.files"].count_documents({}) == 2
    assert _version_of(run, "churn-model@production", *config, *elsewhere) == "1.0.0"
    assert _version_of(run, "churn-model@production", *config) == "1.0.0"


def test_store_artifacts_needs_the_registry(churn_project: Project, run: Any) -> None:
    churn_project.config.write_text(
        churn_project.config.read_text(encoding="utf-8") + "\n[registry]\nenabled = false\nstore_artifacts = true\n",
        encoding="utf-8",
    )
    assert_clean_error(
        run("build", churn_project.path, "-q"), 2, "[registry].store_artifacts = true needs the registry"
    )
    assert_clean_error(
        run("promote", "churn-model", "1.0.0", "--alias", "production", "--config", churn_project.path),
        2,
        "aliases live in the registry",
    )


@pytest.mark.parametrize("command", ["models", "experiments"])
def test_listing_an_embedded_server_s_registry_says_it_is_gone(
    command: str, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded server lived for one build: "no builds recorded" right after a build would mislead."""
    monkeypatch.delenv("MONGODB_URI", raising=False)  # the example's [source].uri_env: unset, it embeds
    project = tmp_path / "wine"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "wine", project)
    assert_clean_error(run(command, "--config", project / "mlpack.toml"), 2, "persistent", "MONGODB_URI")


def test_the_registry_commands_outside_a_project_name_config(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from another folder they said "run `mlpack init NAME` to create a project": no way to read a registry."""
    monkeypatch.chdir(tmp_path)
    for command in (
        ("models",),
        ("models", "churn-model", "--history"),
        ("experiments",),
        ("promote", "churn-model", "1.0.0", "--alias", "production"),
    ):
        result = run(*command)
        assert_clean_error(result, 2, "no mlpack.toml in .", "pass --config PROJECT")
        assert "mlpack init" not in result.err, (command, result.err)


def test_experiments_of_a_build_without_trials_say_what_logs_them(churn_project: Project, run: Any) -> None:
    assert run("build", churn_project.path, "-q").code == 0
    listed = run("experiments", "--config", churn_project.path)
    assert (
        listed.code == 0
        and listed.out == "no trials logged (a build logs them with [evaluation].cv or a [search] table)\n"
    )


def test_a_reason_is_one_line_and_the_history_shows_what_others_wrote_escaped(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    """A reason with a line break split its history row in two; one written into the shared registry by
    other means, with a terminal's escape sequence, reached the terminal of whoever listed the history."""
    _build(churn_project, run, "1.0.0")
    config = ("--config", churn_project.path)
    refused = run("promote", "churn-model", "1.0.0", "--alias", "production", "--reason", "a\nb", *config)
    assert_clean_error(refused, 2, "--reason holds the control character '\\n': it must be one line of text")
    assert run("promote", "churn-model", "1.0.0", "--alias", "production", "--reason", "first", *config).code == 0
    # Long is fine: the scheduled retraining's reason names every drifted feature.
    long = "retrained on drift (" + ", ".join(f"feature_{n}" for n in range(200)) + ")"
    assert run("promote", "churn-model", "1.0.0", "--alias", "staging", "--reason", long, *config).code == 0
    aliases = mongo_client[churn_project.database]["mlpack_models.aliases"]
    crafted = {"$set": {"history.0.reason": "ok\n\x1b[2J\u202egnp.exe"}}
    aliases.update_one({"name": "churn-model", "alias": "production"}, crafted)
    listed = run("models", "--history", *config)
    assert listed.code == 0, listed.err
    header, row, staging = listed.out.splitlines()
    assert staging.endswith(long)
    assert row.endswith("ok\\n\\x1b[2J\\u202egnp.exe") and "\x1b" not in listed.out, listed.out
