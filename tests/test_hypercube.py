"""Counts per distance over the hypercube against pairwise numpy, and the
evaluate paths that use them against the pass that compares every pair."""

import numpy as np
import pytest
import scipy.linalg
from test_metrics import brute_force

from hashvae.retrieval import hamming, hypercube, metrics


def pairwise_counts(qc, dc, ql, dl):
  """[queries, bits + 1] items and relevant items per distance, pair by pair."""
  bits = qc.shape[1]
  dist = (qc[:, None, :] != dc[None]).sum(-1)
  if ql.ndim == 1:
    rel = ql[:, None] == dl[None]
  else:
    rel = (ql.astype(np.int64) @ dl.T.astype(np.int64)) > 0
  at = dist[..., None] == np.arange(bits + 1)
  return at.sum(1), (at & rel[..., None]).sum(1)


def tied(seed, bits, queries, items, multilabel):
  rng = np.random.default_rng(seed)
  qc, dc = rng.integers(0, 2, (queries, bits)), rng.integers(0, 2, (items, bits))
  if multilabel:
    ql, dl = rng.random((queries, 5)) < 0.3, rng.random((items, 5)) < 0.3
    ql[0] = False  # a query with no label: nothing is relevant
  else:
    ql, dl = rng.integers(0, 6, queries), rng.integers(0, 5, items)  # class 5: none
  return qc, dc, ql, dl


def test_walsh_hadamard_is_the_hadamard_matrix_product():
  rng = np.random.default_rng(0)
  tables = rng.integers(-50, 50, (3, 16))
  assert np.array_equal(hypercube.walsh_hadamard(tables), tables @ scipy.linalg.hadamard(16))


def test_krawtchouk_is_the_transform_of_each_weight_indicator():
  bits = 5
  weight = np.array([bin(x).count("1") for x in range(1 << bits)])
  for d in range(bits + 1):
    transformed = (weight == d).astype(np.int64) @ scipy.linalg.hadamard(1 << bits)
    assert np.array_equal(transformed, hypercube.krawtchouk(bits)[d, weight])


@pytest.mark.parametrize("bits", [1, 4, 9])
@pytest.mark.parametrize("multilabel", [False, True])
def test_counts_equal_pairwise_counts(bits, multilabel):
  qc, dc, ql, dl = tied(bits, bits, 40, 300, multilabel)
  items, relevant = hypercube.distance_counts(qc, dc, ql, dl)
  want_items, want_relevant = pairwise_counts(qc, dc, ql, dl)
  assert np.array_equal(items, want_items) and np.array_equal(relevant, want_relevant)


def test_counts_stay_exact_beyond_32_bit_integers():
  """Counts of 2^40 items at a code: the int64 transforms wrap but the
  result, a multiple of 2^bits, is exact."""
  bits = 12
  tables = np.zeros((1, 1 << bits), np.int64)
  tables[0, [0, 5, 4095]] = [2**40, 3, 2**33]
  kernel = hypercube.krawtchouk(bits)[:, hypercube._weights(bits)]
  out = hypercube._convolve(tables, kernel, bits)
  weight = hypercube._weights(bits)
  for q in (0, 7, 4095, 1234):
    want = np.zeros(bits + 1, np.int64)
    for code, count in ((0, 2**40), (5, 3), (4095, 2**33)):
      want[weight[code ^ q]] += count
    assert np.array_equal(out[0, :, q], want)


def test_label_groups_are_done_in_slices_of_the_table_budget(monkeypatch):
  qc, dc, ql, dl = tied(3, 6, 60, 200, multilabel=True)
  want = hypercube.distance_counts(qc, dc, ql, dl)
  monkeypatch.setattr(hypercube, "TABLE_BUDGET_BYTES", 1)  # one table at a time
  got = hypercube.distance_counts(qc, dc, ql, dl)
  assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_preferred_only_where_the_transform_is_cheaper():
  assert hypercube.preferred(80_000, 880_000, 16, 21)
  assert not hypercube.preferred(80_000, 880_000, 32, 21)  # beyond MAX_BITS
  assert not hypercube.preferred(20, 50, 16, 5)  # 1,000 pairs
  with pytest.raises(ValueError, match="at most 24 bits"):
    hypercube.distance_counts(np.zeros((1, 25)), np.zeros((1, 25)), [0], [0])


@pytest.mark.parametrize("multilabel", [False, True])
def test_evaluate_is_the_same_with_and_without_the_transform(monkeypatch, multilabel):
  qc, dc, ql, dl = tied(5, 5, 30, 250, multilabel)
  ks = (1, 10, 100, 250)
  results = []
  for use in (False, True):
    monkeypatch.setattr(hypercube, "preferred", lambda *a, use=use: use)
    results.append(metrics.evaluate(qc, dc, ql, dl, ks))
    histogram = metrics.distance_histogram(qc, dc, ql, dl)
    assert all(np.array_equal(a, b) for a, b in zip(histogram, pairwise_counts(qc, dc, ql, dl), strict=True))
  assert results[0] == results[1]
  for name, value in brute_force(qc, dc, ql, dl, ks).items():
    assert results[1][name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.parametrize("multilabel", [False, True])
def test_repeated_queries_are_scored_once_and_weighted(multilabel):
  qc, dc, ql, dl = tied(8, 6, 12, 90, multilabel)
  repeat = np.array([0, 0, 0, 1, 2, 2] + list(range(3, 12)))
  first, inverse, multiplicity = metrics.distinct_queries(qc[repeat], ql[repeat])
  assert multiplicity.sum() == len(repeat) and len(first) <= 12
  codes, labels = qc[repeat], ql[repeat]
  assert np.array_equal(codes[first][inverse], codes)
  assert np.array_equal(labels[first][inverse], labels)
  ks = (5, 40)
  got = metrics.evaluate(qc[repeat], dc, ql[repeat], dl, ks)
  for name, value in brute_force(qc[repeat], dc, ql[repeat], dl, ks).items():
    assert got[name] == pytest.approx(value, abs=1e-6), name


def test_a_long_evaluation_runs_in_batches_with_progress_and_the_same_results(
    monkeypatch, caplog):
  qc, dc, ql, dl = tied(9, 7, 23, 200, multilabel=False)
  qc[5:] = np.random.default_rng(1).integers(0, 2, (18, 7))
  whole = metrics.evaluate(qc, dc, ql, dl, (5, 50))
  monkeypatch.setattr(hamming, "PROGRESS_PAIRS", 0)
  monkeypatch.setattr(hamming, "PROGRESS_BATCHES", 4)  # the last batch is padded
  with caplog.at_level("INFO", logger=hamming.__name__):
    batched = metrics.evaluate(qc, dc, ql, dl, (5, 50))
  assert batched == pytest.approx(whole, abs=1e-12)
  lines = [r.getMessage() for r in caplog.records if "distinct queries" in r.getMessage()]
  assert len(lines) == 4 and "ETA 0s" in lines[-1]
