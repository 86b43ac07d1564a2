"""`mlpack build` end to end against a real MongoDB wire server, and its bad-input catalogue."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnx
import pytest
from pymongo import MongoClient

import mlpack.runtime
from mlpack.source.embedded import free_port
from tests.helpers.cli import REPO, artifacts_in, assert_clean_error, run_process
from tests.helpers.projects import Project

EXPECTED = [
    "churn-model-1.0.0.cdx.json",  # the SBOM
    "churn-model-1.0.0.html",
    "churn-model-1.0.0.json",
    "churn-model-1.0.0.onnx",
    "churn-model-1.0.0.predictions.jsonl",
    "churn-model-1.0.0.provenance.json",
    "churn_model-1.0.0-py3-none-any.whl",
    "churn_model-1.0.0.tar.gz",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_writes_verified_artifacts_and_records_them(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    out = churn_project.path / "dist"
    result = run("build", churn_project.path, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert artifacts_in(out) == EXPECTED  # default --out, and no scratch folder left behind

    # The report: the metadata plus sizes and digests of the real files.
    report = json.loads((out / "churn-model-1.0.0.json").read_text())
    assert report == {k: v for k, v in summary.items() if k not in ("paths", "seconds")}
    for kind, entry in report["artifacts"].items():
        assert sha256(out / entry["file"]) == entry["sha256"], kind
        assert (out / entry["file"]).stat().st_size == entry["size"]
    assert report["name"] == "churn-model" and report["version"] == "1.0.0" and report["task"] == "classification"
    assert set(report["metrics"]) == {"accuracy", "f1_macro", "roc_auc"}
    assert report["metrics"]["accuracy"] >= 0.6
    assert report["classes"] == ["churned", "stayed"]
    assert [f["name"] for f in report["features"]] == [
        "tenure_months",
        "billing.monthly_charges",
        "support_calls",
        "contract",
        "billing.method",
    ]
    charges = report["features"][1]
    assert {k: charges[k] for k in ("name", "input", "kind", "dtype")} == {
        "name": "billing.monthly_charges",
        "input": "billing_monthly_charges",
        "kind": "numeric",
        "dtype": "float32",
    }
    assert 20 <= charges["imputed"] <= 120 and charges["missing"] == 0  # the median of charges in 20..120
    method = report["features"][4]  # per category its training count; the missing ones counted apart
    assert set(method["categories"]) == {"card", "bank", "check"}
    assert sum(method["categories"].values()) + method["missing"] == report["parity"]["train_rows"] == 180
    shares = {entry["label"]: entry["share"] for entry in report["class_balance"]}
    assert set(shares) == {"churned", "stayed"} and abs(sum(shares.values()) - 1) < 1e-6
    assert report["data"]["rows"] == 240 and len(report["data"]["sha256"]) == 64
    assert report["data"]["database"] == churn_project.database
    assert report["parity"]["within_tolerance"] and report["parity"]["label_disagreements"] == 0
    assert set(report["versions"]) == {"mlpack", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "opset"}
    assert report["created"].endswith("Z")

    # The ONNX file carries the same metadata; one input per feature, plain probability tensor.
    model = onnx.load(out / "churn-model-1.0.0.onnx")
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["mlpack.metadata"]) == {
        k: v for k, v in report.items() if k not in ("artifacts", "timings")
    }
    # Per-stage wall times (the build report): in the report only, never in the metadata.
    assert set(report["timings"]["stages"]) == {"load", "validate", "train", "export", "parity", "card", "package"}
    assert all(seconds > 0 for seconds in report["timings"]["stages"].values())
    assert props["name"] == "churn-model" and json.loads(props["metrics"]) == report["metrics"]
    assert [i.name for i in model.graph.input] == [f["input"] for f in report["features"]]
    assert [o.name for o in model.graph.output] == ["label", "probabilities"]

    # The wheel: model, metadata, config, the runtime verbatim, a model card.
    with zipfile.ZipFile(out / "churn_model-1.0.0-py3-none-any.whl") as wheel:
        names = set(wheel.namelist())
        assert {
            "churn_model/model.onnx",
            "churn_model/metadata.json",
            "churn_model/mlpack.toml",
            "churn_model/_runtime/__init__.py",
            "churn_model/_runtime/model.py",
            "churn_model/__init__.py",
            "churn_model/__main__.py",
        } <= names
        # The runtime package whole, byte for byte, and nothing else of mlpack's build side.
        runtime_dir = Path(mlpack.runtime.__file__).parent
        for source in sorted(runtime_dir.rglob("*.py")):  # its server (serving/) included
            relative = source.relative_to(runtime_dir).as_posix()
            assert wheel.read(f"churn_model/_runtime/{relative}") == source.read_bytes(), relative
        assert "churn_model/_runtime/serving/http.py" in names
        shipped = {n.split("/")[1] for n in names if n.startswith("churn_model/") and n.count("/") >= 2}
        assert shipped == {"_runtime"}, shipped
        assert wheel.read("churn_model/model.onnx") == (out / "churn-model-1.0.0.onnx").read_bytes()
        wheel_meta = wheel.read("churn_model-1.0.0.dist-info/METADATA").decode()
    assert "Requires-Dist: onnxruntime" in wheel_meta and "Requires-Dist: numpy" in wheel_meta
    requires = [
        line for line in wheel_meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert len(requires) == 2, requires
    assert "| accuracy |" in wheel_meta and "billing.monthly_charges" in wheel_meta  # the model card

    # No credentials or connection strings in any artifact.
    for path in out.iterdir():
        assert churn_project.uri.encode() not in path.read_bytes()

    # The registry holds the build with the same digests.
    record = mongo_client[churn_project.database]["mlpack_models"].find_one({"name": "churn-model", "version": "1.0.0"})
    assert record is not None and record["status"] == "built"
    assert record["artifacts"]["wheel"]["sha256"] == report["artifacts"]["wheel"]["sha256"]
    assert record["data"]["sha256"] == report["data"]["sha256"]


# Hash seeds under which skl2onnx lists this graph's opset domains in three different orders on
# CPython 3.11 (its domains are a Python set): without mlpack's sorting the .onnx bytes differ (seen).
HASH_SEEDS = ("1", "4", "5")


def test_builds_in_separate_processes_and_folders_are_byte_identical(churn_project: Project) -> None:
    """`python -m mlpack build` in three processes, three project folders, three hash seeds: the same
    bytes (the report but for its timings), with text and a derived feature in the graph."""
    derived = '[features.derived]\nper_call = "billing.monthly_charges / (support_calls + 1)"'
    churn_project.edit('target = "label"', f'target = "label"\ntext = ["customer"]\n{derived}')
    env = {"SOURCE_DATE_EPOCH": "1767225600", "MLPACK_TEST_URI": churn_project.uri}
    folders = []
    for number, seed in enumerate(HASH_SEEDS):
        folder = churn_project.path.parent / f"churn-{number}"
        shutil.copytree(churn_project.path, folder)
        result = run_process("build", folder, "-q", "--force", env={**env, "PYTHONHASHSEED": seed})
        assert result.code == 0, result.err
        folders.append(folder / "dist")
    for name in EXPECTED:
        if name == "churn-model-1.0.0.json":  # the report: identical but for its stage timings
            reports = [json.loads((folder / name).read_text()) for folder in folders]
            for report in reports:
                report.pop("timings")
            assert all(report == reports[0] for report in reports)
            assert reports[0]["created"] == "2026-01-01T00:00:00Z"
            continue
        assert len({sha256(folder / name) for folder in folders}) == 1, name


def test_registered_version_is_refused_then_forced_and_auto_bumps(churn_project: Project, run) -> None:
    out = churn_project.path / "dist"
    assert run("build", churn_project.path, "-q").code == 0
    before = {name: sha256(out / name) for name in EXPECTED}
    again = run("build", churn_project.path)
    assert_clean_error(again, 2, "churn-model 1.0.0 is already in the registry", "--force")
    assert {name: sha256(out / name) for name in EXPECTED} == before

    assert run("build", churn_project.path, "--version", "auto", "-q").code == 0
    assert (out / "churn_model-1.0.1-py3-none-any.whl").is_file()
    listing = run("models", "--config", churn_project.path, "--json")
    assert [(r["version"], r["status"]) for r in json.loads(listing.out)] == [("1.0.0", "built"), ("1.0.1", "built")]
    table = run("models", "churn-model", "--config", churn_project.path)
    assert "1.0.1" in table.out and "built" in table.out


def test_gate_failure_exits_1_writes_nothing_and_records_rejection(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    churn_project.edit("gates = { accuracy = 0.6 }", "gates = { accuracy = 0.999, f1_macro = 0.5 }")
    out = churn_project.path / "dist"
    result = run("build", churn_project.path)
    assert_clean_error(result, 1, "quality gate failed", "accuracy = ", "requires at least 0.999")
    assert "f1_macro" not in result.err  # a passing gate is not reported as failing
    assert artifacts_in(out) == []
    record = mongo_client[churn_project.database]["mlpack_models"].find_one({"version": "1.0.0"})
    assert record is not None and record["status"] == "rejected" and "accuracy" in record["metrics"]
    # A rejected build does not hold its version.
    churn_project.edit("gates = { accuracy = 0.999, f1_macro = 0.5 }", "gates = { accuracy = 0.5 }")
    assert run("build", churn_project.path, "-q").code == 0


def test_error_gate_is_a_maximum(churn_project: Project, run) -> None:
    churn_project.edit('task = "classification"', 'task = "regression"')
    churn_project.edit('target = "label"', 'target = "lifetime_value"')
    churn_project.edit("sklearn.ensemble.RandomForestClassifier", "sklearn.ensemble.RandomForestRegressor")
    churn_project.edit("gates = { accuracy = 0.6 }", "gates = { rmse = 1.0 }")
    assert_clean_error(run("build", churn_project.path), 1, "rmse = ", "requires at most 1")


def test_parity_failure_exits_1(churn_project: Project, run) -> None:
    churn_project.edit('task = "classification"', 'task = "regression"')
    churn_project.edit('target = "label"', 'target = "lifetime_value"')
    churn_project.edit("sklearn.ensemble.RandomForestClassifier", "sklearn.linear_model.LinearRegression")
    churn_project.edit("params = { n_estimators = 30, random_state = 0 }", "params = {}")
    churn_project.edit("gates = { accuracy = 0.6 }", "gates = {}\n[export]\nparity_tolerance = 0.0")
    result = run("build", churn_project.path)
    assert_clean_error(result, 1, "ONNX and scikit-learn disagree", "max |sklearn - onnx|")
    assert artifacts_in(churn_project.path / "dist") == []


def insert(mongo_client: MongoClient[Any], project: Project, documents: list[dict[str, Any]]) -> None:
    mongo_client[project.database]["customers"].insert_many(documents)


_GOOD = {
    "tenure_months": 3,
    "support_calls": 1,
    "contract": "monthly",
    "billing": {"monthly_charges": 1.0, "method": "card"},
    "label": "stayed",
}


@pytest.mark.parametrize(
    ("change", "documents", "messages"),
    [
        (
            None,
            [
                {
                    "_id": 1001,
                    "tenure_months": "n/a months",
                    "support_calls": 1,
                    "contract": "monthly",
                    "billing": {"monthly_charges": 1.0, "method": "card"},
                    "label": "stayed",
                }
            ],
            ["numeric feature 'tenure_months': 1 bad value(s), e.g. _id 1001: expected a number, got 'n/a months'"],
        ),
        (
            None,
            [
                {
                    "_id": 1002,
                    "tenure_months": 3,
                    "support_calls": 1,
                    "contract": "monthly",
                    "billing": {"monthly_charges": 1.0, "method": "card"},
                }
            ],
            ["target 'label': missing in 1 document(s), e.g. _id 1002"],
        ),
        (
            ('"billing.method"]', '"billing.methd"]'),
            [],
            ["field 'billing.methd' is absent from all 240 documents (did you mean 'billing.method'?)"],
        ),
        (
            ('collection = "customers"', 'collection = "customers"\nfilter = { contract = "none-such" }'),
            [],
            ["no documents to train on"],
        ),
        (
            ('collection = "customers"', 'collection = "customers"\nfilter = { label = "stayed" }'),
            [],
            ["only one class ('stayed')"],
        ),
        (
            None,
            [
                {
                    "_id": 1003,
                    "tenure_months": 3,
                    "support_calls": 1,
                    "contract": {"a": 1},
                    "billing": {"monthly_charges": 1.0, "method": "card"},
                    "label": "stayed",
                }
            ],
            ["categorical feature 'contract': 1 bad value(s), e.g. _id 1003: expected a category"],
        ),
        (
            None,
            [
                {
                    "_id": 1004,
                    "tenure_months": 3,
                    "support_calls": 1,
                    "contract": "x",
                    "billing": {"monthly_charges": 1.0, "method": "card"},
                    "label": 7,
                }
            ],
            ["class labels must be all strings, all integers or all booleans"],
        ),
        (
            None,
            [{**_GOOD, "_id": 1005, "contract": datetime(2024, 1, 1, tzinfo=UTC)}],
            [
                "categorical feature 'contract': 1 bad value(s), e.g. _id 1005: a date is not a category",
                "[features].datetime",
            ],
        ),
        (
            None,
            [{**_GOOD, "_id": 1006, "support_calls": True}],
            ["numeric feature 'support_calls': 1 bad value(s), e.g. _id 1006: expected a number, got True (a boolean"],
        ),
        (
            None,
            [{**_GOOD, "_id": 1008, "support_calls": float("inf")}],
            ["numeric feature 'support_calls': 1 bad value(s), e.g. _id 1008: inf is not a finite number"],
        ),
    ],
    ids=[
        "non-numeric",
        "target-missing",
        "field-absent",
        "empty",
        "single-class",
        "categorical-doc",
        "mixed-labels",
        "date-as-category",
        "boolean-as-number",
        "infinity",
    ],
)
def test_bad_data_exits_1_with_a_report(
    churn_project: Project,
    run,
    mongo_client: MongoClient[Any],
    change: tuple[str, str] | None,
    documents: list[dict[str, Any]],
    messages: list[str],
) -> None:
    if change:
        churn_project.edit(*change)
    if documents:
        insert(mongo_client, churn_project, documents)
    result = run("build", churn_project.path)
    assert_clean_error(result, 1, *messages)
    assert artifacts_in(churn_project.path / "dist") == []


def test_unset_uri_variable_is_a_usage_error(churn_project: Project, run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLPACK_TEST_URI")
    assert_clean_error(
        run("build", churn_project.path), 2, "environment variable MLPACK_TEST_URI is not set", "embedded = true"
    )


def test_unreachable_database_exits_3_within_30_seconds(
    churn_project: Project, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPACK_TEST_URI", f"mongodb://127.0.0.1:{free_port()}/")
    started = time.monotonic()
    result = run("build", churn_project.path)
    assert_clean_error(result, 3, "is unreachable")
    assert time.monotonic() - started < 30
    assert artifacts_in(churn_project.path / "dist") == []


def test_invalid_connection_string_is_a_usage_error(
    churn_project: Project, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPACK_TEST_URI", "postgres://u:pw@host/db")
    result = run("build", churn_project.path)
    assert_clean_error(result, 2, "MLPACK_TEST_URI is not a MongoDB connection string", "it is a postgres:// URI")
    assert ":pw@" not in result.err


def test_config_mistakes_fail_before_touching_the_database(
    churn_project: Project, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPACK_TEST_URI", f"mongodb://127.0.0.1:{free_port()}/")  # would take 10 s to time out
    churn_project.edit("sklearn.ensemble.RandomForestClassifier", "catboost.CatBoostClassifier")
    started = time.monotonic()
    assert_clean_error(run("build", churn_project.path), 2, "catboost.CatBoostClassifier is not supported")
    churn_project.edit("catboost.CatBoostClassifier", "sklearn.svm.NuSVC")
    assert_clean_error(run("build", churn_project.path), 2, "sklearn.svm.NuSVC is not a supported estimator")
    churn_project.edit("sklearn.svm.NuSVC", "sklearn.ensemble.RandomForestClassifier")
    churn_project.edit("gates = { accuracy = 0.6 }", "gates = { r2 = 0.6 }")
    assert_clean_error(run("build", churn_project.path), 2, "metric 'r2' is for regression")
    churn_project.edit("gates = { r2 = 0.6 }", "gates = { accuracy = 0.6 }")
    churn_project.edit('collection = "customers"', 'collection = "customers"\nfilter = { _id = { "$oid" = "zz" } }')
    assert_clean_error(run("build", churn_project.path), 2, "[source].filter is not a valid query", "'zz'")
    churn_project.edit('filter = { _id = { "$oid" = "zz" } }', "filter = { at = 07:00:00 }")
    assert_clean_error(run("build", churn_project.path), 2, "[source].filter holds a time of day (07:00:00)")
    assert time.monotonic() - started < 5


def test_json_mode_reports_errors_as_json(churn_project: Project, run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLPACK_TEST_URI")
    result = run("build", churn_project.path, "--json")
    assert result.code == 2
    assert json.loads(result.out)["exit_code"] == 2


def test_output_folder_that_is_a_file_is_a_usage_error(churn_project: Project, run) -> None:
    blocker = churn_project.path / "blocker"
    blocker.write_text("x")
    assert_clean_error(
        run("build", churn_project.path, "--out", blocker / "dist"), 2, "cannot create the output folder"
    )


def test_bundled_example_builds_with_the_embedded_server(tmp_path: Path) -> None:
    """The README's first command, as a user runs it: no MONGODB_URI, embedded server, seed file."""
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    env["MONGODB_URI"] = ""
    env["DOCKER_HOST"] = f"unix://{tmp_path / 'no-engine.sock'}"  # the image has its own tests
    result = run_process("build", REPO / "examples" / "wine", "--out", tmp_path / "dist", env=env)
    assert result.code == 0, result.err
    assert "built wine-cultivar 1.0.0" in result.out
    # The image needs no engine; its base comes from Docker Hub, which a machine offline cannot reach:
    # then the build says why there is no image and succeeds without it (the image has its own tests).
    image = {"wine-cultivar-1.0.0.oci", "wine-cultivar-1.0.0.image.tar"}
    made = {p.name for p in (tmp_path / "dist").iterdir()}
    if "image not built: the registry registry-1.docker.io is unreachable" in result.out:
        assert not made & image
    else:
        assert "image wine-cultivar:1.0.0" in result.out and image <= made, result.out
    assert sorted(made - image) == [
        "wine-cultivar-1.0.0.cdx.json",
        "wine-cultivar-1.0.0.docker",
        "wine-cultivar-1.0.0.html",
        "wine-cultivar-1.0.0.json",
        "wine-cultivar-1.0.0.onnx",
        "wine-cultivar-1.0.0.predictions.jsonl",
        "wine-cultivar-1.0.0.provenance.json",
        "wine_cultivar-1.0.0-py3-none-any.whl",
        "wine_cultivar-1.0.0.tar.gz",
    ]
    report = json.loads((tmp_path / "dist" / "wine-cultivar-1.0.0.json").read_text())
    assert report["data"]["rows"] == 178 and report["metrics"]["accuracy"] >= 0.85


