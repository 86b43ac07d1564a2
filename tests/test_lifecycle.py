"""Registry listing, publishing to a real package index on loopback, and `mlpack init`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mlpack.registry import next_patch
from mlpack.runtime.lifetime import parent_death_signal
from mlpack.source.embedded import free_port, stop_process
from tests.helpers.cli import RECORDER, assert_clean_error
from tests.helpers.projects import Project

USER, PASSWORD = "uploader", "correct horse"


@pytest.fixture(scope="module")
def package_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """pypiserver on 127.0.0.1 with an htpasswd file guarding uploads."""
    from passlib.apache import HtpasswdFile

    root = tmp_path_factory.mktemp("index")
    (root / "packages").mkdir()
    passwords = HtpasswdFile(str(root / "htpasswd"), new=True)
    passwords.set_password(USER, PASSWORD)
    passwords.save()
    port = free_port()
    server = Path(sys.executable).parent / "pypi-server"
    proc = subprocess.Popen(
        [
            server,
            "run",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-P",
            root / "htpasswd",
            "-a",
            "update",
            "--disable-fallback",
            root / "packages",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=parent_death_signal(),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/simple/", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop_process(proc)
                raise RuntimeError("pypiserver did not start") from None
            time.sleep(0.2)
    yield url
    stop_process(proc)


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINE_USERNAME", USER)
    monkeypatch.setenv("TWINE_PASSWORD", PASSWORD)


def test_next_patch_follows_pep440_order() -> None:
    assert next_patch([]) == "1.0.0"
    assert next_patch(["1.0.0", "1.0.10", "1.0.9"]) == "1.0.11"
    assert next_patch(["0.9", "1.2.0rc1", "not-a-version"]) == "1.2.1"


def test_twine_upload_inherits_neither_the_database_uri_nor_the_signing_key(
    churn_project: Project,
    run,
    package_index: str,
    credentials: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """publish reads the registry through [source].uri_env, and a CI job that builds then publishes has
    [sign]'s key in its environment too: twine (and whatever keyring backend it loads) gets neither, as
    the build's own tools do not. It got the whole environment, the database's password and the TLS key's
    included; the index's TWINE_* login is what it needs, and keeps."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    plain = serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, plain).decode()
    monkeypatch.setenv("MY_SIGNING_KEY", pem)
    churn_project.config.write_text(
        churn_project.config.read_text() + '\n[sign]\nkey_env = "MY_SIGNING_KEY"\n', encoding="utf-8"
    )
    assert run("build", churn_project.path, "--version", "0.0.1", "-q").code == 0  # the index is the module's
    (tmp_path / "recorder").mkdir()
    (tmp_path / "recorder" / "sitecustomize.py").write_text(RECORDER, encoding="utf-8")
    record = tmp_path / "children.log"
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "recorder"))
    monkeypatch.setenv("ENV_RECORD", str(record))
    result = run("publish", churn_project.path, "--version", "0.0.1", "--repository-url", f"{package_index}/")
    assert result.code == 0, result.err
    children = [line.split("\t") for line in record.read_text(encoding="utf-8").splitlines()]
    (names,) = [names.split(",") for argv, names in children if "twine" in argv]
    assert "MLPACK_TEST_URI" not in names and "MY_SIGNING_KEY" not in names  # [source].uri_env, [sign].key_env
    assert {"TWINE_USERNAME", "TWINE_PASSWORD", "ENV_RECORD"} <= set(names)


