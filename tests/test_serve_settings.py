"""The server's settings (runtime/settings.py): read once, flag > MLPACK_* > [serve] > default, and
every bad value one line naming the setting, exit code 2, no traceback, from mlpack and the wheel alike."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mlpack.build import BuildResult
from mlpack.runtime.serving.log_connection import why_unusable
from mlpack.runtime.settings import DEFAULT_DRIFT_WINDOW, Limits, ServeSettings, SettingsError, StartFailure
from tests.helpers.cli import Result, run_process

# (variable, value, the one line the server prints): one for each kind of check.
BAD_VARIABLES = [
    ("MLPACK_DRIFT_WINDOW", "abc", "MLPACK_DRIFT_WINDOW must be 0 (off) or a positive int, got 'abc'"),
    ("MLPACK_DRIFT_WINDOW", "-1", "MLPACK_DRIFT_WINDOW must be 0 (off) or a positive int, got '-1'"),
    ("MLPACK_MAX_RECORDS", "2.5", "MLPACK_MAX_RECORDS must be a positive int, got '2.5'"),
    ("MLPACK_MAX_BODY_BYTES", "10MB", "MLPACK_MAX_BODY_BYTES must be a positive int, got '10MB'"),
    ("MLPACK_IDLE_TIMEOUT", "nan", "MLPACK_IDLE_TIMEOUT must be a positive float, got 'nan'"),
    ("MLPACK_WRITE_TIMEOUT", "-1", "MLPACK_WRITE_TIMEOUT must be a positive float, got '-1'"),
    ("MLPACK_PORT", "http", "MLPACK_PORT must be a port number (0-65535), got 'http'"),
    ("MLPACK_PORT", "70000", "MLPACK_PORT must be a port number (0-65535), got '70000'"),
    ("MLPACK_WORKERS", "0", "MLPACK_WORKERS must be a positive int, got '0'"),
    ("MLPACK_HOST", "a b", "MLPACK_HOST must be a host name or address, got 'a b'"),
    ("MLPACK_THREADS", "many", "MLPACK_THREADS must be a positive int, got 'many'"),
]


@pytest.mark.parametrize(("variable", "value", "message"), BAD_VARIABLES, ids=[f"{v}={x}" for v, x, _ in BAD_VARIABLES])
def test_a_bad_variable_is_a_settings_error_naming_it(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        ServeSettings.read({}, {}, {variable: value})
    assert str(refused.value) == message and refused.value.exit_code == 2


def test_the_inference_log_location_is_checked_before_the_server_starts() -> None:
    uri = {"MLPACK_INFERENCE_LOG_URI": "mongodb://user:secret@db.example/"}
    for extra, message in (
        ({"MLPACK_INFERENCE_LOG_DB": "a/b"}, "MLPACK_INFERENCE_LOG_DB must not hold"),
        ({"MLPACK_INFERENCE_LOG_COLLECTION": "system.users"}, "must not start with system."),
        ({"MLPACK_INFERENCE_LOG_COLLECTION": "a$b"}, "MLPACK_INFERENCE_LOG_COLLECTION must be a non-empty name"),
    ):
        with pytest.raises(SettingsError, match=message):
            ServeSettings.read({}, {}, {**uri, **extra})
    settings = ServeSettings.read({"inference_log_database": "logs"}, {}, uri)
    assert settings.inference_log is not None and settings.inference_log.database == "logs"
    assert "secret" not in repr(settings)  # the connection string never shows in a repr or a log line
    # [serve] names its own variable; the default one is the fallback.
    named = ServeSettings.read({"inference_log_uri_env": "LOG_URI"}, {}, {"LOG_URI": "mongodb://h/"})
    assert named.inference_log is not None and named.inference_log.uri_env == "LOG_URI"
    missing = ServeSettings.read({"inference_log": True, "inference_log_uri_env": "LOG_URI"}, {}, {})
    assert missing.inference_log is None and missing.inference_log_missing == "LOG_URI"  # a warning, not a failure
    # A value that is no MongoDB URI is refused before the server starts, named by the variable that held
    # it and never quoted (pymongo would take "notauri" for a host name and retry it for every request).
    for environ, variable in (
        ({"MLPACK_INFERENCE_LOG_URI": "notauri"}, "MLPACK_INFERENCE_LOG_URI"),
        ({"LOG_URI": "http://u:N0tShown@h/"}, "LOG_URI"),
        ({"LOG_URI": "", "MLPACK_INFERENCE_LOG_URI": "db.example:27017"}, "MLPACK_INFERENCE_LOG_URI"),
    ):
        with pytest.raises(SettingsError, match=f"^{variable} is not a MongoDB connection string") as refused:
            ServeSettings.read({"inference_log_uri_env": "LOG_URI"}, {}, environ)
        assert not any(value and value in str(refused.value) for value in environ.values())


def test_flag_then_variable_then_serve_then_default() -> None:
    serve = {"max_records": 30, "idle_timeout": 5, "drift_window": 40}
    env = {"MLPACK_MAX_RECORDS": "20", "MLPACK_PORT": "9000", "MLPACK_WORKERS": "", "MLPACK_THREADS": "1"}
    settings = ServeSettings.read(serve, {"max_records": 10, "host": "0.0.0.0"}, env)
    assert settings.limits.max_records == 10  # the flag
    assert settings.port == 9000 and settings.threads == 1  # the variables
    assert settings.limits.idle_timeout == 5.0 and settings.drift_window == 40  # [serve]
    assert settings.workers == 1  # an empty variable is unset: the default
    assert settings.host == "0.0.0.0" and settings.limits.write_timeout == Limits().write_timeout
    assert ServeSettings.read({}, {}, {}) == ServeSettings()
    assert ServeSettings().drift_window == DEFAULT_DRIFT_WINDOW
    # [serve] comes from a wheel's metadata, which can be crafted: its values are checked as strictly.
    for crafted, message in (
        ({"max_records": True}, "[serve].max_records must be a positive int, got True"),
        ({"max_body_bytes": "big"}, "[serve].max_body_bytes must be a positive int, got 'big'"),
        ({"inference_log_uri_env": 3}, "[serve].inference_log_uri_env must be a variable name, got 3"),
    ):
        with pytest.raises(SettingsError) as refused:
            ServeSettings.read(crafted, {}, {})
        assert str(refused.value) == message


# -- in a real process: `mlpack serve`, the wheel's own `python -m MODEL serve`, `mlpack predict` -----
@pytest.fixture(scope="module")
def unpacked(built_model: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model wheel as a folder on PYTHONPATH: its own `python -m test_model`, with no mlpack."""
    folder = tmp_path_factory.mktemp("wheel")
    with zipfile.ZipFile(built_model.artifacts["wheel"]) as wheel:
        wheel.extractall(folder)
    return folder


