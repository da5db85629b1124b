"""The neighbour table against a brute force of dense loops, its cache, the
approximate search's recall and the errors on bad input."""

import dataclasses
import sys

import numpy as np
import pytest
import scipy.sparse

from hashvae.data import neighbours
from hashvae.data.dataset import DataError
from hashvae.data.neighbours import neighbour_table
from hashvae.data.neighbours_approx import recall_at_k
from hashvae.data.neighbours_exact import block_rows
from hashvae.data.text import vectorise_corpus


def corpus(items=30, terms=12, seed=0):
  """[items, terms] counts with duplicated rows (exact ties) and no empty row."""
  rng = np.random.default_rng(seed)
  counts = rng.poisson(0.6, (items, terms)).astype(np.float64)
  counts[:, 0] += (counts.sum(1) == 0)
  counts[5] = counts[0]  # item 0 and 5 tie for every query
  counts[7] = counts[9] = counts[3]
  return counts


def brute_scores(x, similarity, k1=1.2, b=0.75):
  """[items, items] similarity of every pair, by loops over the terms."""
  n, terms = x.shape
  df = [sum(x[j, t] > 0 for j in range(n)) for t in range(terms)]
  score = np.zeros((n, n))
  if similarity == "bm25":
    lengths = x.sum(1)
    avgdl = lengths.mean()
    for i in range(n):
      for j in range(n):
        for t in range(terms):
          if x[i, t] > 0 and x[j, t] > 0:
            idf = np.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
            saturated = x[j, t] * (k1 + 1) / (x[j, t] + k1 * (1 - b + b * lengths[j] / avgdl))
            score[i, j] += x[i, t] * idf * saturated
    return score
  if similarity == "tfidf":
    x = x * np.array([np.log((1 + n) / (1 + df[t])) + 1 for t in range(terms)])
  for i in range(n):
    for j in range(n):
      score[i, j] = sum(x[i, t] * x[j, t] for t in range(terms)) / (
          np.sqrt(sum(v * v for v in x[i])) * np.sqrt(sum(v * v for v in x[j])))
  return score


def brute_table(score, k):
  """Each row's k best other columns, by (-score, column); scores equal in
  float32 tie."""
  n = len(score)
  score = score.astype(np.float32)
  order = [sorted((j for j in range(n) if j != i), key=lambda j, i=i: (-score[i, j], j))[:k]
           for i in range(n)]
  return np.array(order), np.array([score[i, row] for i, row in enumerate(order)])


@pytest.mark.parametrize("similarity,dense", [("bm25", False), ("tfidf", False),
                                              ("cosine", False), ("cosine", True)])
def test_exact_table_equals_a_brute_force(similarity, dense):
  x = corpus()
  features = x if dense else scipy.sparse.csr_matrix(x)
  table = neighbour_table(features, k=6, similarity=similarity)
  want_indices, want_similarities = brute_table(brute_scores(x, similarity), 6)
  assert table.indices.dtype == np.int32 and table.similarities.dtype == np.float32
  np.testing.assert_array_equal(table.indices, want_indices)
  np.testing.assert_allclose(table.similarities, want_similarities, rtol=1e-5)
  assert (table.indices != np.arange(len(x))[:, None]).all()  # never itself
  assert (np.diff(table.similarities, axis=1) <= 0).all()


def test_bm25_parameters_reach_the_scores():
  x = corpus()
  table = neighbour_table(scipy.sparse.csr_matrix(x), k=4, similarity="bm25", k1=2.0, b=0.3)
  _, want = brute_table(brute_scores(x, "bm25", k1=2.0, b=0.3), 4)
  np.testing.assert_allclose(table.similarities, want, rtol=1e-5)


def test_ties_go_to_the_lower_index_and_never_to_the_item_itself():
  x = np.array([[1.0, 0], [1, 0], [1, 0], [0, 1]])
  table = neighbour_table(x, k=2, similarity="cosine")
  np.testing.assert_array_equal(table.indices, [[1, 2], [0, 2], [0, 1], [0, 1]])
  np.testing.assert_array_equal(table.similarities, [[1, 1], [1, 1], [1, 1], [0, 0]])


