"""Data that needs no file: scikit-learn's digits and a synthetic corpus."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import scipy.sparse
from sklearn.datasets import load_digits as sklearn_digits
from sklearn.model_selection import train_test_split

from hashvae.data import checks
from hashvae.data.dataset import Dataset, bag_of_words, make_split, normalise_rows, with_values


@dataclasses.dataclass(frozen=True)
class DigitsSpec:
  """config.data of configs/digits.py."""

  name: ClassVar[str] = "digits"
  split_seed: int = 0  # the stratified 80/20 database / query split
  path: str = ""  # unused: the data ships with scikit-learn

  def __post_init__(self):
    checks.check_seed(self, maximum=checks.SKLEARN_SEED_MAX)


def load_digits(spec: DigitsSpec) -> Dataset:
  """scikit-learn's bundled 8x8 digits (1,797 items, no download).

  Pixels (0..16) are treated as counts: input = pixels / 16, target = pixels
  normalised per image. A stratified 80/20 database/query split with
  `spec.split_seed`; no validation split.
  """
  x, y = sklearn_digits(return_X_y=True)
  db, query = train_test_split(np.arange(len(y)), test_size=0.2,
                               random_state=spec.split_seed, stratify=y)
  split = lambda idx: make_split(x[idx] / 16.0, normalise_rows(x[idx]), y[idx])
  return Dataset(name="digits", train=split(db), validation=split(db[:0]),
                 test=split(query), num_classes=10,
                 class_names=tuple(str(d) for d in range(10)))


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
  """config.data of configs/synthetic.py."""

  name: ClassVar[str] = "synthetic"
  num_classes: int = 4
  dims: int = 50  # vocabulary size
  train_size: int = 160
  validation_size: int = 40
  test_size: int = 40
  doc_length: int = 30  # mean words per document
  noise: float = 0.3  # weight of the shared background topic
  split_seed: int = 0  # the generator's seed

  def __post_init__(self):
    checks.check_count(self, "num_classes", 2, "an integer >= 2 (retrieval needs two "
                       "classes, or every item is relevant)")
    for field in ("dims", "train_size", "validation_size", "test_size", "doc_length"):
      checks.check_count(self, field)
    checks.check_fraction(self, "noise", closed=True, of=" (the background topic's weight)")
    checks.check_seed(self)


def load_synthetic(spec: SyntheticSpec) -> Dataset:
  """A seeded clustered bag-of-words corpus, for fast tests.

  Each class has a sparse topic over `spec.dims` words; a document mixes
  its class topic with a shared background (weight `spec.noise`) and draws
  Poisson(`spec.doc_length`) words. Input log(1+tf), target tf normalised,
  both sparse (CSR) as text data is.
  """
  rng = np.random.default_rng(spec.split_seed)
  classes, dims = spec.num_classes, spec.dims
  topics = rng.dirichlet(np.full(dims, 0.05), size=classes)
  background = rng.dirichlet(np.full(dims, 1.0))

  def corpus(n):
    labels = rng.integers(0, classes, size=n)
    mix = (1 - spec.noise) * topics[labels] + spec.noise * background
    lengths = np.maximum(rng.poisson(spec.doc_length, size=n), 1)
    counts = bag_of_words(scipy.sparse.csr_matrix(np.stack(
        [rng.multinomial(n, p) for n, p in zip(lengths, mix, strict=True)])))
    return make_split(with_values(counts, np.log1p(counts.data)), normalise_rows(counts),
                      labels)

  return Dataset(name="synthetic", train=corpus(spec.train_size),
                 validation=corpus(spec.validation_size),
                 test=corpus(spec.test_size), num_classes=classes)
