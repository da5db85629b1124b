"""Multi-index top-k search against a numpy brute force, with many ties."""

import numpy as np
import pytest

from hashvae.retrieval import multi_index
from hashvae.retrieval.multi_index import MultiIndex


def brute_force(query, db, k):
  dist = (query != db).sum(1)
  order = np.lexsort((np.arange(len(db)), dist))[:k]
  return order, dist[order], np.bincount(dist, minlength=db.shape[1] + 1)


def tied_codes(seed, bits, items, queries):
  rng = np.random.default_rng(seed)
  db = rng.integers(0, 2, (items, bits)).astype(np.uint8)
  db[10:200] = db[3]  # one long tie
  db[300:340] = db[3] ^ (np.arange(bits) == 0)  # a second one, at distance 1
  near = db[rng.integers(0, items, queries)] ^ (rng.random((queries, bits)) < 0.1)
  return db, np.concatenate([near, rng.integers(0, 2, (3, bits))]).astype(np.uint8)


@pytest.mark.parametrize("bits", [2, 9, 16, 17, 33, 64])
@pytest.mark.parametrize("k", [1, 25, 400])
def test_search_equals_brute_force(bits, k):
  db, queries = tied_codes(bits, bits, 600, 8)
  table = MultiIndex.build(db)
  for query in queries:
    positions, distances, counts = table.search(query, k)
    want_positions, want_distances, want_counts = brute_force(query, db, k)
    np.testing.assert_array_equal(positions, want_positions)
    np.testing.assert_array_equal(distances, want_distances)
    last = want_distances[-1]
    np.testing.assert_array_equal(counts[:last + 1], want_counts[:last + 1])
    assert np.all((counts[last + 1:] == -1) | (counts[last + 1:] == want_counts[last + 1:]))


def test_the_full_pass_gives_the_same_results(monkeypatch):
  db, queries = tied_codes(1, 32, 500, 5)
  table = MultiIndex.build(db)
  probed = [table.search(q, 30) for q in queries]
  monkeypatch.setattr(multi_index, "FULL_PASS_SHARE", 0.0)
  for query, (positions, distances, _) in zip(queries, probed, strict=True):
    full_positions, full_distances, counts = table.search(query, 30)
    np.testing.assert_array_equal(full_positions, positions)
    np.testing.assert_array_equal(full_distances, distances)
    np.testing.assert_array_equal(counts, brute_force(query, db, 30)[2])  # all exact


def test_k_beyond_the_database_returns_every_item():
  db, queries = tied_codes(2, 12, 250, 2)
  positions, distances, _ = MultiIndex.build(db).search(queries[0], 1000)
  np.testing.assert_array_equal(positions, brute_force(queries[0], db, 1000)[0])
  assert len(positions) == 250


def test_substrings_cover_every_bit_once():
  for bits in (1, 16, 17, 40, 64, 100):
    widths = multi_index.substring_widths(bits)
    assert sum(widths) == bits and max(widths) <= 16 and max(widths) - min(widths) <= 1
