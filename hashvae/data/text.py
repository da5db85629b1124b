"""Plain-text corpora: the study's one-document-per-line format, vectorised.

Vectorising follows the released protocol (METHOD.md section 6): terms of
three or more characters that do not start with a digit, lower-cased, English
stop words removed, 1- to 3-grams, max_df 0.8, at most `max_features` terms,
raw term frequency. Input log(1 + tf); target tf normalised per row.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import ClassVar, Optional

import numpy as np
import scipy.sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.model_selection import train_test_split

from hashvae.data import checks
from hashvae.data.dataset import (
  DataError,
  Dataset,
  Split,
  bag_of_words,
  make_split,
  normalise_rows,
  row_of_entry,
  with_values,
)

log = logging.getLogger("hashvae")

# A token starts with a letter (not a digit) and has at least three characters.
TOKEN_PATTERN = r"(?u)\b[^\W\d]\w\w+\b"


def check_read(path: str, docs, undecodable):
  """Refuses a file that held no document; warns of lines (numbers in
  `undecodable`) whose non-UTF-8 bytes were read as U+FFFD."""
  if not docs:
    raise DataError(f"{path}: empty corpus (no documents)")
  if undecodable:
    log.warning("%s: %d line(s) hold bytes that are not UTF-8 (first: line %d); "
                "those bytes were read as U+FFFD (re-save the file as UTF-8 to keep "
                "them)", path, len(undecodable), undecodable[0])


def read_labelled_lines(path: str) -> tuple[list[str], list[str]]:
  """Reads `words ... label` lines; returns (documents, label names)."""
  if not os.path.isfile(path):
    raise DataError(f"data file not found: {path}")
  docs, labels = [], []
  undecodable = []  # line numbers with bytes that are not UTF-8
  with open(path, "rb") as f:
    for number, raw in enumerate(f, start=1):
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError:
        line = raw.decode("utf-8", errors="replace")  # kept, with U+FFFD
        undecodable.append(number)
      if not line.strip():
        continue  # blank lines separate nothing in this format
      tokens = line.split()
      if len(tokens) < 2:  # a label and no words, or words and no label
        raise DataError(f"{path}:{number}: malformed line: an empty document "
                        f"(expected words followed by a label, got "
                        f"{line.strip()!r})")
      docs.append(" ".join(tokens[:-1]))
      labels.append(tokens[-1])
  check_read(path, docs, undecodable)
  return docs, labels


@dataclasses.dataclass(frozen=True)
class TextVectoriser:
  """A fitted vocabulary and the rule that turns documents into rows.

  Input: log(1 + tf) (`idf` None, the released Snippets protocol) or tf-idf
  (tf * idf, rows L2-normalised). Target: tf normalised to sum 1.
  """

  counter: CountVectorizer
  idf: Optional[np.ndarray] = None  # [terms]

  @classmethod
  def fit(cls, docs, max_features: int, tfidf: bool, name: str) -> "TextVectoriser":
    counter = CountVectorizer(lowercase=True, token_pattern=TOKEN_PATTERN,
                              stop_words="english", ngram_range=(1, 3), min_df=1,
                              max_df=0.8, max_features=max_features,
                              dtype=np.float32)
    try:
      counts = counter.fit_transform(docs)
    except ValueError as e:  # sklearn: "empty vocabulary; ..."
      raise DataError(f"{name}: cannot build a vocabulary: {e}") from e
    idf = None
    if tfidf:  # smooth idf, as scikit-learn computes it
      df = np.bincount(counts.indices, minlength=counts.shape[1])
      idf = (np.log((1 + counts.shape[0]) / (1 + df)) + 1).astype(np.float32)
    return cls(counter, idf)

  def counts(self, docs) -> scipy.sparse.csr_matrix:
    """[docs, terms] float32 term counts, sparse (canonical CSR)."""
    return bag_of_words(self.counter.transform(docs))

  def rows(self, counts) -> tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix]:
    """[docs, terms] CSR counts -> (inputs, targets), CSR on the same nonzeros."""
    counts = bag_of_words(counts)
    if self.idf is None:
      values = np.log1p(counts.data)
    else:
      values = counts.data * self.idf[counts.indices]
      row = row_of_entry(counts)
      norms = np.sqrt(np.bincount(row, weights=np.square(values, dtype=np.float64),
                                  minlength=counts.shape[0]))
      values = (values / norms[row]).astype(np.float32)
    return with_values(counts, values), normalise_rows(counts)


def text_split(vectoriser: TextVectoriser, docs, label_ids, where: str,
               drop_empty: bool, ids=()) -> Split:
  """Vectorised split. Documents left with no vocabulary term are dropped
  (`drop_empty`) or kept with zero rows (no reconstruction loss); either
  way they are counted in the log. `ids`: each document's id in the user's
  data (kept for the documents kept)."""
  counts = vectoriser.counts(docs)
  empty = np.diff(counts.indptr) == 0
  if empty.any():
    log.info("%s: %d of %d documents have no vocabulary term (%s)", where,
             int(empty.sum()), len(docs), "dropped" if drop_empty else "kept, zero rows")
  keep = ~empty if drop_empty else np.ones(len(docs), bool)
  inputs, targets = vectoriser.rows(counts[keep])
  return make_split(inputs, targets, np.asarray(label_ids)[keep],
                    tuple(d for d, k in zip(docs, keep, strict=True) if k),
                    tuple(i for i, k in zip(ids, keep, strict=True) if k))


def label_indices(names, classes: tuple[str, ...], where: str) -> np.ndarray:
  index = {c: i for i, c in enumerate(classes)}
  unknown = sorted(set(names) - set(index))
  if unknown:
    raise DataError(f"{where}: labels {unknown} do not occur in the training "
                    f"data (known: {list(classes)})")
  return np.array([index[n] for n in names], dtype=np.int32)


def vectorise_corpus(name, train_docs, train_names, test_docs, test_names, *,
                     max_features, validation_fraction, split_seed,
                     where_test, tfidf=False, drop_empty=False) -> Dataset:
  """Fits the vocabulary on all training documents, then splits off validation."""
  if not 0 <= validation_fraction < 1:
    raise DataError(f"{name}: config.data.validation_fraction={validation_fraction!r}: "
                    "a fraction in [0, 1) of the training documents")
  classes = tuple(sorted(set(train_names)))
  train_ids = label_indices(train_names, classes, f"{name} training labels")
  test_ids = label_indices(test_names, classes, where_test)
  vectoriser = TextVectoriser.fit(train_docs, max_features, tfidf, name)
  order = np.arange(len(train_docs))
  if validation_fraction > 0:
    fit_idx, val_idx = train_test_split(order, test_size=validation_fraction,
                                        random_state=split_seed)
  else:
    fit_idx, val_idx = order, order[:0]
  pick = lambda docs, idx: [docs[i] for i in idx]
  # A document's id is its 0-based position among the training documents or
  # among the test documents, as read (validation keeps its training row).
  split = lambda idx, labels, part, docs=train_docs: text_split(
      vectoriser, pick(docs, idx), labels, f"{name}/{part}", drop_empty,
      tuple(int(i) for i in idx))
  return Dataset(
      name=name,
      train=split(fit_idx, train_ids[fit_idx], "train"),
      validation=split(val_idx, train_ids[val_idx], "validation"),
      test=split(np.arange(len(test_docs)), test_ids, "test", test_docs),
      num_classes=len(classes), class_names=classes, vectoriser=vectoriser)


def check_vectorising(spec, of: str):
  """The fields every vectorised text corpus shares (`of`: the items held out)."""
  checks.check_count(spec, "max_features")
  checks.check_fraction(spec, "validation_fraction", of=f" of the training {of}")
  checks.check_seed(spec, maximum=checks.SKLEARN_SEED_MAX)


@dataclasses.dataclass(frozen=True)
class SnippetsSpec:
  """config.data of configs/snippets.py."""

  name: ClassVar[str] = "snippets"
  path: str = "../shared/data/snippets"  # folder with train.txt, test.txt
  max_features: int = 10000  # vocabulary size cap
  validation_fraction: float = 0.1  # of train.txt, held out as validation
  split_seed: int = 0  # the validation split

  def __post_init__(self):
    check_vectorising(self, "documents")


def load_snippets(spec: SnippetsSpec) -> Dataset:
  """`spec.path`: a folder holding train.txt and test.txt."""
  folder = spec.path
  if not folder or not os.path.isdir(folder):
    raise DataError(f"snippets: data folder not found: {folder!r} (set "
                    "--config.data.path to the folder with train.txt and "
                    "test.txt)")
  train_docs, train_names = read_labelled_lines(os.path.join(folder, "train.txt"))
  test_path = os.path.join(folder, "test.txt")
  test_docs, test_names = read_labelled_lines(test_path)
  return vectorise_corpus("snippets", train_docs, train_names, test_docs,
                          test_names, max_features=spec.max_features,
                          validation_fraction=spec.validation_fraction,
                          split_seed=spec.split_seed, where_test=test_path)
