"""Loaders for array files: the VDSH .mat layout and dense feature .npy files."""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

import numpy as np
import scipy.io
import scipy.sparse

from hashvae.data import checks
from hashvae.data.dataset import DataError, Dataset, bag_of_words, make_split, normalise_rows

MAT_KEYS = ("train", "cv", "test", "gnd_train", "gnd_cv", "gnd_test")


def _dense(matrix) -> np.ndarray:
  if scipy.sparse.issparse(matrix):
    matrix = matrix.toarray()
  return np.asarray(matrix, dtype=np.float32)


def _check_gnd(path: str, key: str, gnd: np.ndarray):
  """gnd_* must be one- or multi-hot rows of 0 and 1: a column of class ids
  would read as one class (every id > 0 is 'labelled')."""
  if ((gnd == 0) | (gnd == 1)).all():  # one linear pass; the sort below on errors only
    return
  values = np.unique(gnd)
  if not np.isin(values, (0, 1)).all():
    shown = ", ".join(f"{v:g}" for v in values[:6]) + (" ..." if values.size > 6 else "")
    raise DataError(f"vdsh_mat: {path}: {key} holds values {shown} in a {gnd.shape} matrix: a "
                    "column of class ids, not one-hot or multi-hot rows of 0 and 1 "
                    "[items, classes]")


def _mat_labels(gnd: np.ndarray, multilabel: bool) -> np.ndarray:
  gnd = np.asarray(_dense(gnd) > 0, dtype=np.uint8)
  return gnd if multilabel else np.argmax(gnd, axis=1).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class VdshMatSpec:
  """config.data of configs/tmc.py and configs/newsgroups.py:source=mat (each
  names its own file, so `path` has no default)."""

  name: ClassVar[str] = "vdsh_mat"
  path: str  # the .mat file


def load_vdsh_mat(spec: VdshMatSpec) -> Dataset:
  """The VDSH .mat layout: train/cv/test [items, terms] (sparse or dense) and
  gnd_train/gnd_cv/gnd_test [items, classes] one- or multi-hot.

  Input = the stored matrix (tf-idf in the study's files), kept sparse
  (CSR); target = its rows normalised to sum 1, on the same nonzeros.
  Multi-label when any item has more than one label.
  """
  path = spec.path
  if not path or not os.path.isfile(path):
    raise DataError(f"vdsh_mat: data file not found: {path!r} (set "
                    "--config.data.path)")
  try:
    mat = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises several types for a bad file
    raise DataError(f"vdsh_mat: cannot read {path} as a .mat file: {e}") from e
  missing = [k for k in MAT_KEYS if k not in mat]
  if missing:
    raise DataError(f"vdsh_mat: {path} lacks keys {missing}; expected "
                    f"{list(MAT_KEYS)}")
  gnd = [_dense(mat[k]) for k in ("gnd_train", "gnd_cv", "gnd_test")]
  for key, g in zip(("gnd_train", "gnd_cv", "gnd_test"), gnd, strict=True):
    _check_gnd(path, key, g)
  num_classes = gnd[0].shape[1]
  if any(g.ndim != 2 or g.shape[1] != num_classes for g in gnd):
    raise DataError(f"vdsh_mat: {path}: gnd_* must be [items, classes] with "
                    f"the same classes, got {[g.shape for g in gnd]}")
  multilabel = any(((g > 0).sum(axis=1) > 1).any() for g in gnd)
  splits = []
  for x_key, g in zip(("train", "cv", "test"), gnd, strict=False):
    unlabelled = np.flatnonzero((g > 0).sum(axis=1) == 0)
    if len(unlabelled):  # argmax would make them class 0 (single-label data)
      raise DataError(f"vdsh_mat: {path}: {len(unlabelled)} rows of gnd_{x_key} "
                      f"have no label (first: row {unlabelled[0]})")
    x = mat[x_key]
    if x.shape[0] != g.shape[0]:
      raise DataError(f"vdsh_mat: {path}: {x_key} has {x.shape[0]} rows but "
                      f"gnd_{x_key} has {g.shape[0]}")
    x = bag_of_words(scipy.sparse.csr_matrix(x))
    if (x.data < 0).any():
      raise DataError(f"vdsh_mat: {path}: {x_key} has negative entries")
    splits.append(make_split(x, normalise_rows(x), _mat_labels(g, multilabel)))
  return Dataset(name="vdsh_mat", train=splits[0], validation=splits[1],
                 test=splits[2], num_classes=num_classes)


