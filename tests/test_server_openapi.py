"""Issue 24 item 4: the OpenAPI document matches what the server accepts and answers (schemathesis).

schemathesis sends what the document allows (each must be a 2xx) and what it forbids (each a 4xx),
and checks every answer's status, content type and body against the document: `--checks all`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlpack.build import BuildResult
from mlpack.source.embedded import embedded_server
from tests.helpers.http_client import ServerProcess

# A refusal for a body over the limits is 413, not 400/422: still a refusal, as the document says.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "405", "411", "413", "422"]
"""


def test_schemathesis_finds_no_failure_with_every_check(built_model: BuildResult, tmp_path: Path) -> None:
    pytest.importorskip("schemathesis")
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None
    (tmp_path / "schemathesis.toml").write_text(CONFIG, encoding="utf-8")
    with embedded_server() as log_uri:  # the inference log on, so that /feedback answers 202, not 501
        process = ServerProcess.mlpack(
            built_model.artifacts["wheel"], env={"MLPACK_INFERENCE_LOG_URI": log_uri, "MLPACK_INFERENCE_LOG_DB": "st"}
        )
        try:
            result = subprocess.run(
                [cli, "--config-file", str(tmp_path / "schemathesis.toml"), "run",
                 f"http://127.0.0.1:{process.port}/openapi.json", "--checks", "all", "--max-examples", "150",
                 "--seed", "24", "--no-color"],
                capture_output=True, text=True, timeout=600, cwd=tmp_path,
            )  # fmt: skip
        finally:
            assert process.stop() == 0
    summary = result.stdout[result.stdout.rfind("SUMMARY") :]
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No issues found" in summary or "0 failures" in summary or "passed" in summary, summary
    assert "Traceback" not in process.output()
