"""Rankings in which the query brings its real-valued code scores and the
database keeps its bits.

A query's code is h = 1[s > 0] for its scores s (`code_scores` of every
network: a Bernoulli bit's logit, a Gaussian code's mean). Read as the
logits of independent bits, p = sigmoid(s), the expected Hamming distance
between a code drawn from the query and a database code b is

    E|z - b| = sum_j |p_j - b_j| = sum_j m_j + sum_{j: b_j != h_j} w_j,
    m_j = min(p_j, 1 - p_j),   w_j = |2 p_j - 1| = tanh(|s_j| / 2),

so, up to a constant per query, it is the Hamming distance with the bits
weighted by the query's confidence w: a differing bit the query is unsure
of costs little. Two rankings follow:

- "tie_break": Hamming distance first, then the weighted distance within a
  distance, then database position. The Hamming top of the list is kept;
  only the order inside each distance (database position under the study's
  protocol) changes.
- "asymmetric": the weighted distance alone, then database position.

The weighted distance of every pair is one matrix product,
    sum_j w_j (h_j xor b_j) = sum_j w_j h_j + b . (w * (1 - 2 h)),
and the top k is one sort with three keys per chunk of queries: the cost
is queries x items, fine for evaluation at benchmark sizes; the index
re-ranks the Hamming candidates of each query instead, in numpy
(`ranking.rerank_candidates`: the search path imports no jax).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hashvae.retrieval.ranking import RANKINGS


def bit_weights(scores):
  """[..., bits] code scores -> the query's confidence per bit, |2p - 1|."""
  return jnp.tanh(jnp.abs(scores) / 2)


def _weighted_distances(scores, db_codes):
  """[chunk, bits] scores x [items, bits] {0, 1} floats -> [chunk, items]
  confidence-weighted Hamming distances, and the plain ones."""
  hard = (scores > 0).astype(jnp.float32)
  weights = bit_weights(scores)
  precision = lax.Precision.HIGHEST
  weighted = (jnp.sum(weights * hard, -1, keepdims=True)
              + jnp.matmul(weights * (1 - 2 * hard), db_codes.T, precision=precision))
  hamming = (jnp.sum(hard, -1, keepdims=True)
             + jnp.matmul(1 - 2 * hard, db_codes.T, precision=precision))
  return weighted, jnp.round(hamming).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("ranking", "k", "chunk"))
def _top_k(scores, db_codes, *, ranking: str, k: int, chunk: int):
  items = db_codes.shape[0]
  db = db_codes.astype(jnp.float32)
  position = jnp.arange(items, dtype=jnp.int32)

  def one(block):
    weighted, hamming = _weighted_distances(block, db)
    first = hamming if ranking == "tie_break" else jnp.zeros_like(hamming)
    positions = jnp.broadcast_to(position, first.shape)
    return lax.sort((first, weighted, positions), dimension=1, num_keys=3)[2][:, :k]

  queries = scores.shape[0]
  padded = -(-queries // chunk) * chunk
  blocks = jnp.pad(scores, ((0, padded - queries), (0, 0))).reshape(-1, chunk,
                                                                    scores.shape[1])
  return lax.map(one, blocks).reshape(padded, k)[:queries]


def top_k(query_scores, db_codes, k: int, ranking: str,
          memory_budget_bytes: int = 256 * 2**20) -> np.ndarray:
  """[queries, bits] float scores, [items, bits] {0, 1} codes -> [queries, k]
  int32 positions under `ranking` (one of RANKINGS), nearest first."""
  if ranking not in RANKINGS:
    raise ValueError(f"ranking {ranking!r}: expected one of {RANKINGS}")
  items = db_codes.shape[0]
  if not 1 <= k <= items:
    raise ValueError(f"K must lie in [1, {items}] (the database size), got {k}")
  chunk = int(max(1, min(len(query_scores), memory_budget_bytes // (16 * items))))
  return np.asarray(_top_k(jnp.asarray(query_scores, jnp.float32),
                           jnp.asarray(db_codes, jnp.uint8), ranking=ranking, k=int(k),
                           chunk=chunk))


def precision_at(top, query_labels, db_labels) -> float:
  """Mean share of relevant items in each query's list ([queries, k]
  positions): same label, or a shared one for multi-hot rows."""
  query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
  found = db_labels[top]
  if query_labels.ndim == 1:
    relevant = found == query_labels[:, None]
  else:
    relevant = np.any((found > 0) & (query_labels[:, None, :] > 0), axis=-1)
  return float(relevant.mean())


def reranked_precision(query_scores, query_codes, db_codes, query_labels, db_labels, ks,
                       rankings) -> dict:
  """{"p@K_<ranking>": value} for each K of `ks` and each of `rankings`
  (none: {}): the extra columns of `metrics.evaluate(..., query_scores=,
  rankings=)`; the scores must be shaped like `query_codes`."""
  if rankings and (query_scores is None or np.shape(query_scores) != query_codes.shape):
    raise ValueError(f"rankings {tuple(rankings)} need query_scores shaped like the "
                     f"query codes {query_codes.shape}, got "
                     f"{None if query_scores is None else np.shape(query_scores)}")
  out = {}
  for ranking in rankings:
    top = top_k(query_scores, db_codes, max(ks), ranking)
    for k in ks:
      out[f"p@{k}_{ranking}"] = precision_at(top[:, :k], query_labels, db_labels)
  return out
