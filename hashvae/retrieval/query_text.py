"""Query documents -> encoder input rows, as hashvae.data.text.TextVectoriser
makes them, without scikit-learn (importing it costs a search call about a
second and 100 MB).

The analyser is CountVectorizer's word analyser for the settings the study
uses: lower-case, the token pattern's matches (its one group when it has
one, as re.findall gives), stop words removed, then the n-grams of the
remaining tokens for n in the n-gram range, joined by single spaces; terms
outside the vocabulary are not counted. `settings` checks that a fitted
vectoriser uses nothing else, and tests compare the rows with
TextVectoriser's.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

# CountVectorizer settings this module reproduces, and the only values it can.
FIXED = dict(analyzer="word", preprocessor=None, tokenizer=None, strip_accents=None,
             binary=False, input="content")


def settings(counter) -> dict:
  """The JSON-able analyser settings of a fitted CountVectorizer; ValueError
  when it uses one this module does not reproduce."""
  params = counter.get_params()
  for name, value in FIXED.items():
    if params.get(name) != value:
      raise ValueError(f"the vectoriser's {name}={params.get(name)!r} cannot be "
                       f"reproduced at query time (only {value!r})")
  stop = counter.get_stop_words()
  return dict(lowercase=bool(params["lowercase"]), token_pattern=params["token_pattern"],
              stop_words=None if stop is None else sorted(stop),
              ngram_range=list(params["ngram_range"]))


class QueryVectoriser:
  """Documents -> CSR rows (indptr, indices, values) of the encoder's input:
  log(1 + tf), or tf-idf with rows L2-normalised when `idf` is given."""

  def __init__(self, text: dict, vocabulary, idf: Optional[np.ndarray]):
    self.lowercase = text["lowercase"]
    self.pattern = re.compile(text["token_pattern"])
    self.stop_words = frozenset(text["stop_words"] or ())
    self.ngram_range = tuple(text["ngram_range"])
    self.vocabulary_table, self.idf = vocabulary, idf
    self._columns = None

  @property
  def columns(self) -> dict:
    """{term: column}, built on first use (one pass over the vocabulary)."""
    if self._columns is None:
      self._columns = {t: i for i, t in enumerate(self.vocabulary_table.tolist())}
    return self._columns

  def terms(self, doc: str) -> list[str]:
    """The document's terms, repeats kept, in vocabulary or not."""
    tokens = self.pattern.findall(doc.lower() if self.lowercase else doc)
    tokens = [t for t in tokens if t not in self.stop_words]
    low, high = self.ngram_range
    return [" ".join(tokens[i:i + n]) for n in range(low, high + 1)
            for i in range(len(tokens) - n + 1)]

  def counts(self, doc: str) -> tuple[np.ndarray, np.ndarray]:
    """(sorted columns, float32 counts) of the document's vocabulary terms."""
    columns = self.columns
    found = [columns[t] for t in self.terms(doc) if t in columns]
    cols, counts = np.unique(np.asarray(found, np.int64), return_counts=True)
    return cols, counts.astype(np.float32)

  def rows(self, docs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Documents -> CSR (indptr [docs + 1], indices, float32 values); a
    document with no vocabulary term is an empty row."""
    parts = [self.counts(d) for d in docs]
    indptr = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(c) for c, _ in parts], out=indptr[1:])
    indices = np.concatenate([c for c, _ in parts]) if parts else np.zeros(0, np.int64)
    counts = np.concatenate([v for _, v in parts]) if parts else np.zeros(0, np.float32)
    if self.idf is None:
      return indptr, indices, np.log1p(counts)
    values = counts * np.asarray(self.idf)[indices]
    row = np.repeat(np.arange(len(parts)), np.diff(indptr))
    norms = np.sqrt(np.bincount(row, weights=np.square(values, dtype=np.float64),
                                minlength=len(parts)))
    return indptr, indices, (values / norms[row]).astype(np.float32)
