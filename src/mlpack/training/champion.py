"""Challenger vs champion: the aliased version scored on the challenger's test rows it never trained on.

With `[evaluation].champion = "production"` the build resolves NAME@production (build.py, through the
registry and its digests) to the champion's verified .onnx, runs it through mlpack.runtime.Model (the
runtime the wheel ships) on the challenger's own test rows and computes the same metrics
(train.METRICS). The comparison goes into the build report (`champion`: alias, version, metrics, the
challenger's on the same rows and its difference per metric, the rows used and left out), the console
summary and the model card.

Both are scored on the same rows: the challenger's test rows that the champion did not train on. Its
build recorded a Bloom filter of its training rows' `_id`s in the registry (training/seen.py); on a
collection that has grown since, a random split puts some of the champion's training rows in the
challenger's test split, where the champion would be scored in-sample. Those rows are left out (a
false positive leaves out a row it never saw, never keeps one it did). A champion recorded without
the filter is compared on the whole split, with a warning; fewer than MIN_TEST_ROWS rows left: not
compared, a warning.

With `champion_margin` the challenger must beat the champion on the scoring metric
(`champion_metric`, else the first of [evaluation].metrics) by at least the margin, higher or lower
as the metric is better (accuracy up, rmse down); otherwise the build is refused like a failed
quality gate: exit 1, recorded as rejected with both scores in the reason.

A champion that cannot be scored on these rows (it reads a field the new model does not load, or
predicts another target or task) is reported as a warning, never a failure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlpack.config import Config
from mlpack.errors import QualityGateError
from mlpack.runtime import Metadata, Model, read_onnx_metadata
from mlpack.training.metrics import METRICS, champion_metric, scores_of
from mlpack.training.seen import Seen
from mlpack.training.train import MIN_TEST_ROWS, TrainedModel


@dataclass(frozen=True)
class Champion:
    """The aliased version: what the challenger is compared with. `path`: its ONNX file, already verified
    against the registry's sha256 (aliases.resolve); loaded when it is first scored, so that its session
    is not held while the challenger trains."""

    alias: str
    version: str
    path: Path
    trained_on: Seen | None = field(default=None, compare=False)  # its registry record's filter, if it has one

    @functools.cached_property
    def model(self) -> Model:
        return Model(self.path, read_onnx_metadata(self.path))


def enabled(config: Config) -> bool:
    return bool(config.evaluation.champion)


def scoring_metric(config: Config, names: Sequence[str]) -> str:
    """The metric the margin is measured on (metrics.champion_metric; the recipe settles it once)."""
    return champion_metric(config.evaluation, names)


def unscorable(champion: Champion, metadata: Metadata, columns: dict[str, np.ndarray]) -> str | None:
    """Why the champion cannot be scored on the challenger's test rows, or None when it can."""
    theirs, ours = champion.model.metadata, metadata
    where = f"{champion.alias} ({theirs['name']} {theirs['version']})"
    if theirs["task"] != ours["task"]:
        return f"{where} is a {theirs['task']} model and this one is {ours['task']}: not compared"
    if theirs.get("target") != ours.get("target"):
        return f"{where} predicts {theirs.get('target')!r}, this model {ours.get('target')!r}: not compared"
    kinds = {entry["path"]: entry["kind"] for entry in ours["inputs"]}
    reads = [(e["path"], e["kind"]) for e in theirs.get("inputs") or []] or [
        (f["name"], f["kind"]) for f in theirs["features"]
    ]
    other = [path for path, kind in reads if path not in columns or kinds.get(path, kind) != kind]
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        return (
            f"{where} reads fields this build does not load or reads otherwise ({shown}), so it cannot be "
            "scored on these test rows: not compared (promote a version with these inputs, or change "
            "[evaluation].champion)"
        )
    return None


def score(
    champion: Champion, trained: TrainedModel, metadata: Metadata, names: list[str], keep: np.ndarray | None = None
) -> dict[str, float]:
    """The champion's metrics on the challenger's test rows (`keep`: those of them only), computed as the
    challenger's are."""
    columns = trained.test_columns if keep is None else {path: v[keep] for path, v in trained.test_columns.items()}
    target = trained.test_target if keep is None else trained.test_target[keep]
    weight = trained.test_weight if keep is None or trained.test_weight is None else trained.test_weight[keep]
    labels, probabilities, _ = champion.model.run(columns)
    y: Any = target
    classes: list[Any] = []
    proba = None
    if metadata["task"] == "classification":
        # The runtime answers with the classes as users see them; so must the true labels.
        as_user = dict(zip(trained.classes or [], metadata.get("classes") or trained.classes or []))
        y = np.array([as_user.get(value, value) for value in target.tolist()], dtype=object)
        classes = list(champion.model.classes or [])
        proba = np.asarray(probabilities, dtype=np.float64) if probabilities is not None else None
    predicted = np.array(labels, dtype=object if classes else np.float64)
    scores = {}
    for name in names:
        metric = METRICS[name]
        if metric.uses_probabilities and proba is None:
            scores[name] = math.nan
            continue
        try:
            scores[name] = round(metric.score(y, predicted, proba, classes, weight), 6)
        except (ValueError, TypeError):  # undefined on these rows, or classes the champion never saw
            scores[name] = math.nan
    return scores


def better_by(name: str, challenger: float, champion: float) -> float:
    """How much better the challenger is (positive: better), whichever way the metric improves."""
    difference = challenger - champion
    return difference if METRICS[name].higher_is_better else -difference


