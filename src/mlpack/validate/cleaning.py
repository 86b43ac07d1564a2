"""What the reading of dirty values did to the training data, said in the build's warnings.

The reading itself is the runtime's (`mlpack.runtime.to_number`: "NA" and "" are missing, " 54 "
is 54), shared by training and every prediction path; this module only counts what it did, so
that numbers stored as text are never accepted silently, finds the documents whose target is
missing for `[features].drop_missing_target`, and words the warnings about data that trains but
probably not as meant.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlpack.errors import DataError
from mlpack.runtime import MISSING_CATEGORY, to_number

MISSING_TARGET_FILTER = '{{ "{path}" = {{ "$exists" = true, "$not" = {{ "$type" = "null" }} }} }}'


def text_numbers_note(path: str, values: Sequence[Any], numbers: Sequence[float]) -> str | None:
    """A warning when some values of numeric feature `path` were text (or Extended JSON) read as numbers
    or as missing; None when every value was a number already."""
    as_number: list[Any] = []
    as_missing: list[Any] = []
    for value, number in zip(values, numbers):
        if value is None or isinstance(value, (int, float)):
            continue
        if isinstance(value, (str, dict)):
            (as_missing if number != number else as_number).append(value)
    if not as_number and not as_missing:
        return None
    parts = []
    if as_number:
        parts.append(f"{len(as_number)} read as numbers (e.g. {as_number[0]!r})")
    if as_missing:
        markers = Counter(str(v).strip() for v in as_missing if isinstance(v, str))
        shown = ", ".join(repr(m) for m, _ in markers.most_common(4)) + (", ..." if len(markers) > 4 else "")
        parts.append(f"{len(as_missing)} as missing ({shown or 'Extended JSON NaN'})")
    return (
        f"numeric feature '{path}': {len(as_number) + len(as_missing)} of {len(values)} values are text, not "
        f"numbers: {', '.join(parts)}; predictions read them the same way"
    )


def missing_target(values: Sequence[Any], regression: bool) -> list[int]:
    """Positions of documents without a target: absent, null or NaN, and for a regression also the
    missing markers a number is read as missing from ("NA", "", ...)."""
    missing = []
    for index, value in enumerate(values):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            missing.append(index)
        elif regression and isinstance(value, (str, dict)):
            try:
                if math.isnan(to_number(value)):
                    missing.append(index)
            except ValueError:
                pass  # not a number: the target check reports it
    return missing


def missing_target_hint(path: str) -> str:
    """How to train without documents whose target is missing (TOML has no null: `$ne = null` cannot be written)."""
    return (
        "set [features].drop_missing_target = true to train without them, or leave them out with "
        f"[source].filter = {MISSING_TARGET_FILTER.format(path=path)} (TOML has no null: that is "
        '{ "$ne": null } in MongoDB)'
    )


def without_missing_targets(raw: Any, target: str, regression: bool, notes: list[str]) -> Any:
    """The loaded columns (RawColumns) without the documents whose target is missing; how many, in `notes`."""
    dropped = missing_target(raw.values[target], regression)
    if not dropped:
        return raw
    if len(dropped) == raw.rows:
        raise DataError(f"no documents to train on: the target '{target}' is missing in all {raw.rows}")
    gone = set(dropped)
    kept = [i for i in range(raw.rows) if i not in gone]
    notes.append(
        f"{len(dropped)} of {raw.rows} documents left out: their target '{target}' is missing "
        f"(drop_missing_target), e.g. _id {raw.ids[dropped[0]]!s}"
    )
    values = {path: _kept(column, kept) for path, column in raw.values.items()}
    first_feedback = raw.rows - raw.feedback  # a feedback label is never missing (POST /feedback refuses none)
    feedback = sum(1 for i in kept if i >= first_feedback)
    return dataclasses.replace(raw, ids=_kept(raw.ids, kept), values=values, feedback=feedback)


def _kept(column: Any, kept: list[int]) -> Any:
    """The values at `kept`: a loaded Column's own `take` (no lookup per value), or a list's items."""
    take = getattr(column, "take", None)
    return take(kept) if take is not None else [column[i] for i in kept]


MOSTLY_MISSING = 0.5  # a numeric feature missing in more documents than this gets a warning
RARE_CLASS = 0.01  # a class with a smaller share of the documents gets a warning
MIN_ROWS_FOR_ID_WARNING = 20  # "one distinct value per document" means little on a handful of rows


def data_warnings(dataset: Any, features: Any, task: str, max_categories: int) -> list[str]:
    """Things that train but probably not as meant (`dataset`: validate's Dataset): the user reads them in
    the report and on the terminal."""
    warnings = []
    for path, column in dataset.categorical.items():
        if path not in features.categorical:  # read only by an expression: it becomes no column
            continue
        present = column[column != MISSING_CATEGORY]
        distinct = len(set(present.tolist()))
        if len(present) >= MIN_ROWS_FOR_ID_WARNING and distinct == len(present):
            warnings.append(
                f"categorical feature '{path}' has a different value in every document ({distinct}): it looks "
                "like an id or free text; list free text under [features].text, or drop the field"
            )
        elif distinct > max_categories and path not in features.ordinal and path not in features.encoding:
            warnings.append(
                f"categorical feature '{path}' has {distinct} distinct values, more than "
                f"[preprocessing].max_categories ({max_categories}): the {max_categories - 1} most frequent "
                f'become columns and the rest share one; [features].encoding = {{ "{path}" = "target" }} '
                '(or "frequency") makes it one number'
            )
    for path, values in dataset.numeric.items():
        share = float(np.mean(np.isnan(values))) if len(values) else 0.0
        if share > MOSTLY_MISSING:
            warnings.append(
                f"numeric feature '{path}' is missing in {share:.0%} of the documents: "
                "most of its values will be the imputed value ([preprocessing].numeric_impute)"
            )
    if task == "classification":
        counts = Counter(dataset.target.tolist())
        for label, count in sorted(counts.items(), key=lambda item: item[1]):
            share = count / dataset.rows
            if share < RARE_CLASS:
                warnings.append(
                    f"class {label!r} of target '{features.target}' is {share:.2%} of the documents "
                    f"({count} of {dataset.rows}): the model may never predict it"
                )
    return warnings


def never_present(kind: str, columns: dict[str, Any], rows: int) -> list[str]:
    """Features whose every value is missing (null, NaN, a missing marker such as "NA", an empty text).

    Such a column used to build: the imputer drops a numeric column it has no value for while the
    graph still takes the input, and the model learns nothing from it. The data or the config is
    wrong, so the build stops naming it (exit 1)."""
    import numpy as np

    from mlpack.runtime import MISSING_CATEGORY, MISSING_DATE

    problems = []
    for path, column in columns.items():
        if column is None or not rows:
            continue
        if kind == "numeric":
            empty = bool(np.isnan(column).all())
        elif kind == "datetime":
            empty = bool((column == MISSING_DATE).all())
        else:
            empty = all(value == (MISSING_CATEGORY if kind == "categorical" else "") for value in column.tolist())
        if empty:
            problems.append(
                f"{kind} feature '{path}' has no value in any of the {rows} documents (each is null, absent or a "
                'missing marker such as "NA"): there is nothing to learn from it; fix the data or remove it from '
                "[features]"
            )
    return problems
