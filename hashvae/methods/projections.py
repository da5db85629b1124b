"""What the classical baselines share: their inputs (dense, or projected by a
truncated randomised SVD of sparse rows for wide inputs, cached per seed),
label rows, orthogonal directions and iterative quantisation (ITQ). The
reasons for each choice are in classical.py's docstring."""

from __future__ import annotations

import collections
import functools
import weakref

import numpy as np
import scipy.linalg
import scipy.sparse
from sklearn.decomposition import TruncatedSVD
from threadpoolctl import threadpool_limits

from hashvae.methods.registry import MethodError

DENSE_MAX_DIMS = 512  # wider inputs are projected by a truncated randomised SVD
ITQ_ITERATIONS = 50  # as in Gong and Lazebnik 2011


def one_blas_thread(fit):
  """Runs `fit` with BLAS (and OpenMP) limited to one thread.

  Why: the work is tall-skinny products, QRs and small eigenproblems, which
  BLAS threads serve poorly; on a busy host their spinning threads contend
  (Snippets' randomised SVD took several times the CPU and wall time on two
  threads than on one; the performance notes have the figures). One
  thread also fixes the order of the BLAS sums, so codes do not depend on
  the host's core count.
  """
  @functools.wraps(fit)
  def limited(*args, **kwargs):
    with threadpool_limits(1):
      return fit(*args, **kwargs)

  return limited


# --- inputs ------------------------------------------------------------------

def database_labels(dataset) -> np.ndarray:
  """[items] or [items, classes]: train then validation, as dataset.database
  orders them (without concatenating the inputs and targets as it does)."""
  return np.concatenate([dataset.train.labels, dataset.validation.labels])


