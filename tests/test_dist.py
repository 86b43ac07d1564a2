"""`BuildDir`, the one reader of dist/: versions, "auto", reports and artifacts checked by sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlpack.artifacts.dist import BuildDir
from mlpack.errors import ConfigError


def _build(folder: Path, name: str, version: str, wheel: bytes = b"wheel bytes") -> None:
    stem = name.replace("-", "_")
    wheel_file = folder / f"{stem}-{version}-py3-none-any.whl"
    wheel_file.write_bytes(wheel)
    artifacts = {"wheel": {"file": wheel_file.name, "sha256": hashlib.sha256(wheel).hexdigest()}}
    report = {"name": name, "version": version, "artifacts": artifacts}
    (folder / f"{name}-{version}.json").write_text(json.dumps(report), encoding="utf-8")


def test_versions_are_the_reports_own_and_auto_is_the_newest_by_pep_440(tmp_path: Path) -> None:
    for version in ("1.0.9", "1.0.10", "1.0.2"):
        _build(tmp_path, "churn", version)
    _build(tmp_path, "churn-extra", "7.0.0")  # another model whose name starts the same way
    (tmp_path / "churn-9.9.9.json").write_text("{not json", encoding="utf-8")  # not a report
    builds = BuildDir(tmp_path, "churn")
    assert builds.versions() == ["1.0.2", "1.0.9", "1.0.10"]
    assert builds.resolve("auto") == "1.0.10"  # not "1.0.9", as text order would say
    assert builds.wheel("auto").name == "churn-1.0.10-py3-none-any.whl"


def test_a_changed_wheel_and_a_report_of_another_build_are_refused(tmp_path: Path) -> None:
    _build(tmp_path, "churn", "1.0.0")
    builds = BuildDir(tmp_path, "churn")
    assert builds.verified("1.0.0", "wheel").is_file()
    (tmp_path / "churn-1.0.0-py3-none-any.whl").write_bytes(b"tampered")
    with pytest.raises(ConfigError, match="does not match its build report churn-1.0.0.json"):
        builds.wheel("1.0.0")
    _build(tmp_path, "churn", "2.0.0")
    (tmp_path / "churn-2.0.0.json").rename(tmp_path / "churn-3.0.0.json")  # a report under another name
    with pytest.raises(ConfigError, match="is the report of churn 2.0.0, not of churn 3.0.0"):
        builds.report("3.0.0")


def test_nothing_built_says_what_to_do(tmp_path: Path) -> None:
    builds = BuildDir(tmp_path, "churn")
    with pytest.raises(ConfigError, match='version "auto" needs one'):
        builds.resolve("auto")
    with pytest.raises(ConfigError, match="no built wheel of churn in"):
        builds.wheel("auto")
    with pytest.raises(ConfigError, match=r"no build of churn 1\.0\.0 .* run `mlpack build` first"):
        builds.report("1.0.0")


def test_a_wheel_no_report_vouches_for_is_not_handed_out(tmp_path: Path) -> None:
    """A build whose record the registry refused has its report withdrawn; its wheel stays in the folder."""
    _build(tmp_path, "churn", "1.0.0")
    (tmp_path / "churn-1.0.0.json").unlink()
    builds = BuildDir(tmp_path, "churn")
    assert (tmp_path / "churn-1.0.0-py3-none-any.whl").is_file()
    with pytest.raises(ConfigError, match=r"no build of churn 1\.0\.0 .*no churn-1\.0\.0\.json"):
        builds.wheel("1.0.0")
