"""The one dataset type every loader returns, and its checks.

A dataset is three splits. The training set of a run is `train` followed by
`validation` (the released protocol trains on both and uses them together as
the retrieval database); `test` holds the queries.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

import numpy as np
import scipy.sparse

log = logging.getLogger("hashvae")


class DataError(ValueError):
  """A data file or array does not have the layout a loader expects."""


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a dataset.

  Bag-of-words data (text, the .mat and svmlight corpora) stays sparse:
  `inputs` is a scipy.sparse CSR matrix and `targets` holds other values on
  the same nonzeros (it shares the inputs' index arrays), so memory grows
  with the nonzeros, never with items x vocabulary. Dense features (digits,
  CIFAR) are dense arrays.

  Attributes:
    inputs: [items, dims] float32, what the encoder reads: a numpy array or
      a CSR matrix with sorted column indices.
    targets: [items, dims] float32, what the decoder reconstructs (for text,
      term counts normalised to sum 1 per row; an all-zero row stays zero);
      CSR on the inputs' nonzeros when the inputs are CSR.
    labels: [items] int32 class indices, or [items, classes] uint8 multi-hot.
    texts: the raw documents, for text data (empty otherwise).
    ids: each item's id in the user's data (a table's row number, 0-based,
      or its id column's value), so a search result can name the row it
      came from; empty when the loader gives none.
  """

  inputs: np.ndarray
  targets: np.ndarray
  labels: np.ndarray
  texts: tuple = ()
  ids: tuple = ()

  def __len__(self) -> int:
    return self.inputs.shape[0]

  @property
  def sparse(self) -> bool:
    return scipy.sparse.issparse(self.inputs)

  def take(self, idx) -> "Split":
    """The items `idx` (an index array or a slice), in that order."""
    rows = np.arange(len(self))[idx]
    texts = tuple(self.texts[i] for i in rows) if self.texts else ()
    ids = tuple(self.ids[i] for i in rows) if self.ids else ()
    return make_split(self.inputs[idx], self.targets[idx], self.labels[idx], texts, ids)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train / validation / test splits with their label space."""

  name: str
  train: Split
  validation: Split
  test: Split
  num_classes: int
  class_names: tuple[str, ...] = ()
  vectoriser: Any = None  # text data: the fitted data.text.TextVectoriser

  @property
  def multilabel(self) -> bool:
    return self.train.labels.ndim == 2

  @property
  def dims(self) -> int:
    return self.train.inputs.shape[1]

  @property
  def database(self) -> Split:
    """Training items in training order: train then validation. Built on
    each call (not kept: a second copy of a large corpus), so hold the result
    while it is needed."""
    return concat(self.train, self.validation)

  @functools.cached_property
  def database_labels(self) -> np.ndarray:
    """database.labels, without building the database's inputs."""
    return np.concatenate([self.train.labels, self.validation.labels])

  @property
  def database_size(self) -> int:
    return len(self.train) + len(self.validation)

  def __post_init__(self):
    for split_name in ("train", "validation", "test"):
      check_split(self.name, split_name, getattr(self, split_name),
                  self.num_classes)
    if len(self.train) == 0:
      raise DataError(f"{self.name}: the training split is empty")
    if len(self.test) == 0:
      raise DataError(f"{self.name}: the test (query) split is empty")
    dims = {getattr(self, s).inputs.shape[1]
            for s in ("train", "validation", "test")}
    if len(dims) != 1:
      raise DataError(f"{self.name}: splits have different widths {dims}")
    check_training_labels(self.name, self.database_labels)
    warn_constant_inputs(self.name, self.train.inputs)


def check_training_labels(dataset: str, labels: np.ndarray):
  """Refuses training labels with fewer than two classes: every pair of items
  would be similar, so retrieval would score 1.0 whatever the codes."""
  present = (np.flatnonzero(labels.any(axis=0)) if labels.ndim == 2
             else np.unique(labels))
  if len(present) < 2:
    raise DataError(f"{dataset}: the training items hold {len(present)} class"
                    f"{'' if len(present) == 1 else 'es'} ({present.tolist()}); "
                    "retrieval needs at least two, or every result counts as relevant")


def warn_constant_inputs(dataset: str, inputs):
  """Warns when every training feature has zero variance: the encoder then
  sees the same input for every item and the codes are at chance."""
  if inputs.shape[0] < 2:
    return
  if scipy.sparse.issparse(inputs):
    constant = (inputs.max(axis=0) != inputs.min(axis=0)).nnz == 0
  else:
    constant = np.array_equal(inputs.max(axis=0), inputs.min(axis=0))
  if constant:
    log.warning("%s: every training feature has the same value in every item "
                "(zero variance): the codes cannot tell items apart, so results "
                "will be at chance", dataset)


def concat(a: Split, b: Split) -> Split:
  stack = ((lambda x, y: scipy.sparse.vstack([x, y], format="csr")) if a.sparse
           else (lambda x, y: np.concatenate([x, y])))
  return make_split(stack(a.inputs, b.inputs), stack(a.targets, b.targets),
                    np.concatenate([a.labels, b.labels]), a.texts + b.texts,
                    a.ids + b.ids if (a.ids or not len(a)) and (b.ids or not len(b)) else ())


