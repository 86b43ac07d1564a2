"""The model stage of a build: validated data in, a trained, gated, exported and verified model out.

Cross-validation or search (each trial logged), training on the graph's own features, the quality
gates, the ONNX export and the parity check on every row, then the drift baseline. Nothing here
writes a file: `outputs.write_artifacts` does, from the `ExportedModel` this returns.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import onnx

from mlpack import library_warnings
from mlpack.config import Config
from mlpack.export.baseline import training_baseline
from mlpack.export.convert import to_onnx, with_metadata
from mlpack.export.metadata import build_metadata, with_baseline, with_parity
from mlpack.export.parity import check_parity, parity_report
from mlpack.features.expressions import string_read_fields
from mlpack.runtime import Metadata, Model, heap
from mlpack.timings import StageClock
from mlpack.training import champion as challenger_vs
from mlpack.training import experiments, seen
from mlpack.training.aside import columns_set_aside
from mlpack.training.metrics import check_gates
from mlpack.training.recipe import Recipe
from mlpack.training.train import Split, TrainedModel, split, train, with_classes
from mlpack.validate import Dataset

Progress = Callable[[str], None]


def _silent(_message: str) -> None:
    pass


@dataclass
class ExportedModel:
    trained: TrainedModel
    onnx_model: onnx.ModelProto  # the verified graph (parity was checked on it)
    metadata: Metadata
    rows: Split | None = None  # the train/test split the model was fitted and scored on
    experiment: experiments.Experiment | None = None
    champion: dict[str, Any] | None = None  # the aliased version's scores on the same test split (champion.py)
    champion_warning: str = ""  # why the champion was not compared, or what to know of the comparison
    # A Bloom filter of the training rows' _ids (training/seen.py), for the registry's record only: a later
    # build with this one as its champion leaves these rows out of the comparison. Never in an artifact.
    trained_on: seen.Seen | None = None

    @functools.cached_property
    def onnx_bytes(self) -> bytes:
        """The ONNX file: the graph with the build's metadata in it, serialized once (deterministically)."""
        return with_metadata(self.onnx_model, self.metadata)


def make_model(
    config: Config,
    dataset: Dataset,
    *,
    recipe: Recipe,
    version: str,
    created: datetime,
    say: Progress = _silent,
    log: experiments.TrialLog | None = None,
    clock: StageClock | None = None,
    champion: challenger_vs.Champion | None = None,
    warn: Progress = _silent,
    keep_columns: bool = True,
) -> ExportedModel:
    """Cross-validate or search (each trial logged), train, gate, export and verify: validated data in,
    an ONNX model that agrees with scikit-learn out. `recipe`: what `training.recipe.settle` made of
    `config` before any data was read (the build's preflight), the one place its facts are settled.
    What the libraries warn of on the way is said through `warn`, as mlpack's sentences (and kept in
    the metadata's warnings when it came up in training). `keep_columns` False: the dataset's columns,
    set aside while the model trains, are not put back (the caller drops the dataset)."""
    clock = clock or StageClock()
    recipe = with_classes(recipe, dataset)  # class_weight keys, a threshold's class
    rows = split(recipe, dataset)
    # Taken now: the dataset's ids are dropped once split (columns_set_aside), the test rows' kept in the split.
    trained_on = seen.of(dataset.ids, rows.rows[0]) if config.registry.enabled and rows.rows is not None else None
    log = log or experiments.TrialLog(
        None, name=config.model.name, version=version, estimator=config.estimator.class_path
    )
    # Training holds the split's copy of every column: not the dataset's too.
    with columns_set_aside(dataset, rows, put_back=keep_columns) as aside:
        with clock.stage("train"), library_warnings.captured() as heard:
            experiment = experiments.run(recipe, rows, log, say=say, warn=warn)
            best = {**recipe.estimator.params, **experiment.best_params} if experiment else None
            say(f"training {recipe.estimator_name} on {dataset.rows} rows")
            trained = train(recipe, dataset, rows=rows, params=best)
        if experiment is not None:
            clock.trials = experiment.timings()
        said = heard.sentences()
        for sentence in said:
            warn(sentence)
        metadata = build_metadata(
            config,
            dataset,
            version=version,
            created=created,
            input_names=recipe.input_names,
            trained=trained,
            experiment=experiment,
            heard=said,
        )
        # A rejected model's metadata (metrics, parity) goes with the error, for the registry's record.
        check_gates(trained.metrics, config.evaluation.gates, metadata=dict(metadata))
        # The champion's scores on these test rows; a challenger that does not beat it by the margin stops here.
        compared, warning = None, ""
        if champion is not None:
            margin = config.evaluation.champion_margin
            compared, warning = challenger_vs.evaluate(
                champion, trained, metadata, say, metric=recipe.champion_metric, margin=margin, test_ids=rows.test_ids
            )
        if warning:
            warn(warning)
        say("exporting to ONNX")
        with library_warnings.captured() as heard:
            with clock.stage("export"):
                onnx_model = to_onnx(
                    trained, metadata["inputs"], opset=config.export.target_opset, graph_name=config.model.import_name
                )
            model = Model(onnx_model.SerializeToString(), metadata)
            answered: list[Any] = []  # the ONNX model's answers on every row: the baseline profiles them
            with clock.stage("parity"):
                parity = parity_report(trained, model, config.export.parity_tolerance, answered)
        for sentence in heard.sentences():
            warn(sentence)
        metadata = with_parity(metadata, parity)
        check_parity(parity, classification=trained.classes is not None, metadata=dict(metadata))
        # Parity ran the model for the last time here: its session's arena (what parity's largest run
        # needed) is not held through the drift baseline, which profiles parity's answers.
        model.unload()
        unlisted = string_read_fields(config.features.expressions)
        heap.release()  # the baseline's passes are not mapped beside what parity freed
        # Each column joined from the split as it is profiled, and parity's answers: the model is not run again.
        baseline = training_baseline(
            dataset,
            model,
            metadata,
            config.preprocessing.max_categories,
            unlisted,
            columns=aside.columns,
            predictions=aside.in_order(answered),
        )
    metadata = with_baseline(metadata, baseline)
    return ExportedModel(trained, onnx_model, metadata, rows, experiment, compared, warning, trained_on)


__all__ = ["ExportedModel", "Progress", "make_model", "training_baseline"]
