"""`evaluate` against a plain numpy brute force and an enumeration of ties."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from hashvae.retrieval.hamming import hamming_distances, pack_codes
from hashvae.retrieval.metrics import distance_histogram, evaluate, nearest, radius_curve

from conftest import ROOT


def brute_force(qc, dc, ql, dl, ks):
  """Per query: stable argsort of the distances, then the textbook
  definitions, in loops."""
  out = {f"{m}@{k}": [] for k in ks for m in ("p", "r", "map", "ndcg")}
  out.update({"map@all": [], "p@r2": [], "p@r2_empty": []})
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
      dcg = sum(1 / np.log2(j + 2) for j in range(k) if top[j])
      ideal = sum(1 / np.log2(j + 2) for j in range(min(k, rel.sum())))
      out[f"ndcg@{k}"].append(dcg / ideal if ideal else 0.0)
    precisions = [rel[:j + 1].sum() / (j + 1) for j in range(len(rel)) if rel[j]]
    out["map@all"].append(np.mean(precisions) if precisions else 0.0)
    ball = (qc[i][None, :] != dc).sum(1) <= 2  # by index: no ranking
    same = dl == ql[i] if ql.ndim == 1 else (dl * ql[i]).sum(1) > 0
    out["p@r2"].append(same[ball].mean() if ball.any() else 0.0)
    out["p@r2_empty"].append(float(not ball.any()))
  return {name: float(np.mean(v)) for name, v in out.items()}


def assert_matches_brute_force(qc, dc, ql, dl, ks, tolerance=None):
  """evaluate == the per-query brute force on every metric it defines, within
  1e-6 (or tolerance[name]); returns evaluate's results."""
  got = evaluate(qc, dc, ql, dl, ks)
  for name, value in brute_force(qc, dc, ql, dl, ks).items():
    assert got[name] == pytest.approx(value, abs=(tolerance or {}).get(name, 1e-6)), name
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


def tied_data(seed, bits, queries, items, classes, multilabel):
  """Random codes of few bits (many ties) and labels; the last query's label
  is absent from the database, so it has no relevant item."""
  rng = np.random.default_rng(seed)
  qc, dc = rng.integers(0, 2, (queries, bits)), rng.integers(0, 2, (items, bits))
  if multilabel:
    ql = (rng.uniform(size=(queries, classes + 1)) < 0.3).astype(np.uint8)
    dl = (rng.uniform(size=(items, classes + 1)) < 0.3).astype(np.uint8)
    dl[:, -1] = 0
    ql[-1] = 0
    ql[-1, -1] = 1
  else:
    ql, dl = rng.integers(0, classes, queries), rng.integers(0, classes, items)
    ql[-1] = classes
  return qc, dc, ql, dl


@pytest.mark.parametrize("bits,multilabel", [(4, False), (5, True), (6, False), (6, True)])
def test_new_metrics_match_brute_force_with_many_ties(bits, multilabel):
  # 4-6 bits over ~200 items: every distance holds many items. K = 150
  # exceeds the relevant count of most queries (~40-60 single-label).
  qc, dc, ql, dl = tied_data(bits, bits, 29, 211, 4, multilabel)
  ks = (1, 7, 150, 211)
  got = assert_matches_brute_force(qc, dc, ql, dl, ks)
  assert set(got) >= {"ndcg@7", "map@all", "p@r2", "p@r2_empty"}
  assert 0 < got["ndcg@150"] < 1 and 0 < got["map@all"] < 1


def test_ndcg_and_map_all_of_known_rankings():
  # Query 0 finds its 2 relevant items at ranks 1 and 3 (distance 0, then
  # the tie at distance 1 broken by index); query 1 has no relevant item.
  dc = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
  dl = np.array([0, 1, 0, 1])
  qc, ql = np.array([[0, 0], [0, 0]]), np.array([0, 2])
  got = evaluate(qc, dc, ql, dl, (2, 4))
  ndcg = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
  assert got["ndcg@4"] == pytest.approx(ndcg / 2, abs=1e-7)  # query 1 scores 0
  assert got["ndcg@2"] == pytest.approx(1 / (1 + 1 / np.log2(3)) / 2, abs=1e-7)
  assert got["map@all"] == pytest.approx((1 + 2 / 3) / 2 / 2, abs=1e-7)
  assert got["map@4"] == got["map@all"]  # K = the database size


