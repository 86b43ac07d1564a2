"""What a build leaves in --out (mlpack/outputs.py): every file in place, then the report, written once,
recording exactly the files that are there — also when a demanded image could not be built."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from mlpack import outputs
from mlpack.errors import ConfigError
from mlpack.exported import ExportedModel
from tests.helpers.documents import subscribers
from tests.helpers.training import config_for, export

ESTIMATOR = "sklearn.linear_model.LogisticRegression"


@pytest.fixture(scope="module")
def exported() -> ExportedModel:
    return export(config_for(ESTIMATOR, "classification"), subscribers(160))


def project(folder: Path, **sections: Any) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mlpack.toml").write_text("# outputs test\n", encoding="utf-8")
    config = config_for(ESTIMATOR, "classification", **sections)
    return dataclasses.replace(config, path=folder / "mlpack.toml", project_dir=folder)


def count_report_writes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    written: list[Path] = []
    real = outputs.write_report

    def counting(path: Path, report: Any) -> None:
        written.append(path)
        real(path, report)

    monkeypatch.setattr(outputs, "write_report", counting)
    return written


def assert_report_vouches_for_the_folder(out: Path, stem: str) -> dict[str, Any]:
    """Every file the report records is there with that sha256, and nothing is left half-written."""
    report = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
    for kind, entry in report["artifacts"].items():
        path = out / entry["file"]
        assert path.exists(), kind
        if "sha256" in entry:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], kind
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "a scratch folder was left behind"
    return report


def test_the_report_is_written_once_after_the_attestations(
    exported: ExportedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("cyclonedx")
    written = count_report_writes(monkeypatch)
    config = project(tmp_path)
    result = outputs.write_artifacts(config, exported, tmp_path / "dist", attest_build=True)
    assert result.failure is None
    assert written == [tmp_path / "dist" / "test-model-1.0.0.json"]
    report = assert_report_vouches_for_the_folder(tmp_path / "dist", "test-model-1.0.0")
    assert {"wheel", "sdist", "onnx", "card", "sbom", "provenance"} <= set(report["artifacts"])
    assert set(report["timings"]["stages"]) >= {"card", "package"}
    assert report == result.report


def test_a_demanded_image_that_fails_leaves_the_rest_reported_without_it(
    exported: ExportedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = count_report_writes(monkeypatch)
    config = project(tmp_path, image={"base": "docker-archive:missing.tar"})
    result = outputs.write_artifacts(config, exported, tmp_path / "dist", image="required")
    assert isinstance(result.failure, ConfigError) and "missing.tar does not exist" in result.failure.message
    assert len(written) == 1
    report = assert_report_vouches_for_the_folder(tmp_path / "dist", "test-model-1.0.0")
    assert "image" not in report and "docker" in report["artifacts"]  # the context, for a `docker build` by hand
    assert (tmp_path / "dist" / "test-model-1.0.0.docker" / "Dockerfile").is_file()


def test_an_earlier_report_of_the_version_never_vouches_for_new_files(
    exported: ExportedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild of the same version stopped between its files and its report leaves no report that
    records the old card's sha256 beside the new card."""
    config = project(tmp_path)
    out = tmp_path / "dist"
    outputs.write_artifacts(config, exported, out)
    report = out / "test-model-1.0.0.json"
    assert report.is_file()

    def interrupted(_path: Path, _report: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "write_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        outputs.write_artifacts(config, exported, out, force=True)
    assert not report.exists()
    assert (out / "test-model-1.0.0.onnx").is_file()
