"""`Model`: one ONNX model with its metadata; the onnxruntime session is made on first use."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .contract import FLOAT32_MAX, MISSING_CATEGORY, Metadata, parse_metadata
from .feeds import _INPUTS, _LISTLIKE_TYPES, Feature, _is_listlike, _values
from .settings import session_threads
from .values import ABSENT, _shown, absent_reason, lookup

_NAN = float("nan")


class Model:
    """One ONNX model with its mlpack metadata; the onnxruntime session is created on first use."""

    def __init__(self, model: Union[bytes, str, "os.PathLike[str]"], metadata: Mapping[str, Any]) -> None:
        self._model = model if isinstance(model, bytes) else os.fspath(model)
        self.metadata: Metadata = parse_metadata(dict(metadata))
        self.name: str = self.metadata["name"]
        self.version: str = self.metadata["version"]
        self.task: str = self.metadata["task"]
        self.classes: Optional[List[Any]] = self.metadata.get("classes")
        # A classifier without class probabilities (LinearSVC) says so; older models always had them.
        self.probabilities: bool = self.task == "classification" and self.metadata.get("probabilities", True)
        # What the graph is fed: every input (derived features' fields, dates, text), or for models
        # built before `inputs` existed, the features.
        inputs = self.metadata.get("inputs")
        if inputs:
            known = {f["name"]: f.get("categories") or {} for f in self.metadata["features"]}
            self.features = [Feature.from_input(entry, known.get(entry["path"], {})) for entry in inputs]
        else:
            self.features = [Feature.from_metadata(entry) for entry in self.metadata["features"]]
        self._decode = _class_decoder(self.classes, self.metadata.get("class_codes"))
        self._pad_single = not _tree_ensemble(self.metadata.get("estimator", {}).get("class", ""))
        self._session: Any = None
        self._runner: Optional[Callable[[Mapping[str, np.ndarray]], List[np.ndarray]]] = None
        self._lock = threading.Lock()
        self._spare: List[Dict[str, np.ndarray]] = []  # one record's [1, 1] arrays, for the next (`run`)

    @property
    def session(self) -> Any:
        if self._session is None:
            with self._lock:  # many threads may ask at once; only one session is ever built
                if self._session is None:
                    self._session = _new_session(self._model)
        return self._session

    def _graph(self, feeds: Mapping[str, np.ndarray]) -> List[np.ndarray]:
        """Every output of the graph on `feeds`, which hold exactly its inputs (the runtime made them).

        Straight to the session's compiled `run` where onnxruntime has one (all 1.x releases): its
        Python `run` checks the feeds' names and lists the outputs again on every call, ~10% of a
        one-record call of a forest."""
        run = self._runner
        if run is None:
            session = self.session
            names = [output.name for output in session.get_outputs()]
            compiled = getattr(session, "_sess", None)
            if compiled is not None and hasattr(compiled, "run"):
                run = functools.partial(_compiled_run, compiled.run, names)
            else:  # pragma: no cover - an onnxruntime without it
                run = functools.partial(session.run, names)
            self._runner = run
        try:
            return run(feeds)
        except TypeError:
            # `_sess` is onnxruntime's private binding: one whose `run` takes other arguments than 1.x's
            # must cost speed, never predictions. The public `run` from now on (its errors are its own).
            if getattr(run, "func", None) is not _compiled_run:
                raise
            session = self.session
            self._runner = functools.partial(session.run, [output.name for output in session.get_outputs()])
            return self._runner(feeds)

    def unload(self) -> None:
        """Drop the onnxruntime session, and with it what its memory arena kept for the largest run so far;
        the next prediction makes a new one (the same answers)."""
        with self._lock:
            self._session = None
            self._runner = None

    def load(self) -> Model:
        """Create the session now rather than on the first prediction (servers call this at start)."""
        _ = self.session
        return self

    # -- inputs ---------------------------------------------------------------------------------
    def feeds(self, data: Any, strict: bool = False) -> "tuple[Dict[str, np.ndarray], bool]":
        """ONNX feeds for one record, a list of records, a dict of columns or a DataFrame.

        Returns the feeds and whether a single record was given (its answer is then not a list).
        `strict`: absent fields and categories never seen in training are errors, not missing values.
        """
        if type(data) is dict and not self._looks_like_columns(data):
            return self._record_feeds(data, strict), True  # one record: the server's usual request
        columns, single = self._columns(data, strict)
        feeds: Dict[str, np.ndarray] = {}
        for feature in self.features:
            feeds[feature.input] = _INPUTS[feature.kind](feature, columns[feature.name], strict)
        return feeds, single

    def _record_feeds(
        self, record: Dict[str, Any], strict: bool, cells: Optional[Dict[str, np.ndarray]] = None
    ) -> Dict[str, np.ndarray]:
        """One record straight to [1, 1] tensors: the same reading as for many records (the careful
        paths are shared), without building columns first, which costs more than the model for one.
        `cells`: the [1, 1] arrays a number or a category is written into (`_cells`; fresh ones if None)."""
        if cells is None:
            cells = self._cells()
        feeds: Dict[str, np.ndarray] = {}
        for feature in self.features:
            value = record.get(feature.name, ABSENT)  # a dotted key first ("billing.method"), as `lookup`
            if value is ABSENT and len(feature.parts) > 1:
                parts = feature.parts
                outer = record.get(parts[0]) if len(parts) == 2 else None
                # A plain sub-document (JSON's): its field, as `lookup` reads it without its checks.
                value = outer.get(parts[1], ABSENT) if type(outer) is dict else lookup(record, feature.name, parts)
            if value is ABSENT:
                if strict:
                    raise feature.problem(absent_reason(record, feature.parts), 0, False)
                value = None
            kind = feature.kind
            if kind == "numeric":
                kind_of = type(value)
                if value is None or (kind_of is float or kind_of is int) and -FLOAT32_MAX <= value <= FLOAT32_MAX:
                    # Filled by item, the bits np.array([[value]]) gives, at 40% of its cost.
                    feeds[feature.input] = cell = cells[feature.input]
                    cell[0, 0] = _NAN if value is None else value  # None is NaN: missing
                    continue
            elif kind == "categorical" and (value is None or type(value) is str and not strict):
                feeds[feature.input] = cell = cells[feature.input]
                cell[0, 0] = MISSING_CATEGORY if value is None else value
                continue
            feeds[feature.input] = _INPUTS[kind](feature, [value], strict)
        return feeds

    def _cells(self) -> Dict[str, np.ndarray]:
        """A [1, 1] array per numeric (float32) and categorical (object) input, for `_record_feeds`."""
        kinds = {"numeric": np.float32, "categorical": object}
        return {f.input: np.empty((1, 1), kinds[f.kind]) for f in self.features if f.kind in kinds}

    def _columns(self, data: Any, strict: bool) -> "tuple[Dict[str, Sequence[Any]], bool]":
        if hasattr(data, "iloc") and hasattr(data, "columns"):  # a pandas DataFrame, without importing pandas
            return self._dataframe_columns(data, strict), False
        if isinstance(data, Mapping):
            if self._looks_like_columns(data):
                return self._column_dict(data, strict), False
            return self._record_columns([data], strict), True
        if isinstance(data, (list, tuple)):
            if not data:
                raise ValueError("no records given")
            return self._record_columns(data, strict), False
        raise ValueError(f"expected a record (dict), a list of records or a dict of columns, got {type(data).__name__}")

    def _looks_like_columns(self, data: Mapping[str, Any]) -> bool:
        """Columns when most of the model's fields hold lists; a record with one list in it is a record
        (so the error names that field, not another one)."""
        if _LISTLIKE_TYPES.isdisjoint(map(type, data.values())):
            return False
        found = [lookup(data, f.name, f.parts) for f in self.features]
        lists = sum(1 for value in found if _is_listlike(value))
        scalars = sum(1 for value in found if value is not ABSENT and not _is_listlike(value))
        return lists > scalars

    def _record_columns(self, records: Sequence[Any], strict: bool) -> Dict[str, Sequence[Any]]:
        if set(map(type, records)) != {dict}:  # plain dicts (JSON, find()) skip the per-record check
            for index, record in enumerate(records):
                if not isinstance(record, Mapping):
                    raise ValueError(f"record {index} is a {type(record).__name__}, not an object of fields")
        return {feature.name: _values(records, feature, strict) for feature in self.features}

    def _column_dict(self, data: Mapping[str, Any], strict: bool) -> Dict[str, Sequence[Any]]:
        columns: Dict[str, Sequence[Any]] = {}
        length = None
        absent = []
        for feature in self.features:
            values = lookup(data, feature.name, feature.parts)
            if values is ABSENT:
                if strict:
                    raise ValueError(f"missing column '{feature.name}' (strict: every field must be given)")
                absent.append(feature.name)
                continue
            if not _is_listlike(values):
                raise ValueError(f"column '{feature.name}' must be a list of values, got {_shown(values)}")
            if length is None:
                length = len(values)
            elif len(values) != length:
                raise ValueError(f"column '{feature.name}' has {len(values)} values, expected {length}")
            columns[feature.name] = values
        if not length:
            raise ValueError("no records given")
        for name in absent:  # an absent column is a column of missing values, as an absent field is
            columns[name] = [None] * length
        return columns

    def _dataframe_columns(self, frame: Any, strict: bool) -> Dict[str, Sequence[Any]]:
        if len(frame) == 0:
            raise ValueError("no records given")
        columns: Dict[str, Sequence[Any]] = {}
        for feature in self.features:
            if feature.name not in frame.columns:
                if strict:
                    raise ValueError(f"missing column '{feature.name}' (strict: every field must be given)")
                columns[feature.name] = [None] * len(frame)
            else:
                columns[feature.name] = frame[feature.name].tolist()
        return columns

    # -- outputs --------------------------------------------------------------------------------
    def run(
        self,
        data: Any,
        observe: Optional[Callable[[Dict[str, np.ndarray], List[Any]], object]] = None,
        strict: bool = False,
    ) -> "tuple[List[Any], Optional[List[List[float]]], bool]":
        """Labels (or values), class probabilities (classification) and whether one record came in.

        `observe(feeds, labels)`, when given, sees the inputs exactly as the model read them (the
        server's drift window counts them there rather than reading the records a second time).
        `strict`: absent fields and categories never seen in training are errors.

        One record is written into [1, 1] arrays kept from an earlier one (`_spare`, a set per thread
        running at once) rather than new ones: so `observe` must read its feeds before it returns.
        """
        if type(data) is dict and not self._looks_like_columns(data):
            try:
                cells = self._spare.pop()  # atomic: two threads never take the same set
            except IndexError:
                cells = self._cells()
            feeds = self._record_feeds(data, strict, cells)
            labels, probabilities = self.outputs(feeds)
            if observe is not None:
                observe(feeds, labels)
            self._spare.append(cells)  # once nothing reads them: the answer holds none of their memory
            return labels, probabilities, True
        feeds, single = self.feeds(data, strict)
        labels, probabilities = self.outputs(feeds)
        if observe is not None:
            observe(feeds, labels)
        return labels, probabilities, single

    def outputs(self, feeds: Mapping[str, np.ndarray]) -> "tuple[List[Any], Optional[List[List[float]]]]":
        """The graph on prepared feeds (`feeds`): labels (or values) and class probabilities, a row each.

        A row's answer does not depend on the rows beside it, so a server may run many requests'
        feeds at once (its batcher). onnxruntime multiplies a one-row matrix with another kernel than
        a batch (logistic regression: 1 float32 ulp apart on a third of the rows), so one row runs
        as two, unless the estimator is a tree ensemble, which reads each row on its own.
        """
        labels, probabilities = self.output_arrays(feeds)
        return labels, probabilities.tolist() if probabilities is not None else None

    def output_arrays(self, feeds: Mapping[str, np.ndarray]) -> "tuple[List[Any], Optional[np.ndarray]]":
        """`outputs`, the class probabilities as the graph's float32 array (rows x classes) rather than
        lists: what `outputs` gives, before a Python float is made of each (the parity check on a
        million rows compares arrays)."""
        if self._pad_single and len(next(iter(feeds.values()))) == 1:
            outputs = [out[:1] for out in self._graph({k: np.concatenate((v, v)) for k, v in feeds.items()})]
        else:
            outputs = self._graph(feeds)
        if self.task == "classification":
            labels, probabilities = outputs[0].tolist(), outputs[1] if self.probabilities else None
            if self._decode is not None:
                decode = self._decode
                labels = [decode[label] for label in labels]
            return labels, probabilities
        return outputs[0].ravel().tolist(), None

    def rows(self, data: Any) -> Optional[List[Any]]:
        """`data` as a list of records when it is records (one, or a list of them), else None (columns,
        a DataFrame): what a server may read together with other requests' records."""
        if type(data) is list:
            return data
        if type(data) is dict and not self._looks_like_columns(data):
            return [data]
        return None

    def predict(self, data: Any, strict: bool = False) -> Any:
        """One label (or value) for one record; a list for records, columns or a DataFrame."""
        labels, _, single = self.run(data, strict=strict)
        return labels[0] if single else labels

    def predict_batches(self, frames: Iterable[Any]) -> Iterator[Any]:
        """pandas DataFrames in, each with `prediction` (and `probabilities`) columns added, out.

        The shape of Spark's `mapInPandas` and, one frame at a time, Dask's `map_partitions`. A
        feature is read from its dotted column ("billing.method") or from a column of sub-documents
        ("billing", as Spark hands over structs). Frames are never concatenated: memory stays one batch.
        """
        for frame in frames:
            if len(frame) == 0:  # Spark sends empty batches; they keep their shape
                empty: dict[str, list[Any]] = {"prediction": []}
                if self.task == "classification":
                    empty["probabilities"] = []
                yield frame.assign(**empty)
                continue
            labels, probabilities, _ = self.run(self._frame_columns(frame))
            added: dict[str, list[Any]] = {"prediction": labels}
            if probabilities is not None:
                added["probabilities"] = probabilities
            yield frame.assign(**added)

    def _frame_columns(self, frame: Any) -> dict[str, Sequence[Any]]:
        columns: dict[str, Sequence[Any]] = {}
        for feature in self.features:
            if feature.name in frame.columns:
                columns[feature.name] = frame[feature.name].tolist()
            elif feature.parts[0] in frame.columns:
                # Sub-documents (Spark structs as dicts): the rest of the path, read as any record is.
                rest, parts = ".".join(feature.parts[1:]), feature.parts[1:]
                outer = frame[feature.parts[0]].tolist()
                values = [lookup(v, rest, parts) if isinstance(v, Mapping) else None for v in outer]
                columns[feature.name] = [None if v is ABSENT else v for v in values]
            else:
                columns[feature.name] = [None] * len(frame)  # an absent column: missing values, as in records
        return columns

    def predict_proba(self, data: Any, strict: bool = False) -> Any:
        """Class probabilities in the order of `classes`: one row per record."""
        if self.task != "classification":
            raise ValueError(f"{self.name} is a regression model: it has no class probabilities")
        if not self.probabilities:
            estimator = self.metadata.get("estimator", {}).get("class", "its estimator")
            raise ValueError(f"{self.name} gives labels only: {estimator} has no class probabilities")
        _, probabilities, single = self.run(data, strict=strict)
        assert probabilities is not None
        return probabilities[0] if single else probabilities


def _class_decoder(classes: Optional[List[Any]], codes: Optional[List[Any]]) -> Optional[Dict[Any, Any]]:
    """The graph emits integer or string codes; booleans and [features].labels names are mapped back here."""
    if classes is None or codes is None or len(codes) != len(classes):
        return None
    if all(type(c) is type(k) and c == k for c, k in zip(classes, codes)):
        return None
    return dict(zip(codes, classes))


# Estimators exported as onnxruntime's tree ensembles (TreeEnsembleClassifier/Regressor), after
# preprocessing that works value by value: each row is computed alone, whatever the batch.
_TREE_ENSEMBLES = ("sklearn.tree.", "xgboost.", "lightgbm.", "mlpack.estimators.xgboost_labels.")
_TREE_ENSEMBLE_CLASSES = ("RandomForest", "ExtraTrees", "GradientBoosting", "HistGradientBoosting")


def _tree_ensemble(name: str) -> bool:
    if name.startswith(_TREE_ENSEMBLES):
        return True
    module, _, short = name.rpartition(".")
    return module == "sklearn.ensemble" and short.startswith(_TREE_ENSEMBLE_CLASSES)


def _compiled_run(run: Any, names: List[str], feeds: Mapping[str, np.ndarray]) -> List[np.ndarray]:
    return run(names, feeds, None)  # type: ignore[no-any-return]


def _new_session(model: Union[bytes, str]) -> Any:
    import onnxruntime  # imported here so `import model_package` stays cheap until the first prediction

    options = onnxruntime.SessionOptions()
    threads = session_threads()  # MLPACK_THREADS; a bad value is a SettingsError naming it
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def read_onnx_metadata(model: Union[bytes, str, "os.PathLike[str]"]) -> Metadata:
    """The mlpack metadata stored in an ONNX file's metadata_props (each value JSON-encoded)."""
    session = _new_session(model if isinstance(model, bytes) else os.fspath(model))
    props = session.get_modelmeta().custom_metadata_map
    if "mlpack.metadata" not in props:
        raise ValueError("this ONNX file has no mlpack metadata (was it built by mlpack?)")
    try:
        document = json.loads(props["mlpack.metadata"])
    except RecursionError:
        raise ValueError("not an mlpack model: its metadata is nested too deeply") from None
    except ValueError:
        raise ValueError("not an mlpack model: its metadata is not valid JSON") from None
    return parse_metadata(document)
