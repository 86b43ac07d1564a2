"""MongoDB over TLS, end to end: every command against SecantusDB serving certificates of a CA made here.

One fixture starts the servers once for the module: the main one requires a client certificate and
x.509 authentication (`--auth`; the client certificate's subject is a `$external` user), one serves
an expired certificate, one a certificate for another host name. The commands run with a client key
that has a password; nothing they write, print, record or start may show that password or a key.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import json
import os
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from bson import json_util
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pymongo import MongoClient
from pymongo.errors import ServerSelectionTimeoutError

from mlpack.cli import main as cli_main
from mlpack.errors import Context, ExternalError, translate
from mlpack.runtime.serving.inference_log import InferenceLog
from mlpack.runtime.settings import ServeSettings, StartFailure
from mlpack.source.embedded import embedded_server
from tests.helpers.cli import Result
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess
from tests.helpers.projects import CHURN_CONFIG

PASSWORD = "s3cret&K3y=91"  # `&` and `=` must be percent-encoded in the URI; "s3cret" is what the greps look for
FAST = "serverSelectionTimeoutMS=400&connectTimeoutMS=400"  # a bad certificate fails at once; no need to wait
DATABASE = "mlpack_tls"
LOG_DATABASE = "mlpack_tls_log"
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


# -- certificates -------------------------------------------------------------------------------
def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mlpack tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey, password: str | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _certificate(
    subject: str,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name] | None,
    *,
    hosts: tuple[str, ...] = (),
    **kind: Any,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CA (no issuer), or a certificate it signs: for a server (`hosts`) or a client; `expired=True`."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer, issuer_name = issuer or (key, _name(subject))
    start, end = (NOW - 30 * DAY, NOW - DAY) if kind.get("expired") else (NOW - DAY, NOW + 30 * DAY)
    builder = x509.CertificateBuilder(
        issuer_name=issuer_name,
        subject_name=_name(subject),
        public_key=key.public_key(),
        serial_number=x509.random_serial_number(),
        not_valid_before=start,
        not_valid_after=end,
    ).add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    if hosts:
        names = [x509.IPAddress(ipaddress.ip_address(h)) if h[0].isdigit() else x509.DNSName(h) for h in hosts]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if issuer is not None:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if hosts else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return key, builder.sign(signer, hashes.SHA256())


def make_certificates(folder: Path) -> dict[str, Path]:
    """The files of every case: a CA and another, server certificates good, expired and for another
    host, client certificates (key + certificate in one file, as tlsCertificateKeyFile wants) plain,
    with a password, from the other CA, and expired."""
    ca_key, ca = _certificate("mlpack test CA", None)
    other_key, other = _certificate("another CA", None)
    by_ca, by_other = (ca_key, ca.subject), (other_key, other.subject)
    files: dict[str, bytes] = {
        "ca": ca.public_bytes(serialization.Encoding.PEM),
        "other-ca": other.public_bytes(serialization.Encoding.PEM),
    }
    for name, hosts, expired in [
        ("server", ("127.0.0.1", "localhost"), False),
        ("expired", ("127.0.0.1", "localhost"), True),
        ("wrong-host", ("db.example.com",), False),
    ]:
        key, cert = _certificate(name, by_ca, hosts=hosts, expired=expired)
        files[f"{name}.crt"], files[f"{name}.key"] = cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)
    key, cert = _certificate("mlpack-client", by_ca)
    files["client"] = _pem_key(key) + cert.public_bytes(serialization.Encoding.PEM)
    files["client-locked"] = _pem_key(key, PASSWORD) + cert.public_bytes(serialization.Encoding.PEM)
    for name, issuer, expired in [
        ("stranger", by_other, False),
        ("client-expired", by_ca, True),
        ("nobody", by_ca, False),
    ]:
        key, cert = _certificate(name, issuer, expired=expired)
        files[name] = _pem_key(key) + cert.public_bytes(serialization.Encoding.PEM)
    paths = {}
    for name, data in files.items():
        paths[name] = folder / (name if "." in name else f"{name}.pem")
        paths[name].write_bytes(data)
        paths[name].chmod(0o600)
    return paths


# -- the servers --------------------------------------------------------------------------------
@dataclass
class Tls:
    files: dict[str, Path]
    main: str  # mongodb://127.0.0.1:PORT/ of each server
    expired: str
    wrong_host: str
    outputs: list[str] = field(default_factory=list)  # everything the commands printed, for the secret grep
    spawned: list[str] = field(default_factory=list)  # the argv of every process started in this process

    def uri(self, server: str = "", *, ca: str = "ca", key: str | None = "client-locked", x509: bool = True) -> str:
        """A connection string to `server` (the main one by default): TLS, a CA, a client key, x.509."""
        options = [f"tls=true&tlsCAFile={self.files[ca]}"]
        if key:
            options.append(f"tlsCertificateKeyFile={self.files[key]}")
        if key == "client-locked":
            options.append(f"tlsCertificateKeyFilePassword={quote(PASSWORD, safe='')}")
        if x509 and key:
            options.append("authMechanism=MONGODB-X509&authSource=%24external")
        return f"{server or self.main}?{'&'.join(options)}"

    def client(self) -> MongoClient[dict[str, Any]]:
        return MongoClient(self.uri(key="client"), serverSelectionTimeoutMS=10_000)

    def cli(self, *argv: str | Path, uri: str | None = None) -> Result:
        """`mlpack ARGV` in this process, every connection-string variable set to `uri`."""
        names = ("MLPACK_TEST_URI", "MLPACK_INFERENCE_LOG_URI")
        saved = {name: os.environ.get(name) for name in (*names, "MLPACK_INFERENCE_LOG_DB")}
        os.environ.update(dict.fromkeys(names, uri or self.uri()), MLPACK_INFERENCE_LOG_DB=LOG_DATABASE)
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli_main([str(a) for a in argv])
        finally:
            for name, value in saved.items():
                os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        self.outputs += [out.getvalue(), err.getvalue()]
        return Result(code, out.getvalue(), err.getvalue())


_spawned: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _spawned is not None and event in ("subprocess.Popen", "os.exec", "os.posix_spawn"):
        _spawned.append(repr(args[1]))  # the argv (the environment is where the connection string belongs)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    """The three servers; the main one's x.509 user is made before it restarts with --auth."""
    global _spawned
    folder = tmp_path_factory.mktemp("tls")
    files = make_certificates(folder)
    serving = {
        name: ("--tls-cert-file", str(files[f"{name}.crt"]), "--tls-key-file", str(files[f"{name}.key"]))
        for name in ("server", "expired", "wrong-host")
    }
    main_args = (*serving["server"], "--tls-ca-file", str(files["ca"]), "--tls-require-client-cert")
    with embedded_server(str(folder / "data"), extra_args=main_args) as uri:
        client: MongoClient[dict[str, Any]]
        with MongoClient(Tls(files, uri, "", "").uri(key="client", x509=False)) as client:
            subject, roles = "CN=mlpack-client,O=mlpack tests", [{"role": "root", "db": "admin"}]
            client["$external"].command({"createUser": subject, "mechanisms": ["MONGODB-X509"], "roles": roles})
    stacks = [contextlib.ExitStack() for _ in range(3)]
    try:
        servers = [
            stack.enter_context(embedded_server(storage, extra_args=args))
            for stack, (storage, args) in zip(
                stacks,
                [
                    (str(folder / "data"), (*main_args, "--auth")),
                    (":memory:", serving["expired"]),
                    (":memory:", serving["wrong-host"]),
                ],
            )
        ]
        _spawned = (found := Tls(files, servers[0], servers[1], servers[2])).spawned
        sys.addaudithook(_audit)  # hooks stay for the process: it records only while _spawned is set
        yield found
    finally:
        _spawned = None
        # Side by side: a SecantusDB that has seen failed handshakes takes ~2 s to stop.
        stopping = [threading.Thread(target=stack.close) for stack in stacks]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()


