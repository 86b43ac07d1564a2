"""The train/test split of a build and the cross-validation folds that follow it ([evaluation].split)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpack import filters
from mlpack.config import EvaluationSection
from mlpack.runtime import MISSING_CATEGORY, MISSING_DATE, category_text, date_milliseconds
from mlpack.validate import Dataset

# -- the train/test split of a build ([evaluation].split) -------------------------------------------
# "random" is train_test_split (stratified for classification); "time" holds out the newest documents
# by a date field; "group" keeps every value of a field in one split (GroupShuffleSplit: test_size is
# the share of groups); "filter" holds out the documents a MongoDB query matches. Cross-validation
# on the training split follows the same rule: TimeSeriesSplit in time order, GroupKFold by group.
# Each kind is a function of SPLITS (a new kind is one entry there, and its name in the config's Literal).


@dataclass(frozen=True)
class Holdout:
    """Which documents (row numbers) train and which test; `keys`: the split field's key per document
    ("time", "group"), for the folds that follow the same rule."""

    train: np.ndarray
    test: np.ndarray
    keys: np.ndarray | None = None


def holdout(evaluation: EvaluationSection, dataset: Dataset, stratify: np.ndarray | None) -> Holdout:
    """[evaluation].split of the validated documents; `stratify`: the classes, for a random split. A
    split the data cannot make is a ValueError saying why."""
    return SPLITS[evaluation.split](evaluation, dataset, stratify)


def _at_random(evaluation: EvaluationSection, dataset: Dataset, stratify: np.ndarray | None) -> Holdout:
    from sklearn.model_selection import train_test_split  # here: reading a config imports this module

    rows, size, seed = np.arange(dataset.rows), evaluation.test_size, evaluation.seed
    train, test = train_test_split(rows, test_size=size, random_state=seed, stratify=stratify)
    return Holdout(train, test)


def _newest(evaluation: EvaluationSection, dataset: Dataset, _stratify: np.ndarray | None) -> Holdout:
    """The newest test_size share; documents of the boundary's time all go to test, so no moment is in both."""
    keys = split_keys("time", evaluation.split_field, dataset.split_values, dataset.ids)
    order = np.argsort(keys, kind="stable")
    cut = keys[order[len(keys) - max(1, math.ceil(len(keys) * evaluation.test_size))]]
    rows = np.arange(len(keys))
    return Holdout(rows[keys < cut], rows[keys >= cut], keys)


def _by_group(evaluation: EvaluationSection, dataset: Dataset, _stratify: np.ndarray | None) -> Holdout:
    """No group in both splits; test_size is the share of groups."""
    from sklearn.model_selection import GroupShuffleSplit

    keys = split_keys("group", evaluation.split_field, dataset.split_values, dataset.ids)
    groups = np.unique(keys.astype(str), return_inverse=True)[1]
    if groups.max() < 1:
        raise ValueError("needs at least 2 distinct values to split by group")
    splitter = GroupShuffleSplit(n_splits=1, test_size=evaluation.test_size, random_state=evaluation.seed)
    train, test = next(splitter.split(np.arange(len(keys)), groups=groups))
    return Holdout(np.sort(train), np.sort(test), keys)


def _by_filter(evaluation: EvaluationSection, dataset: Dataset, _stratify: np.ndarray | None) -> Holdout:
    """The documents [evaluation].test_filter matches are the test split (the config holds it parsed)."""
    test = filters.matching(evaluation.test_filter, dataset.split_values, dataset.rows)
    return Holdout(np.flatnonzero(~test), np.flatnonzero(test))


SPLITS: dict[str, Callable[[EvaluationSection, Dataset, np.ndarray | None], Holdout]] = {
    "random": _at_random,
    "time": _newest,
    "group": _by_group,
    "filter": _by_filter,
}


def split_keys(kind: str, path: str, columns: Mapping[str, Sequence[Any]], ids: Sequence[Any]) -> np.ndarray:
    """The split field's value per document (columns[path]): int64 ms since 1970 for "time", the
    category text for "group"; a document without one is a ValueError naming the count and an `_id`."""
    values = columns[path]
    keys: list[Any] = []
    missing: list[int] = []
    for index, value in enumerate(values):
        try:
            key = date_milliseconds(value) if kind == "time" else category_text(value)
        except ValueError as exc:
            raise ValueError(f"[evaluation].split_field '{path}': _id {ids[index]!s}: {exc}") from None
        if key in (MISSING_DATE, MISSING_CATEGORY):
            missing.append(index)
        keys.append(key)
    if missing:
        raise ValueError(
            f"[evaluation].split_field '{path}' is missing in {len(missing)} document(s), e.g. _id "
            f"{ids[missing[0]]!s}: every document needs one to be put in a split (filter them out in [source].filter)"
        )
    return np.array(keys, dtype=np.int64 if kind == "time" else object)


def folds(kind: str, keys: np.ndarray, count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds over the training rows that follow the split: in time order (each fold
    validates on documents newer than those it trains on) or by group (no group in two folds)."""
    from sklearn.model_selection import GroupKFold, TimeSeriesSplit

    if kind == "time":
        order = np.argsort(keys, kind="stable")
        return [(order[fit], order[check]) for fit, check in TimeSeriesSplit(n_splits=count).split(order)]
    groups = np.unique(keys.astype(str), return_inverse=True)[1]
    splitter = GroupKFold(n_splits=count, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(keys)), groups=groups))
