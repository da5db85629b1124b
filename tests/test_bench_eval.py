"""The evaluation benchmark runs, and its numpy baseline agrees with evaluate."""

from launch import bench_eval


def test_snippets_like_keeps_the_class_proportions():
  query_codes, db_codes, query_labels, db_labels = bench_eval.snippets_like(16, 0.1)
  assert query_codes.shape == (228, 16) and db_codes.shape == (1006, 16)
  assert (db_labels == 4).sum() == 22  # engineering: 220 / 10


def test_evaluate_figure_agrees_with_the_numpy_baseline():
  figure = bench_eval.evaluate_vs_numpy(16, 0.05, (5, 50, 200))
  assert figure["max_abs_diff"] < 1e-5
  assert figure["numpy_s"] > 0 and figure["evaluate_s"] > 0