def _load_npy(path: str) -> np.ndarray:
  """An .npy array, never unpickled; DataError naming the file otherwise."""
  try:
    array = np.load(path, allow_pickle=False)
  except ValueError as e:  # object arrays, a truncated file, not an .npy
    why = ("it holds pickled Python objects, which are not loaded: save a numeric "
           "array" if "allow_pickle" in str(e) else f"not a complete .npy file ({e})")
    raise DataError(f"features_npy: cannot read {path}: {why}") from e
  except (OSError, EOFError) as e:
    raise DataError(f"features_npy: cannot read {path}: {e}") from e
  if not isinstance(array, np.ndarray):  # an .npz archive
    raise DataError(f"features_npy: {path} is an .npz archive; give an .npy array")
  return array


@dataclasses.dataclass(frozen=True)
class FeaturesNpySpec:
  """config.data of configs/cifar.py."""

  name: ClassVar[str] = "features_npy"
  path: str = ""  # [items, dims] float features
  labels_path: str = ""  # [items] integer labels
  queries_per_class: int = 100  # query set: items drawn per class
  split_seed: int = 0  # the query draw

  def __post_init__(self):
    checks.check_count(self, "queries_per_class")
    checks.check_seed(self)


def load_features_npy(spec: FeaturesNpySpec) -> Dataset:
  """Dense features [items, dims] (.npy) with labels [items] (.npy).

  The CIFAR-10 VGG16 protocol: `spec.queries_per_class` items of each class
  drawn (seeded) as queries, the rest the database; features standardised
  with the database's mean and std; input = target = standardised features.
  """
  for p in (spec.path, spec.labels_path):
    if not p or not os.path.isfile(p):
      raise DataError(f"features_npy: file not found: {p!r} (set "
                      "--config.data.path and --config.data.labels_path)")
  features = _load_npy(spec.path)
  labels = _load_npy(spec.labels_path)
  if features.ndim != 2:
    raise DataError(f"features_npy: {spec.path} must be [items, dims], got "
                    f"shape {features.shape}")
  labels = labels.reshape(-1) if labels.ndim == 2 and 1 in labels.shape else labels
  if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
    raise DataError(f"features_npy: {spec.labels_path} holds {labels.shape} "
                    f"labels for {features.shape[0]} feature rows")
  if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
    raise DataError("features_npy: labels must be non-negative integers")
  bad = ~np.isfinite(features).all(axis=1)
  if bad.any():
    raise DataError(f"features_npy: {spec.path}: {int(bad.sum())} rows hold "
                    f"NaN or inf (first: row {int(np.argmax(bad))})")
  classes, labels = np.unique(labels, return_inverse=True)
  rng = np.random.default_rng(spec.split_seed)
  query = np.zeros(len(labels), bool)
  for c in range(len(classes)):
    members = np.flatnonzero(labels == c)
    if len(members) <= spec.queries_per_class:
      raise DataError(f"features_npy: class {classes[c]} has {len(members)} "
                      f"items, not more than queries_per_class="
                      f"{spec.queries_per_class}")
    query[rng.choice(members, spec.queries_per_class, replace=False)] = True
  features = features.astype(np.float64)
  mean = features[~query].mean(axis=0)
  std = features[~query].std(axis=0)
  features = (features - mean) / np.where(std > 0, std, 1.0)
  split = lambda rows: make_split(features[rows], features[rows], labels[rows])
  db = np.flatnonzero(~query)
  return Dataset(name="features_npy", train=split(db), validation=split(db[:0]),
                 test=split(np.flatnonzero(query)), num_classes=len(classes),
                 class_names=tuple(str(c) for c in classes))