def test_registry_can_be_renamed_or_turned_off(churn_project: Project, run, mongo_client: MongoClient[Any]) -> None:
    database = mongo_client[churn_project.database]
    churn_project.edit("[evaluation]", '[registry]\ncollection = "model_builds"\n\n[evaluation]')
    assert run("build", churn_project.path, "-q").code == 0
    assert database["model_builds"].count_documents({"name": "churn-model"}) == 1
    assert "mlpack_models" not in database.list_collection_names()

    churn_project.edit('collection = "model_builds"', "enabled = false")
    # The same version again: no registry holds it, but dist/ does (a different build: new `created`).
    assert_clean_error(run("build", churn_project.path), 2, "already exists and holds a different build")
    assert run("build", churn_project.path, "-q", "--force").code == 0
    assert database["model_builds"].count_documents({}) == 1
    churn_project.edit('version = "1.0.0"', 'version = "auto"')
    assert_clean_error(run("build", churn_project.path), 2, '"auto" needs the registry')


def test_a_collection_that_does_not_exist_is_named_with_the_nearest(churn_project: Project, run) -> None:
    """A typo in [source].collection read nothing and said only that "the query matched nothing"."""
    churn_project.edit('collection = "customers"', 'collection = "customer"')
    result = run("build", churn_project.path)
    assert_clean_error(
        result,
        2,
        f"[source].collection 'customer' is not a collection of database '{churn_project.database}'",
        "(did you mean 'customers'?)",
    )
    churn_project.edit('collection = "customer"', 'collection = "customers"\nfilter = { plan = "none" }')
    result = run("build", churn_project.path)  # an existing collection that matched nothing says just that
    assert_clean_error(result, 1, f"the query matched nothing in {churn_project.database}.customers")
    assert "is not a collection" not in result.err