def with_values(rows: scipy.sparse.csr_matrix, values: np.ndarray) -> scipy.sparse.csr_matrix:
  """A CSR matrix holding `values` [nnz] on the nonzeros of `rows`: it shares
  their index arrays, so a second matrix on the same nonzeros costs its
  values alone."""
  return scipy.sparse.csr_matrix((values, rows.indices, rows.indptr), shape=rows.shape,
                                 copy=False)


def row_of_entry(rows: scipy.sparse.csr_matrix) -> np.ndarray:
  """[nnz] the row each stored entry of a CSR matrix belongs to."""
  return np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))


def normalise_rows(counts):
  """[items, dims] non-negative -> rows summing to 1 (zero rows stay zero).

  A CSR matrix gives a CSR matrix on the same nonzeros (same index arrays)."""
  if scipy.sparse.issparse(counts):
    counts = bag_of_words(counts)
    row = row_of_entry(counts)
    totals = np.bincount(row, weights=counts.data.astype(np.float64),
                         minlength=counts.shape[0])
    values = counts.data.astype(np.float64) / totals[row]  # stored: a total > 0
    return with_values(counts, values.astype(np.float32))
  counts = np.asarray(counts, dtype=np.float64)
  totals = counts.sum(axis=1, keepdims=True)
  return (counts / np.where(totals > 0, totals, 1.0)).astype(np.float32)


def bag_of_words(rows) -> scipy.sparse.csr_matrix:
  """Any scipy.sparse matrix -> float32 CSR with sorted column indices, no
  duplicate entries and no stored zeros (the layout every later stage reads)."""
  rows = scipy.sparse.csr_matrix(rows, dtype=np.float32)
  if not rows.has_canonical_format or (rows.data == 0).any():
    rows = rows.copy()
    rows.sum_duplicates()  # also sorts the indices
    rows.eliminate_zeros()
  return rows


def make_split(inputs, targets, labels, texts=(), ids=()) -> Split:
  """A Split with the canonical dtypes: dense float32 arrays, or float32 CSR
  inputs with the targets on the same nonzeros (sharing their index arrays)."""
  labels = np.asarray(labels, dtype=np.uint8 if np.ndim(labels) == 2 else np.int32)
  if scipy.sparse.issparse(inputs):
    inputs = bag_of_words(inputs)
    targets = scipy.sparse.csr_matrix(targets, dtype=np.float32)
    if not (np.array_equal(inputs.indptr, targets.indptr)
            and np.array_equal(inputs.indices, targets.indices)):
      raise DataError("sparse inputs and targets must have the same nonzeros")
    return Split(inputs, with_values(inputs, targets.data), labels, tuple(texts), tuple(ids))
  return Split(np.ascontiguousarray(inputs, dtype=np.float32),
               np.ascontiguousarray(targets, dtype=np.float32), labels, tuple(texts),
               tuple(ids))


def check_split(dataset: str, name: str, split: Split, num_classes: int):
  """Raises DataError naming what is wrong with one split."""
  where = f"{dataset}/{name}"
  n = split.inputs.shape[0]
  if split.inputs.ndim != 2:
    raise DataError(f"{where}: inputs must be [items, dims], got shape "
                    f"{split.inputs.shape}")
  if split.targets.shape != split.inputs.shape:
    raise DataError(f"{where}: targets {split.targets.shape} do not match "
                    f"inputs {split.inputs.shape}")
  if split.texts and len(split.texts) != n:
    raise DataError(f"{where}: {len(split.texts)} texts for {n} items")
  if split.ids and len(split.ids) != n:
    raise DataError(f"{where}: {len(split.ids)} ids for {n} items")
  if split.labels.shape[0] != n:
    raise DataError(f"{where}: {split.labels.shape[0]} labels for {n} items")
  if split.labels.ndim == 1:
    if n and (split.labels.min() < 0 or split.labels.max() >= num_classes):
      raise DataError(f"{where}: label indices must lie in [0, {num_classes})")
  elif split.labels.ndim == 2:
    if split.labels.shape[1] != num_classes:
      raise DataError(f"{where}: label matrix has {split.labels.shape[1]} "
                      f"columns for {num_classes} classes")
    if n and split.labels.max() > 1:
      raise DataError(f"{where}: the label matrix holds values up to "
                      f"{int(split.labels.max())}: a column of class ids, not one-hot "
                      "or multi-hot rows of 0 and 1")
  else:
    raise DataError(f"{where}: labels must be [items] or [items, classes]")
  for field in ("inputs", "targets"):
    values = getattr(split, field)
    if scipy.sparse.issparse(values):
      bad_entries = ~np.isfinite(values.data)
      if bad_entries.any():
        bad = len(np.unique(row_of_entry(values)[bad_entries]))
        raise DataError(f"{where}: {bad} rows of {field} hold NaN or inf")
    elif not np.isfinite(values).all():
      bad = int((~np.isfinite(values).all(axis=1)).sum())
      raise DataError(f"{where}: {bad} rows of {field} hold NaN or inf")


@dataclasses.dataclass(frozen=True)
class FileSplits:
  """The fields every loader of a training file and a query file shares
  (the svmlight files, the text tables); a loader's spec extends it."""

  path: str = ""  # the training file (also the database)
  test_path: str = ""  # the queries
  validation_path: str = ""  # optional; unset, validation_fraction of path
  validation_fraction: float = 0.1  # of the training items, held out as validation
  split_seed: int = 0  # the validation split
