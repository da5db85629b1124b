"""Loss terms as pure functions of arrays (METHOD.md section 3).

Per-item terms return [batch]; the pairwise term returns a scalar. Labels are
passed as observed label rows Y [batch, classes]: one-hot (or multi-hot) for a
labelled item, all zeros for an unlabelled one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hashvae.core.sparse_rows import SparseRows, to_dense


def softmax_reconstruction(recon_logits, targets):
  """-sum_d t_d log softmax(logits)_d. [batch, dims] -> [batch].

  targets: [batch, dims], or a sparse.SparseRows batch of them (padded
  (column, value) lists; only their nonzeros are read). Computed as
  (sum_d t_d) logsumexp(logits) - sum_d t_d logits_d: the same value,
  without materialising the [batch, dims] log-probabilities.
  """
  if isinstance(targets, SparseRows):
    picked = jnp.take_along_axis(recon_logits, targets.indices, axis=-1, mode="fill",
                                 fill_value=0)
    total, dot = jnp.sum(targets.values, -1), jnp.sum(targets.values * picked, -1)
  else:
    total, dot = jnp.sum(targets, -1), jnp.sum(targets * recon_logits, -1)
  return total * jax.nn.logsumexp(recon_logits, axis=-1) - dot


def gaussian_reconstruction(recon, targets):
  """Squared error (a unit-variance Gaussian decoder, up to constants).

  [batch, dims] (targets also as a sparse.SparseRows batch) -> [batch]. The
  corrected decoder for real-valued features, where the softmax
  cross-entropy has no meaning.
  """
  targets = to_dense(targets, recon.shape[-1])
  return 0.5 * jnp.sum(jnp.square(recon - targets), axis=-1)


def gaussian_kl(mu, logvar):
  """KL(N(mu, exp(logvar)) || N(0, I)). [batch, bits] x2 -> [batch]."""
  return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar), -1)


def bernoulli_kl_uniform(logits):
  """KL(Bernoulli(sigmoid(logits)) || Bernoulli(1/2)) summed over bits.

  K log 2 + sum_k [q log q + (1-q) log(1-q)], with the logs taken as
  log-sigmoids so saturated logits stay finite. [batch, bits] -> [batch].
  """
  return jnp.sum(jnp.log(2.0) + negative_bernoulli_entropy(logits), axis=-1)


def negative_bernoulli_entropy(logits):
  """-H(Bernoulli(sigmoid(l))) in nats, elementwise, with the logs taken as
  log-sigmoids so saturated logits stay finite. [...] -> [...]."""
  q = jax.nn.sigmoid(logits)
  return q * jax.nn.log_sigmoid(logits) + (1 - q) * jax.nn.log_sigmoid(-logits)


def softmax_cross_entropy(class_logits, label_rows):
  """-sum_c y_c log softmax(logits)_c; zero for an all-zero row.

  [batch, classes] x2 -> [batch]. With multi-hot rows this is the released
  code's single-label path applied to multi-label data (paper parity).
  """
  return -jnp.sum(label_rows * jax.nn.log_softmax(class_logits), axis=-1)


def sigmoid_cross_entropy(class_logits, label_rows, labelled):
  """Binary cross-entropy summed over classes, for multi-label data.

  [batch, classes] x2, labelled [batch] in {0, 1} -> [batch]; zero for
  unlabelled items (their all-zero row would otherwise be a target).
  """
  bce = -(label_rows * jax.nn.log_sigmoid(class_logits)
          + (1 - label_rows) * jax.nn.log_sigmoid(-class_logits))
  return labelled * jnp.sum(bce, axis=-1)


def squared_distances(codes):
  """||b_i - b_j||^2 for every ordered pair. [batch, bits] -> [batch, batch]."""
  norms = jnp.sum(jnp.square(codes), axis=-1)
  gram = codes @ codes.T
  # The expansion can dip below zero by rounding; a distance cannot.
  return jnp.maximum(norms[:, None] + norms[None, :] - 2.0 * gram, 0.0)


def pairwise_hamming_margin(codes, similarity, margin, pair_weights=None,
                            reduction="sum"):
  """The pairwise term: similar pairs pulled together, others pushed past m.

  (1/K) * R_ij w_ij [S_ij D_ij + (1 - S_ij) relu(m - D_ij)], D the squared
  distances of the relaxed codes, K = bits, R a sum over all B^2 ordered
  pairs (reduction="sum", paper parity) or the w-weighted mean
  ("mean", batch-size independent).

  Args:
    codes: [batch, bits] relaxed codes in [0, 1].
    similarity: [batch, batch] S in [0, 1] (larger than 1 is allowed:
      the parity multi-label path counts shared labels).
    margin: scalar m (K / 3 in the study).
    pair_weights: [batch, batch] w, default all ones (every pair, diagonal
      included: paper parity).
    reduction: "sum" or "mean".
  Returns:
    scalar.
  """
  bits = codes.shape[-1]
  d = squared_distances(codes)
  per_pair = similarity * d + (1.0 - similarity) * jax.nn.relu(margin - d)
  if pair_weights is None:
    pair_weights = jnp.ones_like(per_pair)
  total = jnp.sum(pair_weights * per_pair)
  if reduction == "mean":
    total = total / jnp.maximum(jnp.sum(pair_weights), 1.0)
  elif reduction != "sum":
    raise ValueError(f"unknown pair reduction {reduction!r}; known: sum, mean")
  return total / bits


def label_similarity(label_rows, binary=False):
  """S = Y Y^T from observed label rows [batch, classes] -> [batch, batch].

  binary=True gives 1[y_i . y_j > 0] (multi-label data, S in {0, 1}).
  """
  s = label_rows @ label_rows.T
  return (s > 0).astype(s.dtype) if binary else s


def prediction_similarity(probs, normalise=False, power=1.0):
  """S = P P^T from predicted distributions [batch, classes].

  normalise=True first divides each row by its sum, for multi-label
  sigmoid outputs that do not sum to 1: S_ij is then the probability that
  a label drawn from item i's predicted label set equals one drawn from
  j's, in [0, 1], which is what the softmax path's P P^T is on multi-hot
  labels. Flat, unsure predictions give about 1 / classes, so their pairs
  are pushed apart (a cosine would give them about 1 and pull them
  together). `power` >= 1 raises each row to that power before the row
  sums: a confident row's many small outputs then stop diluting its top
  class, while flat rows still give 1 / classes (a large power tends to
  S_ij = 1[same top class]).
  """
  if power < 1:
    raise ValueError(f"similarity power must be >= 1, got {power}")
  if normalise:
    if power != 1:
      # Over the row's maximum first, so that a large power cannot underflow
      # a whole row to zero.
      top = jnp.maximum(jnp.max(probs, axis=-1, keepdims=True), 1e-12)
      probs = (probs / top) ** power
    probs = probs / jnp.maximum(jnp.sum(probs, axis=-1, keepdims=True), 1e-12)
  return probs @ probs.T
