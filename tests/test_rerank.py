"""Rankings by the query's code scores against a numpy brute force: bit
weights that are distinct powers of two make every weighted sum exact in
float32, so orders can be compared exactly, ties included."""

import numpy as np
import pytest

from hashvae.retrieval import metrics, rerank
from hashvae.retrieval.ranking import rerank_candidates


def scores_with_dyadic_weights(rng, queries, bits):
  """Scores whose confidences |2 sigmoid(s) - 1| are 2^-1 .. 2^-bits, in a
  random order and with random signs per query."""
  weights = 2.0 ** -np.arange(1, bits + 1)
  magnitudes = 2 * np.arctanh(np.stack([rng.permutation(weights) for _ in range(queries)]))
  return magnitudes * rng.choice([-1.0, 1.0], (queries, bits))


def tied_database(rng, items, bits):
  db = rng.integers(0, 2, (items, bits)).astype(np.uint8)
  db[20:120] = db[3]  # one long tie: identical codes
  return db


def brute_force(scores, db, k, ranking):
  hard = scores > 0
  weights = np.abs(2 / (1 + np.exp(-scores)) - 1)
  out = []
  for h, w in zip(hard, weights, strict=True):
    differ = db.astype(bool) != h
    weighted = differ @ w
    first = differ.sum(1) if ranking == "tie_break" else np.zeros(len(db))
    out.append(np.lexsort((np.arange(len(db)), weighted, first))[:k])
  return np.stack(out)


@pytest.mark.parametrize("ranking", rerank.RANKINGS)
@pytest.mark.parametrize("bits,k", [(6, 150), (12, 30)])
def test_top_k_equals_brute_force(ranking, bits, k):
  rng = np.random.default_rng(bits)
  scores, db = scores_with_dyadic_weights(rng, 7, bits), tied_database(rng, 400, bits)
  np.testing.assert_array_equal(rerank.top_k(scores, db, k, ranking),
                                brute_force(scores, db, k, ranking))


def test_the_weighted_distance_is_the_expected_hamming_distance_up_to_a_constant():
  rng = np.random.default_rng(0)
  scores, db = rng.normal(0, 3, (5, 10)), rng.integers(0, 2, (50, 10))
  p = 1 / (1 + np.exp(-scores))
  expected = np.abs(p[:, None, :] - db[None]).sum(-1)
  differ = (scores[:, None, :] > 0) != db[None].astype(bool)
  weighted = (differ * np.abs(2 * p - 1)[:, None, :]).sum(-1)
  gap = expected - weighted
  np.testing.assert_allclose(gap, gap[:, :1] * np.ones_like(gap), atol=1e-12)
  np.testing.assert_allclose(gap[:, 0], np.minimum(p, 1 - p).sum(-1), atol=1e-12)


def test_tie_break_keeps_the_hamming_distances_down_the_list():
  rng = np.random.default_rng(1)
  scores, db = rng.normal(0, 2, (9, 8)), tied_database(rng, 300, 8)
  codes = (scores > 0).astype(np.uint8)
  hamming = lambda top: (codes[:, None, :] != db[top]).sum(-1)
  np.testing.assert_array_equal(hamming(rerank.top_k(scores, db, 60, "tie_break")),
                                hamming(metrics.nearest(codes, db, 60)))


def test_evaluate_adds_a_column_per_ranking_and_k_and_keeps_the_hamming_ones():
  rng = np.random.default_rng(2)
  scores, db = scores_with_dyadic_weights(rng, 6, 8), tied_database(rng, 200, 8)
  codes = (scores > 0).astype(np.uint8)
  query_labels, db_labels = rng.integers(0, 3, 6), rng.integers(0, 3, 200)
  plain = metrics.evaluate(codes, db, query_labels, db_labels, ks=(5, 40))
  both = metrics.evaluate(codes, db, query_labels, db_labels, ks=(5, 40),
                          query_scores=scores, rankings=rerank.RANKINGS)
  assert {k: both[k] for k in plain} == plain
  for ranking in rerank.RANKINGS:
    for k in (5, 40):
      top = brute_force(scores, db, k, ranking)
      assert both[f"p@{k}_{ranking}"] == pytest.approx(
          np.mean(db_labels[top] == query_labels[:, None]))
  with pytest.raises(ValueError, match="need query_scores"):
    metrics.evaluate(codes, db, query_labels, db_labels, ks=(5,), rankings=("tie_break",))


def test_precision_at_with_multi_hot_labels():
  query_labels = np.array([[1, 0, 1], [0, 1, 0]])
  db_labels = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]])
  top = np.array([[0, 3], [1, 2]])
  assert rerank.precision_at(top, query_labels, db_labels) == pytest.approx(2 / 4)


@pytest.mark.parametrize("ranking", rerank.RANKINGS)
def test_the_index_reranking_of_all_candidates_equals_the_top_k(ranking):
  rng = np.random.default_rng(3)
  scores, db = scores_with_dyadic_weights(rng, 4, 10), tied_database(rng, 150, 10)
  for row in range(4):
    positions = np.arange(150)
    distances = ((scores[row] > 0) != db.astype(bool)).sum(1)
    order = rerank_candidates(scores[row], positions, distances, db, ranking)
    np.testing.assert_array_equal(positions[order], brute_force(scores[row:row + 1], db, 150,
                                                       ranking)[0])


def test_a_sweep_scores_the_extra_rankings_from_its_runs_query_scores():
  from configs import synthetic
  from hashvae import data
  from hashvae.sweep import experiment, specs

  from conftest import with_fields

  config = with_fields(synthetic.get_config("method=ssb_vae+lsh"), seeds=(0,),
                       epochs=1, extra_rankings=("tie_break",))
  dataset = data.load(data.spec_from_fields(config.data.to_dict()))
  out = specs.train(config, specs.make_run(config, dataset, "ssb_vae"),
                    specs.build_grid(config, "ssb_vae"))
  np.testing.assert_array_equal(out.query_scores > 0, out.query_codes.astype(bool))
  rows = experiment.train_method(config, dataset, "ssb_vae").rows
  for i, row in enumerate(rows):
    want = rerank.reranked_precision(out.query_scores[i], out.query_codes[i], out.db_codes[i],
                                     dataset.test.labels, dataset.database_labels,
                                     (10, 50), ("tie_break",))
    assert {k: row[k] for k in want} == pytest.approx(want)
  fitted = experiment.train_method(config, dataset, "lsh").rows[0]
  assert np.isnan(fitted["p@10_tie_break"]) and np.isfinite(fitted["p@10"])
