"""The classical (non-gradient) hashing baselines, fitted on the host; the
three that read no labels live here, SSH and CCA-ITQ in
classical_supervised.py.

Each is registered with `register_fitted` and runs in the same sweep as the
trained methods: one call per (seed, level, weights) run with the run's
label mask and a numpy Generator seeded from the run's key, so a run is
exactly reproducible from its seed (every random draw comes from that
Generator, scikit-learn's included).

- `lsh`: random hyperplanes on the input (Charikar 2002).
- `pca_itq`: PCA, then iterative quantisation (Gong and Lazebnik 2011).
- `spectral`: spectral hashing (Weiss, Torralba and Fergus 2008).
- `ssh`: semi-supervised hashing (Wang, Kumar and Chang 2012), sequential
  projections rotated by ITQ by default.
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

import numpy as np

from hashvae.methods.projections import (
  DENSE_MAX_DIMS,
  features,
  itq,
  need_directions,
  one_blas_thread,
  principal_directions,
  sparse_rows,
  to_bits,
)
from hashvae.methods.registry import register_fitted


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
