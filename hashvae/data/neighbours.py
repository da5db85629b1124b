"""The document-neighbour table: each training item's k most similar items.

Methods that learn from neighbours (NbrReg, RBSH, PairRec, SNUH) read a
table [items, k] of the top-k neighbours of each training item within the
training set, and their similarities. Labels are never used.

    features = dataset.database.inputs  # the run's training items, in order
    table = neighbour_table(features, k=10, similarity="cosine", cache_dir="cache")
    table.indices       # [items, k] int32, by decreasing similarity
    table.similarities  # [items, k] float32

Similarities (formulas in neighbours_exact): `bm25` and `tfidf` read a CSR
matrix's stored values as term frequencies (term counts give textbook BM25:
`term_counts(dataset)`; the loaders' inputs hold log(1 + tf) or tf-idf);
`cosine` takes dense features (digits) or CSR rows as they are. An item
with no feature has no similarity to any other and is refused: a text
corpus loaded with its empty documents kept (zero rows, as Snippets keeps
them) needs those rows left out, and the table's indices then count the
rows kept.

Search: `exact` (neighbours_exact.exact_top_k, host blocks within a memory
budget), `approximate` (neighbours_approx, faiss: each item scored exactly
against the items of the clusters nearest to it) or `auto`, approximate
above AUTO_ITEMS items (where the exact search of a text corpus takes
minutes on one CPU core).

The table is cached under `cache_dir` as neighbours-<key>.npz, the key a
hash of the features' arrays and every setting that changes the result
(k, similarity, BM25's k1 and b, the search, and for the approximate search
its settings and the faiss and scikit-learn versions); the block size is
not part of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import numbers
import os

import numpy as np
import scipy.sparse

from hashvae.data.dataset import DataError, Dataset, bag_of_words
from hashvae.data.neighbours_approx import approximate_top_k, load_faiss
from hashvae.data.neighbours_exact import SIMILARITIES, exact_top_k, similarity_rows
from hashvae.files.atomic import atomic_path

log = logging.getLogger("hashvae")

METHODS = ("exact", "approximate", "auto")
AUTO_ITEMS = 50_000
CACHE_VERSION = 1  # bump when a change of this code changes the tables


@dataclasses.dataclass(frozen=True)
class NeighbourTable:
  """indices [items, k] int32: item i's neighbours, most similar first
  (ties by lower index, never i itself); similarities [items, k] float32."""

  indices: np.ndarray
  similarities: np.ndarray


@dataclasses.dataclass(frozen=True)
class Approximate:
  """The approximate search's settings (neighbours_approx.approximate_top_k)."""

  dims: int = 64  # projection width, for the clustering
  lists: int = 0  # clusters; 0: the square root of the item count
  probes: int = 0  # lists each item searches; 0: a tenth of the lists, rounded up
  seed: int = 0  # the projection's and the k-means' random state


def term_counts(dataset: Dataset) -> scipy.sparse.csr_matrix:
  """[items, terms] CSR term counts of the training items (train then
  validation), from the texts the dataset keeps and its vectoriser."""
  database = dataset.database
  if dataset.vectoriser is None or not database.texts:
    raise DataError(f"{dataset.name}: no texts and vectoriser to count terms from; "
                    "pass the features themselves to neighbour_table")
  return dataset.vectoriser.counts(database.texts)


def check_settings(k1, b, memory_mb):
  """A one-line DataError for a BM25 parameter or a budget out of range."""
  real = lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)
  if not (real(k1) and k1 >= 0):
    raise DataError(f"k1={k1!r}: BM25's term-frequency saturation, a number >= 0")
  if not (real(b) and 0 <= b <= 1):
    raise DataError(f"b={b!r}: BM25's length normalisation, a number in [0, 1]")
  if not (real(memory_mb) and memory_mb > 0):
    raise DataError(f"memory_mb={memory_mb!r}: the budget of one block of scores in MB, > 0")


def checked_features(features, k, similarity: str, method: str):
  """The features in canonical form (CSR float32 sorted, or dense float64),
  or a one-line DataError naming what is wrong."""
  if similarity not in SIMILARITIES:
    raise DataError(f"similarity={similarity!r}: one of {', '.join(SIMILARITIES)}")
  if method not in METHODS:
    raise DataError(f"method={method!r}: one of {', '.join(METHODS)}")
  sparse = scipy.sparse.issparse(features)
  if not sparse and similarity != "cosine":
    raise DataError(f"similarity={similarity!r} reads term frequencies from a scipy CSR "
                    "matrix; dense features take similarity='cosine'")
  features = bag_of_words(features) if sparse else np.asarray(features, dtype=np.float64)
  if features.ndim != 2:
    raise DataError(f"features must be [items, dims], got shape {features.shape}")
  items = features.shape[0]
  if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
    raise DataError(f"k={k!r}: the neighbours per item, an integer >= 1")
  if k >= items:
    raise DataError(f"k={k} must be below the item count {items}: an item is never "
                    "its own neighbour")
  values = features.data if sparse else features
  if not np.isfinite(values).all():
    raise DataError("features hold NaN or inf")
  if similarity != "cosine" and (values < 0).any():
    raise DataError(f"similarity={similarity!r}: term frequencies must be >= 0")
  empty = np.flatnonzero(np.diff(features.indptr) == 0 if sparse
                         else ~features.any(axis=1))
  if len(empty):
    raise DataError(f"{len(empty)} of {items} feature rows are all zero (first: row "
                    f"{empty[0]}): such an item has no similarity to any other; drop it")
  return features


