"""The README's inputs contract, from another language: examples/node-client/predict.js (Node.js and
onnxruntime-node, nothing of mlpack's) reads documents as mongoexport writes them and gives the
wheel's predictions on every row, for a classifier and a regressor; a client that breaks the rule
is caught, by the model's own test vectors and, without them, by this comparison.

Needs `node` and `npm ci --ignore-scripts` in examples/node-client (.ci/run does both and sets
MLPACK_REQUIRE_NODE=1, so there a missing Node.js fails instead of skipping).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bson import json_util
from bson.decimal128 import Decimal128

from mlpack.export.metadata import inputs_contract
from mlpack.runtime import Model, category_text, date_milliseconds
from tests.helpers.cli import REPO
from tests.helpers.training import config_for, export

CLIENT = REPO / "examples" / "node-client"
PREDICT_JS = CLIENT / "predict.js"
FEATURES = {
    "numeric": ["billing.spend"],
    "categorical": ["plan.seats", "active", "region", "rate"],
    "datetime": ["signup"],
    "text": ["note"],
}
REGIONS = ["Zürich", "São Paulo", "Málaga", "Kraków", "東京"]
WORDS = ["très", "bien", "naïve", "café", "forêts", "x", "düsseldorf", "🙂", "東京", "b-210", "e\u0301t\u00e9"]
RATES = [0.5, 0.25, 1e-05, 2.5e-07]  # non-integral categories: Python writes 1e-05, JavaScript 0.00001


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("MLPACK_REQUIRE_NODE"):
            pytest.fail("MLPACK_REQUIRE_NODE is set but node is not installed")
        pytest.skip("node is not installed (the Node.js client of examples/node-client needs Node.js 18+)")
    if not (CLIENT / "node_modules" / "onnxruntime-node").is_dir():
        npm = shutil.which("npm")
        command = [npm or "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
        done = subprocess.run(command, cwd=CLIENT, capture_output=True, text=True) if npm else None
        if done is None or done.returncode != 0:
            tail = (
                (done.stderr.strip().splitlines() or ["npm is not installed"])[-1] if done else "npm is not installed"
            )
            pytest.fail(f"node is here but onnxruntime-node could not be installed in {CLIENT}: {tail}")
    return found


def documents(n: int = 400, seed: int = 3) -> list[dict[str, Any]]:
    """Booleans, integral floats next to ints and Decimal128, nested fields, nulls and absent fields,
    dates as datetimes and as ISO strings, accented and CJK text; the label depends on all of it."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        seats, active, region, rate = (
            rng.choice([1, 2, 3, 4]),
            rng.random() < 0.5,
            rng.choice(REGIONS),
            rng.choice(RATES),
        )
        spend = round(rng.uniform(5, 200), 3)
        words = rng.sample(WORDS, 3)
        signup = dt.datetime(2015, 1, 1) + dt.timedelta(milliseconds=rng.randrange(9 * 365 * 86_400_000))
        score = 2.0 * (seats == 3) + 1.5 * active - (region == "Málaga") + (rate == 1e-05) + spend / 100
        score += ("très" in words) - signup.month / 6
        doc: dict[str, Any] = {
            "_id": i,
            "plan": {"seats": [float(seats), seats, Decimal128(f"{seats}.00")][i % 3]},  # all three are "3"
            "active": active,
            "region": region,
            "rate": rate,
            "billing": {"spend": [spend, Decimal128(str(spend)), int(spend)][i % 3]},
            "signup": [signup, signup.isoformat(timespec="microseconds") + "Z", signup.strftime("%Y-%m-%d")][i % 3],
            "note": " ".join(words),
            "label": score + rng.gauss(0, 0.5) > 1.8,
            "value": round(10 * score + rng.gauss(0, 1), 3),
        }
        if i % 17 == 4:
            doc["region"] = None
        if i % 19 == 6:
            del doc["billing"]
        if i % 23 == 7:
            doc["note"] = None
        if i % 29 == 8:
            doc["signup"] = None
        docs.append(doc)
    return docs


# Documents only predicted, each at an edge of the rule.
EDGES: list[dict[str, Any]] = [
    {},
    {"plan": 5, "billing": None},  # a parent that is not an object, one that is null: absent
    {"plan.seats": 3.0, "billing.spend": 42.5},  # dotted keys as given
    {"plan": {"seats": Decimal128("30E-1")}, "rate": Decimal128("0.000010"), "active": "true"},
    {"plan": {"seats": 7}, "region": "Zürich ", "rate": 1e-06, "note": ""},  # unseen categories
    {"plan": {"seats": -0.0}, "billing": {"spend": float("nan")}, "signup": float("nan"), "note": float("nan")},
    {"billing": {"spend": Decimal128("1E+2")}, "rate": Decimal128("NaN"), "active": False},
    {"billing": {"spend": 3.4e38}, "signup": dt.datetime(1950, 6, 1, 12, 0, 0, 999_999)},  # before 1970
    {"signup": dt.datetime(2020, 2, 29, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))},
    {"signup": "2021-03-04T05:06:07.891+05:30", "note": "TRÈS bien, très BIEN! forêts…"},
    {"signup": "2021-03-04T05:06:07", "note": "東京🙂東京 b 210"},  # no offset: UTC
    {"signup": "2016-12-31", "plan": {"seats": 2**53 + 1}, "rate": 0.25},
]


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    training = documents()
    made = {}
    for name, task, target, estimator, params in [
        ("classification", "classification", "label", "sklearn.linear_model.LogisticRegression", {"max_iter": 2000}),
        (
            "regression",
            "regression",
            "value",
            "sklearn.ensemble.RandomForestRegressor",
            {"n_estimators": 20, "random_state": 0},
        ),
        # A linear regressor's graph sums in double (estimators/exact_converters.py): onnxruntime-node runs it too.
        ("linear regression", "regression", "value", "sklearn.linear_model.Ridge", {}),
    ]:
        config = config_for(estimator, task, params, features={**FEATURES, "target": target})
        made[name] = export(config, training)
    return {"models": made, "documents": training + EDGES}


