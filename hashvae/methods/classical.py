"""The classical (non-gradient) hashing baselines, fitted on the host.

Each is registered with `register_fitted` and runs in the same sweep as the
trained methods: one call per (seed, level, weights) run with the run's
label mask and a numpy Generator seeded from the run's key, so a run is
exactly reproducible from its seed (every random draw comes from that
Generator, scikit-learn's included).

- `lsh`: random hyperplanes on the input (Charikar 2002).
- `pca_itq`: PCA, then iterative quantisation (Gong and Lazebnik 2011).
- `spectral`: spectral hashing (Weiss, Torralba and Fergus 2008).
- `ssh`: semi-supervised hashing (Wang, Kumar and Chang 2012).
- `cca_itq`: CCA on the labelled items, then ITQ (Gong et al. 2013).

Wide inputs. The methods that need second moments of the input (all but
LSH) first project inputs wider than DENSE_MAX_DIMS onto
`reduced_dims(dims, bits)` = min(dims, max(256, 4 * bits)) directions found
by a truncated randomised SVD of a scipy.sparse CSR copy of the database
(scikit-learn's TruncatedSVD), so no [dims, dims] covariance of a
10,000-word vocabulary is ever formed, nor a dense centred copy of the
data: the projection is fitted on the raw sparse rows (centring a sparse
matrix would densify it) and the r-dimensional projections are centred
afterwards, as PCA centres. Every method uses at most `bits` directions
of that space; 4 * bits (and at least 256) leaves room beyond the
top-variance directions for the supervised methods (SSH, CCA) to find the
label-correlated ones (on Snippets at 16 bits, CCA-ITQ's p@100 at level
1.0 was 0.52 / 0.58 / 0.63 at r = 64 / 128 / 256), while the SVD's QRs of
[items, r] stay cheap.
Inputs at most DENSE_MAX_DIMS wide (digits' 64 pixels, CIFAR's 512 VGG
features) are used as they are. Each fit runs on one BLAS thread
(one_blas_thread says why).
"""

from __future__ import annotations

import collections
import functools
import weakref

import numpy as np
import scipy.linalg
import scipy.sparse
from sklearn.decomposition import TruncatedSVD
from threadpoolctl import threadpool_limits

from hashvae.methods.registry import MethodError, register_fitted

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
    db = np.concatenate([s.astype(np.float64) for s in splits[:2]])
    queries = splits[2].astype(np.float64)
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


