"""What `[estimator].float32 = true` costs: SGD fitted on the graph's float32 features vs on their float64
widening (the default), and an independent float64 scikit-learn pipeline, on the same split: test metrics.

Data sets: the bundled example (wine, with its derived features), scikit-learn's bundled breast_cancer,
digits and diabetes, the tests' subscribers (numbers with gaps, one-hot categories; both tasks), and
synthetic support tickets (text, one-hot categories, a date, gaps; both tasks). Two seeds each. The
builds are mlpack's own stages in this process (no database); the independent pipeline imputes,
scales, one-hot encodes and TF-IDFs in scikit-learn (float64 throughout) on the split's raw columns.

    python benchmarks/float32.py [--estimators sklearn.linear_model.SGDClassifier,...]
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import random
import sys
import tomllib
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn import datasets  # noqa: E402
from sklearn import metrics as sk_metrics  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler  # noqa: E402

from mlpack.config import parse_config  # noqa: E402
from mlpack.estimators import FLOAT32_ESTIMATORS, SUPPORTED  # noqa: E402
from tests.helpers.documents import subscribers  # noqa: E402
from tests.helpers.training import export  # noqa: E402

DataSet = tuple[str, list[dict[str, Any]], dict[str, Any], dict[str, Any]]  # name, documents, [features], [evaluation]


def bundled(loader: Any, task: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    data = loader()
    names = [n.replace(" ", "_").replace("(", "").replace(")", "").replace("/", "_") for n in data.feature_names]
    documents = [
        {
            **{n: float(v) for n, v in zip(names, row, strict=True)},
            "y": f"c{int(t)}" if task != "regression" else float(t),
        }
        for row, t in zip(data.data, data.target, strict=True)
    ]
    return documents, {"numeric": names, "target": "y"}


def wine_example() -> DataSet:
    config = tomllib.loads((REPO / "examples/wine/mlpack.toml").read_text())
    lines = (REPO / "examples/wine/data/wine.jsonl").read_text().splitlines()
    documents = [{k: v for k, v in json.loads(line).items() if k != "_id"} for line in lines]
    evaluation = {"test_size": config["evaluation"]["test_size"]}
    return "wine example (classification, 13 numbers + 4 derived)", documents, config["features"], evaluation


GOOD = ["refund", "thanks", "great", "fast", "resolved", "happy", "helpful", "quick"]
BAD = ["broken", "late", "angry", "never", "waiting", "refund", "crash", "lost"]
FILLER = ["the", "a", "order", "my", "is", "was", "and", "to", "for", "it", "please", "help", "account"]


def tickets(n: int = 3000, seed: int = 5) -> list[dict[str, Any]]:
    """Support tickets: the outcome depends on the subject's words, the weekday, the plan and the wait."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    documents = []
    for index in range(n):
        bad = rng.random() < 0.45
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 9))]
        words += [rng.choice(BAD if bad else GOOD) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.2:
            words.append(rng.choice(GOOD if bad else BAD))
        rng.shuffle(words)
        opened = start + timedelta(minutes=rng.randint(0, 60 * 24 * 300))
        channel, plan = rng.choice(["email", "phone", "chat", "web"]), rng.choice(["free", "pro", "team"])
        wait = rng.expovariate(1 / 30) * (2 if channel == "email" else 1)
        score = bad * 2 + (opened.weekday() >= 5) * 0.7 + (plan == "free") * 0.5 + wait / 60 + rng.gauss(0, 0.8)
        documents.append(
            {
                "subject": " ".join(words),
                "opened": opened,
                "channel": channel,
                "plan": plan,
                "wait_minutes": None if index % 17 == 3 else round(wait, 1),
                "escalated": "yes" if score > 1.8 else "no",
                "minutes_to_close": round(20 + 15 * score + rng.gauss(0, 5), 2),
            }
        )
    return documents


def data_sets() -> Iterator[DataSet]:
    yield wine_example()
    for name, loader, task in (
        ("breast_cancer (classification, 30 numbers)", datasets.load_breast_cancer, "classification"),
        ("digits (10 classes, 64 numbers)", datasets.load_digits, "classification"),
        ("diabetes (regression, 10 numbers)", datasets.load_diabetes, "regression"),
    ):
        documents, features = bundled(loader, task)
        yield name, documents, features, {}
    crm = subscribers(3000, seed=11)
    fields = {"numeric": ["tenure_months", "billing.monthly_charges", "support_calls"]}
    fields["categorical"] = ["contract", "billing.method"]
    yield "subscribers (classification; numbers, one-hot, gaps)", crm, {**fields, "target": "label"}, {}
    yield "subscribers (regression; numbers, one-hot, gaps)", crm, {**fields, "target": "lifetime_value"}, {}
    ticket = tickets()
    fields = {"numeric": ["wait_minutes"], "categorical": ["channel", "plan"], "datetime": ["opened"]}
    fields["text"] = ["subject"]
    yield "tickets (classification; text, one-hot, a date, gaps)", ticket, {**fields, "target": "escalated"}, {}
    yield "tickets (regression; text, one-hot, a date, gaps)", ticket, {**fields, "target": "minutes_to_close"}, {}


def _date_parts(x: Any) -> np.ndarray:
    values = np.asarray(x).ravel()
    when = pd.to_datetime(pd.Series(values), unit="ms" if values.dtype.kind in "iu" else None, utc=True)
    return np.c_[when.dt.dayofweek, when.dt.hour, when.dt.month, when.dt.day]


def independent(trained: Any, features: dict[str, Any], estimator: Any) -> dict[str, float]:
    """A float64 scikit-learn pipeline written apart from mlpack's, fitted on the same split's raw columns."""
    train, test = trained.train_frame, trained.test_frame
    text = {path.replace(".", "_") for path in features.get("text", [])}
    dates = {path.replace(".", "_") for path in features.get("datetime", [])}
    parts: list[tuple[str, Any, Any]] = []
    for column in train.columns:
        if any(column.endswith(name) for name in text):
            parts.append((column, TfidfVectorizer(ngram_range=(1, 2), max_features=1000), column))
        elif any(column.endswith(name) for name in dates):
            parts.append((column, make_pipeline(FunctionTransformer(_date_parts), StandardScaler()), [column]))
        elif train[column].dtype == object:
            parts.append((column, OneHotEncoder(handle_unknown="ignore", sparse_output=False), [column]))
        else:
            parts.append((column, make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), [column]))
    pipeline = make_pipeline(ColumnTransformer(parts, sparse_threshold=0), estimator)
    pipeline.fit(train, trained.train_target)
    return scores(pipeline, test, trained.test_target, list(trained.metrics))


