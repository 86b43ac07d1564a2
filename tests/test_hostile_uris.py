"""Connection strings from others (issue 13 item 6): no credential, whole or in part, ever leaves.

Every URI shape the audit printed in full or in part goes through every failure path (unreachable,
login refused, bad URI, the registry, publish), in the terminal and `--json` forms; the secret and
each of its pieces must be absent from stdout, stderr and every file the command left behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mlpack.redaction import display_uri, forget_all, redact, remember_uri, uri_secrets
from mlpack.source.embedded import embedded_server, free_port
from tests.helpers.cli import Result, assert_clean_error, build_before_imports, run_process
from tests.helpers.documents import subscribers

FAST = "serverSelectionTimeoutMS=400&connectTimeoutMS=400"


@pytest.fixture(scope="module")
def auth_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a server with SCRAM-SHA-256 logins on (user created first, then --auth)."""
    storage = tmp_path_factory.mktemp("auth-db")
    with embedded_server(str(storage)) as uri:
        client: MongoClient[dict[str, Any]] = MongoClient(uri)
        client.admin.command("createUser", "alice", pwd="s3cret", roles=["root"])
        client["crm"]["customers"].insert_many(subscribers(40))
        client.close()
    with embedded_server(str(storage), extra_args=("--auth",)) as uri:
        yield uri.removeprefix("mongodb://").rstrip("/")


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    """Each case proves its own redaction: nothing remembered from an earlier case helps it."""
    forget_all()
    yield
    forget_all()


# (case id, URI with {host} for an address, the secret texts that must never be shown, expected exits)
# The host is a closed port (unreachable) or the auth server (login refused); the exit is 2 for a
# string mlpack refuses to use and 3 when the world refused it.
SHAPES = [
    ("plain", "mongodb://u:Pl41nS3cret@{host}/?" + FAST, ["Pl41nS3cret"]),
    ("slash-in-password", "mongodb://u:S3cr3t/P4ssw@{host}/?" + FAST, ["S3cr3t", "P4ssw"]),
    ("no-user", "mongodb://:Secr3tNoUser@{host}/?" + FAST, ["Secr3tNoUser"]),
    ("at-in-password", "mongodb://u:S3cr3tA@P4ssB@{host}/?" + FAST, ["S3cr3tA", "P4ssB"]),
    ("percent-encoded", "mongodb://u:p%40ssW0rdX@{host}/?" + FAST, ["p%40ssW0rdX", "p@ssW0rdX", "ssW0rdX"]),
    ("question-mark", "mongodb://u:qu3st?i0nPw@{host}/?" + FAST, ["qu3st", "i0nPw"]),
    (
        "tls-key-password",
        "mongodb://{host}/?tls=true&tlsCertificateKeyFile=/nonexistent/key.pem"
        "&tlsCertificateKeyFilePassword=TlsK3yPw&" + FAST,
        ["TlsK3yPw"],
    ),
    (
        "proxy-password",
        "mongodb://{host}/?proxyHost=127.0.0.1&proxyPort=1&proxyUsername=pr0xyUser&proxyPassword=Pr0xyPw&" + FAST,
        ["Pr0xyPw", "pr0xyUser"],
    ),
    ("srv", "mongodb+srv://u:SrvS3cret@cluster0.invalid/?" + FAST, ["SrvS3cret"]),
    ("wrong-password", "mongodb://alice:Wr0ngPw9@{auth}/?authMechanism=SCRAM-SHA-256&" + FAST, ["Wr0ngPw9"]),
    (
        "auth-mechanism-properties",
        "mongodb://{host}/?authMechanismProperties=AWS_SESSION_TOKEN:T0kenXyz&" + FAST,
        ["T0kenXyz"],
    ),
]

CONFIG = """
[model]
name = "uri-model"
version = "1.0.0"
task = "classification"
[source]
uri_env = "MLPACK_HOSTILE_URI"
database = "crm"
collection = "customers"
[features]
numeric = ["tenure_months", "support_calls"]
categorical = ["contract"]
target = "label"
[estimator]
class = "sklearn.linear_model.LogisticRegression"
"""


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "p"
    project.mkdir()
    (project / "mlpack.toml").write_text(CONFIG, encoding="utf-8")
    return project


