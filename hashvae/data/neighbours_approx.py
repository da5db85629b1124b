"""The approximate top-k search for large corpora, with faiss, and its recall.

Why faiss and not pynndescent: faiss is already this project's optional
extra (`pip install .[faiss]`, the binary index export), it searches a set
of queries against a separate database, which BM25 needs (its query and
document weights differ, see neighbours_exact), and it runs without a JIT
compile; pynndescent builds one symmetric k-NN graph over a single set of
vectors and compiles its numba kernels in each new process. faiss takes
dense vectors only, hence the projection below.

The search in three steps:
1. Projection. Sparse rows, or rows wider than `dims`, are projected on the
   top `dims` right singular vectors V of the document matrix D (truncated
   SVD of a seeded sample of SVD_SAMPLE rows): q' = q V, d' = d V, so
   q' . d' = q V V^T d^T approximates q . d. Dense rows of at most `dims`
   columns are used as they are.
2. Candidates. A faiss HNSW graph over the d' (inner-product metric) gives
   each q' its `candidates` best d' (+1, for the item itself).
3. Exact rescoring. Each candidate's similarity is recomputed exactly from
   the unprojected rows (q . d, the exact BM25 / tf-idf cosine / cosine), and
   the k best kept, ties by lower index.

What is exact: every similarity in the table (step 3) is the exact one, and
for BM25 the inner product q . d itself is exactly BM25 (query weights =
the query's term counts, document weights = the BM25 term weights). What is
approximate: which items are found (steps 1-2); an item whose true
neighbour was not among its candidates gets a lower-ranked one instead.
Items for which fewer than k candidates came back are searched exactly.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from hashvae.data.neighbours_exact import BYTES_PER_SCORE, exact_top_k

INSTALL = "approximate neighbours need faiss, an optional extra: pip install .[faiss]"
HNSW_LINKS = 32  # graph degree M: recall against memory and build time
HNSW_BUILD_DEPTH = 80  # efConstruction
SVD_SAMPLE = 20_000  # documents the projection is fitted on


def load_faiss():
  """The faiss module, or an ImportError saying how to install it."""
  try:
    import faiss
  except ImportError as e:
    raise ImportError(INSTALL) from e
  return faiss


def project(queries, documents, dims: int, seed: int):
  """(queries, documents) -> float32 dense [items, <= dims] whose inner
  products approximate the originals (see the module docstring)."""
  if not scipy.sparse.issparse(documents) and documents.shape[1] <= dims:
    return (np.ascontiguousarray(queries, np.float32),
            np.ascontiguousarray(documents, np.float32))
  from sklearn.decomposition import TruncatedSVD

  # The top singular directions of a random sample of the documents: the
  # projection's fit then costs the same for any corpus size.
  rng = np.random.default_rng(seed)
  items = documents.shape[0]
  sample = np.sort(rng.choice(items, min(items, SVD_SAMPLE), replace=False))
  dims = min(dims, documents.shape[1] - 1)
  svd = TruncatedSVD(dims, random_state=seed).fit(documents[sample])
  basis = svd.components_.T  # [dims_in, dims]
  return (np.ascontiguousarray(queries @ basis, np.float32),
          np.ascontiguousarray(documents @ basis, np.float32))


def pair_scores(queries, documents, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
  """[pairs] float64 queries[rows] . documents[columns], exactly."""
  if scipy.sparse.issparse(documents):
    return np.asarray(queries[rows].multiply(documents[columns]).sum(axis=1)).ravel()
  return np.einsum("pd,pd->p", queries[rows], documents[columns])


def rescore(queries, documents, found: np.ndarray, k: int, memory_mb: float):
  """[items, c] candidate items (-1: none) -> the exact top k of each row
  among them: indices [items, k] int32 (-1 where fewer than k), similarities
  [items, k] float32."""
  items, c = found.shape
  indices = np.full((items, k), -1, np.int32)
  similarities = np.full((items, k), -np.inf, np.float32)
  width = queries.nnz / items if scipy.sparse.issparse(queries) else queries.shape[1]
  step = max(1, int(memory_mb * 2**20) // int(BYTES_PER_SCORE * c * (width + 1)))
  for start in range(0, items, step):
    block = found[start:start + step]
    rows = np.repeat(np.arange(start, start + len(block)), c)
    columns = block.ravel()
    valid = (columns >= 0) & (columns != rows)
    scores = np.full(len(columns), -np.inf)
    scores[valid] = pair_scores(queries, documents, rows[valid], columns[valid])
    scores = scores.reshape(block.shape).astype(np.float32)  # ties as exact_top_k ranks them
    # Sort each row by (-score, index); invalid entries (-inf) go last.
    order = np.lexsort((block, -scores), axis=1)[:, :k]
    best = np.take_along_axis(scores, order, 1)
    indices[start:start + step] = np.where(np.isfinite(best),
                                           np.take_along_axis(block, order, 1), -1)
    similarities[start:start + step] = best
  return indices, similarities


def approximate_top_k(queries, documents, k: int, *, dims: int = 256, candidates: int = 0,
                      seed: int = 0, memory_mb: float = 256.0):
  """The k most similar documents of each item, found approximately.

  Args:
    queries, documents: [items, dims_in] CSR or dense, as for exact_top_k
      (every item is a query and a document; an item is never its own
      neighbour).
    k: neighbours per item.
    dims: the projection's width (see the module docstring).
    candidates: items rescored per query; 0: max(10 k, 100).
    seed: the projection's random state.
    memory_mb: the budget of one rescoring block.
  Returns:
    indices [items, k] int32, similarities [items, k] float32 (exact values),
    by decreasing similarity, ties by lower index.
  """
  faiss = load_faiss()
  items = documents.shape[0]
  c = min(candidates or max(10 * k, 100), items - 1) + 1  # +1: the item finds itself
  q, d = project(queries, documents, dims, seed)
  index = faiss.IndexHNSWFlat(d.shape[1], HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
  index.hnsw.efConstruction = HNSW_BUILD_DEPTH
  index.add(d)
  index.hnsw.efSearch = max(2 * c, 64)
  _, found = index.search(q, c)
  indices, similarities = rescore(queries, documents, found, k, memory_mb)
  short = np.flatnonzero((indices < 0).any(axis=1))
  if len(short):
    indices[short], similarities[short] = exact_top_k(queries, documents, k, rows=short,
                                                      memory_mb=memory_mb)
  return indices, similarities


def recall_at_k(approximate: np.ndarray, exact: np.ndarray) -> float:
  """Mean over items of |approximate_i & exact_i| / k, for [items, k]
  neighbour indices (an exact neighbour tied with the k-th may be swapped
  for another of equal similarity, which counts as a miss)."""
  if approximate.shape != exact.shape:
    raise ValueError(f"recall_at_k: tables of shapes {approximate.shape} and {exact.shape}")
  hits = (approximate[:, :, None] == exact[:, None, :]).any(axis=2)
  return float(hits.mean())
