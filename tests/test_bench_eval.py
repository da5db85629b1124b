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