def sparse_rows(inputs: np.ndarray) -> scipy.sparse.csr_matrix:
  """A float64 CSR copy of dense [items, dims] rows, kept while the array
  lives: building it scans every entry (about 1 s for Snippets' training
  split), and each run of a sweep reads the same arrays."""
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
  dense inputs are never centred, multiplied or copied densely)."""
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

@register_fitted("lsh", weights={})
@one_blas_thread
def lsh(dataset, labelled, rng, hp, options, bits):
  """Locality-sensitive hashing by random hyperplanes (Charikar, "Similarity
  estimation techniques from rounding algorithms", STOC 2002; the "LSH" row
  of the VDSH paper's tables).

  W [dims, bits] has standard normal entries; code = 1[x W > 0], the side of
  each random hyperplane through the origin (a Hamming distance that
  estimates the angle between inputs). Reads no labels. Wide inputs are
  multiplied as sparse CSR rows.
  """
  w = rng.standard_normal((dataset.dims, bits))

  def code(inputs):
    rows = (sparse_rows(inputs) if dataset.dims > DENSE_MAX_DIMS
            else inputs.astype(np.float64))
    return to_bits(rows @ w)

  db = np.concatenate([code(dataset.train.inputs), code(dataset.validation.inputs)])
  return db, code(dataset.test.inputs)


@register_fitted("pca_itq", weights={})
@one_blas_thread
def pca_itq(dataset, labelled, rng, hp, options, bits):
  """PCA followed by iterative quantisation (Gong and Lazebnik, "Iterative
  quantization: a Procrustean approach to learning binary codes", CVPR 2011).

  The centred database is projected on its top `bits` principal directions
  P; ITQ finds the rotation R that brings V = X P closest to the vertices
  of the hypercube; code = 1[X P R > 0]. Reads no labels.
  """
  db, queries = features(dataset, rng, bits)
  need_directions("pca_itq", bits, db.shape[1])
  directions = principal_directions(db, bits)
  rotation, _ = itq(db @ directions, rng)
  return to_bits(db @ directions @ rotation), to_bits(queries @ directions @ rotation)


def spectral_modes(low: np.ndarray, high: np.ndarray, bits: int):
  """The `bits` one-dimensional eigenfunctions of smallest eigenvalue.

  For data uniform on [a, b] along a direction, the Laplacian's
  eigenfunctions are cos(k pi (x - a) / (b - a)), k = 1, 2, ..., with
  eigenvalue 1 - exp(-eps^2 / 2 * (k pi / (b - a))^2): increasing in the
  frequency omega = k pi / (b - a), whatever eps, so the smallest
  eigenvalues are the smallest frequencies (ties: the lower direction first).

  Args:
    low, high: [directions] the range of the data along each direction.
  Returns:
    (direction [bits] int, omega [bits]): each mode's direction and frequency.
  """
  span = np.maximum(high - low, 1e-12)  # a constant direction: very high frequencies
  k = np.arange(1, bits + 1)
  omega = (k[None, :] * np.pi / span[:, None]).ravel()  # [directions * bits]
  direction = np.repeat(np.arange(len(low)), bits)
  order = np.lexsort((direction, omega))[:bits]
  return direction[order], omega[order]


def spectral_bits(x: np.ndarray, low: np.ndarray, direction: np.ndarray,
                  omega: np.ndarray) -> np.ndarray:
  """[items, directions] -> [items, bits] uint8: the sign of each mode's
  eigenfunction cos(omega (x_d - a_d)) = sin(pi / 2 + omega (x_d - a_d))."""
  return to_bits(np.cos(omega * (x[:, direction] - low[direction])))


@register_fitted("spectral", weights={})
@one_blas_thread
def spectral(dataset, labelled, rng, hp, options, bits):
  """Spectral hashing (Weiss, Torralba and Fergus, NIPS 2008).

  The centred database is rotated onto its top min(bits, r) principal
  directions; the data are taken as uniform on their range [a, b] along
  each; of the analytical one-dimensional Laplacian eigenfunctions
  cos(k pi (x - a) / (b - a)) along every direction, the `bits` of smallest
  eigenvalue are kept (spectral_modes), and each bit is the sign of one.
  Reads no labels; has no weights (eps does not change which modes are
  kept).
  """
  db, queries = features(dataset, rng, bits)
  directions = principal_directions(db, min(bits, db.shape[1]))
  db, queries = db @ directions, queries @ directions
  low, high = db.min(axis=0), db.max(axis=0)
  direction, omega = spectral_modes(low, high, bits)
  return (spectral_bits(db, low, direction, omega),
          spectral_bits(queries, low, direction, omega))


def pairwise_scatter(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
  """X_l^T S X_l [dims, dims] for S_ij = +1 when items i and j share a label,
  -1 otherwise, without forming the [l, l] matrix S.

  Items with the same label row have the same row of S, so with Z [g, dims]
  the sums of x over each of the g distinct label rows,
  X_l^T S X_l = Z^T S_g Z with S_g [g, g] between the distinct rows
  (g = classes for single-label data).

  Args:
    x: [l, dims] the labelled items' features; rows: [l, classes] their labels.
  """
  distinct, group = np.unique(rows, axis=0, return_inverse=True)
  sums = np.zeros((len(distinct), x.shape[1]))
  np.add.at(sums, group.ravel(), x)
  similar = np.where(distinct @ distinct.T > 0, 1.0, -1.0)
  return sums.T @ similar @ sums


# eta: 0.01 lets the label term lead once labels are plentiful (its
# eigenvalues are ~0.1 of the largest variance at level 1.0 on digits), the
# variance term filling the directions beyond the labels' rank; on Snippets
# p@100 at levels 0.1 / 1.0 was 0.33 / 0.37 at eta 0.01 against 0.32 / 0.34
# at 1.0 (seeds 10, 11); on digits (search split 1) all of 1e-3 .. 0.3 gave
# 0.39 - 0.41.
@register_fitted("ssh", weights=dict(eta=0.01))
@one_blas_thread
def ssh(dataset, labelled, rng, hp, options, bits):
  """Semi-supervised hashing (Wang, Kumar and Chang, "Semi-supervised hashing
  for large-scale search", TPAMI 2012 / CVPR 2010), the orthogonal-projection
  solution.

  With X the centred database and X_l its labelled items, the projections
  W [r, bits] are the top eigenvectors of the adjusted covariance
      M = X_l^T S X_l / n^2 + eta * X^T X / n,
  S_ij = +1 for labelled pairs that share a label, -1 otherwise: the
  empirical fitness of the codes on the labelled pairs plus eta times the
  variance of the projections as a regulariser; code = 1[X W > 0]. Dividing
  both terms by the database size n (the paper's eta is this eta * n) makes
  eta independent of the dataset's size while keeping the paper's
  dependence on the number of labelled items l: the supervised term grows
  as (l / n)^2, so the codes respond to the labelled fraction. Only the
  labels of the run's labelled items are read; with none, this is PCA
  hashing.
  """
  db, queries = features(dataset, rng, bits)
  need_directions("ssh", bits, db.shape[1])
  n = len(db)
  keep = np.flatnonzero(np.asarray(labelled) > 0)
  adjusted = hp["eta"] * db.T @ db / n
  if len(keep):
    adjusted += pairwise_scatter(db[keep], labelled_rows(dataset, labelled)) / n**2
  _, w = top_eigenvectors(adjusted, bits)
  return to_bits(db @ w), to_bits(queries @ w)


def cca(x: np.ndarray, y: np.ndarray, k: int, ridge: float):
  """Regularised canonical correlation analysis of two views.

  Solves C_xy C_yy^-1 C_yx w = rho^2 (C_xx + ridge_x I) w for the top k
  generalised eigenvectors, normalised so that w^T (C_xx + ridge_x I) w = 1;
  each regulariser is `ridge` times its view's mean variance (the label
  view of one-hot rows is singular without it).

  Args:
    x: [items, dx], y: [items, dy], both centred.
  Returns:
    (correlations rho [k], directions [dx, k]).
  """
  def covariance(a, b):
    return a.T @ b / len(a)

  def regularised(c):
    return c + ridge * max(np.trace(c) / len(c), 1e-12) * np.eye(len(c))

  cxx, cyy, cxy = regularised(covariance(x, x)), regularised(covariance(y, y)), covariance(x, y)
  between = cxy @ np.linalg.solve(cyy, cxy.T)
  between = (between + between.T) / 2  # symmetric up to rounding
  values, vectors = scipy.linalg.eigh(between, cxx)
  order = np.argsort(-values, kind="stable")[:k]
  return np.sqrt(np.clip(values[order], 0.0, None)), fix_signs(vectors[:, order])


# ridge: 0.1 of the mean variance; on digits (search split 1, seeds 10-12)
# p@100 at levels 0.1 / 1.0 was 0.81 / 0.88 against 0.73 / 0.88 at 1e-4
# (fewer labelled items, more to regularise); on Snippets 0.58 / 0.64
# against 0.56 / 0.63.
@register_fitted("cca_itq", weights=dict(ridge=0.1))
@one_blas_thread
def cca_itq(dataset, labelled, rng, hp, options, bits):
  """CCA followed by iterative quantisation (Gong, Lazebnik, Gordo and
  Perronnin, "Iterative quantization: a Procrustean approach to learning
  binary codes for large-scale image retrieval", TPAMI 2013, section 3.2;
  Gong and Lazebnik, CVPR 2011).

  CCA between the labelled items' features and their label rows (one-hot,
  or multi-hot for multi-label data) gives `bits` directions W, each
  scaled by its canonical correlation as the paper does (directions beyond
  the label view's rank carry ~0 correlation and so little weight); ITQ
  rotates the projections of the whole centred database; code =
  1[X W R > 0]. `ridge` regularises both covariances. Only the labels of
  the run's labelled items are read; with fewer than two labelled items it
  falls back to PCA-ITQ.
  """
  db, queries = features(dataset, rng, bits)
  need_directions("cca_itq", bits, db.shape[1])
  keep = np.flatnonzero(np.asarray(labelled) > 0)
  if len(keep) < 2:
    projection = principal_directions(db, bits)
  else:
    x = db[keep] - db[keep].mean(axis=0)
    y = labelled_rows(dataset, labelled)
    rho, directions = cca(x, y - y.mean(axis=0), bits, hp["ridge"])
    projection = directions * rho
  rotation, _ = itq(db @ projection, rng)
  return (to_bits(db @ projection @ rotation),
          to_bits(queries @ projection @ rotation))
