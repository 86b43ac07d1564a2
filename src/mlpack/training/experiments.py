"""Cross-validation and hyper-parameter search on the training split, every trial logged.

A *trial* is one point of the parameter space evaluated by k-fold cross-validation on the training
split (never the test split). `[evaluation].cv` alone is a search of one point: the configured params.
Each trial is written to MongoDB the moment it finishes, so a build killed half-way leaves the trials
it ran. The best point is then refit on the whole training split by `train.train`.

The loop is written out instead of using `GridSearchCV`: scikit-learn has no per-candidate callback,
and logging as each trial finishes is the point. Folds and sampling are seeded, so a search is
repeatable; `benchmarks/experiments.py` measures it against `GridSearchCV` on the same grid.
"""

from __future__ import annotations

import math
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pymongo.collection import Collection
from sklearn.model_selection import KFold, StratifiedKFold

from mlpack.errors import ConfigError, DataError, ExternalError, outside
from mlpack.estimators import fit_errors
from mlpack.features.graph import GraphConversionError
from mlpack.features.pipeline import frame, graph_features
from mlpack.features.text import NoWordsError
from mlpack.training import splits
from mlpack.training.metrics import score_all
from mlpack.training.pipeline import final
from mlpack.training.recipe import Plan, Recipe
from mlpack.training.train import Split


@dataclass
class Trial:
    number: int
    params: dict[str, Any]  # the point of the space (empty for plain cross-validation)
    folds: list[dict[str, float]] = field(default_factory=list)  # every metric, per fold
    fit_seconds: list[float] = field(default_factory=list)  # per fold
    status: str = "ok"  # "ok" | "failed"
    error: str = ""

    def scores(self) -> dict[str, dict[str, float]]:
        """Mean and (population) standard deviation of every metric over the folds, as GridSearchCV reports."""
        if not self.folds:
            return {}
        out = {}
        for name in self.folds[0]:
            values = np.array([fold[name] for fold in self.folds], dtype=np.float64)
            out[name] = {"mean": round(float(np.mean(values)), 6), "std": round(float(np.std(values)), 6)}
        return out

    def score(self, scoring: str) -> float:
        mean = self.scores().get(scoring, {}).get("mean", math.nan)
        return float(mean)


class TrialLog:
    """Writes each finished trial to the experiments collection; None = logging off (registry disabled)."""

    def __init__(
        self, collection: Collection[dict[str, Any]] | None, *, name: str, version: str, estimator: str
    ) -> None:
        self.collection = collection
        self.build = {"name": name, "version": version}
        self.estimator = estimator
        self.run = uuid.uuid4().hex[:12]  # one build's trials; a rebuild of the same version is a new run
        self.started = _now()

    def write(self, plan: Plan, trial: Trial, params: dict[str, Any]) -> None:
        if self.collection is None:
            return
        document = {
            **self.build,
            "run": self.run,
            "started": self.started,
            "finished": _now(),
            "kind": plan.kind,
            "method": plan.method,
            "trial": trial.number,
            "params": trial.params,
            "estimator": {"class": self.estimator, "params": params},
            "folds": trial.folds,
            "scores": trial.scores(),
            "scoring": plan.scoring,
            "score": trial.score(plan.scoring),
            "higher_is_better": plan.higher_is_better,
            "fit_seconds": round(sum(trial.fit_seconds), 4),
            "fold_fit_seconds": [round(s, 4) for s in trial.fit_seconds],
            "status": trial.status,
        }
        if trial.error:
            document["error"] = trial.error
        with outside("MongoDB", action=f"logging a trial to {self.collection.full_name}"):
            self.collection.insert_one(document)

    def mark_best(self, trial: Trial) -> None:
        if self.collection is None:
            return
        with outside("MongoDB", action=f"marking the best trial in {self.collection.full_name}"):
            self.collection.update_one({"run": self.run, "trial": trial.number}, {"$set": {"best": True}})


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Experiment:
    plan: Plan
    trials: list[Trial]
    best: Trial
    seconds: float

    @property
    def best_params(self) -> dict[str, Any]:
        return self.best.params

    def cv_summary(self) -> dict[str, Any]:
        """For the metadata: deterministic (no times), so artifacts stay byte-identical."""
        return {"folds": self.plan.folds, "seed": self.plan.seed, "scores": self.best.scores()}

    def search_summary(self) -> dict[str, Any] | None:
        if self.plan.kind != "search":
            return None
        return {
            "method": self.plan.method,
            "space": self.plan.space,
            "scoring": self.plan.scoring,
            "folds": self.plan.folds,
            "trials": len(self.trials),
            "failed": sum(1 for t in self.trials if t.status != "ok"),
            "best_trial": self.best.number,
            "best_params": self.best.params,
            "results": [
                {
                    "trial": t.number,
                    "params": t.params,
                    "status": t.status,
                    "mean": _json_float(t.score(self.plan.scoring)),
                    "std": _json_float(t.scores().get(self.plan.scoring, {}).get("std", math.nan)),
                }
                for t in ranked(self.trials, self.plan)
            ],
        }

    def timings(self) -> list[dict[str, Any]]:
        """Per trial wall time of fitting, for the build report (not the metadata: times vary)."""
        return [{"trial": t.number, "fit_seconds": round(sum(t.fit_seconds), 4)} for t in self.trials]


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


def ranked(trials: list[Trial], plan: Plan) -> list[Trial]:
    """Best first; failed trials and NaN scores last, ties by trial number."""

    def key(trial: Trial) -> tuple[int, float, int]:
        value = trial.score(plan.scoring)
        if trial.status != "ok" or math.isnan(value):
            return (1, 0.0, trial.number)
        return (0, -value if plan.higher_is_better else value, trial.number)

    return sorted(trials, key=key)


