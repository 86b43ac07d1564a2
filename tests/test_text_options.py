"""[preprocessing] text options: single words, stop words, min_df, character n-grams.

Each option is checked against scikit-learn's own vectorizer where the two mean the same, the graph
under onnxruntime against the transformer on messy text (accents in both Unicode forms, one-letter
words, missing values, line breaks, runs of spaces), and builds for parity on every row.
"""

from __future__ import annotations

import json
import random
import re
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from pymongo import MongoClient
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer, TfidfVectorizer
from sklearn.pipeline import Pipeline

from mlpack.config import parse_config
from mlpack.errors import ConfigError
from mlpack.features.converters import register
from mlpack.features.text import WORD, NoWordsError, TextWords, graph_lower, stop_words
from tests.helpers.cli import assert_clean_error
from tests.helpers.projects import Project
from tests.helpers.training import export, runtime_model

MESSY = [
    "Crème brûlée à la carte",
    "CRÈME BRÛLÉE",
    unicodedata.normalize("NFD", "crème brûlée, été"),  # the same words with combining accents
    "İstanbul ΟΔΟΣ",  # Python's lower() gives "i̇stanbul" and "οδος"; the graph "istanbul" and "οδοσ"
    "a b c d",  # one-letter words
    "the best of the best",
    "not the worst, not the best",
    "",
    None,
    "naïve café\nnaïve  café\t end",  # a line break, a run of spaces, a tab
    "x",
    "Straße ẞ",
    "日本語のテキスト",
    "über-cool 2024!",
    "it's a b-210",
]
UNSEEN = ["brûlée unseen crème", "ΣΊΣΥΦΟΣ", "the the the", "\n\n  ", "zzz"]


def _fit(texts: list[Any], **options: Any) -> tuple[Pipeline, TextWords]:
    frame = pd.DataFrame({"t": np.array(texts, dtype=object)})
    pipeline = Pipeline([("c", ColumnTransformer([("t", TextWords(**options), "t")]))]).fit(frame)
    return pipeline, pipeline[0].named_transformers_["t"]


def _graph_matches(pipeline: Pipeline, texts: list[Any]) -> np.ndarray:
    register()
    model = convert_sklearn(pipeline, initial_types=[("t", StringTensorType([None, 1]))], target_opset=17)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = np.array([t if isinstance(t, str) else "" for t in texts], dtype=object).reshape(-1, 1)
    (got,) = session.run(None, {"t": feed})
    expected = pipeline.transform(pd.DataFrame({"t": feed[:, 0]}))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    return np.asarray(got)


@pytest.mark.parametrize(
    "options",
    [
        {"max_words": 30},
        {"max_words": 30, "ngrams": 1},
        {"max_words": 50, "stop_words": stop_words("english"), "min_df": 2},
        {"max_words": 40, "chars": (2, 4)},
        {"max_words": 2000, "chars": (1, 3)},
        {"max_words": 7, "chars": (3, 5)},
        {"max_words": 500, "chars": (2, 4), "min_df": 3},
    ],
)
def test_every_option_computes_the_same_in_the_graph_on_messy_text(options: dict[str, Any]) -> None:
    texts = MESSY * 3
    pipeline, words = _fit(texts, **options)
    got = _graph_matches(pipeline, texts + UNSEEN)
    assert got.shape[1] == len(words.vectorizer_.vocabulary_) <= options["max_words"]
    assert np.abs(got[: len(texts)]).sum() > 0


def test_single_words_and_min_df_choose_scikit_learns_vocabulary() -> None:
    texts = MESSY * 2 + ["crème again", "again and again"]
    for ngrams, min_df in [(1, 1), (1, 3), (2, 3)]:
        _, words = _fit(texts, max_words=10_000, ngrams=ngrams, min_df=min_df)
        reference = CountVectorizer(
            ngram_range=(1, ngrams), min_df=min_df, token_pattern=WORD, preprocessor=graph_lower
        ).fit([t or "" for t in texts])
        assert set(words.vectorizer_.vocabulary_) == set(reference.vocabulary_)


def test_stop_words_are_no_term_and_in_no_phrase() -> None:
    texts = MESSY * 2
    _, single = _fit(texts, max_words=10_000, ngrams=1, stop_words=stop_words("english"))
    reference = TfidfVectorizer(stop_words="english", token_pattern=WORD, preprocessor=graph_lower)
    assert set(single.vectorizer_.vocabulary_) == set(reference.fit([t or "" for t in texts]).vocabulary_)
    _, phrases = _fit(texts, max_words=10_000, stop_words=stop_words("english"))
    assert "best" in phrases.vectorizer_.vocabulary_ and "crème brûlée" in phrases.vectorizer_.vocabulary_
    for term in phrases.vectorizer_.vocabulary_:
        assert not set(term.split(" ")) & ENGLISH_STOP_WORDS, term
    assert stop_words(["Re", "FWD", "re"]) == ("re", "fwd")  # lowercased as the text is
    with pytest.raises(NoWordsError, match=r"no term is left after \[preprocessing\].text_stop_words"):
        _fit(["the a of", "and the"], stop_words=stop_words("english"))


