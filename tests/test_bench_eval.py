"""The evaluation benchmark runs, and its numpy baseline agrees with evaluate."""

from hashvae.retrieval import metrics
from launch import bench_eval


def test_snippets_like_keeps_the_class_proportions():
  query_codes, db_codes, query_labels, db_labels = bench_eval.snippets_like(16, 0.1)
  assert query_codes.shape == (228, 16) and db_codes.shape == (1006, 16)
  assert (db_labels == 4).sum() == 22  # engineering: 220 / 10


def test_evaluate_figure_agrees_with_the_numpy_baseline():
  figure = bench_eval.evaluate_vs_numpy(16, 0.05, (5, 50, 200))
  assert figure["max_abs_diff"] < 1e-5
  assert figure["numpy_s"] > 0 and figure["evaluate_s"] > 0 and figure["radius_curve_s"] > 0


def test_released_style_baseline_is_six_ranking_passes_equal_to_evaluate(monkeypatch):
  data = bench_eval.snippets_like(16, 0.05)
  ks = (5, 50, 200)
  passes = []
  original = bench_eval.numpy_metrics
  monkeypatch.setattr(bench_eval, "numpy_metrics",
                      lambda *a, **kw: passes.append(a[4:6]) or original(*a, **kw))
  stable = bench_eval.released_style(data, ks, sort_kind="stable")
  assert passes == [(("p", "r"), 5), (("p",), 50), (("p",), 200), (("map",), 5),
                    (("map",), 50), (("map",), 200)]
  ours = metrics.evaluate(*data, ks=ks)
  assert set(stable) == {"p@5", "r@5", "p@50", "p@200", "map@5", "map@50", "map@200"}
  for name, value in stable.items():
    assert abs(float(ours[name]) - value) < 1e-5, name


def test_the_16_bit_evaluate_figure_agrees_with_the_numpy_brute_force():
  from hashvae.benchmarks.accelerator import clustered_codes
  figure = bench_eval.evaluate_16_bits_figure(clustered_codes(200, 3000, 16), (10, 100),
                                              brute_queries=20)
  assert figure["max_abs_diff_vs_brute_force"] < 1e-5
  assert figure["pairwise_queries_timed"] == 20 and figure["distinct_queries"] <= 200


def test_top_k_figure_checks_every_path_against_faiss_or_says_why_not():
  data = bench_eval.snippets_like(32, 0.05)
  figure = bench_eval.top_k_figure(data[0], data[1], 7)
  try:
    import faiss  # noqa: F401
  except ImportError:
    assert "pip install .[faiss]" in figure["skipped"]
  else:
    assert figure["ratio_best"] == max(figure["ratio_nearest"], figure["ratio_multi_index"])
