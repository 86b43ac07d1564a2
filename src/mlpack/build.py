"""`mlpack build`: the stages in order, into a scratch folder, then the artifacts moved into place.

Nothing half-written ever carries a final name: every artifact is written under a hidden scratch
folder inside `--out` (same file system) and renamed into place only once all stages succeeded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from packaging.version import Version

from mlpack import card, library_warnings, registry
from mlpack.artifacts import attest
from mlpack.artifacts.dist import ArtifactRecord, BuildDir, BuildReport, sha256_of, write_report
from mlpack.artifacts.image import git_revision, write_context
from mlpack.artifacts.image_step import make_image
from mlpack.artifacts.wheel import build_distributions, render_project, twine_check
from mlpack.config import Config, load_config, with_version
from mlpack.errors import ConfigError, QualityGateError
from mlpack.export.metadata import build_metadata
from mlpack.exported import ExportedModel, Progress, make_model
from mlpack.registry import aliases
from mlpack.runtime import Metadata
from mlpack.source import load_columns, open_database
from mlpack.source.feedback import add_feedback, check_collection
from mlpack.source.mongo import parse_filter, sample_paths
from mlpack.source.seed import seed_collection
from mlpack.timings import StageClock
from mlpack.training import champion, experiments
from mlpack.training.recipe import Recipe, settle
from mlpack.validate import validate


def _silent(_message: str) -> None:
    pass


@dataclass
class BuildResult:
    metadata: Metadata
    artifacts: dict[str, Path] = field(default_factory=dict)  # kind ("wheel", "onnx"...) → final path
    report: BuildReport = field(default_factory=lambda: cast(BuildReport, {}))
    seconds: float = 0.0
    clock: StageClock = field(default_factory=StageClock)


def created_at() -> datetime:
    """Build time, or SOURCE_DATE_EPOCH when set, so that rebuilds can be byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), tz=UTC)
        except ValueError:
            raise ConfigError(f"SOURCE_DATE_EPOCH must be an integer (seconds since 1970), got {epoch!r}") from None
    return datetime.now(tz=UTC).replace(microsecond=0)


def preflight(config: Config) -> Recipe:
    """Configuration mistakes that need no data are reported before any database is touched; the
    recipe they are checked in (estimator, metrics, search plan, folds, the champion's metric) is what
    training gets."""
    recipe = settle(config)
    parse_filter(config.source.filter)
    attest.check(config)  # [sign]: the key loads (a wrong one or its password fails here, exit 2)
    return recipe


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


def build(
    project: str | Path = ".",
    *,
    out: str | Path | None = None,
    version: str | None = None,
    force: bool = False,
    image: bool | None = None,
    progress: Progress | None = None,
    warn: Progress | None = None,
) -> BuildResult:
    """The whole build. `image`: True demands an image, False skips it, None builds one when the
    config has an [image] table and its base (or, with builder = "docker", the engine) answers. `warn` hears
    every warning as it comes up (the data's, the champion's, the libraries' in mlpack's words); the
    report keeps them too."""
    started = time.monotonic()
    say = progress or _silent
    tell = warn or _silent
    config = load_config(project)
    if version is not None:
        config = with_version(config, version)
    recipe = preflight(config)
    split_field = config.evaluation.split_field
    if config.evaluation.split == "group" and split_field in config.features.inputs:
        tell(_GROUP_INPUT.format(field=split_field))
    config_text = config.path.read_text(encoding="utf-8")
    out_dir = Path(out) if out is not None else config.project_dir / "dist"
    created = created_at()
    clock = StageClock()

    say("connecting to MongoDB")
    with open_database(config.source) as (database, _):
        collection = database[config.source.collection]
        records = registry.Registry.for_config(database, config.registry)
        resolved_version = records.resolve_version(config.model.name, config.model.version, force=force)
        if config.model.version == "auto" and out_dir.is_dir():
            taken = [resolved_version, registry.next_patch(BuildDir(out_dir, config.model.name).versions())]
            resolved_version = max(taken, key=Version)
        if config.source.seed:
            inserted = seed_collection(collection, config.project_dir / config.source.seed)
            if inserted:
                say(f"seeded {collection.full_name} with {inserted} documents from {config.source.seed}")
        say(f"loading {collection.full_name}")
        with clock.stage("load"):
            raw = load_columns(
                collection,
                config.features.loaded,
                query=config.source.filter,
                limit=config.source.limit,
                progress=lambda rows: say(f"loaded {rows} documents"),
            )
            if raw.rows == 0:  # read nothing: is the collection there at all? (MongoDB reads a typo as empty)
                check_collection(database, config.source.collection, "[source].collection")
            raw, feedback = add_feedback(raw, config, database.client, now=created)
        with clock.stage("validate"):
            dataset = validate(
                raw,
                config.features,
                config.model.task,
                max_categories=config.preprocessing.max_categories,
                source_label=collection.full_name,
                known_paths=lambda: sample_paths(collection, config.source.filter),
                feedback=feedback,
            )
        del raw  # the loaded columns: the dataset has what training needs, and a million documents weigh
        for warning in dataset.warnings:
            tell(warning)
        log = experiments.TrialLog(
            database[config.registry.experiments] if config.registry.enabled else None,
            name=config.model.name,
            version=resolved_version,
            estimator=config.estimator.class_path,
        )
        defending, not_compared = _champion(config, out_dir, resolved_version, tell)
        try:
            exported = make_model(
                config,
                dataset,
                version=resolved_version,
                created=created,
                say=say,
                log=log,
                clock=clock,
                champion=defending,
                recipe=recipe,
                warn=tell,
            )
        except QualityGateError as exc:
            records.record_rejected(
                exc.metadata or build_metadata(config, dataset, version=resolved_version, created=created),
                config_text=config_text,
                reason=exc.message,
                details=exc.details,
            )
            raise
        exported.champion_warning = not_compared or exported.champion_warning
        with_image = image if image is not None else config.image_configured
        result = write_artifacts(
            config, exported, out_dir, say, image_context=with_image, clock=clock, force=force, warn=tell
        )
        try:
            if with_image:
                build_image_step(config, result, required=image is True, say=say, clock=clock)
            attest.attest_build(config, result, say, warn=tell)  # SBOM, provenance, signatures: after the image
        finally:
            records.record_built(
                result.metadata,
                result.report["artifacts"],
                config_text=config_text,
                image=result.report.get("image"),
                files=result.artifacts,
            )
    result.seconds = round(time.monotonic() - started, 2)
    return result


