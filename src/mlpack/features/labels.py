"""A classifier's classes: as the data had them, by their [features].labels names, as class_weight keys.

`dataset` is a validated Dataset (its `target_kind`), `config` a Config (its `[features].labels`):
typed loosely here, as this layer sits below both.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any, Literal

import numpy as np

from mlpack.errors import ConfigError, DataError
from mlpack.runtime import category_text, to_number

TargetKind = Literal["bool", "int", "str", "float"]
_KIND_WORDS = {"bool": "booleans", "int": "integers", "str": "strings"}


def label_kind(value: Any) -> TargetKind | None:
    """bool, int (whole floats count: 1.0 is class 1) or str; None for anything else."""
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (Integral, np.integer)) or (isinstance(value, float) and value.is_integer()):
        return "int"
    if isinstance(value, str):
        return "str"
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def feedback_targets(
    values: Sequence[Any], feedback: int, ids: Sequence[Any], labels: dict[str, str], regression: bool, target: str
) -> tuple[list[Any], str | None]:
    """The target column with its last `feedback` values (labels clients sent to POST /feedback) read as
    the collection's: a class by its [features].labels name (what /predict answered) becomes the class,
    and a label of another type than the collection's is the problem returned, naming the feedback."""
    own, theirs = list(values[: len(values) - feedback]), list(values[len(values) - feedback :])
    where = "feedback label(s) from the inference log"
    if regression:
        bad = []
        for index, value in enumerate(theirs):
            try:
                number = to_number(value)  # text too (" 54 "), as the collection's targets are read
            except ValueError:
                number = math.nan
            if math.isnan(number):
                bad.append(index)
        if bad:
            first = bad[0]
            return own + theirs, (
                f"target '{target}': {len(bad)} {where} are not numbers, as a regression needs, "
                f"e.g. {ids[len(own) + first]} has {_shown(theirs[first])}"
            )
        return own + theirs, None
    kinds = {label_kind(value) for value in own if value is not None}
    kind = next(iter(kinds)) if len(kinds) == 1 else None
    if kind is None and not own:  # every document replaced by feedback: the feedback says
        kind = label_kind(theirs[0]) if theirs else None
    by_text = {category_text(value): value for value in own if value is not None}
    by_name = {name: by_text[text] for text, name in labels.items() if text in by_text}
    read = [by_name[v] if isinstance(v, str) and v in by_name and v not in by_text else v for v in theirs]
    if kind is None:
        return own + read, None  # the collection's own labels are mixed: the target check says so
    bad = [index for index, value in enumerate(read) if label_kind(value) != kind]
    if bad:
        first = bad[0]
        return own + read, (
            f"target '{target}': {len(bad)} {where} are not {_KIND_WORDS[kind]} like the collection's, "
            f"e.g. {ids[len(own) + first]} has {_shown(theirs[first])}: send the class as /predict answered it"
        )
    return own + read, None


def with_feedback_targets(raw: Any, features: Any, regression: bool) -> Any:
    """The loaded columns (RawColumns) with the feedback rows' targets read by `feedback_targets`, or the
    DataError that names the first label of the wrong type."""
    target = features.target
    column, problem = feedback_targets(raw.values[target], raw.feedback, raw.ids, features.labels, regression, target)
    if problem:
        raise DataError(
            "the feedback is not usable", details=f"data validation failed ({raw.rows} documents):\n  - {problem}"
        )
    return dataclasses.replace(raw, values={**raw.values, target: column})


def class_value(code: Any, target_kind: TargetKind) -> Any:
    """A class as the data had it (`target_kind`: the Dataset's): the training code 1 of a boolean target is True."""
    return bool(code) if target_kind == "bool" else code


def class_names(codes: list[Any], target_kind: TargetKind, labels: Mapping[str, str]) -> list[Any]:
    """The classes as predict() returns them: as in the data, or by their [features].labels names (`labels`)."""
    values = [class_value(code, target_kind) for code in codes]
    if not labels:
        return values
    texts = [category_text(value) for value in values]
    unknown = [key for key in labels if key not in texts]
    if unknown:
        raise ConfigError(
            f"[features].labels names class {unknown[0]!r}, which is not in the data "
            f'(classes: {", ".join(texts)}; keys are the classes\' text, e.g. "0" or "true")'
        )
    unnamed = [text for text in texts if text not in labels]
    if unnamed:
        raise ConfigError(f"[features].labels has no name for class {unnamed[0]!r}: name every class or none")
    names = [labels[text] for text in texts]
    if len(set(names)) != len(names):
        raise ConfigError("[features].labels gives two classes the same name")
    return names


def class_keys(codes: list[Any], target_kind: TargetKind, labels: Mapping[str, str]) -> dict[str, Any]:
    """Every way mlpack.toml may name a class → its training code: the class's canonical text ("1",
    "true") and its [features].labels name. class_weight keys and positive_class are read by it."""
    keys = {category_text(class_value(code, target_kind)): code for code in codes}
    keys.update({str(name): code for code, name in zip(codes, class_names(codes, target_kind, labels))})
    return keys


__all__ = [
    "TargetKind",
    "class_keys",
    "class_names",
    "class_value",
    "feedback_targets",
    "label_kind",
    "with_feedback_targets",
]
