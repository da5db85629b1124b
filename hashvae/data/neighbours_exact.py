r"""Similarity weights of the training items and the exact top-k search.

Every similarity here is an inner product of a query row and a document row,
`score(i, j) = q_i . d_j`, with `q` and `d` built from the same features:

  bm25    q_i[t] = tf(i, t), the query's term count, and
          d_j[t] = idf(t) tf(j, t) (k1 + 1) / (tf(j, t) + k1 (1 - b + b |j| / avgdl)),
          idf(t) = ln(1 + (n - df(t) + 0.5) / (df(t) + 0.5)),
          |j| = sum_t tf(j, t), avgdl the mean of |j|, n items, df(t) the
          items holding term t. So q_i . d_j is Okapi BM25 of document j for
          the document i as the query, each distinct query term counted
          tf(i, t) times (the k3 -> inf limit of Okapi's query-term factor).
          The idf is the non-negative form: a term in more than half the
          items would get a negative weight under ln((n - df + .5)/(df + .5)),
          ranking an item that shares only common terms below one that
          shares none.
  tfidf   q = d = rows of tf(i, t) idf(t), idf(t) = ln((1 + n) / (1 + df(t))) + 1
          (the smooth idf of the text loaders), each row l2-normalised: the
          cosine of tf-idf rows.
  cosine  q = d = the rows as given (dense or CSR), l2-normalised.

The stored values of a CSR matrix are read as the term frequencies tf.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from hashvae.data.dataset import row_of_entry, with_values

SIMILARITIES = ("bm25", "tfidf", "cosine")
# Bytes one (query, item) score costs during a block: the dense score (float64,
# then float32),
# the sparse product it is built from (value and column index) and the
# comparison mask of the top-k selection.
BYTES_PER_SCORE = 32


def document_frequencies(tf: scipy.sparse.csr_matrix) -> np.ndarray:
  """[dims] how many rows hold each column (CSR without stored zeros)."""
  return np.bincount(tf.indices, minlength=tf.shape[1])


def bm25_rows(tf: scipy.sparse.csr_matrix, k1: float, b: float):
  """[items, dims] term frequencies -> (queries, documents), CSR float64 on
  the same nonzeros: the raw counts, and the BM25 document weights."""
  n = tf.shape[0]
  df = document_frequencies(tf)
  idf = np.log1p((n - df + 0.5) / (df + 0.5))
  values = tf.data.astype(np.float64)
  lengths = np.bincount(row_of_entry(tf), weights=values, minlength=n)
  norm = k1 * (1 - b + b * lengths / lengths.mean())
  weights = idf[tf.indices] * values * (k1 + 1) / (values + norm[row_of_entry(tf)])
  return with_values(tf, values), with_values(tf, weights)


def l2_rows(x):
  """Rows scaled to unit length, float64 (CSR stays CSR; rows are nonzero)."""
  if scipy.sparse.issparse(x):
    values = x.data.astype(np.float64)
    norms = np.sqrt(np.bincount(row_of_entry(x), weights=values**2, minlength=x.shape[0]))
    return with_values(x, values / norms[row_of_entry(x)])
  x = np.asarray(x, dtype=np.float64)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def tfidf_rows(tf: scipy.sparse.csr_matrix) -> scipy.sparse.csr_matrix:
  n = tf.shape[0]
  idf = np.log((1 + n) / (1 + document_frequencies(tf))) + 1
  return l2_rows(with_values(tf, tf.data * idf[tf.indices]))


def similarity_rows(features, similarity: str, k1: float = 1.2, b: float = 0.75):
  """(queries, documents) [items, dims] whose row inner products are the
  similarity (see the module docstring). Inputs are checked by the caller."""
  if similarity == "bm25":
    return bm25_rows(features, k1, b)
  rows = tfidf_rows(features) if similarity == "tfidf" else l2_rows(features)
  return rows, rows


def block_rows(items: int, memory_mb: float) -> int:
  """Query rows per block so that one block's scores fit `memory_mb`."""
  return max(1, int(memory_mb * 2**20) // (BYTES_PER_SCORE * items))


def top_k(scores: np.ndarray, k: int):
  """[rows, items] scores -> ([rows, k] int32 columns, [rows, k] scores),
  by decreasing score, equal scores by lower column.

  argpartition finds each row's k-th largest score; every entry at least as
  large is a candidate (more than k when the k-th score is tied), and a
  sort of the candidates by (-score, column) picks the first k."""
  rows = scores.shape[0]
  kth_column = np.argpartition(-scores, k - 1, axis=1)[:, k - 1]
  kth = scores[np.arange(rows), kth_column]
  row, col = np.nonzero(scores >= kth[:, None])
  value = scores[row, col]
  order = np.lexsort((col, -value, row))
  start = np.searchsorted(row[order], np.arange(rows))
  pick = order[start[:, None] + np.arange(k)]
  return col[pick].astype(np.int32), value[pick]


def exact_top_k(queries, documents, k: int, rows=None, columns=None,
                memory_mb: float = 256.0):
  """The k most similar documents of each query, by brute force in blocks.

  score(i, j) = queries[i] . documents[j] for every searched j != rows[i],
  computed a block of query rows at a time (a sparse or dense matrix
  product), so that the scores held at once stay within `memory_mb`.

  Args:
    queries: [items, dims] CSR or dense, the query weights of every item.
    documents: [items, dims] the same kind, the document weights.
    k: neighbours per query, below items.
    rows: [queries] the items to search for (default all); item rows[i]
      is left out of its own neighbours.
    columns: [searched] ascending, the items searched (default all).
    memory_mb: the budget for one block's scores.
  Returns:
    indices [queries, min(k, searched)] int32 and similarities float32 of
    the same shape, by decreasing similarity, ties (equal float32
    similarities) by lower index; a query's own item, when searched and
    needed to fill a row, comes last with similarity -inf.
  """
  items = documents.shape[0]
  rows = np.arange(items) if rows is None else np.asarray(rows)
  if columns is None:
    columns = np.arange(items)
  else:
    columns = np.asarray(columns)
    documents = documents[columns]
  transposed = documents.T.tocsr() if scipy.sparse.issparse(documents) else documents.T
  step = block_rows(len(columns), memory_mb)
  width = min(k, len(columns))
  indices = np.empty((len(rows), width), np.int32)
  similarities = np.empty((len(rows), width), np.float32)
  for start in range(0, len(rows), step):
    block = rows[start:start + step]
    scores = queries[block] @ transposed
    # Ranked in float32, the table's type: scores equal in theory but summed
    # in another order differ in float64's last bits, and would not tie.
    scores = (scores.toarray() if scipy.sparse.issparse(scores) else scores).astype(np.float32)
    position = np.minimum(np.searchsorted(columns, block), len(columns) - 1)
    own = np.flatnonzero(columns[position] == block)
    scores[own, position[own]] = -np.inf  # never its own neighbour
    found, best = top_k(scores, width)
    indices[start:start + step] = columns[found]
    similarities[start:start + step] = best
  return indices, similarities
