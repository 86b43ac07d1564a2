"""`mlpack build`: the stages in order — settle the recipe, load, validate, train and export, then the
files into `--out` (outputs.py: staged, renamed into place, the report written last) and the records
in the registry.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

from packaging.version import Version

from mlpack import registry
from mlpack.artifacts import attest
from mlpack.artifacts.dist import BuildDir, write_report
from mlpack.config import Config, load_config, with_version
from mlpack.errors import ConfigError, ExternalError, MlpackError, QualityGateError
from mlpack.exported import ExportedModel, Progress, make_model
from mlpack.outputs import BuildResult, write_artifacts
from mlpack.registry import aliases
from mlpack.runtime import heap
from mlpack.source import load_columns, open_database
from mlpack.source.feedback import add_feedback, check_collection
from mlpack.source.mongo import sample_paths
from mlpack.source.seed import seed_collection
from mlpack.timings import StageClock
from mlpack.training import champion, experiments, seen
from mlpack.training.recipe import Recipe, settle
from mlpack.validate import validate


def _silent(_message: str) -> None:
    pass


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
    recipe = settle(config)  # [source].filter and [evaluation].test_filter were parsed with the config
    attest.check(config)  # [sign]: the key loads (a wrong one or its password fails here, exit 2)
    return recipe


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
    heap.map_large_arrays()  # a step's freed arrays are unmapped, not kept for the next (mlpack.runtime.heap)
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
        heap.release()  # and their pages go back: the next steps' arrays would otherwise be mapped beside them
        for warning in dataset.warnings:
            tell(warning)
        log = experiments.TrialLog(
            database[config.registry.experiments] if config.registry.enabled else None,
            name=config.model.name,
            version=resolved_version,
            estimator=config.estimator.class_path,
        )
        defending, not_compared = _champion(config, records, out_dir, resolved_version, tell)
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
                keep_columns=False,  # the dataset is dropped next
            )
        except QualityGateError as exc:
            records.record_rejected(
                exc.metadata,
                config_text=config_text,
                reason=exc.message,
                details=exc.details,
            )
            raise
        del dataset  # the model has what the artifacts need: the columns are not held through them
        exported.champion_warning = not_compared or exported.champion_warning
        with_image = image if image is not None else config.image_configured
        result = write_artifacts(
            config,
            exported,
            out_dir,
            say,
            image="required" if image is True else "wanted" if with_image else "none",
            attest_build=True,
            clock=clock,
            force=force,
            warn=tell,
            report=False,
        )
        try:
            records.record_built(
                result.metadata,
                result.report["artifacts"],
                config_text=config_text,
                image=result.report.get("image"),
                files=result.artifacts,
                trained_on=exported.trained_on.document() if exported.trained_on is not None else None,
            )
        except MlpackError as exc:  # not recorded, so not built: no report vouches for these files
            report = result.artifacts["report"]
            raise ExternalError(  # recording fails only in talking to MongoDB (errors.outside)
                f"{exc.message} (the build of {result.metadata['name']} {result.metadata['version']} is not "
                f"recorded, so no {report.name} was written to {report.parent}: build again once the registry "
                "is reachable, with --force to replace its files)",
                details=exc.details,
            ) from None
        # The report last: its presence is what score, serve, monitor and publish read as "built".
        write_report(result.artifacts["report"], result.report)
    if result.failure is not None:  # the demanded image: the rest of the build is in place and recorded
        raise result.failure
    result.seconds = round(time.monotonic() - started, 2)
    return result


# Grouping by a field the model also reads: the test split's values of it are never seen in training.
_GROUP_INPUT = (
    "[evaluation].split_field '{field}' is also a model input: with split = \"group\" no value of it in the "
    "test split is seen in training, so the model knows only the training split's (strict prediction refuses "
    "the others) and the test scores are those of unknown categories; leave it out of [features], or group by "
    "another field"
)


def _champion(
    config: Config, records: registry.Registry, out_dir: Path, version: str, warn: Progress
) -> tuple[champion.Champion | None, str]:
    """[evaluation].champion: the aliased version's verified .onnx and the filter of the rows it trained on
    (its registry record's, None when it has none), or None and a warning when there is none."""
    if not champion.enabled(config):
        return None, ""
    reference = aliases.Reference(config.model.name, config.evaluation.champion)
    try:
        found = aliases.resolve(config, reference, kind="onnx", dist=out_dir)
    except ConfigError as exc:
        warning = f"champion {reference}: {exc.message}; this build is not compared with a champion"
    else:
        if found.version != version:
            trained_on = seen.read(records.trained_on(found.name, found.version))
            return champion.Champion(reference.alias, found.version, found.path, trained_on), ""
        warning = f"champion {reference} is {version}, the version being built: not compared with itself"
    warn(warning)
    return None, warning


__all__ = ["BuildResult", "ExportedModel", "build", "make_model", "write_artifacts"]