def test_a_build_without_the_attest_extra_warns_on_stderr(churn_project: Project, run) -> None:
    """README's quick start installs '.[embedded]' only: the build wrote no SBOM nor provenance and said
    so only as progress, which is shown on a terminal alone, so CI logs and pipes never saw it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "cyclonedx", None)  # as if the [attest] extra were not installed
        result = run("build", churn_project.path)
    assert result.code == 0, result.err
    assert "mlpack: warning: no SBOM nor provenance: the cyclonedx package is not installed" in result.err
    assert not list((churn_project.path / "dist").glob("*.cdx.json"))


def test_a_build_the_registry_cannot_record_is_not_left_as_built(
    churn_project: Project, run, mongo_client: MongoClient[Any]
) -> None:
    """The registry refusing the record (here a unique index another document already fills) failed the
    build with exit 3, but left its report in dist/: score, serve and monitor then used a wheel the
    registry never recorded."""
    registry = mongo_client[churn_project.database]["mlpack_models"]
    registry.insert_one({"name": "another-model", "version": "9.9.9", "task": "classification"})
    registry.create_index("task", unique=True)
    result = run("build", churn_project.path)
    assert_clean_error(result, 3, "is not recorded", "no churn-model-1.0.0.json was written", "--force")
    out = churn_project.path / "dist"
    assert not (out / "churn-model-1.0.0.json").exists()
    assert (out / "churn_model-1.0.0-py3-none-any.whl").is_file()  # the files stay: nothing is lost
    assert registry.count_documents({"name": "churn-model"}) == 0
    assert_clean_error(run("score", churn_project.path, "--into", "scored"), 2, "no build of churn-model")

    registry.drop_indexes()  # the registry reachable again: the build is made and recorded
    assert run("build", churn_project.path, "-q", "--force").code == 0
    assert (out / "churn-model-1.0.0.json").is_file()
    assert registry.count_documents({"name": "churn-model", "status": "built"}) == 1
