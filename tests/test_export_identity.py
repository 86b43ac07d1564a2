"""A one-hot encoder reads a categorical field itself when the rare-category step before it renames
nothing it has a column for (export/graph.py, drop_identity_encoders): the graph loses a
LabelEncoder per such field and answers the same bytes for every row (a known category, an unknown
one, a missing one, one-letter and accented spellings and the same letters decomposed), in a batch
and alone; a field with rare categories, whose `__other__` column an unknown value lights, keeps its
label encoder; the build's parity still passes on every row."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import mlpack.export.convert as convert
from mlpack.build import ExportedModel
from mlpack.export.graph import drop_identity_encoders
from mlpack.runtime import MISSING_CATEGORY
from tests.helpers.documents import subscribers
from tests.helpers.graphs import answers, random_feeds
from tests.helpers.training import config_for, export

ROOT = Path(__file__).resolve().parent.parent
# The training data's spellings: one letter, accented (composed), and the helper's own words.
RENAMED = {"two_year": "é", "yearly": "y", "bank": "Ωmega"}


def documents(n: int) -> list[dict[str, Any]]:
    made = subscribers(n)
    for document in made:
        document["contract"] = RENAMED.get(document["contract"], document["contract"])
        billing = document.get("billing") or {}
        if billing.get("method") is not None:
            billing["method"] = RENAMED.get(billing["method"], billing["method"])
    return made


def build(estimator: str, task: str, params: dict[str, Any], **sections: Any) -> ExportedModel:
    return export(config_for(estimator, task, params, **sections), documents(300))


def forest() -> ExportedModel:
    return build("sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 10, "random_state": 0})


def boosted_regressor() -> ExportedModel:  # its trees are summed in double: a Cast before them
    return build("sklearn.ensemble.GradientBoostingRegressor", "regression", {"n_estimators": 20, "random_state": 0})


def histogram() -> ExportedModel:
    return build("sklearn.ensemble.HistGradientBoostingClassifier", "classification", {"max_iter": 20})


def linear() -> ExportedModel:  # one-hot columns read by a linear model: the rewrite does not care who reads
    return build("sklearn.linear_model.LogisticRegression", "classification", {})


def rare() -> ExportedModel:  # billing.method has 4 values (3 and missing): 2 kept, the rest `__other__`
    params = {"n_estimators": 10, "random_state": 0}
    return build("sklearn.ensemble.ExtraTreesClassifier", "classification", params, preprocessing={"max_categories": 3})


def without_rewrite(make: Callable[[], ExportedModel], monkeypatch: pytest.MonkeyPatch) -> ExportedModel:
    with monkeypatch.context() as patch:
        patch.setattr(convert, "drop_identity_encoders", lambda model: 0)
        return make()


def encoders_into_onehot(model: onnx.ModelProto) -> int:
    made = {output: node.op_type for node in model.graph.node for output in node.output}
    return sum(
        1 for node in model.graph.node if node.op_type == "OneHotEncoder" and made.get(node.input[0]) == "LabelEncoder"
    )


def feeds(model: onnx.ModelProto, rows: int) -> dict[str, np.ndarray]:
    """Categories renamed and not, unknown, empty, accented (composed and not), one letter, and the
    spellings the graph uses for missing and other."""
    texts = np.array(
        [*RENAMED.values(), "monthly", "card", "check", "two_year", "yearly", "bank", "e\u0301", "É", "Y", "ω", "y ",
         "", "never seen", MISSING_CATEGORY, "__other__"],
        dtype=object,
    )  # fmt: skip
    return random_feeds(model, rows, texts)


@pytest.mark.parametrize("make", [forest, boosted_regressor, histogram, linear])
def test_the_one_hot_encoders_read_the_fields_and_every_answer_is_the_same(
    make: Callable[[], ExportedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = without_rewrite(make, monkeypatch).onnx_model
    exported = make()
    rewritten = exported.onnx_model
    assert encoders_into_onehot(kept) == 2  # contract and billing.method, each through its label encoder
    assert encoders_into_onehot(rewritten) == 0
    assert len(rewritten.graph.node) == len(kept.graph.node) - 2
    assert rewritten.graph.input == kept.graph.input and rewritten.graph.output == kept.graph.output
    rows = feeds(kept, 4000)
    assert answers(rewritten, rows) == answers(kept, rows)
    for index in range(0, 4000, 97):  # and alone, as the unbatched server runs a record
        one = {name: values[index : index + 1] for name, values in rows.items()}
        assert answers(rewritten, one) == answers(kept, one)
    parity = exported.metadata["parity"]
    assert parity["within_tolerance"] and parity["rows"] == 300 and parity["label_disagreements"] == 0


def test_a_field_with_rare_categories_keeps_its_label_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown method becomes `__other__`, which has a column here: without the label encoder it
    would light none, and the trees would take it for no method at all."""
    kept = without_rewrite(rare, monkeypatch).onnx_model
    rewritten = rare().onnx_model
    assert encoders_into_onehot(kept) == 2
    assert encoders_into_onehot(rewritten) == 1
    made = {output: node.op_type for node in rewritten.graph.node for output in node.output}
    onehots = {node.input[0]: node for node in rewritten.graph.node if node.op_type == "OneHotEncoder"}
    assert [name for name in onehots if name not in made] == ["contract"]  # 3 values: all kept, no other
    (method,) = [node for name, node in onehots.items() if name in made]
    assert made[method.input[0]] == "LabelEncoder"
    assert b"__other__" in {a.name: helper.get_attribute_value(a) for a in method.attribute}["cats_strings"]
    rows = feeds(kept, 4000)
    assert answers(rewritten, rows) == answers(kept, rows)


