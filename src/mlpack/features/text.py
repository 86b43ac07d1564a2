r"""`[features].text`: TF-IDF of words (unigrams and bigrams) with a capped vocabulary, in the graph.

A word is a run of Unicode letters and digits, one letter included ("b" in "datsun b-210"):
scikit-learn's default pattern drops one-letter words before it forms bigrams, while the graph's
tokenizer keeps their positions, and re2's `\w` (the graph's) is ASCII-only where Python's is not,
so "forêts" was one word in training and "for" + "ts" in the graph. `WORD` (Python's `re`) and
`GRAPH_WORD` (re2, in the graph) say the same thing in the two dialects. The estimator trains on the
graph's own output (features/graph.py), so any string the two still split differently costs a
vocabulary slot, never a mismatch between training and serving.

`TextWords` wraps scikit-learn's TfidfVectorizer for two more measured reasons:
- skl2onnx computes a bigram wrongly when one of its words is not itself in the vocabulary,
  which `max_features` allows (measured: 0.61 off on a 6-term vocabulary; 4e-8 when every word
  of every bigram is in it). So the vocabulary is chosen here, closed under "a bigram's words".
- the graph's StringNormalizer defaults to the en_US.UTF-8 locale, absent from slim images; its
  parser gives the converter locale C.UTF-8, which every glibc has.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

NGRAMS = (1, 2)
WORD = r"(?u)[^\W_]+"  # letters and digits (Python: \w less the underscore)
GRAPH_WORD = r"[\pL\pN]+"  # the same in re2, the graph's regex dialect


class NoWordsError(ValueError):
    """No document of the training data has a word (letters or digits) in this field."""


class TextWords(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """One text column (missing = "") → TF-IDF weights of its `max_words` most frequent n-grams."""

    def __init__(self, max_words: int = 1000, field: str = "") -> None:
        self.max_words = max_words
        self.field = field  # the document path, for messages

    def fit(self, X: Any, y: Any = None) -> TextWords:
        texts = _texts(X)
        counter = CountVectorizer(ngram_range=NGRAMS, token_pattern=WORD)
        try:
            counts = np.asarray(counter.fit_transform(texts).sum(axis=0)).ravel()
        except ValueError:  # "empty vocabulary": no word anywhere
            raise NoWordsError(
                f"text feature '{self.field}': no training document has a word in it (a word is a run of "
                "letters or digits); list it elsewhere or remove it"
            ) from None
        totals = Counter(dict(zip(counter.get_feature_names_out(), counts.tolist())))
        vocabulary: dict[str, int] = {}
        for term, _ in sorted(totals.items(), key=lambda item: (-item[1], item[0])):
            needed = [word for word in [*term.split(" "), term] if word not in vocabulary]
            if len(vocabulary) + len(dict.fromkeys(needed)) > self.max_words:
                continue
            for word in needed:
                vocabulary.setdefault(word, len(vocabulary))
        # A vocabulary without any two-word phrase must say so: onnxruntime refuses to load a TfIdfVectorizer
        # node whose max n-gram length (2) has no n-gram counts of that length.
        ngrams = NGRAMS if any(" " in term for term in vocabulary) else (1, 1)
        self.vectorizer_ = TfidfVectorizer(
            ngram_range=ngrams, vocabulary=vocabulary, token_pattern=WORD, dtype=np.float32
        ).fit(texts)
        self.n_features_in_ = 1
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.asarray(self.vectorizer_.transform(_texts(X)).toarray(), dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.vectorizer_.get_feature_names_out(), dtype=object)


def _texts(X: Any) -> list[str]:
    values = X.iloc[:, 0] if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2 else X
    array = np.asarray(values, dtype=object).ravel()
    return [value if isinstance(value, str) else "" if pd.isna(value) else str(value) for value in array]