def challenger_scores(trained: TrainedModel, keep: np.ndarray) -> dict[str, float]:
    """The challenger's metrics on the `keep` test rows: from its test answers, as train.train scores them."""
    if keep.all():
        return dict(trained.metrics)
    weight = trained.test_weight[keep] if trained.test_weight is not None else None
    probabilities = trained.test_probabilities[keep] if trained.test_probabilities is not None else None
    return scores_of(
        trained.pipeline,
        trained.test_target[keep],
        trained.test_predicted[keep],
        probabilities,
        list(trained.metrics),
        weight,
    )


def unseen(champion: Champion, test_ids: Sequence[Any]) -> np.ndarray | None:
    """Which test rows the champion did not train on (by its filter), or None when it recorded none."""
    if champion.trained_on is None:
        return None
    return ~champion.trained_on.contains(test_ids)


def comparison(
    champion: Champion,
    challenger: dict[str, float],
    theirs: dict[str, float],
    metric: str,
    *,
    rows: int | None = None,
    left_out: int = 0,
) -> dict[str, Any]:
    """The report's `champion` entry: `challenger`, the challenger's scores on the `rows` compared."""
    return {
        "alias": champion.alias,
        "version": champion.version,
        "metrics": theirs,
        "challenger": challenger,
        "difference": {
            name: round(challenger[name] - theirs[name], 6) for name in challenger if name in theirs
        },  # challenger minus champion
        "metric": metric,
        "rows": rows,  # the test rows both were scored on
        "left_out": left_out,  # test rows left out as the champion's training rows
        "training_rows_recorded": champion.trained_on is not None,
    }


def check_margin(margin: float, entry: dict[str, Any], challenger: dict[str, float], metadata: dict[str, Any]) -> None:
    """Refuse a challenger that does not beat the champion by [evaluation].champion_margin (nan: compare only)."""
    if math.isnan(margin):
        return
    name = entry["metric"]
    ours, theirs = challenger[name], entry["metrics"][name]
    champion = f"{entry['alias']} ({entry['version']})"
    direction = "higher" if METRICS[name].higher_is_better else "lower"
    if math.isnan(ours) or math.isnan(theirs):
        reason = f"champion gate: {name} is undefined for {'the challenger' if math.isnan(ours) else champion}"
    elif better_by(name, ours, theirs) < margin:
        reason = (
            f"champion gate: {name} {ours:.4f} does not beat {champion} {name} {theirs:.4f} "
            f"by the margin {margin:g} ({direction} is better)"
        )
    else:
        return
    details = "\n".join(
        [f"challenger vs champion ({compared_rows(entry)}):"]
        + [f"  - {n}: {challenger[n]:.6g} vs {v:.6g}" for n, v in entry["metrics"].items() if n in challenger]
    )
    raise QualityGateError(reason, details=details, metadata={**metadata, "champion": entry})


def evaluate(
    champion: Champion,
    trained: TrainedModel,
    metadata: Metadata,
    say: Callable[[str], None],
    *,
    metric: str,
    margin: float,
    test_ids: Sequence[Any],
) -> tuple[dict[str, Any] | None, str]:
    """Score both on the challenger's test rows the champion did not train on (`test_ids`: theirs) and
    apply the margin (`metric`: the recipe's champion_metric; `margin`: [evaluation].champion_margin):
    the report's entry and a warning (or ""), or None and the warning when it is not compared."""
    problem = unscorable(champion, metadata, trained.test_columns)
    if problem is not None:  # the build says the warning (its warn channel), and records it in the report
        return None, f"champion {problem}"
    total = len(trained.test_target)
    keep, warning = unseen(champion, test_ids), ""
    where = f"{champion.alias} ({champion.version})"
    if keep is None:
        keep = np.ones(total, dtype=bool)
        warning = (
            f"champion {where}: its build did not record its training rows, so the comparison is on the whole "
            "test split and may include rows it trained on (rebuild and promote it to record them)"
        )
    used = int(keep.sum())
    if used < MIN_TEST_ROWS:
        return None, (
            f"champion {where} trained on {total - used} of the {total} test rows: the {used} left are fewer than "
            f"{MIN_TEST_ROWS}, not compared (raise [evaluation].test_size, or split by time)"
        )
    ours = challenger_scores(trained, keep)
    theirs = score(champion, trained, metadata, list(trained.metrics), keep=None if keep.all() else keep)
    entry = comparison(champion, ours, theirs, metric, rows=used, left_out=total - used)
    say(f"champion: {summary(entry)}")
    check_margin(margin, entry, ours, dict(metadata))
    return entry, warning


def compared_rows(entry: dict[str, Any]) -> str:
    """`151 of 225 test rows (74 it trained on left out)`, or `225 test rows` when none were left out."""
    rows, left_out = entry.get("rows"), entry.get("left_out") or 0
    if rows is None or not left_out:
        return f"{rows} test rows" if rows is not None else "test split"
    return f"{rows} of {rows + left_out} test rows ({left_out} it trained on left out)"


def summary(entry: dict[str, Any]) -> str:
    """One line for the console: `vs production 1.0.0 on 151 of 225 test rows (74 it trained on
    left out): accuracy 0.8333 (+0.0167), ...`."""
    shown = ", ".join(
        f"{name} {value:.4f} ({entry['difference'].get(name, math.nan):+.4f})"
        for name, value in entry["metrics"].items()
    )
    return f"vs {entry['alias']} {entry['version']} on {compared_rows(entry)}: {shown}"


__all__ = [
    "Champion",
    "challenger_scores",
    "check_margin",
    "compared_rows",
    "comparison",
    "enabled",
    "evaluate",
    "score",
    "scoring_metric",
    "summary",
    "unscorable",
    "unseen",
]
