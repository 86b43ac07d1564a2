"""The exported graph takes no column out of a matrix it has just made of columns (export/graph.py),
and computes exactly what it computed with those round trips: the same inputs and outputs, the same
bytes out of every output for every row (a known category or not, missing or not), alone or in a
batch, for forests, boosting, a linear classifier with target and frequency encodings, and the shop
regressor with dates, free text and derived features."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import mlpack.export.convert as convert
from mlpack.build import ExportedModel
from mlpack.config import parse_config
from mlpack.export.graph import drop_column_round_trips
from mlpack.runtime import MISSING_CATEGORY
from tests.helpers.documents import CONTRACTS, METHODS, subscribers
from tests.helpers.graphs import answers, random_feeds, session
from tests.helpers.shop import CONFIG as SHOP
from tests.helpers.shop import WORDS, orders
from tests.helpers.training import config_for, export


def forest() -> ExportedModel:
    params = {"n_estimators": 10, "random_state": 0}
    return export(config_for("sklearn.ensemble.RandomForestClassifier", "classification", params), subscribers(240))


def shop() -> ExportedModel:  # dates, free text and derived features, a regressor
    return export(parse_config(tomllib.loads(SHOP.format(database="db"))), orders(200))


def encoded() -> ExportedModel:  # target and frequency encodings, gaps in both fields
    encoding = {"contract": "target", "billing.method": "frequency"}
    config = config_for("sklearn.linear_model.LogisticRegression", "classification", features={"encoding": encoding})
    return export(config, subscribers(300))


def boosted() -> ExportedModel:
    config = config_for("sklearn.ensemble.HistGradientBoostingClassifier", "classification", {"max_iter": 20})
    return export(config, subscribers(300))


def regressor() -> ExportedModel:
    params = {"n_estimators": 10, "random_state": 0}
    return export(config_for("sklearn.ensemble.RandomForestRegressor", "regression", params), subscribers(300))


def gathers_of_concats(model: onnx.ModelProto) -> int:
    made = {output: node.op_type for node in model.graph.node for output in node.output}
    return sum(1 for node in model.graph.node if node.op_type == "Gather" and made.get(node.input[0]) == "Concat")


def feeds(graph: onnx.ModelProto, rows: int) -> dict[str, np.ndarray]:
    """Categories known, unknown, empty, the spellings the graph itself uses for missing and other, texts
    of known and unknown words (numbers and dates as random_feeds draws them)."""
    words = [*WORDS, "unseen", "late delivery", "great service thanks", "refund broken screen"]
    texts = np.array([*CONTRACTS, *METHODS, "one_year", "", "never seen", MISSING_CATEGORY, "__other__", *words])
    return random_feeds(graph, rows, texts)


@pytest.mark.parametrize("build", [forest, shop, encoded, boosted, regressor])
def test_an_exported_graph_answers_the_same_bytes_without_the_round_trips(
    build: Callable[[], ExportedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    rewritten = build().onnx_model
    monkeypatch.setattr(convert, "drop_column_round_trips", lambda model: 0)
    kept = build().onnx_model
    if build is encoded:  # each encoding reads its input itself: nothing to take, nothing changed
        assert gathers_of_concats(kept) == 0
        assert rewritten.SerializeToString() == kept.SerializeToString()
    else:
        assert gathers_of_concats(kept) > 0
        assert gathers_of_concats(rewritten) == 0
        assert len(rewritten.graph.node) < len(kept.graph.node)
    assert rewritten.graph.input == kept.graph.input  # other languages feed the same inputs
    assert rewritten.graph.output == kept.graph.output
    rows = feeds(kept, 3000)
    before = answers(kept, rows)
    assert answers(rewritten, rows) == before
    for index in (0, 1, 7, 2999):  # and rows alone, as the unbatched server runs them
        one = {name: values[index : index + 1] for name, values in rows.items()}
        assert answers(rewritten, one) == answers(kept, one)


def test_the_forest_of_the_serving_benchmark_loses_its_four_gathers_and_two_concats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(convert, "drop_identity_encoders", lambda model: 0)  # its own tests: test_export_identity.py
    rewritten = forest().onnx_model
    monkeypatch.setattr(convert, "drop_column_round_trips", lambda model: 0)
    kept = forest().onnx_model
    assert gathers_of_concats(kept) == 4  # two fields, twice each: into the rare-category step, into one-hot
    assert len(rewritten.graph.node) == len(kept.graph.node) - 6


def matrix(name: str, elem: int, width: Any) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, [None, width])


def graph(
    nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[str], index: Any = (1,)
) -> onnx.ModelProto:
    initializer = helper.make_tensor("column", TensorProto.INT64, np.shape(index), np.ravel(index).tolist())
    made = helper.make_graph(
        nodes, "g", inputs, [matrix(name, TensorProto.FLOAT, None) for name in outputs], initializer=[initializer]
    )
    return helper.make_model(made, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_only_a_column_proven_one_wide_is_taken_directly() -> None:
    concat = helper.make_node("Concat", ["a", "b"], ["ab"], axis=1)
    gather = helper.make_node("Gather", ["ab", "column"], ["picked"], axis=1)
    double = helper.make_node("Add", ["picked", "picked"], ["out"])
    ones = [matrix("a", TensorProto.FLOAT, 1), matrix("b", TensorProto.FLOAT, 1)]
    taken = graph([concat, gather, double], ones, ["out"])
    assert drop_column_round_trips(taken) == 1
    assert [node.op_type for node in taken.graph.node] == ["Add"]
    assert list(taken.graph.node[0].input) == ["b", "b"]
    assert not taken.graph.initializer
    rows = {"a": np.array([[1.0], [2.0]], np.float32), "b": np.array([[3.0], [np.nan]], np.float32)}
    assert session(taken.SerializeToString()).run(None, rows)[0].tolist()[0] == [6.0]

    wide = [matrix("a", TensorProto.FLOAT, 2), matrix("b", TensorProto.FLOAT, 1)]  # column 1 is a's second
    unknown = [matrix("a", TensorProto.FLOAT, None), matrix("b", TensorProto.FLOAT, 1)]
    rows_axis = helper.make_node("Gather", ["ab", "column"], ["picked"], axis=0)
    for nodes, inputs, outputs, index in (
        ([concat, gather, double], wide, ["out"], (1,)),
        ([concat, gather, double], unknown, ["out"], (1,)),
        ([concat, rows_axis, double], ones, ["out"], (1,)),
        ([concat, gather, double], ones, ["out"], np.int64(1)),  # a scalar index drops the axis
        ([concat, gather], ones, ["picked"], (1,)),  # the graph's own output keeps its name
    ):
        untouched = graph(nodes, inputs, outputs, index)
        copy = untouched.SerializeToString()
        assert drop_column_round_trips(untouched) == 0
        assert untouched.SerializeToString() == copy


def test_what_follows_an_op_onnx_does_not_know_keeps_its_round_trips_and_the_process_lives() -> None:
    """Free text goes through onnxruntime's com.microsoft Tokenizer, which onnx has no schema for; a
    LabelEncoder after it made onnx 1.23's shape inference die of a segmentation fault (a build of the
    README's string-expression example did). The round trip past the Tokenizer stays, the one beside
    it goes. The rewrite runs in a child process so a crash is a failure here, not the test run's end."""
    tokens = helper.make_node("Tokenizer", ["text"], ["words"], domain="com.microsoft", mark=0, pad_value="#")
    encode = helper.make_node(
        "LabelEncoder", ["words"], ["a"], domain="ai.onnx.ml", keys_strings=["x"], values_floats=[1.0]
    )
    nodes = [tokens, encode]
    for joined, first, second in (("ab", "a", "b"), ("cd", "c", "d")):
        nodes.append(helper.make_node("Concat", [first, second], [joined], axis=1))
        nodes.append(helper.make_node("Gather", [joined, "column"], [f"picked_{joined}"], axis=1))
    nodes.append(helper.make_node("Add", ["picked_ab", "picked_cd"], ["out"]))
    numbers = [matrix(name, TensorProto.FLOAT, 1) for name in "bcd"]
    model = graph(nodes, [matrix("text", TensorProto.STRING, 1), *numbers], ["out"])
    model.opset_import.extend([helper.make_opsetid("ai.onnx.ml", 2), helper.make_opsetid("com.microsoft", 1)])
    code = (
        "import sys, onnx\n"
        "from mlpack.export.graph import drop_column_round_trips\n"
        "model = onnx.load_model_from_string(sys.stdin.buffer.read())\n"
        "print(drop_column_round_trips(model), [node.op_type for node in model.graph.node])\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], input=model.SerializeToString(), capture_output=True, timeout=120, check=False
    )
    assert child.returncode == 0, child.stderr.decode(errors="replace")[-2000:]
    assert child.stdout.decode().strip() == "1 ['Tokenizer', 'LabelEncoder', 'Concat', 'Gather', 'Add']"