@pytest.mark.parametrize("similarity", ["bm25", "cosine"])
def test_block_size_does_not_change_the_table(similarity):
  features = scipy.sparse.csr_matrix(corpus(items=50, seed=3))
  whole = neighbour_table(features, k=5, similarity=similarity, memory_mb=64)
  row_by_row = neighbour_table(features, k=5, similarity=similarity, memory_mb=1e-9)
  assert block_rows(50, 1e-9) == 1
  np.testing.assert_array_equal(whole.indices, row_by_row.indices)
  np.testing.assert_array_equal(whole.similarities, row_by_row.similarities)


def test_a_second_call_loads_the_cached_table(tmp_path, monkeypatch):
  features = scipy.sparse.csr_matrix(corpus())
  first = neighbour_table(features, k=4, similarity="bm25", cache_dir=str(tmp_path))
  assert len(list(tmp_path.glob("neighbours-*.npz"))) == 1
  assert not list(tmp_path.glob(".tmp-*"))  # the temporary file was renamed

  def no_compute(*args, **kwargs):
    raise AssertionError("recomputed although the table is cached")

  monkeypatch.setattr(neighbours, "compute", no_compute)
  again = neighbour_table(features, k=4, similarity="bm25", cache_dir=str(tmp_path),
                          memory_mb=1e-9)  # the block size is not part of the key
  np.testing.assert_array_equal(again.indices, first.indices)
  np.testing.assert_array_equal(again.similarities, first.similarities)


def test_a_changed_setting_or_changed_data_recomputes(tmp_path, monkeypatch):
  calls = []
  compute = neighbours.compute
  monkeypatch.setattr(neighbours, "compute", lambda *a, **kw: calls.append(1) or compute(*a, **kw))
  x = corpus()
  run = lambda x, **kw: neighbour_table(scipy.sparse.csr_matrix(x), cache_dir=str(tmp_path),
                                        **{"k": 4, "similarity": "bm25", **kw})
  run(x)
  run(x)
  assert len(calls) == 1
  for change in ({"k": 5}, {"similarity": "tfidf"}, {"k1": 1.5}, {"b": 0.5}):
    run(x, **change)
  assert len(calls) == 5
  changed = x.copy()
  changed[2, 3] += 1
  table = run(changed)
  assert len(calls) == 6
  np.testing.assert_array_equal(table.indices, brute_table(brute_scores(changed, "bm25"), 4)[0])
  assert len(list(tmp_path.glob("neighbours-*.npz"))) == 6


def random_corpus(items, terms, seed):
  rng = np.random.default_rng(seed)
  topics = rng.dirichlet(np.full(terms, 0.1), size=8)
  counts = np.stack([rng.multinomial(20, topics[rng.integers(8)]) for _ in range(items)])
  return scipy.sparse.csr_matrix(counts.astype(np.float64))


@pytest.mark.parametrize("similarity", ["bm25", "tfidf"])
def test_approximate_table_recalls_the_exact_one(similarity):
  pytest.importorskip("faiss", reason="faiss is an optional extra: pip install .[faiss]")
  features = random_corpus(400, 300, seed=1)
  exact = neighbour_table(features, k=10, similarity=similarity)
  approximate = neighbour_table(features, k=10, similarity=similarity, method="approximate",
                                approximate=neighbours.Approximate(dims=16, lists=20, probes=4))
  assert recall_at_k(approximate.indices, exact.indices) >= 0.9
  assert (approximate.indices != np.arange(400)[:, None]).all()
  # The similarities it reports are the exact ones of the items it found.
  hits = approximate.indices == exact.indices
  assert hits.mean() > 0.8
  np.testing.assert_allclose(approximate.similarities[hits], exact.similarities[hits],
                             rtol=1e-5)