def test_a_login_in_the_repository_url_reaches_twine_outside_its_argv(
    churn_project: Project,
    run,
    package_index: str,
    mongo_client: MongoClient[Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`--repository-url http://user:password@host/` uploads with that login, but twine is given the URL
    without it and the login as TWINE_USERNAME/TWINE_PASSWORD: any user of the machine can read a
    process's argv (ps, /proc/PID/cmdline), only its owner its environment. The password was in twine's
    argv; nor is it in the registry's record of where the version went."""
    monkeypatch.delenv("TWINE_USERNAME", raising=False)
    monkeypatch.delenv("TWINE_PASSWORD", raising=False)
    assert run("build", churn_project.path, "--version", "0.0.2", "-q").code == 0
    (tmp_path / "recorder").mkdir()
    (tmp_path / "recorder" / "sitecustomize.py").write_text(
        "import os, sys\n"
        "with open(os.environ['ARGV_RECORD'], 'a', encoding='utf-8') as log:\n"
        "    log.write(repr(sys.orig_argv) + '\\n')\n",
        encoding="utf-8",
    )
    record = tmp_path / "argv.log"
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "recorder"))
    monkeypatch.setenv("ARGV_RECORD", str(record))
    host = package_index.removeprefix("http://")
    login = f"http://{USER}:{urllib.parse.quote(PASSWORD)}@{host}/"
    result = run("publish", churn_project.path, "--version", "0.0.2", "--repository-url", login)
    assert result.code == 0, result.err  # the index accepted the login
    (twine,) = [line for line in record.read_text(encoding="utf-8").splitlines() if "twine" in line]
    assert f"'{package_index}/'" in twine
    assert "correct" not in twine and USER not in twine
    found = mongo_client[churn_project.database]["mlpack_models"].find_one({"version": "0.0.2"})
    assert "correct" not in json.dumps(found["published"], default=str)
    # A wrong password in the URL is the index refusing the credentials, exit 3.
    wrong = f"http://{USER}:nope@{host}/"
    assert run("build", churn_project.path, "--version", "0.0.3", "-q").code == 0
    refused = run("publish", churn_project.path, "--version", "0.0.3", "--repository-url", wrong)
    assert_clean_error(refused, 3, "refused the credentials")


def test_publish_uploads_checked_files_and_marks_the_registry(
    churn_project: Project, run, package_index: str, credentials: None, mongo_client: MongoClient[Any], tmp_path: Path
) -> None:
    assert run("build", churn_project.path, "-q").code == 0
    result = run("publish", churn_project.path, "--repository-url", f"{package_index}/", "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["version"] == "1.0.0" and summary["registry_checked"] is True
    record = mongo_client[churn_project.database]["mlpack_models"].find_one({"name": "churn-model"})
    assert record["status"] == "published" and record["published"]["repository"] == f"{package_index}/"

    # A user installs it from the index.
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            target,
            "--index-url",
            f"{package_index}/simple/",
            "churn-model==1.0.0",
        ],
        check=True,
        timeout=300,
    )
    assert (target / "churn_model" / "model.onnx").read_bytes() == (
        churn_project.path / "dist" / "churn-model-1.0.0.onnx"
    ).read_bytes()

    # The same version again: the registry knows it went out, and says where.
    again = run("publish", churn_project.path, "--repository-url", f"{package_index}/")
    assert_clean_error(again, 2, "churn-model 1.0.0 was already published to http://127.0.0.1")
    # Were the registry to forget, the index itself refuses the duplicate.
    mongo_client[churn_project.database]["mlpack_models"].update_one(
        {"name": "churn-model"}, {"$set": {"status": "built"}}
    )
    refused = run("publish", churn_project.path, "--repository-url", f"{package_index}/")
    assert_clean_error(refused, 3, "rejected the upload (400 Bad Request")


