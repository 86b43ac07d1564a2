"""Rewrites of the converted graph that change how it computes, never what it computes.

skl2onnx joins a pipeline's one-column inputs into a matrix (`Concat`), and the next step takes its
columns out again one by one (`Gather`): a categorical field goes through two such round trips on
its way to the one-hot encoder. At one record onnxruntime's fixed cost per node is most of a call:
for `benchmarks/serve.py`'s forest (2 categorical fields), the 17 nodes took ~28 us a call back to
back and the 11 left without the round trips ~22.5 us, with the same outputs bit for bit, since a
column taken out of a matrix of columns is the column put in.

A categorical field with no rare values then goes through a `LabelEncoder` that maps each kept
category to itself and everything else to `__other__` (features/categories.py), straight into a
one-hot encoder that has no `__other__` column: the encoder alone gives the same zeros to what the
label encoder would have renamed, so the label encoder goes (`drop_identity_encoders`).

Not done: folding the one-hot columns into the trees' splits (a split "column j <= 0.5" of a field
is "its code != j", a BRANCH_NEQ on one code column per field, exact). For the same forest it
saved 10.7k of 122.1k instructions a one-record call, but one split mode besides BRANCH_LEQ takes
onnxruntime 1.32 off its one-mode loop for the whole ensemble: 20.0k -> 24.9k per record in a
batch of 2,000, which batched serving and `mlpack score` pay. Dropping the label encoders saves as
much at one record and nothing is dearer in a batch.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import helper, numpy_helper, shape_inference


def drop_column_round_trips(model: onnx.ModelProto) -> int:
    """Where a `Gather` takes one column (indices `[i]`, axis 1) of a `Concat` (axis 1) of one-column
    tensors, its readers read the i-th tensor instead; the `Gather`s go, and so does each `Concat`
    nothing reads any more, with the indices only they used. Returns how many `Gather`s went.

    Only what shape inference proves one column wide is taken; a graph with subgraphs (If, Loop)
    is left as it is, as is any tensor the graph outputs."""
    graph = model.graph
    subgraphs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if any(attribute.type in subgraphs for node in graph.node for attribute in node.attribute):
        return 0
    try:
        inferred = shape_inference.infer_shapes(_inferable(model)).graph
    except Exception:  # an op onnx cannot infer, or a graph it cannot check: nothing is proven
        return 0
    widths = {info.name: _width(info) for info in (*inferred.input, *inferred.value_info, *inferred.output)}
    producers = {output: node for node in graph.node for output in node.output}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    outputs = {output.name for output in graph.output}
    replaced: dict[str, str] = {}  # a Gather's output → the tensor it equals
    gathers: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or node.output[0] in outputs:
            continue
        source = producers.get(node.input[0])
        if source is None or source.op_type != "Concat" or source.domain not in ("", "ai.onnx"):
            continue
        # Both on the column axis (-1 is that axis too: every tensor proven one column wide is a matrix).
        if _axis(node, 0) not in (1, -1) or _axis(source, None) not in (1, -1):
            continue
        if not all(widths.get(name) == 1 for name in source.input):
            continue
        column = _single_index(initializers.get(node.input[1]), len(source.input))
        if column is not None:
            replaced[node.output[0]] = source.input[column]
            gathers.append(node)
    if not gathers:
        return 0
    for name, target in replaced.items():  # a column of a Concat of columns taken away: the column itself
        while target in replaced:
            target = replaced[target]
        replaced[name] = target
    kept = [node for node in graph.node if all(node is not gather for gather in gathers)]
    for node in kept:
        for index, name in enumerate(node.input):
            if name in replaced:
                node.input[index] = replaced[name]
    read = {name for node in kept for name in node.input} | outputs
    concats = {producers[gather.input[0]].output[0] for gather in gathers}
    kept = [node for node in kept if node.output[0] not in concats or node.output[0] in read]
    read = {name for node in kept for name in node.input} | outputs
    indices = {gather.input[1] for gather in gathers}
    unused = [tensor for tensor in graph.initializer if tensor.name in indices and tensor.name not in read]
    del graph.node[:]
    graph.node.extend(kept)
    for tensor in unused:
        graph.initializer.remove(tensor)
    return len(gathers)


def drop_identity_encoders(model: onnx.ModelProto) -> int:
    """Where a `OneHotEncoder` of strings reads a `LabelEncoder` that maps each of its keys to itself
    and every other string to a default the one-hot encoder has no column for, the one-hot encoder
    reads the label encoder's input instead; a label encoder nothing else reads goes. Returns how
    many one-hot encoders read past one.

    The answer is the same for every string: a key is passed on as itself; any other string becomes
    the default, which lights no column, and (every category being a key) lights none by itself
    either. For `benchmarks/serve.py`'s forest, 2 fields: 122.1k -> 111.8k instructions per
    one-record onnxruntime call, 20.0k -> 19.8k per record in a batch of 2,000 (callgrind)."""
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    outputs = {output.name for output in graph.output}
    bypassed: set[str] = set()  # the label encoders' outputs no longer read by those one-hot encoders
    count = 0
    for node in graph.node:
        if node.op_type != "OneHotEncoder" or node.domain != "ai.onnx.ml":
            continue
        source = producers.get(node.input[0])
        if source is None or source.op_type != "LabelEncoder" or source.domain != "ai.onnx.ml":
            continue
        onehot, labels = _attributes(node), _attributes(source)
        categories, keys = onehot.get("cats_strings"), labels.get("keys_strings")
        default = labels.get("default_string", b"_Unused")  # the ONNX default of default_string
        if categories is None or keys is None or onehot.get("zeros", 1) != 1:
            continue  # with zeros=0 an unknown string is an error, which is no answer to compare
        if labels.get("values_strings") != keys or default in categories or not set(categories) <= set(keys):
            continue
        node.input[0] = source.input[0]
        bypassed.add(source.output[0])
        count += 1
    read = {name for node in graph.node for name in node.input} | outputs
    unread = [node for node in graph.node if node.op_type == "LabelEncoder" and node.output[0] in bypassed - read]
    for node in unread:
        graph.node.remove(node)
    return count


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _inferable(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model without what onnx cannot infer: the ops it has no schema for (onnxruntime's
    com.microsoft Tokenizer of free text) and every node that reads, directly or not, what one makes.
    onnx gives the next node an unknown type there, and onnx 1.23's LabelEncoder inference reads the
    type it is given without looking: the process died of a segmentation fault. What is left out has
    no width, so its round trips stay."""
    unknown: set[str] = set()
    known: list[onnx.NodeProto] = []
    for node in model.graph.node:  # in the order the graph runs them, as ONNX requires
        if onnx.defs.has(node.op_type, _DEFAULT.get(node.domain, node.domain)) and unknown.isdisjoint(node.input):
            known.append(node)
        else:
            unknown.update(node.output)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.node[:]
    copy.graph.node.extend(known)
    del copy.graph.output[:]  # the graph's outputs may be made past an unknown op
    return copy


_DEFAULT = {"ai.onnx": ""}  # onnx's schemas name the default domain ""


def _width(info: onnx.ValueInfoProto) -> int | None:
    """The second dimension of a matrix whose size is known; None for anything else."""
    dims = info.type.tensor_type.shape.dim
    if not info.type.HasField("tensor_type") or len(dims) != 2 or not dims[1].HasField("dim_value"):
        return None
    return int(dims[1].dim_value)


def _axis(node: onnx.NodeProto, default: int | None) -> int | None:
    for attribute in node.attribute:
        if attribute.name == "axis":
            return int(attribute.i)
    return default


def _single_index(tensor: onnx.TensorProto | None, count: int) -> int | None:
    """The index a `[1]`-shaped integer initializer holds, within `count` (negatives counted from the end)."""
    if tensor is None or list(tensor.dims) != [1]:
        return None
    if tensor.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
        return None
    values: list[int] = numpy_helper.to_array(tensor).astype("int64").tolist()
    index = values[0] + count if values[0] < 0 else values[0]
    return index if 0 <= index < count else None


__all__ = ["drop_column_round_trips", "drop_identity_encoders"]