def label_rows(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """[items] class ids or [items, classes] multi-hot -> [items, classes] float64."""
  if labels.ndim == 2:
    return labels.astype(np.float64)
  return np.eye(num_classes)[labels]


def labelled_rows(dataset, labelled: np.ndarray) -> np.ndarray:
  """[labelled items, classes] float64: the label rows of the items the run
  may use. Only those labels are read."""
  keep = np.flatnonzero(np.asarray(labelled) > 0)
  return label_rows(database_labels(dataset)[keep], dataset.num_classes)


def reduced_dims(dims: int, bits: int) -> int:
  """The width inputs wider than DENSE_MAX_DIMS are projected to."""
  return min(dims, max(256, 4 * bits))


def features(dataset, rng: np.random.Generator, bits: int):
  """(database [items, r], queries [queries, r]) float64, centred by the
  database mean.

  r = dims for inputs at most DENSE_MAX_DIMS wide; wider inputs are
  projected onto the top r = reduced_dims(dims, bits) right singular
  vectors of the (uncentred, sparse) database rows, found by a randomised
  SVD seeded from `rng` (sparse_projection).
  """
  splits = (dataset.train.inputs, dataset.validation.inputs, dataset.test.inputs)
  if dataset.dims <= DENSE_MAX_DIMS:
    dense = lambda x: (x.toarray() if scipy.sparse.issparse(x) else x).astype(np.float64)
    db = np.concatenate([dense(s) for s in splits[:2]])
    queries = dense(splits[2])
  else:
    db, queries = sparse_projection(splits, reduced_dims(dataset.dims, bits),
                                    int(rng.integers(2**31)))
  mean = db.mean(axis=0)
  return db - mean, queries - mean


# (weak references to the three input arrays, width, seed) -> (database,
# queries), read-only. A run's Generator depends on its seed alone, so every
# method and level of one seed draws the same SVD seed first: the sweep then
# computes one SVD per seed, not one per run, and a hit is exactly what a
# fresh SVD would give.
_PROJECTIONS: collections.OrderedDict = collections.OrderedDict()
PROJECTIONS_KEPT = 8  # ~25 MB each for Snippets at r = 256


_SPARSE: dict = {}  # id(array) -> (weak reference to it, its CSR copy)


def sparse_rows(inputs) -> scipy.sparse.csr_matrix:
  """A float64 CSR copy of [items, dims] rows (dense or CSR), kept while the
  array lives: each run of a sweep reads the same arrays (and for dense
  rows building it scans every entry)."""
  hit = _SPARSE.get(id(inputs))
  if hit is not None and hit[0]() is inputs:
    return hit[1]
  for key in [k for k, (ref, _) in _SPARSE.items() if ref() is None]:
    del _SPARSE[key]  # arrays that are gone (their ids may be reused)
  rows = scipy.sparse.csr_matrix(inputs, dtype=np.float64)
  _SPARSE[id(inputs)] = (weakref.ref(inputs), rows)
  return rows


def sparse_projection(splits, width: int, seed: int):
  """(database [train + validation, width], queries [test, width]) float64:
  the rows projected on the top `width` right singular vectors of the
  database, by scikit-learn's randomised TruncatedSVD of CSR copies (the
  inputs are never centred, multiplied or copied densely)."""
  key = (*(id(s) for s in splits), width, seed)
  hit = _PROJECTIONS.get(key)
  if hit is not None and all(ref() is s for ref, s in zip(hit[0], splits, strict=True)):
    _PROJECTIONS.move_to_end(key)
    return hit[1], hit[2]
  train, valid, test = (sparse_rows(s) for s in splits)
  svd = TruncatedSVD(width, algorithm="randomized", random_state=seed)
  db = svd.fit_transform(scipy.sparse.vstack([train, valid], format="csr"))
  queries = svd.transform(test)
  for a in (db, queries):
    a.flags.writeable = False
  _PROJECTIONS[key] = (tuple(weakref.ref(s) for s in splits), db, queries)
  while len(_PROJECTIONS) > PROJECTIONS_KEPT:
    _PROJECTIONS.popitem(last=False)
  return db, queries


def need_directions(method: str, bits: int, width: int):
  if bits > width:
    raise MethodError(f"{method}: {bits} bits need {bits} projection directions, "
                      f"but the (reduced) input has only {width} dimensions")


def to_bits(values: np.ndarray) -> np.ndarray:
  """[items, bits] real -> uint8 {0, 1}: 1 where the value is positive."""
  return (values > 0).astype(np.uint8)


def fix_signs(directions: np.ndarray) -> np.ndarray:
  """[dims, k] -> the same columns, each flipped so that its largest-magnitude
  entry is positive: eigen and singular vectors are defined up to sign, and
  this makes codes independent of the LAPACK build."""
  rows = np.abs(directions).argmax(axis=0)
  signs = np.sign(directions[rows, np.arange(directions.shape[1])])
  return directions * np.where(signs == 0, 1.0, signs)


def top_eigenvectors(matrix: np.ndarray, k: int):
  """(values [k] descending, vectors [dims, k]) of a symmetric [dims, dims] matrix."""
  values, vectors = np.linalg.eigh(matrix)
  order = np.argsort(-values, kind="stable")[:k]
  return values[order], fix_signs(vectors[:, order])


def principal_directions(x: np.ndarray, k: int) -> np.ndarray:
  """[dims, k]: the top-k principal directions of centred x [items, dims]."""
  return top_eigenvectors(x.T @ x / len(x), k)[1]


# --- iterative quantisation --------------------------------------------------

def random_rotation(rng: np.random.Generator, k: int) -> np.ndarray:
  """[k, k] orthogonal, from the QR decomposition of a Gaussian matrix."""
  q, r = np.linalg.qr(rng.standard_normal((k, k)))
  return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def quantisation_loss(v: np.ndarray, rotation: np.ndarray) -> float:
  """||B - V R||_F^2 with B = sign(V R) in {-1, 1}: ITQ's objective."""
  projected = v @ rotation
  return float(np.sum((np.where(projected >= 0, 1.0, -1.0) - projected) ** 2))


def itq(v: np.ndarray, rng: np.random.Generator, iterations: int = ITQ_ITERATIONS):
  """Iterative quantisation (Gong and Lazebnik, CVPR 2011, section 2.3).

  Alternates B = sign(V R) and the orthogonal Procrustes step R = S_hat S^T
  for the SVD B^T V = S Omega S_hat^T, each minimising ||B - V R||_F^2 with
  the other fixed, so the loss never increases. Starts from a random rotation.

  Args:
    v: [items, k] centred projections.
  Returns:
    (rotation [k, k] orthogonal, losses [iterations + 1]: the loss at the
    start and after each iteration).
  """
  rotation = random_rotation(rng, v.shape[1])
  losses = [quantisation_loss(v, rotation)]
  for _ in range(iterations):
    b = np.where(v @ rotation >= 0, 1.0, -1.0)
    s, _, s_hat_t = np.linalg.svd(b.T @ v)
    rotation = s_hat_t.T @ s.T
    losses.append(quantisation_loss(v, rotation))
  return rotation, np.array(losses)


# --- the methods -------------------------------------------------------------
