"""[features.derived]: quoted names, string functions, coalesce, `in [...]`, number(), and the errors
that say why a name is not allowed.

The numpy reference is checked against plain Python row by row, the ONNX graph against the
reference on messy strings (accents in both Unicode forms, "İ", a final "Σ", tabs, missing values,
numbers written every way), and real builds for parity on every row.
"""

from __future__ import annotations

import json
import math
import re
import tarfile
import tomllib
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from pymongo import MongoClient
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from mlpack.config import parse_config
from mlpack.errors import ConfigError
from mlpack.features.converters import register
from mlpack.features.derived import DerivedFeatures
from mlpack.features.expressions import evaluate, parse_derived
from mlpack.features.ops import MISSING_DATE
from mlpack.runtime import MISSING_CATEGORY
from tests.helpers.projects import Project
from tests.helpers.training import export, runtime_model

NAMES = [
    "Mr. Owen Braund",
    "MRS. JOHN BRADLEY (FLORENCE) cumings",
    "  Miss Laina\tHeikkinen ",
    "İbrahim ΟΔΥΣΣΕΥΣ",
    unicodedata.normalize("NFD", "Mme. Hélène Dupré"),  # combining accents
    "Élodie",
    "x",
    "",
    MISSING_CATEGORY,
    "\n",
    "a(f)*\\ 💡",  # regex characters and a code point beyond the BMP
    "\u00a0nbsp\u00a0",  # a no-break space is no space to strip
]
NUMBERS = [" 54 ", "131.0", "-.5", "+2", "1e3", "1,000", "NA", "0x10", "abc", "", MISSING_CATEGORY, "7\t"]
KINDS: dict[str, Any] = {
    "name": "category",
    "fare_text": "category",
    "from": "category",
    "note": "text",
    "signup": "date",
    "opened": "date",
}


def _columns(rows: int = 120) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    fare = rng.uniform(0, 100, rows).astype(np.float32)
    fare[::7] = np.nan
    backup = rng.uniform(0, 10, rows).astype(np.float32)
    backup[::5] = np.nan
    return {
        "name": np.array([NAMES[i % len(NAMES)] for i in range(rows)], dtype=object),
        "fare_text": np.array([NUMBERS[i % len(NUMBERS)] for i in range(rows)], dtype=object),
        "from": np.array([["S", "C", "Q", MISSING_CATEGORY][i % 4] for i in range(rows)], dtype=object),
        "note": np.array([["Late again", "", "ÉTÉ  ok", "no"][i % 4] for i in range(rows)], dtype=object),
        "ticket.class": rng.integers(1, 4, rows).astype(np.float32),
        "fare": fare,
        "backup": backup,
        "signup": np.where(np.arange(rows) % 3 == 0, MISSING_DATE, 1_700_000_000_000 + np.arange(rows) * 86_400_000),
        "opened": np.where(np.arange(rows) % 6 == 0, MISSING_DATE, 1_710_000_000_000 + np.arange(rows) * 3_600_000),
    }


EXPRESSIONS = {
    "quoted": "`ticket.class` * 2 + (`from` == 'S')",
    "is_mr": "contains(lower(name), 'mr.')",
    "name_length": "length(strip(name))",
    "clean_equal": "lower(strip(name)) == 'élodie'",
    "note_length": "length(note) + contains(lower(note), 'été')",
    "fare_number": "number(fare_text)",
    "first_fare": "coalesce(fare, backup, 0)",
    "port": "coalesce(`from`, 'unknown') == 'unknown'",
    "port_in": "`from` in ['S', 'Q']",
    "port_not_in": "`from` not in ['S', 'Q']",
    "class_in": "`ticket.class` in [1, 2]",
    "fare_in": "fare not in [0, 1.5]",
    "special": "contains(name, '(f)*') + contains(name, '💡') * 2 + contains(name, '\\\\') * 4",
    "first_date": "days_between(coalesce(signup, opened), opened)",
}


def _graph(expressions: dict[str, str], columns: dict[str, np.ndarray]) -> np.ndarray:
    register()
    kinds = {path: KINDS.get(path, "number") for path in columns}
    names = {path: path.replace(".", "_") for path in columns}  # ONNX input names
    derive = DerivedFeatures(expressions, {p: k for p, k in kinds.items() if k != "number"}, names)
    pipeline = Pipeline([("derive", derive), ("out", ColumnTransformer([("d", "passthrough", list(expressions))]))])
    pipeline.fit(pd.DataFrame({names[path]: values for path, values in columns.items()}))
    tensor = {
        "number": FloatTensorType,
        "category": StringTensorType,
        "text": StringTensorType,
        "date": Int64TensorType,
    }
    types = [(names[path], tensor[kinds[path]]([None, 1])) for path in columns]
    model = convert_sklearn(pipeline, initial_types=types, target_opset=17)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {names[path]: values.reshape(-1, 1) for path, values in columns.items()}
    return np.asarray(session.run(None, feeds)[0])