def _leftovers(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


def _assert_hidden(result: Result, secrets: list[str], folder: Path) -> None:
    shown = result.out + result.err + _leftovers(folder)
    for secret in secrets:
        assert secret not in shown, (secret, result.out, result.err)
    assert "Traceback" not in shown


# Each path is a command that connects to MongoDB with the URI; publish also gets an index URL.
PATHS = {
    "build": lambda p: ["build", p, "--out", p / "dist"],
    "build --json": lambda p: ["build", p, "--out", p / "dist", "--json"],
    "models (registry)": lambda p: ["models", "--config", p],
    "models --json": lambda p: ["models", "--config", p, "--json"],
    "publish": lambda p: ["publish", p, "--version", "1.0.0", "--repository-url", "http://up:Ind3xPw@127.0.0.1:9/"],
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize(("case", "template", "secrets"), SHAPES, ids=[s[0] for s in SHAPES])
def test_no_secret_on_any_failure_path(
    case: str,
    template: str,
    secrets: list[str],
    path: str,
    auth_host: str,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = template.format(host=f"127.0.0.1:{free_port()}", auth=auth_host)
    monkeypatch.setenv("MLPACK_HOSTILE_URI", uri)
    project = _project(tmp_path)
    result = run(*PATHS[path](project))
    assert result.code in (2, 3), (result.code, result.out, result.err)
    assert "error:" in result.err
    _assert_hidden(result, [*secrets, "Ind3xPw"], tmp_path)
    if "--json" in path:
        assert json.loads(result.out)["exit_code"] == result.code
    if case == "wrong-password":
        assert_clean_error(result, 3, "authentication failed", "alice:***@")
    if case == "tls-key-password":
        assert_clean_error(result, 2, "tlsCertificateKeyFile")


def test_a_real_process_hides_them_too(tmp_path: Path) -> None:
    """The console program as a user runs it: warnings and errors from pymongo go through redaction."""
    project = _project(tmp_path)
    for _case, template, secrets in SHAPES[1:4]:  # each process pays the imports: three shapes suffice here
        if "{auth}" in template:
            continue
        uri = template.format(host=f"127.0.0.1:{free_port()}")
        result = run_process("build", project, "--json", env={"MLPACK_HOSTILE_URI": uri}, timeout=60)
        assert result.code in (2, 3), (result.code, result.err)
        _assert_hidden(result, secrets, tmp_path)


def test_publish_to_an_unreachable_index_hides_its_password(
    built_model: Any, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index URL is a credential-bearing URI too: twine's own output is redacted."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "mlpack.toml").write_text(
        CONFIG.replace('"uri-model"', '"test-model"') + "[registry]\nenabled = false\n", encoding="utf-8"
    )
    dist = built_model.artifacts["wheel"].parent
    url = f"http://uploader:Ind3xS3cret@127.0.0.1:{free_port()}/"
    result = run("publish", project, "--dist", dist, "--repository-url", url, "--json")
    assert_clean_error(result, 3, "http://uploader:***@127.0.0.1")
    _assert_hidden(result, ["Ind3xS3cret"], tmp_path)


# Values that are no MongoDB connection string: pymongo takes text without a scheme for a host name
# and waits out its server selection (~10 s, then exit 3, "notauri:27017 ... Name or service not
# known"). Each is said at once, named by its variable and never quoted (it may be a credential).
NOT_URIS = [
    ("bare-word", "notauri", "it has no scheme (a host alone is written mongodb://HOST:PORT)"),
    ("host-and-port", "127.0.0.1:9", "it has no scheme"),
    ("other-scheme", "postgres://u:N0tM0ng0Pw@127.0.0.1:9/db", "it is a postgres:// URI"),
    ("upper-case", "MongoDB://127.0.0.1:9/", "its scheme MongoDB:// must be written in lower case"),
]
URI_COMMANDS = {
    "build": lambda p, _: ["build", p, "--out", p / "dist"],
    "models": lambda p, _: ["models", "--config", p, "--json"],
    "experiments": lambda p, _: ["experiments", "--config", p],
    "promote": lambda p, _: ["promote", "uri-model", "1.0.0", "--alias", "production", "--config", p],
    "publish": lambda p, _: ["publish", p, "--version", "1.0.0", "--repository-url", "http://127.0.0.1:9/"],
    "monitor": lambda p, model: ["monitor", p, "--model", model],  # the log looked for in the source's MongoDB
}


@pytest.mark.parametrize("command", list(URI_COMMANDS))
@pytest.mark.parametrize(("case", "value", "why"), NOT_URIS, ids=[c[0] for c in NOT_URIS])
def test_a_value_that_is_no_mongodb_uri_is_exit_2_at_once(
    case: str,
    value: str,
    why: str,
    command: str,
    built_model: Any,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLPACK_HOSTILE_URI", value)
    project = _project(tmp_path)
    started = time.monotonic()
    result = run(*URI_COMMANDS[command](project, built_model.artifacts["onnx"]))
    elapsed = time.monotonic() - started
    assert_clean_error(result, 2, "error: MLPACK_HOSTILE_URI is not a MongoDB connection string", why)
    assert elapsed < 5, elapsed  # no server selection was waited on
    assert value not in result.out + result.err and "N0tM0ng0Pw" not in result.out + result.err
    if command == "models":
        assert json.loads(result.out)["exit_code"] == 2


@pytest.mark.parametrize(("case", "template", "secrets"), SHAPES, ids=[s[0] for s in SHAPES])
def test_the_display_form_keeps_the_host_and_hides_the_rest(case: str, template: str, secrets: list[str]) -> None:
    uri = template.format(host="db.example:27017", auth="db.example:27017")
    shown = display_uri(uri)
    assert all(secret not in shown for secret in secrets), shown
    assert "db.example:27017" in shown or "cluster0.invalid" in shown
    assert uri_secrets(uri)
    remember_uri(uri)
    assert all(secret not in redact(f"pymongo said: {uri} / {secrets}") for secret in secrets)


def test_no_credentials_no_change() -> None:
    assert display_uri("mongodb://127.0.0.1:27017/crm?appname=x") == "mongodb://127.0.0.1:27017/crm?appname=x"
    assert display_uri("mongodb://alice@h/") == "mongodb://alice@h/"


def test_a_registry_password_is_hidden_from_the_moment_it_is_held() -> None:
    """Before any client uses it: a message about the registry login (or its config) never shows it."""
    from mlpack.artifacts.oci_remote import Credentials

    password = "reg-Pa55word-never-shown"
    assert password in redact(f"login failed for {password}")  # not a secret until something holds it
    held = Credentials("ci-bot", password)
    assert redact(f"login failed for {held.password}") == "login failed for ***"
    assert password not in repr(held)


def test_build_answers_a_string_that_is_no_uri_before_its_imports(tmp_path: Path) -> None:
    """`mlpack build` with MONGODB_URI=notauri: one line at once, not after the seconds scikit-learn,
    skl2onnx and pymongo take to import (a fresh process, as a user runs it), for [source.feedback] too."""
    project = _project(tmp_path)
    for extra, variables in (
        ("", {"MLPACK_HOSTILE_URI": "notauri"}),
        (
            '[source.feedback]\nuri_env = "MLPACK_HOSTILE_LOG_URI"\n',
            {"MLPACK_HOSTILE_URI": "mongodb://127.0.0.1:9/", "MLPACK_HOSTILE_LOG_URI": "notauri"},
        ),
    ):
        (project / "mlpack.toml").write_text(CONFIG + extra, encoding="utf-8")
        out, err = build_before_imports(project, variables)
        named = [name for name, value in variables.items() if value == "notauri"][0]
        assert err.startswith(f"error: {named} is not a MongoDB connection string"), err
        assert out == "2 []", out + err