def test_items_whose_lists_hold_too_few_items_are_searched_exactly():
  pytest.importorskip("faiss", reason="faiss is an optional extra: pip install .[faiss]")
  features = scipy.sparse.csr_matrix(corpus())  # 30 items in 30 lists of about one
  approximate = neighbour_table(features, k=6, similarity="bm25", method="approximate",
                                approximate=neighbours.Approximate(dims=8, lists=30, probes=1))
  exact = neighbour_table(features, k=6, similarity="bm25")
  np.testing.assert_array_equal(approximate.indices, exact.indices)
  np.testing.assert_array_equal(approximate.similarities, exact.similarities)


def test_recall_counts_shared_neighbours():
  exact = np.array([[1, 2], [0, 2]])
  assert recall_at_k(np.array([[2, 1], [0, 3]]), exact) == 0.75


def test_without_faiss_the_approximate_search_says_how_to_install_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now fails
  with pytest.raises(ImportError, match=r"pip install \.\[faiss\]"):
    neighbour_table(np.eye(3) + 1, k=1, similarity="cosine", method="approximate")


@pytest.mark.parametrize("features,kwargs,message", [
    (np.eye(4) + 1, {"k": 4, "similarity": "cosine"}, "k=4 must be below the item count 4"),
    (np.eye(4) + 1, {"k": 0, "similarity": "cosine"}, "k=0: the neighbours per item"),
    (np.eye(4) + 1, {"k": 1.5, "similarity": "cosine"}, "k=1.5"),
    (np.eye(4) + 1, {"similarity": "jaccard"}, "similarity='jaccard': one of bm25"),
    (np.eye(4) + 1, {"method": "fast"}, "method='fast'"),
    (np.eye(4) + 1, {"similarity": "bm25"}, "dense features take similarity='cosine'"),
    (scipy.sparse.csr_matrix([[1.0, 0], [0, 0], [1, 1]]), {}, "1 of 3 feature rows are all zero"),
    (np.array([[1.0, 0], [0, 0], [1, 1]]), {"similarity": "cosine"}, "row 1"),
    (scipy.sparse.csr_matrix([[1.0, -1], [1, 0], [1, 1]]), {}, "must be >= 0"),
    (np.array([[1.0, np.nan], [1, 0], [1, 1]]), {"similarity": "cosine"}, "NaN"),
    (scipy.sparse.eye(3, format="csr"), {"k1": -1.0}, "k1=-1.0"),
    (scipy.sparse.eye(3, format="csr"), {"b": 1.5}, "b=1.5"),
    (scipy.sparse.eye(3, format="csr"), {"memory_mb": 0}, "memory_mb=0"),
])
def test_bad_input_gets_a_one_line_error(features, kwargs, message):
  kwargs = {"k": 1, "similarity": "bm25", **kwargs}
  with pytest.raises(DataError, match=message.replace("[", r"\[").replace("(", r"\(")) as e:
    neighbour_table(features, **kwargs)
  assert "\n" not in str(e.value)


def test_auto_searches_approximately_above_the_threshold_only():
  assert neighbours.resolve_method("auto", neighbours.AUTO_ITEMS) == "exact"
  assert neighbours.resolve_method("auto", neighbours.AUTO_ITEMS + 1) == "approximate"
  assert neighbours.resolve_method("exact", 10**9) == "exact"


def test_term_counts_are_the_counts_behind_the_log_inputs():
  docs = ["apple banana apple cherry", "banana banana cherry", "cherry apple durian",
          "durian durian banana", "apple cherry cherry"]
  dataset = vectorise_corpus("tiny", docs, ["a", "b", "a", "b", "a"], docs[:2], ["a", "b"],
                             max_features=50, validation_fraction=0.4, split_seed=0,
                             where_test="test")
  counts = neighbours.term_counts(dataset)
  inputs = dataset.database.inputs  # log(1 + tf), train then validation
  assert counts.shape == inputs.shape and counts.sum() > 0
  np.testing.assert_allclose(counts.toarray(), np.expm1(inputs.toarray()), rtol=1e-5)
  with pytest.raises(DataError, match="no texts and vectoriser"):
    neighbours.term_counts(dataclasses.replace(dataset, vectoriser=None))
