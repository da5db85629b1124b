"""svmlight / libsvm files: `labels index:value ...` per line (RCV1 ships so).

A line holds one item: a label, or several joined by commas (multi-label,
`1,5,17 3:0.12 9:0.4`), then its nonzero features in increasing index order;
text after `#` is a comment and blank lines hold no item. scikit-learn's
parser reads the files; this module adds what a corpus needs on top: one
width for every file, labels mapped to classes, and errors that name the file
and line.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import itertools
import os
from typing import ClassVar

import numpy as np
import scipy.sparse
from sklearn.datasets import load_svmlight_files
from sklearn.model_selection import train_test_split

from hashvae.data import checks
from hashvae.data.dataset import (
  DataError,
  Dataset,
  FileSplits,
  bag_of_words,
  make_split,
  normalise_rows,
  row_of_entry,
)

NAME = "svmlight"


def _open(path):
  """The file as scikit-learn opens it: .gz and .bz2 decompressed, bytes."""
  ext = os.path.splitext(path)[1]
  opener = {".gz": gzip.open, ".bz2": bz2.open}.get(ext, open)
  return opener(path, "rb")


def _item_lines(path):
  """Yields the line number of each item in file order (scikit-learn's rule:
  text after `#` is a comment; a line with nothing else holds no item)."""
  with _open(path) as f:
    for number, line in enumerate(f, start=1):
      if line.split(b"#", 1)[0].split():
        yield number


def line_of_item(path: str, item: int) -> int:
  """The line number (from 1) of item `item` (from 0) of an svmlight file.

  Reads the file again, so only error paths call it."""
  return next(itertools.islice(_item_lines(path), item, None))


def _number(token: bytes, kind) -> bool:
  try:
    kind(token)
  except ValueError:
    return False
  return True


def _line_problem(tokens: list[bytes], zero_based) -> str | None:
  """What scikit-learn's parser refuses in one item's tokens, or None."""
  shown = lambda token: token.decode("utf-8", errors="replace")
  head, features = tokens[0], tokens[1:]
  if b":" in head:  # a multi-label line may start with its features
    features = tokens
  elif not all(_number(label, float) for label in head.split(b",")):
    return (f"cannot read the label {shown(head)!r} (a number, or numbers joined by "
            "commas for several labels)")
  if features and features[0].startswith(b"qid:"):  # a ranking query id, skipped
    features = features[1:]
  lowest = 1 if zero_based is False else 0
  previous = -1
  for token in features:
    index, colon, value = token.partition(b":")
    if not colon or not _number(index, int) or not _number(value, float):
      return f"cannot read the feature {shown(token)!r} (expected index:value)"
    index = int(index)
    if index < lowest:
      hint = "; a zero-based file needs config.data.zero_based=auto or true" if index == 0 else ""
      return f"feature index {index}: indices start at {lowest}{hint}"
    if index >= 2**31:  # the parser holds an index in a C int
      return f"feature index {index}: beyond the largest index the parser reads (2**31 - 1)"
    if index <= previous:
      return (f"feature index {index} after {previous}: indices must increase along a "
              "line (sorted, no repeats)")
    previous = index
  return None


def first_malformed_line(path: str, zero_based) -> tuple[int, str] | None:
  """(line number, what is wrong) of the first line scikit-learn cannot
  parse, or None. Python-speed: called only once the parser has failed."""
  with _open(path) as f:
    for number, line in enumerate(f, start=1):
      tokens = line.split(b"#", 1)[0].split()
      if tokens:
        problem = _line_problem(tokens, zero_based)
        if problem:
          return number, problem
  return None


def _zero_based(value):
  """config.data.zero_based: "auto", or a bool (given as text on the command
  line, so "true"/"false" too)."""
  if isinstance(value, bool):
    return value
  text = str(value).strip().lower()
  choices = {"auto": "auto", "true": True, "1": True, "false": False, "0": False}
  if text not in choices:
    raise DataError(f"{NAME}: config.data.zero_based={value!r}: 'auto', true or false")
  return choices[text]


def read_files(paths: list[str], zero_based, n_features: int):
  """Parses every file in one call, so all get one width (and, with
  zero_based="auto", one index base). Returns [(matrix, labels)] per file:
  a canonical float32 CSR matrix [items, width] and its `Labels`."""
  for path in paths:
    if not os.path.isfile(path):
      raise DataError(f"{NAME}: data file not found: {path!r}")
  try:
    parsed = load_svmlight_files(paths, dtype=np.float32, multilabel=True,
                                 zero_based=zero_based)
  except (ValueError, OverflowError) as e:  # the parser's messages name no file or line
    for path in paths:
      found = first_malformed_line(path, zero_based)
      if found:
        raise DataError(f"{path}:{found[0]}: malformed line: {found[1]}") from e
    raise DataError(f"{NAME}: cannot read {paths}: {e}") from e
  except (OSError, EOFError) as e:  # unreadable, or a compressed file cut short
    raise DataError(f"{NAME}: cannot read {paths}: {e}") from e
  for path, m in zip(paths, parsed[::2], strict=True):
    if m.shape[0] == 0:
      raise DataError(f"{NAME}: {path} holds no item (an empty file)")
  width = parsed[0].shape[1]
  matrices = [scipy.sparse.csr_matrix(m, dtype=np.float32) for m in parsed[::2]]
  if n_features:
    for path, matrix in zip(paths, matrices, strict=True):
      beyond = matrix.indices >= n_features
      if beyond.any():
        line, _ = _first_line(path, matrix, beyond)
        raise DataError(f"{path}:{line}: feature column {int(matrix.indices[beyond][0])} "
                        f"(counted from 0) lies beyond config.data.n_features={n_features}")
    width = n_features
  widened = lambda m: scipy.sparse.csr_matrix((m.data, m.indices, m.indptr),
                                              shape=(m.shape[0], width))
  return [(check_values(path, widened(m)), Labels.of(labels))
          for path, m, labels in zip(paths, matrices, parsed[1::2], strict=True)]


def _first_line(path: str, matrix, flagged: np.ndarray) -> tuple[int, int]:
  """(line of the first item holding a flagged stored entry, items flagged)."""
  items = np.unique(row_of_entry(matrix)[flagged])
  return line_of_item(path, int(items[0])), len(items)


def check_values(path: str, matrix) -> scipy.sparse.csr_matrix:
  """Refuses NaN, inf and negative values (the reconstruction target is a
  distribution over features) and items with no nonzero feature, naming the
  line; returns the canonical CSR matrix."""
  for flagged, what in ((~np.isfinite(matrix.data), "NaN or inf (or beyond float32)"),
                        (matrix.data < 0, "a negative value")):
    if flagged.any():
      line, items = _first_line(path, matrix, flagged)
      raise DataError(f"{path}:{line}: {what} among the features ({items} item(s) of "
                      "the file; values must be finite and >= 0)")
  matrix = bag_of_words(matrix)  # a stored 0 is no feature
  empty = np.flatnonzero(np.diff(matrix.indptr) == 0)
  if len(empty):
    raise DataError(f"{path}:{line_of_item(path, int(empty[0]))}: an empty document (no "
                    f"feature with a nonzero value; {len(empty)} item(s) of the file)")
  return matrix


@dataclasses.dataclass(frozen=True)
class Labels:
  """Each item's distinct class ids, flattened: item i holds
  flat[starts[i]:starts[i] + counts[i]] (numpy, so a corpus of 800,000 items
  is not walked in Python)."""

  counts: np.ndarray  # [items] int64
  flat: np.ndarray  # [sum(counts)] float64, sorted within an item

  @classmethod
  def of(cls, tuples) -> "Labels":
    """From scikit-learn's per-item sorted tuples; repeats dropped."""
    counts = np.fromiter(map(len, tuples), np.int64, len(tuples))
    flat = np.fromiter(itertools.chain.from_iterable(tuples), np.float64, int(counts.sum()))
    item = np.repeat(np.arange(len(tuples)), counts)
    keep = np.ones(len(flat), bool)
    keep[1:] = (flat[1:] != flat[:-1]) | (item[1:] != item[:-1])
    return cls(np.bincount(item[keep], minlength=len(tuples)), flat[keep])

  def item_of(self, entry: int) -> int:
    return int(np.searchsorted(np.cumsum(self.counts), entry, side="right"))

  def check(self, path: str):
    """Refuses an item with no label or a non-finite one, naming its line."""
    empty = np.flatnonzero(self.counts == 0)
    if len(empty):
      raise DataError(f"{path}:{line_of_item(path, int(empty[0]))}: an item with no label "
                      f"({len(empty)} item(s) of the file)")
    bad = np.flatnonzero(~np.isfinite(self.flat))
    if len(bad):
      raise DataError(f"{path}:{line_of_item(path, self.item_of(bad[0]))}: a label that is "
                      "not a finite number")

  def classes(self) -> np.ndarray:
    """[classes] float64, the sorted distinct ids."""
    return np.unique(self.flat)

  def encode(self, path: str, classes: np.ndarray, multilabel: bool) -> np.ndarray:
    """[items] int32 class indices, or [items, classes] uint8 multi-hot; a
    label not among `classes` (the training labels) is refused."""
    index = np.minimum(np.searchsorted(classes, self.flat), len(classes) - 1)
    unknown = classes[index] != self.flat
    if unknown.any():
      names = sorted({f"{v:g}" for v in self.flat[unknown]})
      line = line_of_item(path, self.item_of(np.flatnonzero(unknown)[0]))
      raise DataError(f"{path}:{line}: labels {names[:10]}{' ...' if len(names) > 10 else ''} "
                      f"do not occur in the training data (known: "
                      f"{[f'{c:g}' for c in classes][:20]})")
    if not multilabel:
      return index.astype(np.int32)  # one label per item
    hot = np.zeros((len(self.counts), len(classes)), np.uint8)
    hot[np.repeat(np.arange(len(self.counts)), self.counts), index] = 1
    return hot