def test_publish_to_a_repository_named_in_pypirc(
    churn_project: Project, run, package_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".pypirc").write_text(
        f"[distutils]\nindex-servers = local\n\n[local]\nrepository = {package_index}/\n"
        f"username = {USER}\npassword = {PASSWORD}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("HOME", str(home))
    churn_project.edit('version = "1.0.0"', 'version = "5.0.0"')
    assert run("build", churn_project.path, "-q").code == 0
    result = run("publish", churn_project.path, "--repository", "local")
    assert result.code == 0, result.err
    assert "published churn-model 5.0.0 to local" in result.out
    assert_clean_error(run("publish", churn_project.path, "--repository", "local"), 2, "was already published")
    churn_project.edit('version = "5.0.0"', 'version = "6.0.0"')
    assert run("build", churn_project.path, "-q").code == 0
    assert_clean_error(
        run("publish", churn_project.path, "--repository", "nowhere"),
        2,
        "repository 'nowhere' is not configured in ~/.pypirc",
    )


def test_publish_refuses_files_the_registry_does_not_vouch_for(
    churn_project: Project, run, package_index: str, credentials: None, mongo_client: MongoClient[Any]
) -> None:
    churn_project.edit('version = "1.0.0"', 'version = "2.0.0"')
    assert run("build", churn_project.path, "-q").code == 0
    registry = mongo_client[churn_project.database]["mlpack_models"]
    registry.update_one({"version": "2.0.0"}, {"$set": {"artifacts.wheel.sha256": "0" * 64}})
    result = run("publish", churn_project.path, "--repository-url", f"{package_index}/")
    assert_clean_error(result, 2, "differs from the build recorded in the registry")
    assert registry.find_one({"version": "2.0.0"})["status"] == "built"


def test_publish_refuses_a_tampered_wheel(churn_project: Project, run, package_index: str, credentials: None) -> None:
    churn_project.edit('version = "1.0.0"', 'version = "3.0.0"')
    assert run("build", churn_project.path, "-q").code == 0
    wheel = churn_project.path / "dist" / "churn_model-3.0.0-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    assert_clean_error(
        run("publish", churn_project.path, "--repository-url", f"{package_index}/"),
        2,
        "does not match its build report",
    )


def test_publish_before_build_is_a_usage_error(churn_project: Project, run, package_index: str) -> None:
    assert_clean_error(
        run("publish", churn_project.path, "--repository-url", f"{package_index}/"), 2, "run `mlpack build` first"
    )


def test_wrong_credentials_and_unreachable_index_exit_3(
    churn_project: Project, run, package_index: str, monkeypatch: pytest.MonkeyPatch, mongo_client: MongoClient[Any]
) -> None:
    churn_project.edit('version = "1.0.0"', 'version = "4.0.0"')
    assert run("build", churn_project.path, "-q").code == 0
    monkeypatch.setenv("TWINE_USERNAME", USER)
    monkeypatch.setenv("TWINE_PASSWORD", "wrong")
    refused = run("publish", churn_project.path, "--repository-url", f"{package_index}/")
    assert_clean_error(refused, 3, "refused the credentials")
    assert "wrong" not in refused.err
    unreachable = run("publish", churn_project.path, "--repository-url", f"http://127.0.0.1:{free_port()}/")
    assert_clean_error(unreachable, 3, "is unreachable")
    assert mongo_client[churn_project.database]["mlpack_models"].find_one({"version": "4.0.0"})["status"] == "built"


def test_models_names_an_unknown_model(churn_project: Project, run) -> None:
    assert run("build", churn_project.path, "-q").code == 0
    assert_clean_error(
        run("models", "churn-modle", "--config", churn_project.path),
        2,
        "no model named 'churn-modle' in the registry (known: churn-model)",
    )