def graph(encoders: list[onnx.NodeProto], outputs: list[str]) -> onnx.ModelProto:
    categories = ["a", "b"]
    onehot = helper.make_node(
        "OneHotEncoder", ["named"], ["hot"], domain="ai.onnx.ml", cats_strings=categories, zeros=1
    )
    made = helper.make_graph(
        [*encoders, onehot],
        "g",
        [helper.make_tensor_value_info("field", TensorProto.STRING, [None, 1])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT if name == "hot" else TensorProto.STRING, None)
         for name in outputs],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)]
    return helper.make_model(made, opset_imports=opsets, ir_version=8)


def labels(keys: list[str], values: list[str], default: str = "__other__") -> onnx.NodeProto:
    return helper.make_node(
        "LabelEncoder", ["field"], ["named"], domain="ai.onnx.ml", keys_strings=keys, values_strings=values,
        default_string=default,
    )  # fmt: skip


def test_only_a_label_encoder_that_changes_no_column_is_read_past() -> None:
    rows = {"field": np.array([["a"], ["b"], ["c"], ["__other__"], [""], ["A"]], dtype=object)}
    identity = graph([labels(["a", "b", "c"], ["a", "b", "c"])], ["hot"])
    before = answers(identity, rows)
    assert drop_identity_encoders(identity) == 1
    assert [node.op_type for node in identity.graph.node] == ["OneHotEncoder"]
    assert answers(identity, rows) == before

    read_elsewhere = graph([labels(["a", "b"], ["a", "b"])], ["hot", "named"])  # the graph outputs the names too
    assert drop_identity_encoders(read_elsewhere) == 1
    assert [node.op_type for node in read_elsewhere.graph.node] == ["LabelEncoder", "OneHotEncoder"]

    for untouched in (
        graph([labels(["a", "b"], ["b", "a"])], ["hot"]),  # renames: a lights b's column
        graph([labels(["a", "b"], ["a", "b"], default="b")], ["hot"]),  # anything else lights b's column too
        graph([labels(["a"], ["a"])], ["hot"]),  # b is no key: the field's b lights nothing after it
    ):
        copy = untouched.SerializeToString()
        assert drop_identity_encoders(untouched) == 0
        assert untouched.SerializeToString() == copy


def test_two_builds_in_separate_processes_write_the_same_bytes() -> None:
    code = (
        "import sys, hashlib\n"
        "sys.path.insert(0, '.')\n"
        "from tests.test_export_identity import forest\n"
        "print(hashlib.sha256(forest().onnx_bytes).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300, cwd=ROOT
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(digests) == 1 and len(next(iter(digests))) == 64