def resolve_method(method: str, items: int) -> str:
  if method == "auto":
    return "approximate" if items > AUTO_ITEMS else "exact"
  return method


def cache_key(features, k: int, similarity: str, k1: float, b: float, method: str,
              approximate: Approximate) -> str:
  """sha256 hex of the features' arrays and every setting of the result."""
  settings = {"version": CACHE_VERSION, "k": k, "similarity": similarity, "method": method}
  if similarity == "bm25":
    settings.update(k1=float(k1), b=float(b))
  if method == "approximate":
    import sklearn  # the projection's SVD

    settings.update(dataclasses.asdict(approximate), faiss=load_faiss().__version__,
                    sklearn=sklearn.__version__)
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
  arrays = ((features.indptr, features.indices, features.data)
            if scipy.sparse.issparse(features) else (features,))
  digest.update(repr(features.shape).encode())
  for array in arrays:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.data)
  return digest.hexdigest()


def compute(features, k: int, similarity: str, k1: float, b: float, method: str,
            approximate: Approximate, memory_mb: float) -> NeighbourTable:
  """The table of checked features, with no cache."""
  queries, documents = similarity_rows(features, similarity, k1, b)
  if method == "exact":
    indices, similarities = exact_top_k(queries, documents, k, memory_mb=memory_mb)
  else:
    indices, similarities = approximate_top_k(queries, documents, k, memory_mb=memory_mb,
                                              **dataclasses.asdict(approximate))
  return NeighbourTable(indices, similarities)


def save(path: str, table: NeighbourTable):
  """Writes the .npz beside its final name, then renames it over (atomic)."""
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    np.savez(f, indices=table.indices, similarities=table.similarities)


def load(path: str, items: int, k: int):
  """The cached table at `path`, or None if it is absent or unreadable."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as archive:
      table = NeighbourTable(archive["indices"], archive["similarities"])
  except (OSError, ValueError, KeyError) as e:
    log.warning("neighbour cache %s is unreadable (%s); recomputing", path, e)
    return None
  if table.indices.shape != (items, k) or table.similarities.shape != (items, k):
    log.warning("neighbour cache %s holds shape %s, not %s; recomputing", path,
                table.indices.shape, (items, k))
    return None
  return table


def neighbour_table(features, *, k: int, similarity: str, k1: float = 1.2, b: float = 0.75,
                    method: str = "exact", approximate: Approximate = Approximate(),
                    memory_mb: float = 256.0, cache_dir: str | None = None) -> NeighbourTable:
  """Each item's k most similar other items within `features`.

  Args:
    features: [items, dims] the training items: a scipy CSR matrix (bm25,
      tfidf, cosine) or a dense array (cosine). No row may be all zero.
    k: neighbours per item, 1 <= k < items.
    similarity: 'bm25', 'tfidf' or 'cosine' (neighbours_exact).
    k1, b: BM25's term-frequency saturation and length normalisation.
    method: 'exact', 'approximate' (needs faiss) or 'auto'.
    approximate: the approximate search's settings.
    memory_mb: the budget of one block of scores (the result does not
      depend on it).
    cache_dir: where the table is kept between calls (None: not cached).
  Returns:
    NeighbourTable: indices [items, k] int32, similarities [items, k]
    float32, by decreasing similarity, ties by lower index.
  """
  check_settings(k1, b, memory_mb)
  features = checked_features(features, k, similarity, method)
  method = resolve_method(method, features.shape[0])
  if method == "approximate":
    load_faiss()  # the install line before any work
  path = None
  if cache_dir is not None:
    key = cache_key(features, k, similarity, k1, b, method, approximate)
    path = os.path.join(cache_dir, f"neighbours-{key[:32]}.npz")
    table = load(path, features.shape[0], k)
    if table is not None:
      return table
  table = compute(features, k, similarity, k1, b, method, approximate, memory_mb)
  if path is not None:
    save(path, table)
  return table