@dataclass
class Built:
    project: Path
    build: Result
    models: Result
    experiments: Result
    score: Result


@pytest.fixture(scope="module")
def built(tls: Tls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """The churn project built, listed and scored over TLS with x.509 and the password-protected key."""
    with tls.client() as client:
        client.drop_database(DATABASE)
        client[DATABASE]["customers"].insert_many(subscribers(240))
    project = tmp_path_factory.mktemp("tls-project")
    config = CHURN_CONFIG.format(database=DATABASE).replace("seed = 0", "seed = 0\ncv = 2")  # a logged trial
    (project / "mlpack.toml").write_text(config, encoding="utf-8")
    yield Built(
        project,
        tls.cli("build", project),
        tls.cli("models", "--config", project, "--json"),
        tls.cli("experiments", "churn-model", "--config", project, "--json"),
        tls.cli("score", project, "--into", "scores", "--json"),
    )
    with tls.client() as client:
        client.drop_database(DATABASE)


def test_build_models_experiments_and_score_over_tls_with_x509(tls: Tls, built: Built) -> None:
    assert built.build.code == 0, built.build.err
    assert built.build.out.startswith("built churn-model 1.0.0")
    assert built.models.code == 0, built.models.err
    assert [(row["name"], row["version"]) for row in json.loads(built.models.out)] == [("churn-model", "1.0.0")]
    assert built.experiments.code == 0, built.experiments.err
    assert [trial["kind"] for trial in json.loads(built.experiments.out)] == ["cv"]
    assert built.score.code == 0, built.score.err
    assert json.loads(built.score.out)["written"] == 240
    with tls.client() as client:
        assert client[DATABASE]["scores"].count_documents({}) == 240
        assert client[DATABASE]["mlpack_models"].count_documents({"name": "churn-model"}) == 1
    # The plain client key (no password) works as well, with x.509 and without (the main server has --auth).
    assert tls.cli("models", "--config", built.project, uri=tls.uri(key="client")).code == 0
    refused = tls.cli("models", "--config", built.project, uri=tls.uri(key="client", x509=False))
    assert refused.code == 3 and "did not allow" in refused.err, refused.err


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


@dataclass
class Served:
    answered: int
    logged: int
    argv: list[str]  # of the server and its workers, read while they ran
    output: str
    monitor: Result


@pytest.fixture(scope="module")
def served(tls: Tls, built: Built) -> Iterator[Served]:
    """`mlpack serve` (two workers) writing its inference log over TLS; then `mlpack monitor` reads it."""
    with tls.client() as client:
        client.drop_database(LOG_DATABASE)
    wheel = built.project / "dist" / "churn_model-1.0.0-py3-none-any.whl"
    env = {"MLPACK_INFERENCE_LOG_URI": tls.uri(), "MLPACK_INFERENCE_LOG_DB": LOG_DATABASE}
    server = ServerProcess.mlpack(wheel, "--workers", "2", env=env)
    try:
        answered = sum(server.request("POST", "/predict", record).status == 200 for record in subscribers(60, seed=5))
        argv = [
            Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace") for pid in _process_tree(server.proc.pid)
        ]
    finally:
        assert server.stop() == 0  # SIGTERM flushes the log
    with tls.client() as client:
        logged = client[LOG_DATABASE]["inference_log"].count_documents({})
    monitor = tls.cli("monitor", built.project, "--since", "1h", "--json")
    yield Served(answered, logged, argv, server.output(), monitor)
    with tls.client() as client:
        client.drop_database(LOG_DATABASE)


def test_the_served_models_inference_log_and_monitor_over_tls(served: Served) -> None:
    assert served.answered == served.logged == 60, served.output
    assert len(served.argv) >= 2, served.argv  # the server and its second worker, forked
    assert served.monitor.code in (0, 1), served.monitor.err  # 1: drift found; either way the log was read
    assert json.loads(served.monitor.out)["records"] == 60


def test_the_served_model_names_a_bad_key_at_start_and_a_bad_certificate_in_its_log(
    tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    """A key that does not open stops `serve` with one line (no passphrase prompt, no traceback); a
    server certificate the CA does not vouch for costs only the log, whose warning names it. In this
    process: what `serve` runs at start in each worker, without the seconds a server takes to start."""
    model = SimpleNamespace(name="churn-model", version="1.0.0", metadata={"serve": {}})
    for uri, needle in [
        (
            tls.uri().replace("Password=", "Password=x"),
            "its client key does not open: a wrong tlsCertificateKeyFilePassword",
        ),
        (
            tls.uri().split("&tlsCertificateKeyFilePassword")[0],
            "tlsCertificateKeyFile is encrypted: add tlsCertificateKeyFilePassword",
        ),
    ]:
        where = ServeSettings.read({}, {}, {"MLPACK_INFERENCE_LOG_URI": uri}).inference_log
        assert where is not None
        with pytest.raises(StartFailure) as stopped:
            InferenceLog.connect(model, where, lambda **_: None)
        assert needle in str(stopped.value) and "s3cret" not in str(stopped.value), stopped.value
    counts: list[dict[str, Any]] = []
    log = InferenceLog(tls.uri(ca="other-ca"), LOG_DATABASE, "refused", lambda **n: counts.append(n), retry_delays=())
    log.record(model, "/predict", subscribers(1)[0], ["stayed"], "one")
    with caplog.at_level("WARNING", logger="mlpack.server"):
        log.close()  # one attempt: the 2 s server selection
    assert {"dropped": 1, "reason": "unreachable"} in counts
    (warning,) = [r.getMessage() for r in caplog.records if "inference log: dropped 1 records" in r.getMessage()]
    assert "certificate verify failed: self-signed certificate in certificate chain" in warning, warning


def test_spark_scoring_tasks_connect_over_tls(tls: Tls, built: Built, spark: Any) -> None:
    result = tls.cli("score", built.project, "--into", "spark_scores", "--engine", "spark", "--json")
    assert result.code == 0, result.err
    with tls.client() as client:
        assert client[DATABASE]["spark_scores"].count_documents({}) == 240


# -- bad certificates ----------------------------------------------------------------------------
# Each is exit 3 with one line naming the certificate at fault, from every command that connects.
BAD = {
    "wrong CA": (
        lambda t: t.uri(ca="other-ca"),
        "the server's TLS certificate is not signed by the CA in tlsCAFile",
    ),
    "expired server certificate": (
        lambda t: t.uri(t.expired, key=None),
        "the server's TLS certificate has expired (certificate has expired)",
    ),
    "hostname mismatch": (
        lambda t: t.uri(t.wrong_host, key=None),
        "the server's TLS certificate is for another host name (IP address mismatch, certificate is not valid for",
    ),
    "missing client certificate": (
        lambda t: t.uri(key=None),
        "requires a TLS client certificate, and the connection string names none: set tlsCertificateKeyFile",
    ),
    "client certificate of another CA": (
        lambda t: t.uri(key="stranger"),
        "refused the client certificate in tlsCertificateKeyFile /",
    ),
    "expired client certificate": (
        lambda t: t.uri(key="client-expired"),
        "client-expired.pem: ",  # "it has expired", or the server closed before its alert was read
    ),
}
COMMANDS = {
    "build": lambda project: ["build", project],
    "models": lambda project: ["models", "--config", project],
    "experiments": lambda project: ["experiments", "--config", project],
    "score": lambda project: ["score", project, "--into", "never"],
    "monitor": lambda project: ["monitor", project, "--since", "1h"],
}


# The four cases of the issue from every command; the client certificates' own, from one (the same connect()).
MATRIX = [(case, command) for case in list(BAD)[:4] for command in COMMANDS] + [
    (case, "models") for case in list(BAD)[4:]
]


@pytest.mark.parametrize(("case", "command"), MATRIX, ids=[f"{case}-{command}" for case, command in MATRIX])
def test_a_bad_certificate_is_exit_3_with_one_line_saying_which(
    tls: Tls, built: Built, case: str, command: str
) -> None:
    uri, needle = BAD[case]
    started = time.monotonic()
    result = tls.cli(*COMMANDS[command](built.project), uri=f"{uri(tls)}&{FAST}")
    assert result.code == 3, (result.code, result.out, result.err)
    assert result.err.count("\n") == 1 and result.err.startswith("error: MongoDB at mongodb://127.0.0.1:"), result.err
    assert needle in result.err, result.err
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        (
            lambda t: t.uri().replace("tlsCertificateKeyFilePassword=", "tlsCertificateKeyFilePassword=wrong"),
            "cannot be used: a wrong tlsCertificateKeyFilePassword",
        ),
        (  # OpenSSL would ask the terminal for the passphrase: a cron job would hang
            lambda t: t.uri().split("&tlsCertificateKeyFilePassword=")[0],
            "is encrypted: add tlsCertificateKeyFilePassword",
        ),
        (lambda t: t.uri().replace("ca.pem", "no-such-ca.pem"), "cannot be read (tlsCertificateKeyFile, tlsCAFile"),
    ],
    ids=["wrong key password", "no key password", "no CA file"],
)
def test_an_unusable_key_or_file_is_exit_2_naming_the_option(tls: Tls, built: Built, uri: Any, needle: str) -> None:
    result = tls.cli("models", "--config", built.project, uri=f"{uri(tls)}&{FAST}")
    assert result.code == 2 and result.err.count("\n") == 1 and needle in result.err, result.err