def test_the_graph_computes_what_the_reference_computes_on_messy_strings() -> None:
    columns = _columns()
    expected = evaluate(parse_derived(EXPRESSIONS, KINDS), columns)
    got = _graph(EXPRESSIONS, columns)
    for index, name in enumerate(EXPRESSIONS):
        np.testing.assert_array_equal(got[:, index], expected[name], err_msg=name)


def _python(row: dict[str, Any]) -> dict[str, float]:
    """Plain Python, row by row: what each expression means."""

    def lower(text: str) -> str:  # the graph's lowercase: each character on its own
        return "".join(char.lower()[0] for char in text)

    def number(text: str) -> float:
        stripped = text.strip(" \t\n\f\r\v")
        return float(stripped) if re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", stripped) else math.nan

    name, port, fare, backup = row["name"], row["from"], row["fare"], row["backup"]
    name_missing, port_missing = name == MISSING_CATEGORY, port == MISSING_CATEGORY
    nan = math.nan
    return {
        "quoted": row["ticket.class"] * 2 + (port == "S"),
        "is_mr": 0.0 if name_missing else float("mr." in lower(name)),
        "name_length": nan if name_missing else float(len(name.strip(" \t\n\f\r\v"))),
        "clean_equal": float(lower(name.strip(" \t\n\f\r\v")) == "élodie"),
        "note_length": len(row["note"]) + float("été" in lower(row["note"])),
        "fare_number": number(row["fare_text"]),
        "first_fare": fare if not math.isnan(fare) else backup if not math.isnan(backup) else 0.0,
        "port": float(port_missing),
        "port_in": float(port in ("S", "Q")),
        "port_not_in": float(port not in ("S", "Q")),
        "class_in": float(row["ticket.class"] in (1, 2)),
        "fare_in": nan if math.isnan(fare) else float(fare not in (0, 1.5)),
        "special": 0.0 if name_missing else ("(f)*" in name) + ("💡" in name) * 2.0 + ("\\" in name) * 4.0,
        "first_date": _days(row["signup"] if row["signup"] != MISSING_DATE else row["opened"], row["opened"]),
    }


def _days(start: int, end: int) -> float:
    if MISSING_DATE in (start, end):
        return math.nan
    return float(np.float32((end - start) / 86_400_000))


def test_the_reference_is_what_plain_python_computes_row_by_row() -> None:
    columns = _columns()
    values = evaluate(parse_derived(EXPRESSIONS, KINDS), columns)
    for row in range(len(columns["name"])):
        want = _python({path: column[row] for path, column in columns.items()})
        for name, expected in want.items():
            got = float(values[name][row])
            assert (math.isnan(got) and math.isnan(expected)) or got == np.float32(expected), (name, row, got, expected)
    assert values["is_mr"][3] == 0.0  # "İbrahim": no "mr."
    assert values["name_length"][2] == len("Miss Laina\tHeikkinen")
    assert values["fare_number"][:5].tolist() == [54.0, 131.0, -0.5, 2.0, 1000.0] and values["fare_number"][11] == 7
    assert np.isnan(values["fare_number"][5:11]).all()  # "1,000", "NA", "0x10", "abc", "", missing


def test_quoted_names_read_any_field_path() -> None:
    (expression,) = parse_derived({"x": "`ticket.class` + `from`.`2nd` * `with space`"}, {})
    assert expression.fields == {"ticket.class": "number", "from.2nd": "number", "with space": "number"}
    (log,) = parse_derived({"x": "`log` + 1"}, {})  # a field named like a function
    assert log.fields == {"log": "number"}


@pytest.mark.parametrize(
    ("expression", "problem", "column"),
    [
        (
            "ticket.class == 'first'",
            "'class' is a Python keyword, so a field named so must be quoted with backticks: `ticket.class`",
            8,
        ),
        ("from * 2", "'from' is a Python keyword, so a field named so must be quoted with backticks: `from`", 1),
        ("fare / 2nd_class", "'2nd_class' starts with a digit, so a field named so must be quoted with backticks", 8),
        ("`fare * 2", "a quoted name has no closing backtick", 1),
        ("`` + 1", "an empty quoted name", 1),
        ("`$where` + 1", "a field path cannot start with '$'", 1),
        ("`a..b` + 1", "is not a dotted path", 1),
        ("`from` + lg(fare)", "unknown function 'lg'", 10),
        ("`fare`(2)", "`fare` is quoted, so it is a field: fields cannot be called", 1),
        ("contract in ['a', 1]", "only numbers or only 'strings'", 19),
        ("contract in other", "'in' takes a list of values", 13),
        ("fare in ['a']", "'in' a list of 'strings' needs a category, got a number", 1),
        ("contains(name, other)", "contains() needs a 'string' written out here", 16),
        ("contains(name, '')", "contains() needs a 'string' written out here", 16),
        ("length('abc') + fare", "length() needs a category or a text field, got a 'string' written out", 8),
        ("length(fare)", "length() needs a category or a text field, got a number", 8),
        ("lower(name)", "the result must be a number, not a category", 1),
        ("coalesce(fare, 'none')", "coalesce() takes values of one kind", 16),
        ("note * 2", "'note' is a text field: it cannot be used in arithmetic", 1),
        ("isnull(note)", "a missing text is '', use length(x) == 0", 8),
    ],
)
def test_wrong_expressions_say_why(expression: str, problem: str, column: int) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_derived({"feature_x": expression}, {"fare": "number", "name": "category", "note": "text"})
    error = caught.value
    assert error.exit_code == 2 and problem in error.message, error.message
    assert f"(column {column})" in error.message, error.message
    line, pointer = error.details.splitlines()
    assert line == f"    {expression}" and pointer == "    " + " " * (column - 1) + "^"


