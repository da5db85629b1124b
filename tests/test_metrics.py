"""`evaluate` against a plain numpy brute force and an enumeration of ties."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from hashvae.metrics import evaluate, hamming_distances, nearest, pack_codes

from conftest import ROOT


def brute_force(qc, dc, ql, dl, ks):
  """Per query: stable argsort of the distances, then loops."""
  out = {f"{m}@{k}": [] for k in ks for m in ("p", "r", "map")}
  for i in range(len(qc)):
    dist = (qc[i][None, :] != dc).sum(1)
    order = np.argsort(dist, kind="stable")
    if ql.ndim == 1:
      rel = dl[order] == ql[i]
    else:
      rel = (dl[order] * ql[i]).sum(1) > 0
    for k in ks:
      top = rel[:k]
      out[f"p@{k}"].append(top.sum() / k)
      out[f"r@{k}"].append(top.sum() / max(rel.sum(), 1))
      precisions = [top[:j + 1].sum() / (j + 1) for j in range(k) if top[j]]
      out[f"map@{k}"].append(np.mean(precisions) if precisions else 0.0)
  return {name: float(np.mean(v)) for name, v in out.items()}


def assert_matches_brute_force(qc, dc, ql, dl, ks):
  """evaluate == the per-query brute force on every p/r/map metric; returns
  evaluate's results."""
  got = evaluate(qc, dc, ql, dl, ks)
  for name, value in brute_force(qc, dc, ql, dl, ks).items():
    assert got[name] == pytest.approx(value, abs=1e-6), name
  return got


@pytest.mark.parametrize("bits,classes", [(4, 3), (8, 5), (16, 4)])
def test_single_label_matches_brute_force(bits, classes):
  rng = np.random.default_rng(bits)
  qc, dc = rng.integers(0, 2, (37, bits)), rng.integers(0, 2, (230, bits))
  ql, dl = rng.integers(0, classes, 37), rng.integers(0, classes, 230)
  ks = (1, 10, 100, 230)
  got = evaluate(qc, dc, ql, dl, ks)
  want = brute_force(qc, dc, ql, dl, ks)
  for name, value in want.items():
    assert got[name] == pytest.approx(value, abs=1e-6), name


def test_multilabel_matches_brute_force():
  rng = np.random.default_rng(7)
  qc, dc = rng.integers(0, 2, (25, 6)), rng.integers(0, 2, (150, 6))
  ql = (rng.uniform(size=(25, 5)) < 0.3).astype(np.uint8)
  dl = (rng.uniform(size=(150, 5)) < 0.3).astype(np.uint8)
  ks = (5, 50)
  assert_matches_brute_force(qc, dc, ql, dl, ks)


def tie_orders_expectation(dist, rel, k):
  """Mean precision@k over every order that sorts by distance."""
  groups = [list(np.flatnonzero(dist == d)) for d in sorted(set(dist))]
  values = []
  for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
    order = [i for p in perms for i in p]
    values.append(rel[order[:k]].sum() / k)
  return np.mean(values)


def test_tie_aware_precision_equals_mean_over_all_tie_orders():
  rng = np.random.default_rng(11)
  dc = rng.integers(0, 2, (8, 2))  # 2 bits: large tie groups
  dl = rng.integers(0, 2, 8)
  qc, ql = rng.integers(0, 2, (3, 2)), rng.integers(0, 2, 3)
  for k in (1, 3, 5, 8):
    got = evaluate(qc, dc, ql, dl, (k,))[f"p@{k}_tie_aware"]
    want = np.mean([tie_orders_expectation((qc[i] != dc).sum(1), dl == ql[i], k)
                    for i in range(3)])
    assert got == pytest.approx(want, abs=1e-6), k


def test_identical_codes_and_labels_give_perfect_precision():
  codes = np.repeat(np.eye(4, dtype=np.uint8), 10, axis=0)
  labels = np.repeat(np.arange(4), 10)
  got = evaluate(codes, codes, labels, labels, (10,))
  assert got["p@10"] == 1.0 and got["map@10"] == 1.0 and got["r@10"] == 1.0
  assert got["p@10_tie_aware"] == 1.0


def test_bad_arguments_fail_clearly():
  codes, labels = np.zeros((5, 4)), np.zeros(5, int)
  with pytest.raises(ValueError, match="database size"):
    evaluate(codes, codes, labels, labels, (6,))
  with pytest.raises(ValueError, match="same bits"):
    evaluate(np.zeros((5, 3)), codes, labels, labels, (1,))
  with pytest.raises(ValueError, match="one label"):
    evaluate(codes, codes, labels[:4], labels, (1,))


@pytest.mark.parametrize("bits", [1, 7, 16, 32, 33, 64])
def test_packed_hamming_distances_equal_unpacked(bits):
  rng = np.random.default_rng(bits)
  qc, dc = rng.integers(0, 2, (9, bits)), rng.integers(0, 2, (31, bits))
  got = hamming_distances(pack_codes(qc), pack_codes(dc))
  assert got.dtype == np.int32 and got.shape == (9, 31)
  np.testing.assert_array_equal(got, (qc[:, None, :] != dc[None, :, :]).sum(-1))


