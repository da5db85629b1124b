"""The approximate top-k search for large corpora, with faiss, and its recall.

An inverted-file search: faiss clusters the items, and each item is scored
exactly against the items of the few clusters nearest to it.

1. Projection. Sparse rows, or rows wider than `dims`, are projected on the
   top `dims` right singular vectors V of the document matrix D (truncated
   SVD of a seeded sample of SVD_SAMPLE rows): q' = q V, d' = d V, so
   q' . d' = q V V^T d^T approximates q . d. Dense rows of at most `dims`
   columns are used as they are. Each row is then l2-normalised.
2. Lists. faiss's spherical k-means splits the d' into `lists` clusters;
   each item's document row joins the list of its nearest centroid, and
   its query row probes the `probes` lists whose centroids are nearest to
   q' (inner product).
3. Exact scoring. Each item is scored against every item of the lists it
   probes with the exact similarity of the unprojected rows (q . d: the
   exact BM25 / tf-idf cosine / cosine, neighbours_exact.exact_top_k on
   those columns), and the k best kept, ties by lower index.

What is exact: every similarity in the table (step 3) is the exact one, and
for BM25 the inner product q . d itself is exactly BM25 (query weights =
the query's term counts, document weights = the BM25 term weights), so the
projection and the clusters are fitted to BM25's own inner product. What is
approximate: which items are searched (steps 1-2); a true neighbour in a
list the item does not probe is replaced by the best one in the lists it
does. The work is about probes / lists of the exact search's. Items whose
probed lists hold fewer than k other items are searched exactly.

Why faiss and not pynndescent: faiss is already this project's optional
extra (`pip install .[faiss]`, the binary index export), its k-means and
nearest-centroid search work on the small dense projection while the
scoring stays on the exact sparse rows, and it needs no JIT compile.
pynndescent (NN-descent on sparse cosine rows, a symmetric similarity, so
BM25 would need rescoring) compiled its numba kernels for tens of seconds in
each new process and, on a 100,000-document synthetic corpus here, took as
long as the exact search.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from hashvae.data.neighbours_exact import exact_top_k

INSTALL = "approximate neighbours need faiss, an optional extra: pip install .[faiss]"
SVD_SAMPLE = 20_000  # documents the projection is fitted on
KMEANS_ITERATIONS = 20


def load_faiss():
  """The faiss module, or an ImportError saying how to install it."""
  try:
    import faiss
  except ImportError as e:
    raise ImportError(INSTALL) from e
  return faiss


def unit_rows(x: np.ndarray) -> np.ndarray:
  """float32 rows scaled to unit length (a zero row stays zero)."""
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return np.ascontiguousarray(x / np.where(norms > 0, norms, 1), np.float32)


def project(queries, documents, dims: int, seed: int):
  """(queries, documents) -> float32 dense unit rows [items, <= dims] (see
  the module docstring)."""
  if not scipy.sparse.issparse(documents) and documents.shape[1] <= dims:
    return unit_rows(queries), unit_rows(documents)
  from sklearn.decomposition import TruncatedSVD

  # The top singular directions of a random sample of the documents: the
  # projection's fit then costs the same for any corpus size.
  rng = np.random.default_rng(seed)
  items = documents.shape[0]
  sample = np.sort(rng.choice(items, min(items, SVD_SAMPLE), replace=False))
  dims = min(dims, documents.shape[1] - 1)
  basis = TruncatedSVD(dims, random_state=seed).fit(documents[sample]).components_.T
  return unit_rows(queries @ basis), unit_rows(documents @ basis)


def merge_top_k(indices_a, similarities_a, indices_b, similarities_b, k: int):
  """Two [rows, *] candidate sets -> the k best of each row, by (-similarity,
  index)."""
  indices = np.concatenate([indices_a, indices_b], axis=1)
  similarities = np.concatenate([similarities_a, similarities_b], axis=1)
  order = np.lexsort((indices, -similarities), axis=1)[:, :k]
  return (np.take_along_axis(indices, order, 1),
          np.take_along_axis(similarities, order, 1))


def members_by_list(assigned: np.ndarray, lists: int):
  """[entries] list of each entry -> (entries ordered by list, ascending
  within a list; [lists + 1] where each list's run starts)."""
  order = np.argsort(assigned, kind="stable")
  return order, np.searchsorted(assigned[order], np.arange(lists + 1))


def approximate_top_k(queries, documents, k: int, *, dims: int = 64, lists: int = 0,
                      probes: int = 0, seed: int = 0, memory_mb: float = 256.0):
  """The k most similar documents of each item, found approximately.

  Args:
    queries, documents: [items, dims_in] CSR or dense, as for exact_top_k
      (every item is a query and a document; an item is never its own
      neighbour).
    k: neighbours per item.
    dims: the projection's width (see the module docstring).
    lists: clusters; 0: the square root of the item count.
    probes: lists each item searches; 0: a tenth of the lists, rounded up.
    seed: the projection's and the k-means' random state.
    memory_mb: the budget of one block of scores.
  Returns:
    indices [items, k] int32, similarities [items, k] float32 (exact values),
    by decreasing similarity, ties by lower index.
  """
  faiss = load_faiss()
  items = documents.shape[0]
  lists = min(lists or max(1, round(np.sqrt(items))), items)
  probes = min(probes or -(-lists // 10), lists)
  q, d = project(queries, documents, dims, seed)
  kmeans = faiss.Kmeans(d.shape[1], lists, niter=KMEANS_ITERATIONS, seed=seed,
                        spherical=True)
  kmeans.train(d)
  centroids = faiss.IndexFlatIP(d.shape[1])
  centroids.add(kmeans.centroids)
  _, home = centroids.search(d, 1)
  _, probed = centroids.search(q, probes)
  members, member_starts = members_by_list(home[:, 0], lists)
  askers, asker_starts = members_by_list(probed.ravel(), lists)
  askers //= probes  # entry -> the item whose probe it is
  indices = np.full((items, k), -1, np.int32)
  similarities = np.full((items, k), -np.inf, np.float32)
  for cluster in range(lists):
    columns = members[member_starts[cluster]:member_starts[cluster + 1]]
    rows = askers[asker_starts[cluster]:asker_starts[cluster + 1]]
    if len(columns) == 0 or len(rows) == 0:
      continue
    found, best = exact_top_k(queries, documents, k, rows=rows, columns=columns,
                              memory_mb=memory_mb)
    indices[rows], similarities[rows] = merge_top_k(indices[rows], similarities[rows],
                                                    found, best, k)
  short = np.flatnonzero(~np.isfinite(similarities).all(axis=1))
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