def test_models_and_experiments_list_the_projects_own_model_unless_asked_for_all(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    """A registry is often shared by several projects: a project's listing shows its own model."""
    assert run("build", churn_project.path, "-q").code == 0
    registry = mongo_client[churn_project.database]["mlpack_models"]
    neighbour = {**registry.find_one({"name": "churn-model"}, {"_id": 0}), "name": "fraud-model"}
    registry.insert_one(neighbour)
    own = json.loads(run("models", "--config", churn_project.path, "--json").out)
    assert [row["name"] for row in own] == ["churn-model"]
    every = json.loads(run("models", "--config", churn_project.path, "--all", "--json").out)
    assert sorted(row["name"] for row in every) == ["churn-model", "fraud-model"]
    assert json.loads(run("models", "fraud-model", "--config", churn_project.path, "--json").out)[0]["version"]
    assert_clean_error(run("models", "fraud-model", "--all", "--config", churn_project.path), 2, "--all lists every")

    trials = mongo_client[churn_project.database]["mlpack_experiments"]
    trials.insert_one(
        {
            "name": "fraud-model",
            "version": "1.0.0",
            "run": "r",
            "trial": 0,
            "status": "ok",
            "scoring": "accuracy",
            "params": {},
            "scores": {},
        }
    )
    assert json.loads(run("experiments", "--config", churn_project.path, "--json").out) == []  # no trials of its own
    listed = json.loads(run("experiments", "--config", churn_project.path, "--all", "--json").out)
    assert [row["name"] for row in listed] == ["fraud-model"]


def test_init_scaffolds_a_project_whose_own_tests_pass(tmp_path: Path, run) -> None:
    result = run("init", "fraud-score", "--directory", tmp_path)
    assert result.code == 0, result.err
    project = tmp_path / "fraud-score"
    for relative in [
        "mlpack.toml",
        "README.md",
        "pyproject.toml",
        "requirements.txt",
        "requirements_dev.txt",
        "init_setup.sh",
        ".github/workflows/build.yml",
        "src/fraud_score_project/__init__.py",
        "tests/test_model.py",
        "experiment/README.md",
        "data/sample.jsonl",
        ".gitignore",
    ]:
        assert (project / relative).is_file(), relative
    assert os.access(project / "init_setup.sh", os.X_OK)
    assert 'name = "fraud-score"' in (project / "mlpack.toml").read_text()
    assert "mongo:" in (project / ".github/workflows/build.yml").read_text()
    assert not list(tmp_path.glob(".*mlpack-init"))
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "1 passed" in tests.stdout


def test_init_refuses_to_overwrite_and_bad_names(tmp_path: Path, run) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert_clean_error(run("init", "taken", "--directory", tmp_path), 2, "already exists")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    assert_clean_error(run("init", "bad name!", "--directory", tmp_path), 2, "is not a valid package name")
    assert_clean_error(run("init", "9lives", "--directory", tmp_path), 2, "which Python cannot import")
    assert not (tmp_path / "9lives").exists()


def test_publish_with_a_throwaway_registry_checks_the_build_report(
    tmp_path: Path, run, package_index: str, credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded demo's registry dies with its build: digests are checked against the report instead."""
    from tests.helpers.cli import REPO

    monkeypatch.delenv("MONGODB_URI", raising=False)
    dist = tmp_path / "dist"
    assert run("build", REPO / "examples" / "wine", "--out", dist, "-q").code == 0
    result = run(
        "publish", REPO / "examples" / "wine", "--dist", dist, "--repository-url", f"{package_index}/", "--json"
    )
    assert result.code == 0, result.err
    assert json.loads(result.out)["registry_checked"] is False


def test_publish_auto_takes_this_folders_newest_build_not_another_folders(
    churn_project: Project, run, package_index: str, credentials: None, mongo_client: MongoClient[Any]
) -> None:
    """Two checkouts of one project share the registry: each has only its own builds in its dist/.
    `version = "auto"` publishes this folder's newest build the registry vouches for, not the
    registry's newest (built in the other folder, absent here)."""
    churn_project.edit('version = "1.0.0"', 'version = "7.0.0"')  # the index is the module's: its own version
    assert run("build", churn_project.path, "-q").code == 0
    churn_project.edit('version = "7.0.0"', 'version = "auto"')
    other = churn_project.path.parent / "other-checkout"
    other.mkdir()
    (other / "mlpack.toml").write_bytes(churn_project.config.read_bytes())
    assert run("build", other, "-q").code == 0  # 7.0.1, in the other folder only
    result = run("publish", churn_project.path, "--repository-url", f"{package_index}/", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["version"] == "7.0.0"
    registry = mongo_client[churn_project.database]["mlpack_models"]
    assert {r["version"]: r["status"] for r in registry.find()} == {"7.0.0": "published", "7.0.1": "built"}
    # A folder with none of the registry's builds says so, naming the folder.
    empty = churn_project.path.parent / "fresh-checkout"
    empty.mkdir()
    (empty / "mlpack.toml").write_bytes(churn_project.config.read_bytes())
    refused = run("publish", empty, "--repository-url", f"{package_index}/")
    assert_clean_error(refused, 2, f"none of the registry's builds of churn-model is in {empty / 'dist'}")
