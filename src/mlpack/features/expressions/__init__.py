"""The `[features.derived]` language: parse with `ast` into a whitelist, check types, compute.

An expression is parsed by Python's own parser but never evaluated by Python: only the nodes
below become an `Expression` tree, and anything else (attribute calls, subscripts, lambdas,
keywords, names of Python builtins) is refused with a pointer to where it stands. The tree is
computed with `Ops`, so the numpy reference (`evaluate`) and the ONNX graph are the same steps.

Values have kinds: numbers (float32; NaN = missing), categories (strings; "__missing__" = missing)
and dates (int64 milliseconds; MISSING_DATE = missing). A derived feature is a number; a result
that is not finite (division by zero, log of 0) is missing and imputed like any missing number.
"""

from mlpack.features.expressions.compute import compute, evaluate
from mlpack.features.expressions.functions import FUNCTIONS
from mlpack.features.expressions.language import input_fields, parse_derived, string_read_fields, unknown_field
from mlpack.features.expressions.nodes import Expression, ExpressionError, Kind

__all__ = [
    "FUNCTIONS",
    "Expression",
    "ExpressionError",
    "Kind",
    "compute",
    "evaluate",
    "input_fields",
    "parse_derived",
    "string_read_fields",
    "unknown_field",
]
