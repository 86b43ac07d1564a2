"""The train/test split of a build and the cross-validation folds that follow it ([evaluation].split)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlpack.runtime import MISSING_CATEGORY, MISSING_DATE, category_text, date_milliseconds

# -- the train/test split of a build ([evaluation].split) -------------------------------------------
# "random" is train_test_split (stratified for classification); "time" holds out the newest documents
# by a date field; "group" keeps every value of a field in one split (GroupShuffleSplit: test_size is
# the share of groups); "filter" holds out the documents a MongoDB query matches. Cross-validation
# on the training split follows the same rule: TimeSeriesSplit in time order, GroupKFold by group.


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


def at_random(count: int, test_size: float, seed: int, stratify: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of the seeded random split, stratified by `stratify` (the classes) if given."""
    from sklearn.model_selection import train_test_split  # here: reading a config imports this module

    train, test = train_test_split(np.arange(count), test_size=test_size, random_state=seed, stratify=stratify)
    return train, test


def holdout(kind: str, keys: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) for "time" (the newest test_size share; documents of the boundary's
    time all go to test, so no moment is in both) or "group" (no group in both splits)."""
    from sklearn.model_selection import GroupShuffleSplit

    rows = np.arange(len(keys))
    if kind == "time":
        order = np.argsort(keys, kind="stable")
        cut = keys[order[len(keys) - max(1, math.ceil(len(keys) * test_size))]]
        return rows[keys < cut], rows[keys >= cut]
    groups = np.unique(keys.astype(str), return_inverse=True)[1]
    if groups.max() < 1:
        raise ValueError("needs at least 2 distinct values to split by group")
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(splitter.split(rows, groups=groups))
    return np.sort(train), np.sort(test)


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