def _folds(recipe: Recipe, plan: Plan, target: np.ndarray, keys: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds of the training split that follow [evaluation].split: in time order or by group (`keys`:
    the split field per training row), else stratified k-fold (classification) or k-fold, shuffled."""
    if recipe.classification:
        splitter: Any = StratifiedKFold(n_splits=plan.folds, shuffle=True, random_state=plan.seed)
    else:
        splitter = KFold(n_splits=plan.folds, shuffle=True, random_state=plan.seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # "least populated class has only 2 members"
            if keys is not None:
                return splits.folds(recipe.evaluation.split, keys, plan.folds, plan.seed)
            return list(splitter.split(np.zeros(len(target)), target))
    except (ValueError, UserWarning) as exc:
        raise DataError(
            f"cannot cross-validate the {len(target)} training rows in {plan.folds} folds: {exc}",
            details="lower [search].cv / [evaluation].cv, or add data",
        ) from None


def run(
    recipe: Recipe,
    split: Split,
    log: TrialLog,
    *,
    say: Callable[[str], None] = lambda _m: None,
    warn: Callable[[str], None] = lambda _m: None,
) -> Experiment | None:
    """Every trial of the plan on the training split, each logged as it finishes; the best one. A trial
    that fails (or scores NaN) is said through `warn` and left out of the ranking; all failing is exit 2."""
    the_plan = recipe.plan
    if the_plan is None:
        return None
    started = time.monotonic()
    # Every reported metric, and the scoring one even when [evaluation].metrics leaves it out.
    names = list(dict.fromkeys([*recipe.metrics, the_plan.scoring]))
    y_all = split.train_target
    chosen = _folds(recipe, the_plan, y_all, split.train_keys)
    groups = split.train_keys if recipe.evaluation.split == "group" else None
    folds = _fold_features(recipe, chosen, frame(split.train_columns, recipe.input_names), y_all, groups)
    trials = []
    for number, point in enumerate(the_plan.points):
        params = {**recipe.estimator.params, **point}
        say(f"trial {number + 1}/{len(the_plan.points)}: {point or 'configured params'}, {the_plan.folds} folds")
        trial = _run_trial(recipe, number, point, params, folds, y_all, split.train_weight, names)
        log.write(the_plan, trial, params)
        trials.append(trial)
        where = f"trial {number + 1} of {len(the_plan.points)} ({_shown(point)})"
        if trial.status != "ok":
            warn(f"{where} failed to train and is left out of the ranking: {trial.error[:300]}")
        elif math.isnan(trial.score(the_plan.scoring)):
            warn(f"{where} has no {the_plan.scoring} (NaN in every fold) and ranks last")
    best = ranked(trials, the_plan)[0]
    if best.status != "ok":
        raise ConfigError(f"all {len(trials)} trials failed to train; the first: {trials[0].error[:500]}")
    log.mark_best(best)
    return Experiment(the_plan, trials, best, round(time.monotonic() - started, 4))


def _shown(point: dict[str, Any]) -> str:
    """A point as the config writes it: None as "@none"."""
    if not point:
        return "the configured params"
    return ", ".join(f"{k} = {'@none' if v is None else repr(v)}" for k, v in point.items())


@dataclass(frozen=True)
class _Fold:
    """One fold's rows and the graph's features of them: the preprocessing is fitted once per fold and
    shared by every trial (the search space holds estimator params, which it does not depend on)."""

    fit_rows: np.ndarray
    score_rows: np.ndarray
    fit_x: np.ndarray
    score_x: np.ndarray


def _fold_features(
    recipe: Recipe, folds: list[tuple[np.ndarray, np.ndarray]], x_all: Any, y_all: np.ndarray, groups: Any = None
) -> list[_Fold]:
    out = []
    for fit_rows, score_rows in folds:
        try:
            features = graph_features(recipe.feature_spec)
            # fit_transform: a target encoding's training rows out of fold, as the final fit trains on them.
            fold_groups = None if groups is None else groups[fit_rows]
            fit_x = features.fit_transform(x_all.iloc[fit_rows], y_all[fit_rows], groups=fold_groups)
        except NoWordsError as exc:
            raise DataError(f"in a cross-validation fold: {exc}") from None
        except GraphConversionError as exc:
            raise ExternalError(f"skl2onnx could not convert the preprocessing: {exc}") from None
        out.append(
            _Fold(
                fit_rows,
                score_rows,
                fit_x,
                features.transform(x_all.iloc[score_rows]),
            )
        )
    return out


def _run_trial(
    recipe: Recipe,
    number: int,
    point: dict[str, Any],
    params: dict[str, Any],
    folds: list[_Fold],
    y_all: np.ndarray,
    weight: np.ndarray | None,
    names: list[str],
) -> Trial:
    trial = Trial(number, point)
    for fold in folds:
        estimator, spec = recipe.make(params)
        model = final(recipe, estimator)
        fit_args = {"sample_weight": weight[fold.fit_rows]} if weight is not None else {}
        began = time.perf_counter()
        try:
            model.fit(fold.fit_x, y_all[fold.fit_rows], **fit_args)  # warnings: the build says them
        except fit_errors(spec) as exc:  # a bad value in the space (InvalidParameterError is a ValueError)
            trial.fit_seconds.append(time.perf_counter() - began)
            trial.status, trial.error = "failed", f"{type(exc).__name__}: {exc}"
            trial.folds = []
            return trial
        trial.fit_seconds.append(time.perf_counter() - began)
        scored = weight[fold.score_rows] if weight is not None else None  # the metrics weigh as in the build's
        trial.folds.append(score_all(model, fold.score_x, y_all[fold.score_rows], names, scored))
    return trial


__all__ = ["Experiment", "Trial", "TrialLog", "ranked", "run"]
