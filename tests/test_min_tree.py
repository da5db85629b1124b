"""Top-k by the tree of block minima against a numpy brute force, with
many ties, through every level count, short tops and padding."""

import numpy as np
import pytest

from hashvae.retrieval import metrics, min_tree


def brute_force(queries, db, k):
  dist = (queries[:, None, :] != db[None]).sum(-1)
  positions = np.arange(len(db))
  return np.stack([np.lexsort((positions, row))[:k] for row in dist])


def tied_codes(seed, bits, items, queries):
  rng = np.random.default_rng(seed)
  db = rng.integers(0, 2, (items, bits)).astype(np.uint8)
  db[5:min(items, 900)] = db[2]  # a tie spanning many blocks
  near = db[rng.integers(0, items, queries)] ^ (rng.random((queries, bits)) < 0.1)
  return db, np.concatenate([near, db[2:3]]).astype(np.uint8)


@pytest.mark.parametrize("bits,items,k", [
    (3, 50, 50),  # k = items: the top level is shorter than k
    (6, 1000, 7),  # its tail padded
    (16, 1100, 1),  # several levels
    (33, 2000, 40),
    (64, 700, 3),
])
def test_nearest_equals_brute_force(bits, items, k):
  db, queries = tied_codes(bits + items, bits, items, 9)
  np.testing.assert_array_equal(metrics.nearest(queries, db, k),
                                brute_force(queries, db, k))


def test_several_levels_and_a_tie_wider_than_the_top():
  # With 2 bits every distance is tied across thousands of blocks.
  db, queries = tied_codes(0, 2, 40_000, 4)
  assert min_tree.levels(40_000, 1) >= 3
  for k in (1, 3):
    np.testing.assert_array_equal(metrics.nearest(queries, db, k),
                                  brute_force(queries, db, k))


def test_levels_and_padding():
  block = min_tree.BLOCK
  assert min_tree.levels(block, 1) == 1
  assert min_tree.levels((block + 1) * block, 1) == 2
  assert min_tree.padded_items(block * block + 1, 1) == 2 * block * block
  assert min_tree.max_items(63) * 64 < 2**31


def test_the_counting_pass_takes_databases_too_large_for_int32_keys(monkeypatch):
  db, queries = tied_codes(1, 12, 300, 5)
  want = brute_force(queries, db, 20)
  monkeypatch.setattr(min_tree, "max_items", lambda bits: 100)
  np.testing.assert_array_equal(metrics.nearest(queries, db, 20), want)


@pytest.mark.parametrize("key_bits,n,k,real", [
    (31, 80, 10, 80),  # keys up to 2^31 - 2: the search's top bit
    (12, 64, 8, 64),
    (12, 64, 8, 5),  # fewer real keys than k: the rest stays padding
    (5, 24, 24, 24),  # every key kept
])
def test_smallest_selects_the_k_smallest_in_place_order(key_bits, n, k, real):
  rng = np.random.default_rng(key_bits + n + real)
  high = min(2**key_bits, 2**31 - 1)  # below the padding key
  keys = np.stack([rng.choice(high, n, replace=False) for _ in range(4)]).astype(np.int32)
  keys[:, real:] = np.iinfo(np.int32).max
  keys[0, :3] = [high - 1, 0, high - 2]  # both ends of the range
  got = np.asarray(min_tree.smallest(keys, k, key_bits))
  for row, out in zip(keys, got, strict=True):
    kept = np.sort(row[row < np.iinfo(np.int32).max])[:k]
    in_place = row[np.isin(row, kept)]  # the kept keys in their order in the row
    np.testing.assert_array_equal(out[:len(in_place)], in_place)
    assert (out[len(in_place):] == np.iinfo(np.int32).max).all()
