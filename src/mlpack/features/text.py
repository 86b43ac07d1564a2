r"""`[features].text`: TF-IDF of words (or of character n-grams) with a capped vocabulary, in the graph.

A word is a run of Unicode letters and digits, one letter included ("b" in "datsun b-210"):
scikit-learn's default pattern drops one-letter words before it forms bigrams, while the graph's
tokenizer keeps their positions, and re2's `\w` (the graph's) is ASCII-only where Python's is not,
so "forêts" was one word in training and "for" + "ts" in the graph. `WORD` (Python's `re`) and
`GRAPH_WORD` (re2, in the graph) say the same thing in the two dialects. The estimator trains on the
graph's own output (features/graph.py), so any string the two still split differently costs a
vocabulary slot, never a mismatch between training and serving.

The graph lowercases with onnxruntime's StringNormalizer, which maps each character on its own
(glibc's towlower): `graph_lower` is that in Python, so "İstanbul" is "istanbul" and a final "Σ" is
"σ" on both sides (Python's `str.lower` gives "i̇stanbul" and "ς").

Options ([preprocessing]): `ngrams` 1 keeps single words only; `stop_words` and `min_df` choose the
vocabulary — a stop word is no term and no phrase containing one is a term (the graph has no way to
take words out of a document before it forms phrases, so phrases are always of adjacent words);
`chars` = (lo, hi) counts character n-grams instead of words: every run of lo to hi characters of
the lowercased text, spaces and line breaks included, exactly the characters the graph's tokenizer
(re2 `(?s).`, one token per code point) gives.

`TextWords` chooses the vocabulary itself for two more measured reasons:
- skl2onnx computes an n-gram wrongly when one of its words is not itself in the vocabulary,
  which `max_features` allows (measured: 0.61 off on a 6-term vocabulary; 4e-8 when every word
  of every bigram is in it). So the vocabulary is closed under "an n-gram's parts".
- the graph's StringNormalizer defaults to the en_US.UTF-8 locale, absent from slim images; its
  parser gives the converter locale C.UTF-8, which every glibc has.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer, TfidfVectorizer

from mlpack.features.ops import graph_lower

WORD = r"(?u)[^\W_]+"  # letters and digits (Python: \w less the underscore)
GRAPH_WORD = r"[\pL\pN]+"  # the same in re2, the graph's regex dialect
GRAPH_CHAR = r"(?s)."  # one code point, line breaks included: the graph's tokens for character n-grams
STOP_WORDS = {"english": ENGLISH_STOP_WORDS}  # scikit-learn's list (318 words)


class NoWordsError(ValueError):
    """No document of the training data has a word (letters or digits) in this field."""


def stop_words(setting: str | Sequence[str]) -> tuple[str, ...]:
    """[preprocessing].text_stop_words: "" (none), "english" (scikit-learn's list) or the words given,
    lowercased as the graph lowercases the text."""
    if isinstance(setting, str):
        return tuple(sorted(STOP_WORDS[setting])) if setting else ()
    return tuple(dict.fromkeys(graph_lower(word) for word in setting))


class CharNgrams:
    """The analyzer of character n-grams: what the graph's tokenizer and TfIdfVectorizer compute."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __call__(self, text: str) -> list[str]:
        chars = graph_lower(text)
        return [chars[i : i + n] for n in range(self.low, self.high + 1) for i in range(len(chars) - n + 1)]


class TextWords(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """One text column (missing = "") → TF-IDF weights of its `max_words` most frequent n-grams."""

    def __init__(
        self,
        max_words: int = 1000,
        field: str = "",
        ngrams: int = 2,
        stop_words: Sequence[str] = (),
        min_df: int = 1,
        chars: Sequence[int] = (),
    ) -> None:
        self.max_words = max_words
        self.field = field  # the document path, for messages
        self.ngrams = ngrams  # words: the longest phrase (1 or 2)
        self.stop_words = stop_words
        self.min_df = min_df
        self.chars = chars  # (lo, hi): character n-grams instead of words

    def _counter(self, **vocabulary: Any) -> Any:
        if self.chars:
            return TfidfVectorizer(analyzer=CharNgrams(*self.chars), dtype=np.float32, **vocabulary)
        return TfidfVectorizer(
            ngram_range=(1, self.ngrams), preprocessor=graph_lower, token_pattern=WORD, dtype=np.float32, **vocabulary
        )

    def fit(self, X: Any, y: Any = None) -> TextWords:
        texts = _texts(X)
        counter = CountVectorizer(analyzer=self._counter().build_analyzer())
        try:
            counts = counter.fit_transform(texts)
        except ValueError:  # "empty vocabulary": no word anywhere
            raise NoWordsError(
                f"text feature '{self.field}': no training document has a word in it (a word is a run of "
                "letters or digits); list it elsewhere or remove it"
            ) from None
        terms = counter.get_feature_names_out().tolist()
        totals = np.asarray(counts.sum(axis=0)).ravel().tolist()
        documents = np.asarray((counts > 0).sum(axis=0)).ravel().tolist()
        stop = set(self.stop_words)
        candidates = Counter(
            {
                term: total
                for term, total, df in zip(terms, totals, documents)
                if df >= self.min_df and not (stop and stop.intersection(term.split(" ")))
            }
        )
        if not candidates:
            raise NoWordsError(
                f"text feature '{self.field}': no term is left after [preprocessing].text_stop_words and "
                f"text_min_df ({self.min_df} documents)"
            )
        vocabulary: dict[str, int] = {}
        for term, _ in sorted(candidates.items(), key=lambda item: (-item[1], item[0])):
            needed = [part for part in [*self._parts(term), term] if part not in vocabulary]
            if len(vocabulary) + len(dict.fromkeys(needed)) > self.max_words:
                continue
            for part in needed:
                vocabulary.setdefault(part, len(vocabulary))
        self.vectorizer_ = self._counter(vocabulary=vocabulary)
        # The longest n-gram the vocabulary holds, said so: onnxruntime refuses to load a TfIdfVectorizer
        # node whose max n-gram length (a phrase, 4 characters) has no n-gram counts of that length.
        if self.chars:
            self.longest_ = max(len(term) for term in vocabulary)
        else:
            self.longest_ = 2 if any(" " in term for term in vocabulary) else 1
            self.vectorizer_.set_params(ngram_range=(1, self.longest_))
        self.vectorizer_.fit(texts)
        self.n_features_in_ = 1
        return self

    def _parts(self, term: str) -> list[str]:
        """The shorter n-grams the graph needs in the vocabulary to count `term` right."""
        if not self.chars:
            return term.split(" ") if " " in term else []
        low = self.chars[0]
        return [term[i : i + n] for n in range(low, len(term)) for i in range(len(term) - n + 1)]

    def graph_vectorizer(self) -> TfidfVectorizer:
        """The fitted vectorizer as skl2onnx converts it: its own lowercasing and tokenizing stand in for
        graph_lower and CharNgrams, which compute the same (tokens come from the converter's options)."""
        twin = copy.copy(self.vectorizer_)
        twin.preprocessor, twin.lowercase = None, True
        if self.chars:
            twin.analyzer, twin.ngram_range = "char", (self.chars[0], self.longest_)
        return twin

    def transform(self, X: Any) -> np.ndarray:
        return np.asarray(self.vectorizer_.transform(_texts(X)).toarray(), dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.vectorizer_.get_feature_names_out(), dtype=object)


def _texts(X: Any) -> list[str]:
    values = X.iloc[:, 0] if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2 else X
    array = np.asarray(values, dtype=object).ravel()
    return [value if isinstance(value, str) else "" if pd.isna(value) else str(value) for value in array]