def scores(pipeline: Any, x: Any, y: Any, names: list[str]) -> dict[str, float]:
    predicted, out = pipeline.predict(x), {}
    for name in names:
        if name == "accuracy":
            out[name] = sk_metrics.accuracy_score(y, predicted)
        elif name == "f1_macro":
            out[name] = sk_metrics.f1_score(y, predicted, average="macro")
        elif name == "roc_auc":
            p = pipeline.predict_proba(x)
            out[name] = (
                sk_metrics.roc_auc_score(y, p[:, 1])
                if p.shape[1] == 2
                else sk_metrics.roc_auc_score(y, p, multi_class="ovr")
            )
        elif name == "r2":
            out[name] = sk_metrics.r2_score(y, predicted)
        elif name == "rmse":
            out[name] = math.sqrt(sk_metrics.mean_squared_error(y, predicted))
        elif name == "mae":
            out[name] = sk_metrics.mean_absolute_error(y, predicted)
    return out


def build(
    documents: list[dict[str, Any]],
    features: dict[str, Any],
    evaluation: dict[str, Any],
    class_path: str,
    float32: bool,
) -> Any:
    raw = {
        "model": {"name": "m", "version": "1.0.0", "task": SUPPORTED[class_path].task},
        "source": {"database": "db", "collection": "c"},
        "features": features,
        "estimator": {"class": class_path, "float32": float32},
        "evaluation": evaluation,
    }
    return export(parse_config(raw), documents)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    offered = [path for path, spec in SUPPORTED.items() if spec.float32]
    parser.add_argument("--estimators", default=",".join(offered), help=f"of {', '.join(FLOAT32_ESTIMATORS)}")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # ConvergenceWarning on the small sets: the same for both builds
    largest = 0.0
    for class_path in args.estimators.split(","):
        spec = SUPPORTED[class_path]
        module, name = class_path.rsplit(".", 1)
        estimator_class = getattr(importlib.import_module(module), name)
        print(class_path)
        for title, documents, features, evaluation in data_sets():
            target = documents[0][features["target"]]
            if (spec.task == "classification") != isinstance(target, str):
                continue
            for seed in (0, 1):
                settings = {**evaluation, "seed": seed}
                built = {}
                for float32 in (True, False):
                    try:
                        built[float32] = build(documents, features, settings, class_path, float32)
                    except Exception as exc:  # a parity failure, say: reported with its diagnosis, the set skipped
                        which = "float32" if float32 else "float64"
                        print(f"  {title}, seed {seed}, {which}: {type(exc).__name__}: {exc}")
                        print("\n".join(f"    {line}" for line in str(getattr(exc, "details", "")).splitlines()))
                if len(built) < 2:
                    continue
                given, widened = built[True], built[False]
                apart = independent(widened.trained, features, estimator_class(**spec.defaults, random_state=seed))
                cells = []
                for metric, value in given.trained.metrics.items():
                    base = widened.trained.metrics[metric]
                    relative = (value - base) / max(abs(base), 1e-12)
                    largest = max(largest, abs(relative))
                    cells.append(
                        f"{metric} {value:.6g} vs {base:.6g} ({relative:+.1e}; independent {apart[metric]:.6g})"
                    )
                parity = [e.metadata["parity"]["max_abs_diff"] for e in (given, widened)]
                print(f"  {title}, seed {seed}: float32 vs float64: " + "; ".join(cells))
                print(f"    parity max |sklearn - onnx|: float32 {parity[0]:.2e}, float64 {parity[1]:.2e}")
    print(f"largest relative difference of a metric, float32 vs float64: {largest:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
