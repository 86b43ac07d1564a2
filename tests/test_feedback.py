"""[source.feedback]: the requests a served model logged and clients sent feedback for, as training rows."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient

from mlpack.config import load_config
from mlpack.features.labels import feedback_targets
from mlpack.source.feedback import load_feedback
from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers
from tests.helpers.http_client import ServerProcess
from tests.helpers.projects import Project

SERVE = '\n[serve]\ninference_log = true\ninference_log_database = "{database}"\n'
FEEDBACK = '\n[source.feedback]\nsince = "1h"\n'


def _version(project: Project, version: str) -> None:
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        "\n".join(f'version = "{version}"' if line.startswith("version = ") else line for line in text.splitlines())
        + "\n",
        encoding="utf-8",
    )


def _append(project: Project, text: str) -> None:
    project.config.write_text(
        project.config.read_text(encoding="utf-8") + text.format(database=project.database), encoding="utf-8"
    )


def strip(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in ("label", "churned", "_id")}


def _tensors(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records as Open Inference Protocol v2 input tensors, one per field (named by its path)."""

    def read(record: dict[str, Any], path: str) -> Any:
        for part in path.split("."):
            record = record[part]
        return record

    numeric = [
        {"name": path, "datatype": "FP32", "shape": [len(records), 1], "data": [read(r, path) for r in records]}
        for path in ("tenure_months", "billing.monthly_charges", "support_calls")
    ]
    categorical = [
        {"name": path, "datatype": "BYTES", "shape": [len(records), 1], "data": [read(r, path) for r in records]}
        for path in ("contract", "billing.method")
    ]
    return numeric + categorical


def _other(label: str) -> str:
    return "stayed" if label == "churned" else "churned"


def test_feedback_on_n_served_records_gives_n_more_training_rows(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any]
) -> None:
    _append(churn_project, SERVE)
    first = run("build", churn_project.path, "--json")
    assert first.code == 0, first.err
    v1 = json.loads(first.out)
    assert "feedback" not in v1["data"]

    new = subscribers(26, seed=5, absent=False)
    truth = {1000 + i: document["label"] for i, document in enumerate(new)}
    # What a client sends: the document's inputs and its _id, not the outcome (known only later).
    arriving = [{**strip(document), "_id": 1000 + i} for i, document in enumerate(new)]
    server = ServerProcess.mlpack(v1["paths"]["wheel"], env={"MLPACK_INFERENCE_LOG_URI": churn_project.uri})
    try:
        singles = [server.request("POST", "/predict", record).json()["id"] for record in arriving[:12]]
        batch = server.request("POST", "/predict", arriving[12:24]).json()["id"]
        columns = server.request("POST", "/v2/models/churn-model/infer", {"inputs": _tensors(new[24:26])})
        assert columns.status == 200, columns.body
        tensors = columns.json()["id"]  # Open Inference Protocol columns, logged as columns
        retried = server.request("POST", "/predict", arriving[8]).json()["id"]  # record 8 sent again

        def feedback(prediction: str, label: str, index: int = 0, status: int = 202) -> None:
            body = {"id": prediction, "label": label, "index": index}
            assert server.request("POST", "/feedback", body).status == status

        feedback(singles[0], _other(truth[1000]))  # a first, wrong outcome ...
        time.sleep(0.01)
        for number in range(9):  # ... corrected by the later one: the latest wins
            feedback(singles[number], truth[1000 + number])
        feedback(retried, truth[1008])  # the same document (its _id) told twice: one row
        for index in range(6):
            feedback(batch, truth[1012 + index], index)
        feedback(tensors, truth[1025], 1)  # the second record of the columns
        feedback("0" * 32, "stayed", status=404)  # an id never answered: not stored
    finally:
        assert server.stop() == 0  # SIGTERM flushes the log
    log = mongo_client[churn_project.database]["inference_log"]
    assert sum(len(d.get("feedback", [])) for d in log.find({}, {"feedback": 1})) == 18
    labelled = 9 + 6 + 1  # distinct records with an outcome

    _append(churn_project, FEEDBACK)
    _version(churn_project, "1.0.1")
    second = run("build", churn_project.path, "--json")
    assert second.code == 0, second.err
    v2 = json.loads(second.out)
    data, fed = v2["data"], v2["data"]["feedback"]
    assert data["rows"] == v1["data"]["rows"] + labelled
    assert fed["rows"] == labelled and fed["labels"] == 18 and fed["superseded"] == 2 and fed["replaced"] == 0
    assert fed["requests"] == 9 + 1 + 1 + 1 and fed["collection"] == "inference_log"
    assert fed["sha256"] and data["sha256"] not in (v1["data"]["sha256"], fed["sha256"])
    assert v2["parity"]["train_rows"] + v2["parity"]["test_rows"] == data["rows"]
    record = mongo_client[churn_project.database]["mlpack_models"].find_one({"version": "1.0.1"})
    assert record["data"]["feedback"]["rows"] == labelled

    # The latest outcome of each record is its target (1000's corrected one), its inputs as logged.
    found = load_feedback(load_config(churn_project.path), mongo_client, now=datetime.now(tz=UTC))
    assert found is not None and len(found.keys) == labelled
    targets = dict(zip(found.keys, found.columns.values["label"]))
    assert targets == {
        **{f"_id {key}": truth[key] for key in [*range(1000, 1009), *range(1012, 1018)]},
        f"{tensors}#1": truth[1025],
    }
    contracts = dict(zip(found.keys, found.columns.values["contract"]))
    assert all(contracts[f"_id {1000 + i}"] == new[i]["contract"] for i in range(9))
    assert contracts[f"{tensors}#1"] == new[25]["contract"]

    text = run("build", churn_project.path, "--version", "1.0.2")
    assert text.code == 0, text.err
    assert f"feedback: {labelled} of the {data['rows']} rows from {churn_project.database}.inference_log" in text.out
    card = (churn_project.path / "dist" / "churn-model-1.0.2.html").read_text(encoding="utf-8")
    assert f"Of these, {labelled} are served requests logged in <code>{churn_project.database}.inference_log" in card
    shown = run("inspect", churn_project.path / "dist" / "churn-model-1.0.2.onnx")
    assert f"feedback: {labelled} of the {data['rows']} rows" in shown.out