@dataclasses.dataclass(frozen=True)
class SvmlightSpec(FileSplits):
  """config.data of configs/svmlight.py."""

  name: ClassVar[str] = NAME
  zero_based: str | bool = "auto"  # "auto", or true / false (also as text)
  n_features: int = 0  # input width; 0: the largest feature index in the files

  def __post_init__(self):
    checks.check_fraction(self, "validation_fraction", of=" of the training items")
    checks.check_seed(self, maximum=checks.SKLEARN_SEED_MAX)
    _zero_based(self.zero_based)
    checks.check_count(self, "n_features", 0, "a width >= 1, or 0 for the largest feature "
                       "index in the files")


def load_svmlight(spec: SvmlightSpec) -> Dataset:
  """svmlight / libsvm files: `spec.path` (train), `spec.test_path`, and
  `spec.validation_path` or else `spec.validation_fraction` of train
  (drawn with `spec.split_seed`).

  Input = the stored values (tf-idf in RCV1), CSR; target = each row
  normalised to sum 1 on the same nonzeros. Multi-label when any item has
  more than one label; class ids are numbered in sorted order of the
  training file's labels.
  """
  if not spec.path or not spec.test_path:
    raise DataError(f"{NAME}: set --config.data.path (training file) and "
                    "--config.data.test_path (queries)")
  validation_path = spec.validation_path
  fraction = spec.validation_fraction
  n_features = spec.n_features
  paths = [spec.path, spec.test_path] + ([validation_path] if validation_path else [])
  files = read_files(paths, _zero_based(spec.zero_based), n_features)
  for path, (_, labels) in zip(paths, files, strict=True):
    labels.check(path)
  classes = files[0][1].classes()
  multilabel = any((labels.counts > 1).any() for _, labels in files)
  splits = [make_split(matrix, normalise_rows(matrix), labels.encode(path, classes, multilabel))
            for path, (matrix, labels) in zip(paths, files, strict=True)]
  train, test = splits[:2]
  if validation_path:
    validation = splits[2]
  else:
    order = np.arange(len(train))
    if fraction > 0:
      fit, held = train_test_split(order, test_size=fraction, random_state=spec.split_seed)
    else:
      fit, held = order, order[:0]
    train, validation = train.take(np.sort(fit)), train.take(np.sort(held))
  return Dataset(name=NAME, train=train, validation=validation, test=test,
                 num_classes=len(classes), class_names=tuple(f"{c:g}" for c in classes))