def one_line_exit_2(result: Result, message: str) -> None:
    assert result.code == 2, result
    assert "Traceback" not in result.out + result.err
    assert result.err.strip().splitlines() == [f"error: {message}"], result.err


@pytest.mark.parametrize(("variable", "value", "message"), [BAD_VARIABLES[i] for i in (0, 2, 4, 6, 8, 10)])
def test_mlpack_serve_with_a_bad_variable_is_one_line_and_exit_2(
    built_model: BuildResult, variable: str, value: str, message: str
) -> None:
    port = () if variable == "MLPACK_PORT" else ("--port", "0")  # the flag would win over the variable
    result = run_process("serve", built_model.artifacts["wheel"], *port, env={variable: value}, timeout=60)
    one_line_exit_2(result, message)


@pytest.mark.parametrize(("variable", "value", "message"), [BAD_VARIABLES[i] for i in (1, 5, 7, 10)])
def test_the_wheels_own_server_with_a_bad_variable_is_one_line_and_exit_2(
    unpacked: Path, variable: str, value: str, message: str
) -> None:
    port = () if variable == "MLPACK_PORT" else ("--port", "0")  # the flag would win over the variable
    proc = subprocess.run(
        [sys.executable, "-m", "test_model", "serve", *port],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=unpacked,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(unpacked), variable: value},
        check=False,
    )
    one_line_exit_2(Result(proc.returncode, proc.stdout, proc.stderr), message)


def test_a_bad_flag_and_a_port_in_use_are_one_line_and_exit_2(built_model: BuildResult) -> None:
    wheel = built_model.artifacts["wheel"]
    one_line_exit_2(
        run_process("serve", wheel, "--port", "0", "--drift-window", "-5", timeout=60),
        "--drift-window must be 0 (off) or a positive int, got -5",
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_process("serve", wheel, "--port", str(port), timeout=60)
    one_line_exit_2(result, f"cannot listen on 127.0.0.1:{port}: Address already in use")


def test_a_bad_variable_breaks_neither_help_nor_other_commands(built_model: BuildResult, tmp_path: Path) -> None:
    """The variables are read when serving, not when the command line is built."""
    env = {"MLPACK_PORT": "http", "MLPACK_WORKERS": "x"}
    assert run_process("serve", "--help", env=env, timeout=60).code == 0
    assert run_process("inspect", built_model.artifacts["wheel"], env=env, timeout=60).code == 0


def test_mlpack_predict_with_bad_threads_is_one_line_and_exit_2(built_model: BuildResult, tmp_path: Path) -> None:
    records = tmp_path / "in.jsonl"
    records.write_text('{"tenure_months": 3}\n', encoding="utf-8")
    result = run_process(
        "predict", built_model.artifacts["onnx"], "--input", records, env={"MLPACK_THREADS": "two"}, timeout=60
    )
    one_line_exit_2(result, "MLPACK_THREADS must be a positive int, got 'two'")


def test_a_start_failure_carries_its_line_and_serve_prints_it_once(
    built_model: BuildResult, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Made, a StartFailure says nothing (a caller may catch it); `mlpack serve` prints its one line."""
    failure = StartFailure("inference log: nothing to use")
    assert (str(failure), failure.exit_code) == ("inference log: nothing to use", 2)
    assert capsys.readouterr() == ("", "")
    uri = f"mongodb://127.0.0.1:1/?tls=true&tlsCAFile={tmp_path / 'no-such-ca.pem'}"
    result = run_process("serve", built_model.artifacts["wheel"], "--port", "0", env={"MLPACK_INFERENCE_LOG_URI": uri})
    assert result.code == 2 and "Traceback" not in result.err, result
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error: inference log: the connection string in MLPACK_INFERENCE_LOG_URI cannot be used")
    assert line.endswith("(The tlscafile file is not readable: it does not exist)"), line


def test_a_tls_file_the_server_may_not_read_names_the_user_it_runs_as() -> None:
    """In the image the server runs as uid 65532, and a key file mounted readable by root only was "a file
    it names cannot be read (The tlscertificatekeyfile file is not readable)": nothing said whose reading
    failed. pymongo keeps the errno and drops the path (as root, the suite cannot be refused a file)."""
    refused = PermissionError(errno.EACCES, "The tlscertificatekeyfile file is not readable")
    assert why_unusable(refused) == (
        "a file it names cannot be read (The tlscertificatekeyfile file is not readable: "
        f"permission denied to uid {os.geteuid()}, the user this server runs as)"
    )