def write_jsonl(path: Path, docs: list[dict[str, Any]], mode: str) -> Path:
    """Documents as mongoexport writes them: relaxed or canonical MongoDB Extended JSON."""
    options = json_util.CANONICAL_JSON_OPTIONS if mode == "canonical" else json_util.RELAXED_JSON_OPTIONS
    path.write_text("".join(json_util.dumps(doc, json_options=options) + "\n" for doc in docs), encoding="utf-8")
    return path


def run_client(node: str, script: Path, model: Path, docs: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [node, str(script), str(model), str(docs), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def predictions(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def differences(model: Model, docs: list[dict[str, Any]], answers: list[dict[str, Any]]) -> tuple[list[int], float]:
    """The rows where the client's answer is not the wheel's (label unequal, or a probability or value
    off by more than 1e-6), and the largest difference seen."""
    labels, probabilities, _ = model.run(docs)
    assert len(answers) == len(labels), f"{len(answers)} answers for {len(labels)} documents"
    off, largest = [], 0.0
    for row, (answer, label) in enumerate(zip(answers, labels)):
        if model.task == "classification":
            assert probabilities is not None
            diff = max(abs(a - b) for a, b in zip(answer["probabilities"], probabilities[row]))
            wrong = answer["prediction"] != label or type(answer["prediction"]) is not type(label)
        else:
            diff = abs(answer["prediction"] - label) / max(1.0, abs(label))
            wrong = False
        largest = max(largest, diff)
        if wrong or diff > 1e-6:
            off.append(row)
    return off, largest


@pytest.mark.parametrize("task", ["classification", "regression", "linear regression"])
@pytest.mark.parametrize("mode", ["relaxed", "canonical"])
def test_node_client_gives_the_wheels_predictions(
    node: str, built: dict[str, Any], tmp_path: Path, task: str, mode: str
) -> None:
    exported, docs = built["models"][task], built["documents"]
    model_path = tmp_path / "model.onnx"
    model_path.write_bytes(exported.onnx_bytes)
    answers = predictions(run_client(node, PREDICT_JS, model_path, write_jsonl(tmp_path / "docs.jsonl", docs, mode)))
    off, largest = differences(Model(exported.onnx_bytes, exported.metadata), docs, answers)
    print(f"{task}, {mode} Extended JSON: {len(answers)} rows compared, max diff {largest:.3g}, {len(off)} off")
    assert off == [], f"rows {off[:10]} differ (max diff {largest:.3g})"
    if task == "classification":  # booleans come back as booleans, both classes are predicted
        assert {a["prediction"] for a in answers} == {True, False}


# Clients that convert values with their language's own habits instead of the README's rule.
BROKEN = {
    # Python's str() (C#'s ToString() alike): True → "True"; everything else right.
    "python-booleans": "(value) => typeof value === 'boolean' ? (value ? 'True' : 'False') : right(value)",
    # A number's text as the file writes it: {"$numberDouble": "3.0"} → "3.0", Decimal128 "3.00" → "3.00",
    # 1e-05 → "0.00001" (JavaScript's String); String(true) = "true" is right.
    "number-as-written": (
        "(value) => value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 1"
        " && /^[$]number/.test(Object.keys(value)[0]) ? Object.values(value)[0]"
        " : typeof value === 'number' ? String(value) : right(value)"
    ),
}


@pytest.mark.parametrize("habit", sorted(BROKEN))
def test_a_client_that_breaks_the_rule_is_caught(node: str, built: dict[str, Any], tmp_path: Path, habit: str) -> None:
    exported, docs = built["models"]["classification"], built["documents"]
    script = tmp_path / "broken.js"
    script.write_text(
        f"const client = require({json.dumps(str(PREDICT_JS))});\n"
        "const right = client.rules.categoryText;\n"
        f"client.rules.categoryText = {BROKEN[habit]};\n"
        "client.main(process.argv.slice(2)).catch((error) => {\n"
        "  process.stderr.write(`predict.js: ${error.message}\\n`);\n"
        "  process.exit(1);\n"
        "});\n"
    )
    model_path = tmp_path / "model.onnx"
    model_path.write_bytes(exported.onnx_bytes)
    docs_path = write_jsonl(tmp_path / "docs.jsonl", docs, "canonical")
    # The model's own test vectors (metadata.inputs_contract) stop it, with one line saying why.
    refused = run_client(node, script, model_path, docs_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("predict.js: this client reads ") and refused.stderr.count("\n") == 1
    # Without them (a model built before they existed), the comparison above catches it.
    older = {key: value for key, value in exported.metadata.items() if key != "inputs_contract"}
    (tmp_path / "metadata.json").write_text(json.dumps(older))
    answers = predictions(
        run_client(node, script, model_path, docs_path, "--metadata", str(tmp_path / "metadata.json"))
    )
    off, largest = differences(Model(exported.onnx_bytes, exported.metadata), docs, answers)
    print(f"{habit}: {len(off)} of {len(answers)} rows off, max probability diff {largest:.3g}")
    assert len(off) >= len(docs) // 10 and largest > 0.01


def test_the_contracts_vectors_are_the_runtimes_rule() -> None:
    """Every test vector in the metadata is what the wheel's own reading gives (values as Extended JSON)."""
    contract = inputs_contract()
    value = lambda raw: json_util.loads(json.dumps(raw)) if isinstance(raw, dict) else raw  # noqa: E731
    for raw, text in contract["category_text"]:
        assert category_text(value(raw)) == text, raw
    for raw, milliseconds in contract["int64_ms"]:
        assert date_milliseconds(value(raw)) == milliseconds, raw
    assert json.loads(json.dumps(contract)) == contract  # it survives the metadata's JSON


def test_any_number_and_date_reads_alike(node: str, tmp_path: Path) -> None:
    """The number-text and date rules on values no one picked: random float64 bit patterns of every
    magnitude, integral floats up to 1e300, Decimal128 texts and ISO strings with offsets and fractions."""
    rng = np.random.default_rng(17)
    floats = [f for f in rng.integers(0, 2**64, 3000, dtype=np.uint64).view(np.float64).tolist() if math.isfinite(f)]
    floats += [-f for f in floats[:500]] + [float(10**k) for k in range(0, 300, 7)] + [k / 8 for k in range(-40, 40)]
    decimals = [f"{rng.integers(-(10**6), 10**6)}E{rng.integers(-12, 12)}" for _ in range(500)]
    moments = rng.integers(-(2**41), 2**41, 500).tolist()
    dates = [
        (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms, microseconds=int(us)))
        .astimezone(dt.timezone(dt.timedelta(minutes=int(offset))))
        .isoformat()
        for ms, us, offset in zip(moments, rng.integers(0, 1000, 500), rng.integers(-720, 840, 500))
    ]
    values: list[Any] = [*floats, *({"$numberDecimal": d} for d in decimals), *({"$date": d} for d in dates)]
    (tmp_path / "values.json").write_text(json.dumps(values))
    script = (
        f"const {{ rules }} = require({json.dumps(str(PREDICT_JS))});\n"
        f"const values = JSON.parse(require('node:fs').readFileSync({json.dumps(str(tmp_path / 'values.json'))}));\n"
        "const read = (v) => (v.$date ? String(rules.dateValue(v)) : rules.categoryText(v));\n"
        "console.log(JSON.stringify(values.map(read)));\n"
    )
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    expected = [category_text(v) for v in floats] + [category_text(Decimal128(d)) for d in decimals]
    expected += [str(date_milliseconds(d)) for d in dates]
    wrong = [(v, g, e) for v, g, e in zip(values, got, expected) if g != e]
    assert wrong == [] and len(got) == len(values), wrong[:5]


def test_bad_documents_are_one_line_errors(node: str, built: dict[str, Any], tmp_path: Path) -> None:
    exported = built["models"]["classification"]
    model_path = tmp_path / "model.onnx"
    model_path.write_bytes(exported.onnx_bytes)
    cases = {
        '{"note": "ok"}\n{"billing": {"spend": true}}\n': "line 2: field 'billing.spend': expected a number, got true",
        '{"signup": "2024-02-30"}\n': "line 1: field 'signup': expected a date, got \"2024-02-30\" (no such day",
        '{"region": ["a"]}\n': "line 1: field 'region': expected a category (string, number or boolean), got [\"a\"]",
        '{"note": 5}\n': "line 1: field 'note': expected text, got 5",
        "{nope\n": "line 1: not valid JSON",
    }
    for text, message in cases.items():
        (tmp_path / "bad.jsonl").write_text(text)
        done = run_client(node, PREDICT_JS, model_path, tmp_path / "bad.jsonl")
        assert done.returncode == 1 and done.stderr.startswith(f"predict.js: {message}"), done.stderr
        assert done.stderr.count("\n") == 1 and done.stdout == ""
    (tmp_path / "not.onnx").write_bytes(b"\xff" * 64)
    done = run_client(node, PREDICT_JS, tmp_path / "not.onnx", tmp_path / "bad.jsonl")
    assert done.returncode == 1 and done.stderr.startswith("predict.js: not an ONNX file"), done.stderr
