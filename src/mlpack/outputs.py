"""What a build leaves in `--out`: card, wheel, sdist, `.onnx`, image, attestations, and the report last.

Every file is written under a hidden scratch folder inside `--out` (same file system) and renamed into
place only once it is whole. The build report, `NAME-VERSION.json`, is written once, after every other
file of the build is in place, from what each step returned: a report on disk means a finished build
(artifacts/dist.py reads builds by their reports). A demanded image that cannot be built leaves the
rest of the build in place, reported without an image, so its context can still be `docker build`-ed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from mlpack import card, library_warnings
from mlpack.artifacts import attest
from mlpack.artifacts.dist import ArtifactRecord, BuildDir, BuildReport, sha256_of, write_report
from mlpack.artifacts.image import git_revision, write_context
from mlpack.artifacts.image_step import make_image
from mlpack.artifacts.wheel import build_distributions, render_project, twine_check
from mlpack.config import Config
from mlpack.errors import ConfigError, MlpackError
from mlpack.exported import ExportedModel
from mlpack.runtime import Metadata
from mlpack.times import epoch_of
from mlpack.timings import StageClock

Progress = Callable[[str], None]
# "none": wheel, sdist, .onnx and card; "context": and the image's build context; "wanted": and the
# image where its base (or engine) answers; "required": the image or the build fails (exit 4).
ImageMode = Literal["none", "context", "wanted", "required"]


def _silent(_message: str) -> None:
    pass


@dataclass
class BuildResult:
    metadata: Metadata
    artifacts: dict[str, Path] = field(default_factory=dict)  # kind ("wheel", "onnx"...) → final path
    report: BuildReport = field(default_factory=lambda: cast(BuildReport, {}))
    seconds: float = 0.0
    clock: StageClock = field(default_factory=StageClock)
    # The demanded image's (or the attestations') failure: raised by the build once it has recorded the
    # rest, which is in place and reported.
    failure: MlpackError | None = None


@contextmanager
def scratch_folder(out: Path) -> Iterator[Path]:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {out}: {exc.strerror}") from None
    stage = Path(tempfile.mkdtemp(prefix=".mlpack-build-", dir=out))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_artifacts(
    config: Config,
    exported: ExportedModel,
    out_dir: Path,
    say: Progress = _silent,
    *,
    image: ImageMode = "none",
    attest_build: bool = False,
    clock: StageClock | None = None,
    force: bool = False,
    warn: Progress = _silent,
    report: bool = True,
) -> BuildResult:
    """The build's files into `out_dir`, then (`attest_build`) its SBOM, provenance and signatures, then
    the report (with `report=False`, `build` writes it itself, once the registry has recorded the build).
    An artifact already in `out_dir` under the same name is replaced only when it is byte-identical (a
    reproducible rebuild) or `force` is given: nothing silently overwrites a build."""
    clock = clock or StageClock()
    result = _write_files(config, exported, out_dir, say, context=image != "none", clock=clock, force=force, warn=warn)
    try:
        if image in ("wanted", "required"):  # without its engine or base, fail only if the image was demanded
            with clock.stage("image"):
                step = make_image(
                    config,
                    result.metadata,
                    wheel=result.artifacts["wheel"],
                    context=result.artifacts["docker"],
                    required=image == "required",
                    say=say,
                )
            result.report["image"] = step.report
            result.artifacts.update(step.artifacts)
    except MlpackError as exc:
        result.failure = exc
    try:
        # SBOM, provenance, signatures: after the image, whose manifest is a subject. A demanded image that
        # failed leaves the rest of the build recorded as built: it is attested (and signed) as a build
        # without an image is, never left without the provenance and signatures its [sign] asks for.
        if attest_build:
            attest.attest_build(config, result, say, warn=warn)
    except MlpackError as exc:
        if result.failure is not None:
            warn(exc.message)  # the image's failure is the one raised; this one is said too
        else:
            result.failure = exc
    result.report["timings"] = clock.report()
    if report:
        write_report(result.artifacts["report"], result.report)
    return result


def _write_files(
    config: Config,
    exported: ExportedModel,
    out_dir: Path,
    say: Progress,
    *,
    context: bool,
    clock: StageClock,
    force: bool,
    warn: Progress,
) -> BuildResult:
    """Card, wheel, sdist, .onnx (and the image context), staged, then renamed into `out_dir`; the report
    as far as these go, not yet written."""
    metadata = exported.metadata
    stem = f"{config.model.name}-{metadata['version']}"
    epoch = epoch_of(metadata["created"])
    with scratch_folder(out_dir) as stage:
        say("writing the model card (permutation importance on the test split)")
        with clock.stage("card"), library_warnings.captured() as heard:  # + its README tables, the predictions
            written, card_tables = card.write_card(
                stage, stem, exported.trained, exported.rows, metadata, exported.onnx_bytes, exported.champion
            )
        for sentence in heard.sentences():
            warn(sentence)
        say("packaging the model wheel")
        with clock.stage("package"):
            project = render_project(
                stage / "src",
                metadata,
                exported.onnx_bytes,
                config.path.read_text(encoding="utf-8"),
                card_tables=card_tables,
            )
            dists = build_distributions(project, stage / "dist", source_date_epoch=epoch)
            twine_check([dists.wheel, dists.sdist])
        onnx_path = stage / f"{stem}.onnx"
        onnx_path.write_bytes(exported.onnx_bytes)
        staged = {"wheel": dists.wheel, "sdist": dists.sdist, "onnx": onnx_path, **written}
        artifacts: dict[str, ArtifactRecord] = {
            kind: {"file": path.name, "size": path.stat().st_size, "sha256": sha256_of(path)}
            for kind, path in staged.items()
        }
        if context:
            say("writing the image's build context (dependency wheels for the image)")
            folder = stage / f"{stem}.docker"
            pinned = write_context(
                folder,
                wheel=dists.wheel,
                metadata=metadata,
                section=config.image,
                revision=git_revision(config.project_dir),
                epoch=epoch,
                find_links=_project_path(config, config.image.find_links),
            )
            staged["docker"] = folder
            artifacts["docker"] = {
                "file": folder.name,
                "dependencies": pinned,
                "dockerfile_sha256": sha256_of(folder / "Dockerfile"),
            }
        report = cast(BuildReport, {**metadata, "artifacts": artifacts})
        if exported.champion is not None:
            report["champion"] = exported.champion
        if exported.champion_warning:
            report["champion_warning"] = exported.champion_warning
        final = {kind: out_dir / path.name for kind, path in staged.items()}
        if not force:
            _refuse_to_replace_a_different_build(staged, final, artifacts)
        for kind, path in staged.items():
            _move_into_place(path, final[kind], stage)
    # A report of an earlier build of this version goes first: until the new one is written, no
    # report vouches for files it did not record.
    final["report"] = BuildDir(out_dir, config.model.name).report_path(metadata["version"])
    final["report"].unlink(missing_ok=True)
    return BuildResult(metadata=metadata, artifacts=final, report=report, clock=clock)


def _project_path(config: Config, value: str) -> str:
    """A path from mlpack.toml, relative to the project folder."""
    return str(config.project_dir / value) if value else ""


def _refuse_to_replace_a_different_build(
    staged: dict[str, Path], final: dict[str, Path], artifacts: dict[str, Any]
) -> None:
    for kind in ("wheel", "sdist", "onnx"):
        target = final[kind]
        if target.is_file() and sha256_of(target) != artifacts[kind]["sha256"]:
            raise ConfigError(
                f"{target} already exists and holds a different build of the same name and version: "
                'build another version (--version, or version = "auto"), or pass --force to replace it'
            )


def _move_into_place(source: Path, target: Path, stage: Path) -> None:
    if target.is_dir():  # a rebuilt image context replaces the old folder, which os.replace cannot overwrite
        os.replace(target, stage / f"replaced-{target.name}")
    os.replace(source, target)


__all__ = ["BuildResult", "ImageMode", "write_artifacts"]
