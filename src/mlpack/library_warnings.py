"""Warnings of the libraries a build runs (scikit-learn, numpy, LightGBM, XGBoost, skl2onnx), said as
mlpack's own: once each, in a sentence that says what to change, next to mlpack's data warnings.

Raw, they leaked about ten times per build on real data (the same "R^2 score is not well-defined"
for every fold and every shuffle of the permutation importance), with a file name and a line of
library source each, while mlpack's own warnings were hidden unless on a terminal. Inside
`captured()` nothing is printed: every warning is recorded, grouped by its text, and turned into one
sentence; the build prints those on stderr (unless -q) and keeps them in its report.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_LIBRARY = re.compile(r"[/\\](sklearn|numpy|scipy|pandas|lightgbm|xgboost|skl2onnx|onnxmltools|onnx)[/\\]")
_NAMES = {"sklearn": "scikit-learn"}


@dataclass
class Heard:
    """What the libraries said while captured: (category name, library, first line) → times recorded."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def sentences(self) -> list[str]:
        return [_sentence(category, library, text, times) for (category, library, text), times in self.counts.items()]


@contextmanager
def captured() -> Iterator[Heard]:
    """Record every warning raised inside (nothing is printed); `Heard.sentences()` says them afterwards.

    The filters in force stay in force (mlpack's own "ignore" of warnings about params it sets, and
    Python's: a warning is recorded once per place that raises it); only the printing is replaced."""
    heard = Heard()
    with warnings.catch_warnings(record=True) as caught:
        yield heard
    for record in caught:
        first = str(record.message).strip().splitlines()[0] if str(record.message).strip() else ""
        found = _LIBRARY.search(record.filename or "")
        library = _NAMES.get(found.group(1), found.group(1)) if found else ""
        heard.counts[(record.category.__name__, library, first[:300])] += 1


def _sentence(category: str, library: str, text: str, times: int) -> str:
    repeated = f" ({times} times)" if times > 1 else ""
    if category == "ConvergenceWarning":
        return (
            f"the estimator did not converge{repeated} ({library or 'its library'}: {text.rstrip(':')}): raise "
            "[estimator].params.max_iter (or loosen tol); its scores are those of an unfinished fit"
        )
    if category == "UndefinedMetricWarning":
        return (
            f"a metric is undefined on some rows{repeated} ({library or 'scikit-learn'}: {text}): too few documents "
            "or a class missing from a split; such a score counts as 0 or NaN"
        )
    source = f"{library} warned" if library else f"a {category}"
    return f"{source}{repeated}: {text}"


__all__ = ["Heard", "captured"]
