"""The model runtime: records → ONNX feeds → predictions, with onnxruntime and numpy only.

This package is copied whole into every model wheel (as `_runtime/`), so it imports nothing
from mlpack and nothing beyond the standard library, numpy and onnxruntime. mlpack itself uses it
for `mlpack predict`, for the parity check, and to read the training documents: there is ONE
reading of a document (`lookup`, `to_number`, `category_text`), so a document that trained the
model always predicts, and `4`, `4.0` and `"4"` are the same category in training and here.

It also declares the model's metadata as a typed contract (`Metadata`): the build fills it in one
function (mlpack.metadata.build_metadata); everything else reads it by checked key.

Beside the model: `serving/` (the model's HTTP server, which takes the model as the `ServedModel`
protocol), `settings.py` (`ServeSettings`, the one reader of the server's flags, `MLPACK_*` variables
and [serve]), `drift.py` (training baselines and PSI, also used by the build and `mlpack monitor`),
`heap.py` (freed memory back to the system: the server's inference log, the build's steps) and
`lifetime.py` (a child process killed with its parent: the server's workers, the embedded MongoDB).

Hot path: plain lists and one `np.array` per input; no pandas, no per-value Python checks unless
a cheap scan of the value types shows the values need them.
"""

from __future__ import annotations

from .cli import add_predict_arguments, main, run_main, run_predict
from .contract import (
    FLOAT32_MAX,
    MISSING_CATEGORY,
    ClassShare,
    DataInfo,
    EstimatorInfo,
    FeatureInfo,
    InputInfo,
    Metadata,
    ParityInfo,
    parse_metadata,
)
from .feeds import Feature
from .files import (
    BATCH_RECORDS,
    InputFileError,
    Item,
    PredictSummary,
    RecordError,
    format_of,
    iter_records,
    predict_file,
    read_records,
)
from .model import Model, read_onnx_metadata
from .values import ABSENT, MISSING_DATE, category_text, date_milliseconds, lookup, to_number

__all__ = [
    "ABSENT",
    "BATCH_RECORDS",
    "ClassShare",
    "DataInfo",
    "EstimatorInfo",
    "FLOAT32_MAX",
    "Feature",
    "FeatureInfo",
    "InputFileError",
    "InputInfo",
    "Item",
    "MISSING_CATEGORY",
    "MISSING_DATE",
    "Metadata",
    "Model",
    "ParityInfo",
    "PredictSummary",
    "RecordError",
    "add_predict_arguments",
    "category_text",
    "date_milliseconds",
    "format_of",
    "iter_records",
    "lookup",
    "main",
    "run_main",
    "parse_metadata",
    "predict_file",
    "read_onnx_metadata",
    "read_records",
    "run_predict",
    "to_number",
]