def test_character_ngrams_are_the_graphs_characters() -> None:
    plain = ["Crème brûlée", "naïve café", "x y", "Ωmega 7", "日本語"] * 2
    # Where scikit-learn's analyzer="char" and the graph mean the same text (no runs of spaces, no "İ"),
    # the vocabulary and the weights are scikit-learn's.
    _, chars = _fit(plain, max_words=10_000, chars=(2, 3))
    reference = TfidfVectorizer(analyzer="char", ngram_range=(2, 3), dtype=np.float32).fit(plain)
    assert chars.vectorizer_.vocabulary_.keys() == reference.vocabulary_.keys()
    frame = pd.DataFrame({"t": plain})
    ours = chars.transform(frame)
    order = [chars.vectorizer_.vocabulary_[term] for term in reference.get_feature_names_out()]
    np.testing.assert_allclose(ours[:, order], reference.transform(plain).toarray(), atol=1e-6)
    # Where they differ, mlpack's analyzer counts what the graph computes.
    messy = ["naïve  café\nend", "İstanbul ΟΔΟΣ", unicodedata.normalize("NFD", "été")] * 2
    pipeline, chars = _fit(messy, max_words=10_000, chars=(1, 2))
    vocabulary = chars.vectorizer_.vocabulary_
    assert "  " in vocabulary and "\n" in vocabulary  # scikit-learn's "char" squeezes the run of spaces
    assert "is" in vocabulary and "σ" in vocabulary and "ς" not in vocabulary  # the graph's lowercase
    assert "\u0301" in vocabulary  # a combining accent is a character of its own, on both sides
    _graph_matches(pipeline, messy + UNSEEN)


def _reviews(n: int = 300, seed: int = 4) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    good = ["délicieux", "great", "superb", "loved it", "crème brûlée parfaite", "fresh"]
    bad = ["awful", "cold", "not good", "stale", "never again", "trop salé"]
    filler = ["the", "a", "and", "of", "it was", "x", "ÉTÉ", "\n", "  "]
    documents = []
    for index in range(n):
        positive = index % 2 == 0
        words = [rng.choice(good if positive else bad) for _ in range(2)] + rng.sample(filler, 3)
        rng.shuffle(words)
        review: Any = " ".join(words) if index % 23 else None  # some reviews are missing
        documents.append({"_id": index + 1, "review": review, "stars": "good" if positive else "bad"})
    return documents


def _config(preprocessing: dict[str, Any]) -> Any:
    return parse_config(
        {
            "model": {"name": "reviews", "version": "1.0.0", "task": "classification"},
            "source": {"database": "db", "collection": "reviews"},
            "features": {"text": ["review"], "target": "stars"},
            "preprocessing": preprocessing,
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        }
    )


def _readme_examples() -> list[dict[str, Any]]:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Text options") : readme.index("### The expression language")]
    return [tomllib.loads(block)["preprocessing"] for block in re.findall(r"```toml\n(.*?)```", section, re.S)]


@pytest.mark.parametrize("index", [0, 1])
def test_the_readme_text_options_build_with_parity_on_every_row(index: int) -> None:
    preprocessing = _readme_examples()[index]
    documents = _reviews()
    exported = export(_config(preprocessing), documents)
    parity = exported.metadata["parity"]
    assert parity["within_tolerance"] and parity["rows"] == len(documents) and parity["label_disagreements"] == 0
    assert exported.metadata["metrics"]["accuracy"] > 0.9
    terms = exported.trained.pipeline.named_steps["features"].get_feature_names_out().tolist()
    if "text_chars" in preprocessing:
        assert "text_review__é" not in terms and any(len(t.split("__", 1)[1]) == 4 for t in terms)
    else:
        assert not any(" " in t for t in terms) and "text_review__the" not in terms
    model = runtime_model(exported)
    assert model.predict([{"review": "délicieux, superb"}, {"review": "awful and stale"}]) == ["good", "bad"]


def test_text_option_mistakes_are_config_errors() -> None:
    cases = [
        ({"text_ngrams": 3}, r"\[preprocessing\].text_ngrams must be 1 \(single words\) or 2"),
        ({"text_min_df": 0}, r"\[preprocessing\].text_min_df must be at least 1"),
        ({"text_chars": [4, 2]}, r"\[preprocessing\].text_chars must be \[lo, hi\] with 1 <= lo <= hi <= 8"),
        ({"text_chars": [3]}, r"text_chars must be \[lo, hi\]"),
        ({"text_chars": [2, 4], "text_stop_words": "english"}, r"text_stop_words are words: text_chars counts"),
        ({"text_stop_words": "french"}, r"text_stop_words must be one of '', 'english' or a list of strings"),
        ({"text_stop_words": ["re", 3]}, r"text_stop_words must be one of '', 'english' or a list of strings"),
    ]
    for preprocessing, message in cases:
        with pytest.raises(ConfigError, match=message):
            _config(preprocessing)
    assert _config({"text_stop_words": ["re", "fwd"]}).preprocessing.text_stop_words == ["re", "fwd"]


CONFIG = """
[model]
name = "review-model"
version = "1.0.0"
task = "classification"

[source]
uri_env = "MLPACK_TEST_URI"
database = "{database}"
collection = "reviews"

[features]
text = ["review"]
target = "stars"

[estimator]
class = "sklearn.linear_model.LogisticRegression"

[preprocessing]
text_chars = [2, 4]
text_min_df = 2
"""


def test_character_ngrams_build_against_mongodb(churn_project: Project, run, mongo_client: MongoClient[Any]) -> None:
    mongo_client[churn_project.database]["reviews"].insert_many(_reviews(400, seed=9))
    churn_project.write_config(CONFIG)
    built = run("build", churn_project.path, "--json")
    assert built.code == 0, built.err
    report = json.loads(built.out)
    assert report["parity"]["within_tolerance"] and report["parity"]["rows"] == 400
    assert report["parity"]["label_disagreements"] == 0 and report["metrics"]["accuracy"] > 0.9
    churn_project.edit("text_min_df = 2", 'text_min_df = 2\ntext_stop_words = "english"')
    refused = run("build", churn_project.path, "--version", "1.0.1")
    assert_clean_error(refused, 2, "[preprocessing].text_stop_words are words: text_chars counts characters instead")
