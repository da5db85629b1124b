"""Each loss term against a closed form or a plain double loop."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashvae.core import losses, sparse
from hashvae.core.sparse import SparseRows

rng = np.random.default_rng(0)


def np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_softmax_reconstruction_matches_hand_computation():
  logits = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]], np.float32)
  targets = np.array([[0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.5, 0.5]], np.float32)
  got = losses.softmax_reconstruction(logits, targets)
  z = math.log(sum(math.exp(v) for v in (1, 2, 3, 4)))
  np.testing.assert_allclose(got, [math.log(4), z - 3.5], rtol=1e-6)


def test_softmax_reconstruction_matches_log_softmax_for_large_logits():
  logits = rng.normal(size=(3, 50)).astype(np.float32) * 30.0
  targets = rng.random((3, 50)).astype(np.float32) * (rng.random((3, 50)) < 0.3)
  want = -(targets * np_log_softmax(logits.astype(np.float64))).sum(-1)
  np.testing.assert_allclose(losses.softmax_reconstruction(logits, targets),
                             want, rtol=1e-5)


def test_sparse_softmax_reconstruction_equals_the_dense_one():
  dims = 40
  targets = rng.random((4, dims)).astype(np.float32) * (rng.random((4, dims)) < 0.2)
  targets[2] = 0.0  # an empty row: loss 0
  width = int((targets != 0).sum(1).max())
  indices = np.full((4, width), dims, np.int32)  # dims = padding
  values = np.zeros((4, width), np.float32)
  for i, row in enumerate(targets):
    cols = np.flatnonzero(row)
    indices[i, :len(cols)], values[i, :len(cols)] = cols, row[cols]
  logits = jnp.asarray(rng.normal(size=(4, dims)).astype(np.float32) * 5.0)
  dense = lambda z: losses.softmax_reconstruction(z, targets)
  rows = SparseRows(jnp.asarray(indices), jnp.asarray(values))
  sparse = lambda z: losses.softmax_reconstruction(z, rows)
  np.testing.assert_allclose(sparse(logits), dense(logits), rtol=1e-6)
  assert sparse(logits)[2] == 0.0
  grad = lambda f: jax.grad(lambda z: jnp.sum(f(z)))(logits)
  np.testing.assert_allclose(grad(sparse), grad(dense), rtol=1e-5, atol=1e-7)


def test_gaussian_reconstruction_reads_sparse_targets_as_dense():
  targets = np.zeros((3, 6), np.float32)
  targets[0, [1, 4]], targets[2, 5] = (0.5, 2.0), 3.0
  recon = rng.normal(size=(3, 6)).astype(np.float32)
  rows = SparseRows(*map(jnp.asarray, sparse.padded_rows(targets)))
  np.testing.assert_allclose(losses.gaussian_reconstruction(recon, rows),
                             0.5 * ((recon - targets) ** 2).sum(-1), rtol=1e-6)


def test_softmax_reconstruction_zero_target_row_is_zero():
  got = losses.softmax_reconstruction(rng.normal(size=(2, 5)), np.zeros((2, 5)))
  np.testing.assert_array_equal(got, [0.0, 0.0])


def test_gaussian_kl_matches_general_two_gaussian_formula():
  mu = rng.normal(size=(4, 3))
  logvar = rng.normal(size=(4, 3))
  sigma2 = np.exp(logvar)
  # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2 per dimension.
  expected = (-0.5 * np.log(sigma2) + (sigma2 + mu**2) / 2 - 0.5).sum(-1)
  np.testing.assert_allclose(losses.gaussian_kl(mu, logvar), expected, rtol=1e-5)
  np.testing.assert_allclose(losses.gaussian_kl(np.zeros((1, 3)), np.zeros((1, 3))),
                             [0.0], atol=1e-7)


def test_bernoulli_kl_to_uniform_matches_definition_and_stays_finite():
  logits = rng.normal(size=(5, 6)) * 3
  q = 1 / (1 + np.exp(-logits))
  expected = (q * np.log(q / 0.5) + (1 - q) * np.log((1 - q) / 0.5)).sum(-1)
  np.testing.assert_allclose(losses.bernoulli_kl_uniform(logits), expected,
                             rtol=1e-5, atol=1e-6)
  saturated = losses.bernoulli_kl_uniform(np.array([[200.0, -200.0]], np.float32))
  np.testing.assert_allclose(saturated, [2 * math.log(2)], rtol=1e-6)
  np.testing.assert_allclose(losses.bernoulli_kl_uniform(np.zeros((1, 4))), [0.0],
                             atol=1e-7)


def test_softmax_cross_entropy_is_zero_for_unlabelled_rows():
  logits = rng.normal(size=(3, 4))
  rows = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]], np.float32)
  expected = -(rows * np_log_softmax(logits)).sum(-1)
  np.testing.assert_allclose(losses.softmax_cross_entropy(logits, rows),
                             expected, rtol=1e-5)
  assert float(losses.softmax_cross_entropy(logits, rows)[1]) == 0.0


def test_sigmoid_cross_entropy_matches_binary_ce_and_masks():
  logits = rng.normal(size=(3, 4))
  rows = np.array([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]], np.float32)
  labelled = np.array([1.0, 0.0, 1.0], np.float32)
  p = 1 / (1 + np.exp(-logits))
  bce = -(rows * np.log(p) + (1 - rows) * np.log(1 - p)).sum(-1) * labelled
  np.testing.assert_allclose(losses.sigmoid_cross_entropy(logits, rows, labelled),
                             bce, rtol=1e-5)


def pairwise_double_loop(codes, s, margin, w, reduction):
  b, k = codes.shape
  total, weight = 0.0, 0.0
  for i in range(b):
    for j in range(b):
      d = float(((codes[i] - codes[j]) ** 2).sum())
      term = s[i, j] * d + (1 - s[i, j]) * max(margin - d, 0.0)
      total += w[i, j] * term
      weight += w[i, j]
  if reduction == "mean":
    total /= weight
  return total / k


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_pairwise_term_matches_double_loop(reduction):
  codes = rng.uniform(size=(7, 6)).astype(np.float32)
  s = rng.uniform(size=(7, 7)).astype(np.float32)
  w = (rng.uniform(size=(7, 7)) > 0.3).astype(np.float32)
  got = losses.pairwise_hamming_margin(codes, s, 2.0, w, reduction)
  np.testing.assert_allclose(got, pairwise_double_loop(codes, s, 2.0, w, reduction),
                             rtol=1e-5)
  ones = np.ones((7, 7), np.float32)
  np.testing.assert_allclose(
      losses.pairwise_hamming_margin(codes, s, 2.0, reduction=reduction),
      pairwise_double_loop(codes, s, 2.0, ones, reduction), rtol=1e-5)


def test_pairwise_term_is_zero_for_identical_codes_with_full_similarity():
  codes = np.tile(rng.uniform(size=(1, 5)), (4, 1)).astype(np.float32)
  assert float(losses.pairwise_hamming_margin(codes, np.ones((4, 4)), 5 / 3)) == 0.0


def test_pairwise_hinge_pushes_dissimilar_close_codes_apart():
  codes = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
  # S = 0: every pair adds relu(m - D); D(0,1) = 1, D(i,i) = 0; m = 1.5.
  got = losses.pairwise_hamming_margin(codes, np.zeros((2, 2)), 1.5)
  np.testing.assert_allclose(got, (1.5 + 1.5 + 0.5 + 0.5) / 3, rtol=1e-6)


def test_similarities():
  y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]], np.float32)
  np.testing.assert_array_equal(losses.label_similarity(y), y @ y.T)
  binary = np.asarray(losses.label_similarity(y, binary=True))
  assert binary.max() == 1.0 and binary[3, 3] == 1.0 and binary[2, 2] == 0.0
  p = rng.uniform(size=(3, 4))
  np.testing.assert_allclose(losses.prediction_similarity(p), p @ p.T, rtol=1e-5)
  q = p / p.sum(-1, keepdims=True)
  np.testing.assert_allclose(losses.prediction_similarity(p, normalise=True), q @ q.T,
                             rtol=1e-5)
  q = p ** 3 / (p ** 3).sum(-1, keepdims=True)
  np.testing.assert_allclose(losses.prediction_similarity(p, normalise=True, power=3.0),
                             q @ q.T, rtol=1e-5)


def test_normalised_prediction_similarity_pushes_unsure_pairs_apart():
  # Sigmoid outputs: a sure single-label item, a sure two-label item, and
  # two flat, unsure items. The threshold between pulled and pushed is 1/2.
  p = np.array([[0.99, 0.01, 0.01, 0.01], [0.99, 0.99, 0.01, 0.01],
                [0.3, 0.3, 0.3, 0.3], [0.2, 0.2, 0.2, 0.2]], np.float32)
  s = np.asarray(losses.prediction_similarity(p, normalise=True))
  assert s.min() >= 0.0 and s.max() <= 1.0
  assert s[0, 0] > 0.9 and s[2, 3] == pytest.approx(0.25, rel=1e-5)
  assert s[0, 1] == pytest.approx(0.5, abs=0.02)  # one of two labels shared


def test_similarity_power_sharpens_sure_rows_and_keeps_flat_rows_apart():
  # A fairly sure single-label item among 22 classes: its 21 small outputs
  # outweigh its top class after row sums, so two such items get S = 0.08,
  # far below the pull threshold 1/2; a power of 3 lifts them to 0.83. Flat
  # rows stay at 1 / classes whatever the power.
  sure = np.full(22, 0.1, np.float32)
  sure[0] = 0.6
  p = np.stack([sure, sure, np.full(22, 0.3, np.float32)])
  plain = np.asarray(losses.prediction_similarity(p, normalise=True))
  sharp = np.asarray(losses.prediction_similarity(p, normalise=True, power=3.0))
  assert plain[0, 1] < 0.5 < sharp[0, 1]
  assert plain[2, 2] == pytest.approx(1 / 22, rel=1e-5)
  assert sharp[2, 2] == pytest.approx(1 / 22, rel=1e-5)
  # A power far past float32's range for these values: flat rows still give
  # 1 / classes and sure rows tend to 1[same top class].
  p = np.concatenate([p, np.full((1, 22), 1e-3, np.float32)])
  hard = np.asarray(losses.prediction_similarity(p, normalise=True, power=60.0))
  assert hard[3, 3] == pytest.approx(1 / 22, rel=1e-5)
  assert hard[0, 1] == pytest.approx(1.0, abs=1e-4)
  with pytest.raises(ValueError, match="power must be >= 1"):
    losses.prediction_similarity(p, normalise=True, power=0.5)


def test_gaussian_reconstruction_is_half_squared_error():
  a, b = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
  np.testing.assert_allclose(losses.gaussian_reconstruction(a, b),
                             0.5 * ((a - b) ** 2).sum(-1), rtol=1e-5)


def test_distances_never_negative():
  codes = jnp.asarray(np.random.default_rng(3).uniform(size=(5, 16)) * 1e3,
                      jnp.float32)
  d = losses.squared_distances(codes)
  assert float(jnp.min(d)) >= 0.0
  # The diagonal is a difference of ~1e7-sized float32 terms: zero up to
  # their rounding (a few ulps of the largest squared norm).
  scale = float(jnp.max(jnp.sum(jnp.square(codes), -1)))
  np.testing.assert_allclose(jnp.diag(d), 0.0, atol=4 * scale * 2.0 ** -23)
