"""The model as the server sees it: a `Protocol`, so that the server never depends on `Model` itself.

The server is handed its model (`serve(model, settings)`), and everything it reads of it is named
here, checked by mypy: `runtime.Model` is one (the assignment under TYPE_CHECKING below proves it),
and a test double or another runtime can be one too without inheriting anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8
    Protocol = object  # type: ignore[assignment]

# `observe(feeds, labels)`: what an observer (drift tracking) is called with for each run.
Observe = Callable[[Dict[str, np.ndarray], List[Any]], object]
# Labels (or values), class probabilities (classification; None otherwise), and whether one record came in.
Run = Tuple[List[Any], Optional[List[List[float]]], bool]


class ServedFeature(Protocol):
    """One input of the model: its path in a record, its ONNX input name, its kind."""

    @property
    def name(self) -> str: ...

    @property
    def input(self) -> str: ...

    @property
    def kind(self) -> str: ...  # "numeric", "categorical", "datetime" or "text"

    @property
    def parts(self) -> Tuple[str, ...]: ...  # the path split at dots, for the OpenAPI schema's nesting


class ServedModel(Protocol):
    """What the routes, the metrics, drift tracking and the inference log read of the model."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def task(self) -> str: ...  # "classification" or "regression"

    @property
    def classes(self) -> Optional[List[Any]]: ...

    @property
    def probabilities(self) -> bool: ...  # whether a classifier gives class probabilities

    @property
    def features(self) -> Sequence[ServedFeature]: ...

    @property
    def metadata(self) -> Mapping[str, Any]: ...

    def load(self) -> object:
        """Make the onnxruntime session now, before the server accepts connections."""

    def run(self, data: Any, observe: Optional[Observe] = None, strict: bool = False) -> Run:
        """Records or columns in; raises ValueError naming the field a client got wrong."""
        ...

    # What the batcher uses: reading a request (as run does), and the graph on many requests' feeds.
    def feeds(self, data: Any, strict: bool = False) -> Tuple[Dict[str, np.ndarray], bool]:
        """The ONNX feeds of records or columns, and whether one record came in; ValueError as run."""
        ...

    def outputs(self, feeds: Mapping[str, np.ndarray]) -> Tuple[List[Any], Optional[List[List[float]]]]:
        """Labels (or values) and class probabilities, a row each; a row's do not depend on the others."""
        ...

    def rows(self, data: Any) -> Optional[List[Any]]:
        """`data` as a list of records when it is records, else None (columns)."""
        ...


if TYPE_CHECKING:  # mypy: the runtime's own Model is a ServedModel (a missing attribute fails here)
    from ..model import Model

    def _is_served(model: Model) -> ServedModel:
        return model


__all__ = ["Observe", "Run", "ServedFeature", "ServedModel"]


def feedback_label_problem(model: ServedModel, label: Any) -> Optional[str]:
    """Why `label` cannot be a true outcome of this model (None when it can): one of the classes /predict
    answers with, of the same JSON type (`true`, not "true", for a boolean target), or a regression's
    number. Taken, a label of another kind stopped the next build that trains on feedback (exit 1)."""
    if model.task == "regression":
        if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
            return "expected the true value, a number"
        return None
    classes = list(model.classes or [])
    if any(_same_class(label, known) for known in classes):
        return None
    shown = ", ".join(json.dumps(c) for c in classes[:10]) + (", ..." if len(classes) > 10 else "")
    return f"expected one of the model's classes ({shown}), as /predict answers them"


def _same_class(label: Any, known: Any) -> bool:
    if isinstance(label, bool) or isinstance(known, bool):
        return type(label) is type(known) and label == known
    if isinstance(known, (int, float)):
        return isinstance(label, (int, float)) and label == known  # 1.0 is the class 1, as JSON has it
    return isinstance(label, str) and label == known