def test_p_at_radius_2_scores_an_empty_ball_0_and_counts_it():
  dc = np.array([[0] * 6, [0] * 5 + [1], [1] * 6])
  dl = np.array([0, 1, 0])
  # Query 0's ball holds items 0 and 1 (one relevant); query 1 is at
  # distances 3, 4 and 3 from the items: its ball is empty.
  qc = np.array([[0] * 6, [1, 1, 1, 0, 0, 0]])
  ql = np.array([0, 0])
  got = evaluate(qc, dc, ql, dl, (1,))
  assert got["p@r2"] == pytest.approx(0.5 / 2) and got["p@r2_empty"] == 0.5


def brute_force_curve(qc, dc, ql, dl):
  """Per query and radius: the items within the radius, by index."""
  bits = qc.shape[1]
  precision, recall, empty = (np.zeros((len(qc), bits + 1)) for _ in range(3))
  for i in range(len(qc)):
    dist = (qc[i][None, :] != dc).sum(1)
    rel = dl == ql[i] if ql.ndim == 1 else (dl * ql[i]).sum(1) > 0
    for r in range(bits + 1):
      ball = dist <= r
      precision[i, r] = rel[ball].mean() if ball.any() else 0.0
      recall[i, r] = rel[ball].sum() / max(rel.sum(), 1)
      empty[i, r] = not ball.any()
  return dict(radius=np.arange(bits + 1), precision=precision.mean(0),
              recall=recall.mean(0), empty=empty.mean(0))


@pytest.mark.parametrize("bits,multilabel", [(5, False), (9, True)])
def test_radius_curve_matches_brute_force(bits, multilabel):
  qc, dc, ql, dl = tied_data(10 + bits, bits, 23, 157, 3, multilabel)
  got = radius_curve(qc, dc, ql, dl)
  want = brute_force_curve(qc, dc, ql, dl)
  assert set(got) == set(want)
  for name, value in want.items():
    np.testing.assert_allclose(got[name], value, atol=1e-6, rtol=0, err_msg=name)
  assert got["empty"][-1] == 0 and (bits == 5 or got["empty"][0] > 0)  # 9 bits: some empty
  # The curve at radius 2 is evaluate's p@r2; the whole ball finds every
  # relevant item of the queries that have one.
  scores = evaluate(qc, dc, ql, dl, (1,))
  assert got["precision"][2] == pytest.approx(scores["p@r2"], abs=1e-6)
  assert got["empty"][2] == pytest.approx(scores["p@r2_empty"], abs=1e-6)
  rel = ql[:, None] == dl if ql.ndim == 1 else ql @ dl.T > 0
  assert got["recall"][-1] == pytest.approx(rel.any(1).mean()) and rel.any(1).mean() < 1


def test_distance_histogram_counts_items_and_relevant_items():
  qc, dc, ql, dl = tied_data(3, 6, 13, 97, 3, False)
  items, relevant = distance_histogram(qc, dc, ql, dl, memory_budget_bytes=1)
  dist = (qc[:, None, :] != dc[None, :, :]).sum(-1)
  for d in range(7):
    np.testing.assert_array_equal(items[:, d], (dist == d).sum(1))
    np.testing.assert_array_equal(relevant[:, d], ((dist == d) & (ql[:, None] == dl)).sum(1))
  empty = distance_histogram(qc[:0], dc, ql[:0], dl)
  assert empty[0].shape == (0, 7)


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
  # map@all sums ~33,000 precisions per query in float32 (~2e-6 off).
  got = assert_matches_brute_force(qc, dc, ql, dl, ks, tolerance={"map@all": 1e-5})
  for k in ks:
    want = np.mean([expected_precision((qc[i] != dc).sum(1), dl == ql[i], k)
                    for i in range(3)])
    assert got[f"p@{k}_tie_aware"] == pytest.approx(want, abs=1e-6), k


SPLIT_SCRIPT = """
import json, sys
import numpy as np
from hashvae.core import sharding
sharding.split_cpu(int(sys.argv[1]))
import jax
from hashvae.retrieval.metrics import evaluate, nearest, radius_curve
rng = np.random.default_rng(0)
out = dict(devices=len(jax.local_devices()))
for queries in (37, 1):  # an odd split, and fewer queries than devices
  q = rng.integers(0, 2, (queries, 12)); db = rng.integers(0, 2, (150, 12))
  ql = rng.integers(0, 4, queries); dl = rng.integers(0, 4, 150)
  out[queries] = dict(metrics=evaluate(q, db, ql, dl, ks=(5, 40)),
                      nearest=nearest(q, db, 9).tolist(),
                      curve={k: v.tolist() for k, v in radius_curve(q, db, ql, dl).items()})
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
    for name, value in one["curve"].items():
      np.testing.assert_allclose(three["curve"][name], value, atol=1e-6, err_msg=name)
    for name, value in one["metrics"].items():
      assert three["metrics"][name] == pytest.approx(value, abs=1e-6), name