def _passengers(n: int = 400) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    titles = ["Mr.", "Mrs.", "Miss", "Master", "Dr.", "Mme."]
    documents = []
    for index in range(n):
        title = titles[index % len(titles)]
        survived = title in ("Mrs.", "Miss", "Mme.") or (title == "Master" and index % 3 == 0)
        fare = float(rng.uniform(5, 80))
        document: dict[str, Any] = {
            "_id": index + 1,
            "name": f"  {title} {['Élodie', 'Owen', 'İbrahim', 'Σοφία'][index % 4]} X ",
            "ticket": {"class": int(1 + index % 3), "fare": f" {fare:.2f} " if index % 9 else "n/a"},
            "from": ["S", "C", "Q", None][index % 4],
            "survived": "yes" if survived else "no",
        }
        documents.append(document)
    return documents


def _readme_example() -> dict[str, Any]:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### The expression language") :]
    found = re.search(r"Strings, quoted names.*?```toml\n(.*?)```", section, re.S)
    assert found is not None
    return tomllib.loads(found.group(1))


def _config(features: dict[str, Any]) -> Any:
    return parse_config(
        {
            "model": {"name": "voyage", "version": "1.0.0", "task": "classification"},
            "source": {"database": "db", "collection": "passengers"},
            "features": {**features, "target": "survived"},
            "estimator": {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"random_state": 0}},
        }
    )


def test_the_readme_example_builds_with_parity_on_every_row() -> None:
    example = _readme_example()
    exported = export(_config(example["features"]), _passengers())
    parity = exported.metadata["parity"]
    assert parity["within_tolerance"] and parity["rows"] == 400 and parity["label_disagreements"] == 0, parity
    assert exported.metadata["metrics"]["accuracy"] > 0.9
    model = runtime_model(exported)
    passenger = {"ticket": {"class": 1, "fare": "12"}, "from": "S"}
    assert model.predict({**passenger, "name": " MISS Élodie "}) == "yes"
    assert model.predict({**passenger, "name": "Mr. Owen"}) == "no"
    inputs = [entry["path"] for entry in exported.metadata["inputs"]]
    assert set(inputs) == {"name", "ticket.class", "ticket.fare", "from"}


CONFIG = """
[model]
name = "voyage-model"
version = "1.0.0"
task = "classification"

[source]
uri_env = "MLPACK_TEST_URI"
database = "{database}"
collection = "passengers"

[estimator]
class = "sklearn.ensemble.RandomForestClassifier"
params = {{ n_estimators = 30, random_state = 0 }}
"""


def test_string_expressions_build_against_mongodb(churn_project: Project, run, mongo_client: MongoClient[Any]) -> None:
    mongo_client[churn_project.database]["passengers"].insert_many(_passengers())
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### The expression language") :]
    found = re.search(r"Strings, quoted names.*?```toml\n(.*?)```", section, re.S)
    assert found is not None
    features = found.group(1).replace("{", "{{").replace("}", "}}")
    churn_project.write_config(CONFIG + features.replace("[features]\n", '[features]\ntarget = "survived"\n'))
    built = run("build", churn_project.path, "--json")
    assert built.code == 0, built.err
    report = json.loads(built.out)
    assert report["parity"]["within_tolerance"] and report["parity"]["rows"] == 400
    assert report["parity"]["label_disagreements"] == 0 and report["metrics"]["accuracy"] > 0.9
    # A field read only by expressions becomes no column: no warning says it does.
    assert not [w for w in report["warnings"] if "ticket.fare" in w or "'name'" in w], report["warnings"]
    # The model reads names only through contains() and length(): no artifact lists one.
    for name, data in _artifact_bytes(churn_project.path / "dist").items():
        for person in ("Owen", "Élodie", "İbrahim", "Σοφία"):
            assert person.encode() not in data, (person, name)
    churn_project.edit("`from`", "from")
    refused = run("build", churn_project.path, "--version", "1.0.1")
    assert refused.code == 2
    assert "'from' is a Python keyword, so a field named so must be quoted with backticks: `from`" in refused.err
    assert "Traceback" not in refused.err


def _artifact_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of the build's output, the wheel's and the sdist's members opened up."""
    found: dict[str, bytes] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        found[str(path)] = path.read_bytes()
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                found.update({f"{path.name}!{n}": wheel.read(n) for n in wheel.namelist()})
        elif path.name.endswith(".tar.gz"):
            with tarfile.open(path) as sdist:
                for member in sdist.getmembers():
                    handle = sdist.extractfile(member)
                    if handle is not None:
                        found[f"{path.name}!{member.name}"] = handle.read()
    return found