def _log(mongo_client: MongoClient[Any], project: Project, entries: list[tuple[dict[str, Any], Any]]) -> None:
    """Logged requests with their feedback, as the server writes them (one record each)."""
    now = datetime.now(tz=UTC)
    mongo_client[project.database]["inference_log"].insert_many(
        [
            {
                "_id": f"{number:032x}",
                "model": "churn-model",
                "version": "1.0.0",
                "route": "/predict",
                "at": now - timedelta(minutes=5),
                "inputs": record,
                "predictions": ["stayed"],
                "feedback": [{"index": 0, "label": label, "at": now}],
            }
            for number, (record, label) in enumerate(entries)
        ]
    )


def test_a_document_the_collection_has_takes_its_latest_feedback_and_names_map_to_classes(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = mongo_client[churn_project.database]["customers"].find_one({"_id": 3})
    told = "stayed" if known["label"] == "churned" else "churned"
    fresh = strip(subscribers(1, seed=8, absent=False)[0])
    _log(mongo_client, churn_project, [({**strip(known), "_id": 3}, told), (fresh, "Churn")])
    churn_project.edit('target = "label"', 'target = "label"\nlabels = { churned = "Churn", stayed = "Stay" }')
    _append(churn_project, SERVE + FEEDBACK)
    built = run("build", churn_project.path, "--json")
    assert built.code == 0, built.err
    data = json.loads(built.out)["data"]
    assert data["rows"] == 240 + 1 and data["feedback"]["rows"] == 2 and data["feedback"]["replaced"] == 1
    found = load_feedback(load_config(churn_project.path), mongo_client, now=datetime.now(tz=UTC))
    assert found is not None and found.keys == ["_id 3", f"{1:032x}#0"]
    assert found.columns.values["label"] == [told, "Churn"]  # names are read as classes when validated

    # The same log, config and SOURCE_DATE_EPOCH: the same bytes (the window counted from that time).
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01: "1h" reaches from 2025-12-31T23:00Z
    first = run("build", churn_project.path, "--json", "--version", "2.0.0", "--out", churn_project.path / "a")
    again = run(
        "build", churn_project.path, "--json", "--version", "2.0.0", "--out", churn_project.path / "b", "--force"
    )
    assert first.code == again.code == 0, first.err + again.err
    one, two = json.loads(first.out), json.loads(again.out)
    assert one["data"]["feedback"]["since"] == "2025-12-31T23:00:00Z" and one["data"]["feedback"]["rows"] == 2
    assert one["data"] == two["data"]
    assert [one["artifacts"][k]["sha256"] for k in ("wheel", "onnx")] == [
        two["artifacts"][k]["sha256"] for k in ("wheel", "onnx")
    ]


def test_feedback_mistakes_are_one_clear_line(
    churn_project: Project, run: Any, mongo_client: MongoClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    record = strip(subscribers(1, seed=8, absent=False)[0])
    _log(mongo_client, churn_project, [(record, True), (record, "stayed")])
    _append(churn_project, SERVE + "\n[source.feedback]\n")
    base = churn_project.config.read_text(encoding="utf-8")

    def build_with(extra: str, *flags: str) -> Any:
        churn_project.config.write_text(base + extra, encoding="utf-8")
        return run("build", churn_project.path, *flags)

    assert_clean_error(
        build_with(""),
        1,
        "the feedback is not usable",
        "1 feedback label(s) from the inference log are not strings like the collection's",
        f"e.g. feedback {0:032x}#0 has True",
    )
    assert_clean_error(
        build_with('collection = "inference_logs"\n'),
        2,
        "[source.feedback].collection 'inference_logs' is not a collection of database",
        "did you mean 'inference_log'?",
    )
    assert_clean_error(
        build_with('since = "last tuesday"\n'), 2, "[source.feedback].since 'last tuesday' is not a time"
    )
    assert_clean_error(
        build_with('since = "2026-06-02"\nuntil = "2026-06-01"\n'),
        2,
        "[source.feedback].since (2026-06-02T00:00:00Z) must be before [source.feedback].until",
    )
    assert_clean_error(build_with('windw = "1h"\n'), 2, "unknown key [source.feedback].windw")
    assert_clean_error(build_with("enabled = 1\n"), 2, "[source.feedback].enabled must be true or false")
    assert_clean_error(
        build_with('uri_env = "NO_SUCH_LOG_URI"\n'), 2, "[source.feedback].uri_env names NO_SUCH_LOG_URI"
    )
    monkeypatch.setenv("MLPACK_FEEDBACK_LOG_URI", "notauri")  # pymongo would take it for a host and wait
    assert_clean_error(
        build_with('uri_env = "MLPACK_FEEDBACK_LOG_URI"\n'),
        2,
        "MLPACK_FEEDBACK_LOG_URI is not a MongoDB connection string: it must start with mongodb://",
    )
    off = build_with("enabled = false\n")
    assert off.code == 0, off.err
    assert "from feedback" not in off.out
    monkeypatch.setenv("MLPACK_FEEDBACK_LOG_URI", churn_project.uri)
    window = build_with(
        'uri_env = "MLPACK_FEEDBACK_LOG_URI"\nsince = "2020-01-01"\nuntil = "2020-02-01"\n', "--version", "1.0.1"
    )
    assert window.code == 0, window.err
    assert (
        f"feedback: none in {churn_project.database}.inference_log from 2020-01-01T00:00:00Z to 2020-02-01T00:00:00Z"
        in window.out
    )
    report = json.loads((churn_project.path / "dist" / "churn-model-1.0.1.json").read_text(encoding="utf-8"))
    assert any(warning.endswith("2020-02-01T00:00:00Z received feedback") for warning in report["warnings"])


def test_feedback_labels_are_read_as_the_collections_or_refused() -> None:
    ids = ["1", "2", "3", "feedback a#0", "feedback b#0"]
    regression = [1.5, 2.0, " 7 ", 3, " 4.5 "]
    assert feedback_targets(regression, 2, ids, {}, True, "y") == (regression, None)
    _, problem = feedback_targets([1.5, 2.0, 3.0, "NA", True], 2, ids, {}, True, "y")
    assert problem == (
        "target 'y': 2 feedback label(s) from the inference log are not numbers, as a regression needs, "
        "e.g. feedback a#0 has 'NA'"
    )
    names = {"true": "churned", "false": "stayed"}
    column, problem = feedback_targets([True, False, True, "stayed", False], 2, ids, names, False, "churn")
    assert problem is None and column == [True, False, True, False, False]  # a class by its name
    _, problem = feedback_targets([True, False, True, "yes", 1], 2, ids, names, False, "churn")
    assert problem is not None and "2 feedback label(s) from the inference log are not booleans" in problem
    assert "e.g. feedback a#0 has 'yes'" in problem