def test_pack_codes_puts_code_bit_32w_plus_j_in_bit_j_of_word_w():
  codes = np.zeros((3, 40), np.uint8)
  codes[0, 0] = codes[1, 31] = codes[2, 32] = codes[2, 39] = 1
  words = np.asarray(pack_codes(codes))
  assert words.dtype == np.uint32
  np.testing.assert_array_equal(words, [[1, 0], [2**31, 0], [0, 1 + 2**7]])


def test_64_bit_codes_match_brute_force():
  rng = np.random.default_rng(64)
  centers = rng.integers(0, 2, (4, 64))  # codes near their class centre
  ql, dl = rng.integers(0, 4, 30), rng.integers(0, 4, 400)
  flip = lambda n: rng.uniform(size=(n, 64)) < 0.3
  qc, dc = centers[ql] ^ flip(30), centers[dl] ^ flip(400)
  ks = (1, 10, 100, 400)
  assert_matches_brute_force(qc, dc, ql, dl, ks)


def test_one_query_per_chunk_gives_the_same_results():
  rng = np.random.default_rng(5)
  qc, dc = rng.integers(0, 2, (6, 12)), rng.integers(0, 2, (80, 12))
  ql, dl = rng.integers(0, 3, 6), rng.integers(0, 3, 80)
  whole = evaluate(qc, dc, ql, dl, (5, 40))
  assert evaluate(qc, dc, ql, dl, (5, 40), memory_budget_bytes=1) == pytest.approx(
      whole, abs=1e-7)
  np.testing.assert_array_equal(nearest(qc, dc, 7, memory_budget_bytes=1),
                                nearest(qc, dc, 7))


@pytest.mark.parametrize("bits,k", [(3, 20), (16, 1), (16, 100), (40, 150)])
def test_nearest_is_the_stable_distance_order(bits, k):
  rng = np.random.default_rng(bits + k)
  qc, dc = rng.integers(0, 2, (11, bits)), rng.integers(0, 2, (150, bits))
  dist = (qc[:, None, :] != dc[None, :, :]).sum(-1)
  want = np.argsort(dist, axis=1, kind="stable")[:, :k]
  np.testing.assert_array_equal(nearest(qc, dc, k), want)
  with pytest.raises(ValueError, match="database size"):
    nearest(qc, dc, 151)


def expected_precision(dist, rel, k):
  """Tie-aware p@k from the counts at the distance holding rank k."""
  cut = np.sort(dist)[k - 1]
  closer, tied = dist < cut, dist == cut
  return (rel[closer].sum() + (k - closer.sum()) * rel[tied].mean()) / k


def test_database_beyond_16_bit_counts_matches_brute_force():
  # 2^16 items or more do not fit the packed 16-bit count fields: the wide
  # tables take over.
  rng = np.random.default_rng(16)
  n = 2**16 + 37
  qc, dc = rng.integers(0, 2, (3, 5)), rng.integers(0, 2, (n, 5))
  ql, dl = rng.integers(0, 2, 3), rng.integers(0, 2, n)
  ks = (1, 100, 3000)
  got = assert_matches_brute_force(qc, dc, ql, dl, ks)
  for k in ks:
    want = np.mean([expected_precision((qc[i] != dc).sum(1), dl == ql[i], k)
                    for i in range(3)])
    assert got[f"p@{k}_tie_aware"] == pytest.approx(want, abs=1e-6), k


SPLIT_SCRIPT = """
import json, sys
import numpy as np
from hashvae import sharding
sharding.split_cpu(int(sys.argv[1]))
import jax
from hashvae.metrics import evaluate, nearest
rng = np.random.default_rng(0)
out = dict(devices=len(jax.local_devices()))
for queries in (37, 1):  # an odd split, and fewer queries than devices
  q = rng.integers(0, 2, (queries, 12)); db = rng.integers(0, 2, (150, 12))
  ql = rng.integers(0, 4, queries); dl = rng.integers(0, 4, 150)
  out[queries] = dict(metrics=evaluate(q, db, ql, dl, ks=(5, 40)),
                      nearest=nearest(q, db, 9).tolist())
print(json.dumps(out))
"""


def test_queries_split_over_devices_give_the_one_device_results():
  runs = []
  for devices in (1, 3):
    proc = subprocess.run([sys.executable, "-c", SPLIT_SCRIPT, str(devices)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs.append(json.loads(proc.stdout.splitlines()[-1]))
  assert [r["devices"] for r in runs] == [1, 3]
  for queries in ("37", "1"):
    one, three = runs[0][queries], runs[1][queries]
    assert one["nearest"] == three["nearest"]
    for name, value in one["metrics"].items():
      assert three["metrics"][name] == pytest.approx(value, abs=1e-6), name