def test_a_plain_client_of_a_tls_server_and_a_certificate_of_no_user_are_exit_3(tls: Tls, built: Built) -> None:
    result = tls.cli("models", "--config", built.project, uri=f"{tls.main}?{FAST}")
    assert result.code == 3 and "if the server requires TLS, add tls=true" in result.err, result.err
    result = tls.cli("models", "--config", built.project, uri=f"{tls.uri(key='nobody')}&{FAST}")  # CN=nobody
    assert result.code == 3 and "refused the login for" in result.err and "authentication failed" in result.err


# -- secrets -------------------------------------------------------------------------------------
def _texts_in(folder: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under `folder`, and every member of the wheels, sdists and zips in it."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        yield str(path), path.read_bytes()
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                yield from ((f"{path}!{name}", archive.read(name)) for name in archive.namelist())
        elif path.name.endswith(".tar.gz"):
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield f"{path}!{member.name}", handle.read()


def test_no_key_or_password_in_an_artifact_a_log_a_registry_document_or_an_argv(
    tls: Tls, built: Built, served: Served
) -> None:
    key_lines = {  # the base64 of every private key made here, line by line
        line
        for path in tls.files.values()
        for block in path.read_text().split("PRIVATE KEY-----")[1::2]
        for line in block.splitlines()
        if len(line) > 16 and not line.startswith("-----")
    }
    secrets = {"s3cret", quote(PASSWORD, safe=""), *key_lines}
    places: list[tuple[str, bytes]] = list(_texts_in(built.project))
    assert any(name.endswith(".whl") for name, _ in places) and any(".tar.gz!" in name for name, _ in places)
    with tls.client() as client:
        for database in (DATABASE, LOG_DATABASE):
            for name in client[database].list_collection_names():
                if name != "customers":  # the training data, put there by the test
                    documents = list(client[database][name].find())
                    assert documents, name
                    places.append((f"{database}.{name}", json_util.dumps(documents).encode()))
    assert {"mlpack_tls.mlpack_models", "mlpack_tls.mlpack_experiments", "mlpack_tls_log.inference_log"} <= {
        name for name, _ in places
    }
    places += [("output", text.encode()) for text in [*tls.outputs, served.output]]
    places += [("argv of a process started by a command", argv.encode()) for argv in tls.spawned]
    places += [("argv of the server or a worker", argv.encode()) for argv in served.argv]
    assert tls.spawned, "the build starts processes (the wheel's build, twine): their argv is checked"
    leaks = [(where, secret) for where, data in places for secret in secrets if secret.encode() in data]
    assert not leaks, leaks[:5]
    assert any("tlsCertificateKeyFilePassword=***" in text for text in tls.outputs)  # shown, masked


@pytest.mark.parametrize(
    ("message", "uri", "says"),
    [  # what OpenSSL says in other versions and races than the live tests meet
        (
            "h:1: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)",
            "",
            "names none",
        ),
        (
            "h:1: [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:1006)",
            "K",
            "not signed by a CA the server",
        ),
        ("h:1: [SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired", "K", "K: it has expired"),
        ("h:1: certificate verify failed: unable to get local issuer certificate (_ssl.c:1006)", "", "machine trusts"),
        ("h:1: certificate verify failed: certificate is not yet valid (_ssl.c:1006)", "", "is not valid yet"),
        (
            "h:1: certificate verify failed: Hostname mismatch, certificate is not valid for 'h'.",
            "",
            "another host name",
        ),
    ],
)
def test_each_openssl_wording_names_its_certificate(message: str, uri: str, says: str) -> None:
    target = "mongodb://h:1/?tls=true" + ("&tlsCertificateKeyFile=K" if uri else "")
    error = translate(ServerSelectionTimeoutError(f"{message}, Timeout: 1s"), Context("MongoDB", target, "connecting"))
    assert isinstance(error, ExternalError) and says in error.message, error