# Grouping by a field the model also reads: the test split's values of it are never seen in training.
_GROUP_INPUT = (
    "[evaluation].split_field '{field}' is also a model input: with split = \"group\" no value of it in the "
    "test split is seen in training, so the model knows only the training split's (strict prediction refuses "
    "the others) and the test scores are those of unknown categories; leave it out of [features], or group by "
    "another field"
)


def _champion(config: Config, out_dir: Path, version: str, warn: Progress) -> tuple[champion.Champion | None, str]:
    """[evaluation].champion: the aliased version's verified .onnx, or None and a warning when there is none."""
    if not champion.enabled(config):
        return None, ""
    reference = aliases.Reference(config.model.name, config.evaluation.champion)
    try:
        found = aliases.resolve(config, reference, kind="onnx", dist=out_dir)
    except ConfigError as exc:
        warning = f"champion {reference}: {exc.message}; this build is not compared with a champion"
    else:
        if found.version != version:
            return champion.load(reference.alias, found.version, found.path), ""
        warning = f"champion {reference} is {version}, the version being built: not compared with itself"
    warn(warning)
    return None, warning


def write_artifacts(
    config: Config,
    exported: ExportedModel,
    out_dir: Path,
    say: Progress = _silent,
    *,
    image_context: bool = False,
    clock: StageClock | None = None,
    force: bool = False,
    warn: Progress = _silent,
) -> BuildResult:
    """Wheel, sdist, ONNX file, report (and the image's build context), staged, then renamed into `out_dir`.

    An artifact already in `out_dir` under the same name is replaced only when it is byte-identical
    (a reproducible rebuild) or `force` is given: nothing else ever silently overwrites a build."""
    metadata = exported.metadata
    stem = f"{config.model.name}-{metadata['version']}"
    epoch = _epoch(metadata["created"])
    clock = clock or StageClock()
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
        if image_context:
            say("writing the image's build context (dependency wheels for the image)")
            context = stage / f"{stem}.docker"
            pinned = write_context(
                context,
                wheel=dists.wheel,
                metadata=metadata,
                section=config.image,
                revision=git_revision(config.project_dir),
                epoch=epoch,
                find_links=_project_path(config, config.image.find_links),
            )
            staged["docker"] = context
            artifacts["docker"] = {
                "file": context.name,
                "dependencies": pinned,
                "dockerfile_sha256": sha256_of(context / "Dockerfile"),
            }
        report = cast(BuildReport, {**metadata, "artifacts": artifacts, "timings": clock.report()})
        if exported.champion is not None:
            report["champion"] = exported.champion
        if exported.champion_warning:
            report["champion_warning"] = exported.champion_warning
        report_path = stage / f"{stem}.json"
        write_report(report_path, report)
        staged["report"] = report_path
        final = {kind: out_dir / path.name for kind, path in staged.items()}
        if not force:
            _refuse_to_replace_a_different_build(staged, final, artifacts)
        for kind, path in staged.items():
            _move_into_place(path, final[kind], stage)
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


def build_image_step(
    config: Config, result: BuildResult, *, required: bool, say: Progress = _silent, clock: StageClock | None = None
) -> None:
    """The image (artifacts/image_step.py); without its engine or base, fail only if the image was demanded."""
    context = result.artifacts["docker"]
    with (clock or result.clock).stage("image"):
        step = make_image(
            config,
            tag=config.image.tag_for(config.model.name, result.metadata["version"]),
            wheel=result.artifacts["wheel"],
            metadata=result.metadata,
            context=context,
            epoch=_epoch(result.metadata["created"]),
            required=required,
            say=say,
        )
    result.report["image"] = step.report
    result.artifacts.update(step.artifacts)
    result.report["timings"] = (clock or result.clock).report()
    write_report(result.artifacts["report"], result.report)


def _epoch(created: str) -> int:
    return int(datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


__all__ = ["BuildResult", "ExportedModel", "build", "build_image_step", "make_model", "write_artifacts"]
