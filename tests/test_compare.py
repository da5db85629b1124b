"""reports.winners / comparison_markdown / comparison_figures and launch.compare,
on handmade rows (no training)."""

import re
import subprocess
import sys

import numpy as np
import pytest

from hashvae.store import reports, results

from conftest import ROOT

PNG = b"\x89PNG\r\n\x1a\n"
NAN = float("nan")


def run_rows(method, values, dataset="snip", bits=16, diverged=()):
  """results.csv rows of `method`: {level: [p@100 per seed]}; seeds in
  `diverged` are diverged runs."""
  return [dict(dataset=dataset, method=method, bits=bits, seed=seed, level=level,
               alpha=1.0, status="diverged" if seed in diverged else "ok",
               diverged_epoch=3 if seed in diverged else "", **{"p@100": p, "map@100": p / 2})
          for level, ps in values.items() for seed, p in enumerate(ps)]


# --- winners ----------------------------------------------------------------

def test_winners_need_a_lead_larger_than_both_stds():
  table = {
      # a clear lead: 0.60 - 0.55 = 0.05 > 0.01 and > 0.02
      ("a", 0.1): (0.60, 0.01, 3, 0), ("b", 0.1): (0.55, 0.02, 3, 0),
      # the lead 0.05 is smaller than the leader's own std 0.06
      ("a", 0.2): (0.60, 0.06, 3, 0), ("b", 0.2): (0.55, 0.01, 3, 0),
      # the lead 0.03 is smaller than the runner-up's std 0.04
      ("a", 0.3): (0.57, 0.04, 3, 0), ("b", 0.3): (0.60, 0.01, 3, 0),
      # a tie
      ("a", 0.4): (0.50, 0.0, 3, 0), ("b", 0.4): (0.50, 0.0, 3, 0),
      # one method only
      ("a", 0.5): (0.90, 0.0, 3, 0),
      # a lead exactly equal to a std is not larger (0.75 - 0.5 = 0.25, exact)
      ("a", 0.6): (0.75, 0.25, 3, 0), ("b", 0.6): (0.5, 0.0, 3, 0),
      # the runner-up is the second best, not the worst: b leads c by 0.02,
      # more than 0.01 and 0.005 (but would lead a by far more)
      ("a", 0.7): (0.20, 0.01, 3, 0), ("b", 0.7): (0.70, 0.01, 3, 0),
      ("c", 0.7): (0.68, 0.005, 3, 0),
      # b leads c by 0.01 < c's std 0.015, though it leads a by 0.5
      ("a", 0.8): (0.20, 0.0, 3, 0), ("b", 0.8): (0.70, 0.01, 3, 0),
      ("c", 0.8): (0.69, 0.015, 3, 0),
  }
  assert reports.winners(table) == {0.1: "a", 0.7: "b"}


def test_winners_leave_out_methods_whose_runs_all_diverged():
  table = {
      # c's runs all diverged: its (stale) mean 0.9 must not take the lead
      ("a", 0.1): (0.60, 0.01, 3, 0), ("b", 0.1): (0.50, 0.01, 3, 0),
      ("c", 0.1): (0.90, 0.0, 0, 3),
      # as summarise writes it: nan mean and std; a alone remains, no winner
      ("a", 0.2): (0.60, 0.01, 3, 0), ("c", 0.2): (NAN, NAN, 0, 3),
      # partly diverged runs count with their finished seeds
      ("a", 0.3): (0.40, 0.01, 2, 1), ("b", 0.3): (0.30, 0.01, 3, 0),
  }
  assert reports.winners(table) == {0.1: "a", 0.3: "a"}
  assert reports.winners({}) == {}


def test_winners_of_rows_through_cells():
  rows = (run_rows("pl_hash", {0.1: [0.60, 0.62], 1.0: [0.70, 0.80]})
          + run_rows("im_hash", {0.1: [0.50, 0.52], 1.0: [0.74, 0.76]}))
  table = reports.cells(rows)[("snip", 16)]["p@100"]
  # 0.1: 0.61 +- 0.01 against 0.51 +- 0.01; 1.0: 0.75 +- 0.05 against 0.75 +- 0.01
  assert table[("pl_hash", 0.1)][:3] == pytest.approx((0.61, 0.01, 2))
  assert reports.winners(table) == {0.1: "pl_hash"}


# --- compare.md and the figures ---------------------------------------------

def comparison_rows():
  """16 bits: pl_hash clearly ahead at 0.1, im_hash at 1.0, nobody at 0.5;
  ssb_vae diverged entirely at 0.5. 32 bits: one method, no winner."""
  return (run_rows("pl_hash", {0.1: [0.60, 0.62, 0.61], 0.5: [0.65, 0.70, 0.66],
                               1.0: [0.70, 0.71, 0.72]})
          + run_rows("im_hash", {0.1: [0.50, 0.52, 0.51], 0.5: [0.66, 0.64, 0.68],
                                 1.0: [0.80, 0.81, 0.79]})
          + run_rows("ssb_vae", {0.1: [0.40, 0.41, 0.39]})
          + run_rows("ssb_vae", {0.5: [0.9, 0.9, 0.9]}, diverged=(0, 1, 2))
          + run_rows("pl_hash", {0.1: [0.3, 0.5]}, bits=32))


def cell(values):
  values = np.array(values)
  return f"{values.mean():.3f} ± {values.std():.3f}"


def table_lines(text, section):
  part = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
  return [line for line in part.splitlines() if line.startswith("| ")]


def test_comparison_markdown_bolds_exactly_the_winners():
  text = reports.comparison_markdown(comparison_rows())
  assert text.startswith("# Comparison: p@100\n")
  assert table_lines(text, "snip, 16 bits") == [
      "| method | 0.1 | 0.5 | 1 |",
      f"| PL-Hash | **{cell([0.60, 0.62, 0.61])}** | {cell([0.65, 0.70, 0.66])} "
      f"| {cell([0.70, 0.71, 0.72])} |",
      f"| IM-Hash | {cell([0.50, 0.52, 0.51])} | {cell([0.66, 0.64, 0.68])} "
      f"| **{cell([0.80, 0.81, 0.79])}** |",
      f"| SSB-VAE | {cell([0.40, 0.41, 0.39])} | diverged |  |",
  ]
  assert table_lines(text, "snip, 32 bits") == [
      "| method | 0.1 |", f"| PL-Hash | {cell([0.3, 0.5])} |"]
  bold = re.findall(r"\*\*([^*]+)\*\*", text)
  assert bold.count("Bold") == 2  # the note under each table
  assert sorted(b for b in bold if b != "Bold") == sorted(
      [cell([0.60, 0.62, 0.61]), cell([0.80, 0.81, 0.79])])
  assert "\n3 seeds. **Bold**: the highest mean" in text
  assert "\n2 seeds. **Bold**" in text
  assert "more than both their stds" in text


def test_comparison_markdown_of_another_metric_and_a_missing_one():
  rows = comparison_rows()
  text = reports.comparison_markdown(rows, "map@100")
  assert f"| PL-Hash | **{cell([0.30, 0.31, 0.305])}** |" in text  # p@100 / 2
  with pytest.raises(ValueError, match="no ndcg@100 in the rows"):
    reports.comparison_markdown(rows, "ndcg@100")


def test_comparison_figures_one_png_per_dataset_and_bits(tmp_path):
  paths = reports.comparison_figures(comparison_rows(), str(tmp_path / "figs"))
  assert [p.split("/")[-1] for p in paths] == ["compare_snip_16.png", "compare_snip_32.png"]
  assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
      "compare_snip_16.png", "compare_snip_32.png"]  # no temporary files left
  for path in paths:
    png = open(path, "rb").read()
    assert png[:8] == PNG and len(png) > 10_000
  assert reports.comparison_figure_name("20 news/x", 64) == "compare_20_news_x_64.png"


def test_the_stars_sit_on_the_winners_points():
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib.figure import Figure

  table = reports.cells(comparison_rows())[("snip", 16)]["p@100"]
  ax = Figure().add_subplot()
  reports._precision_panel(ax, table, "t", "p@100", stars=reports.winners(table))
  lines = {line.get_label(): line for line in ax.get_lines()}
  stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
  np.testing.assert_allclose([s.get_xydata()[0] for s in stars], [(0.1, 0.61), (1.0, 0.80)])
  # each star has its method's colour; ssb_vae (diverged at 0.5) still has its 0.1 point
  assert stars[0].get_color() == lines["PL-Hash"].get_color()
  assert stars[1].get_color() == lines["IM-Hash"].get_color()
  assert list(lines["SSB-VAE"].get_xdata()) == [0.1]
  assert [t.get_text() for t in ax.get_legend().get_texts()] == [
      "PL-Hash", "IM-Hash", "SSB-VAE", "lead > both stds"]
  # precision_figure draws through the same panel, without stars
  ax = Figure().add_subplot()
  reports._precision_panel(ax, table, "t", "p@100")
  assert [line.get_marker() for line in ax.get_lines()] == ["o", "o", "o"]


def test_many_methods_keep_a_colour_and_band_each_and_the_legend_beside_the_axes():
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib.figure import Figure

  rows = [r for i in range(14) for r in run_rows(f"m{i}", {0.1: [0.5 + i / 100] * 2})]
  table = reports.cells(rows)[("snip", 16)]["p@100"]
  ax = Figure().add_subplot()
  reports._precision_panel(ax, table, "t", "p@100")
  colours = [tuple(matplotlib.colors.to_rgba(line.get_color())) for line in ax.get_lines()]
  assert len(colours) == 14 and len(set(colours)) == 14
  bands = [tuple(c.get_facecolor()[0][:3]) for c in ax.collections]
  assert bands == [c[:3] for c in colours]  # each band in its line's colour
  assert ax.get_legend().get_bbox_to_anchor().x0 > ax.bbox.x1 - 1  # outside, right


# --- launch.compare ---------------------------------------------------------

def compare(*args):
  return subprocess.run([sys.executable, "-m", "launch.compare", *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)


def test_compare_merges_files_and_writes_the_report_and_figures(tmp_path):
  rows = comparison_rows()
  pl = [r for r in rows if r["method"] == "pl_hash"]
  others = [r for r in rows if r["method"] != "pl_hash"]
  results.write_csv(str(tmp_path / "a.csv"), pl)
  results.write_csv(str(tmp_path / "b.csv"), others)
  out = tmp_path / "out"
  proc = compare(f"--results={tmp_path / 'a.csv'},{tmp_path / 'b.csv'}", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  expected = reports.comparison_markdown(
      results.read_csv(str(tmp_path / "a.csv")) + results.read_csv(str(tmp_path / "b.csv")))
  assert (out / "compare.md").read_text() == expected
  assert f"| PL-Hash | **{cell([0.60, 0.62, 0.61])}** |" in expected
  assert expected in proc.stdout
  assert sorted(p.name for p in out.iterdir()) == [
      "compare.md", "compare_snip_16.png", "compare_snip_32.png"]
  assert (out / "compare_snip_16.png").read_bytes()[:8] == PNG

  # a pattern stands for its matches; one that matches nothing is a usage error
  by_pattern = tmp_path / "by_pattern"
  proc = compare(f"--results={tmp_path / '[ab].csv'}", f"--out={by_pattern}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (by_pattern / "compare.md").read_text() == expected
  proc = compare(f"--results={tmp_path / 'z*.csv'}", f"--out={by_pattern}")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: --results: no file matches {str(tmp_path / 'z*.csv')!r}")

  # a run in both files: one line naming both places; nothing written
  # pl_hash's rows are level-major, seeds 0..2: (0.5, seed 1) is a.csv's 5th row, line 6
  dup = dict(others[0], method="pl_hash", seed=1, level=0.5)
  results.write_csv(str(tmp_path / "c.csv"), others + [dup])
  fresh = tmp_path / "fresh"
  proc = compare(f"--results={tmp_path / 'a.csv'},{tmp_path / 'c.csv'}", f"--out={fresh}")
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr and proc.stdout == ""
  last = proc.stderr.strip().splitlines()[-1]
  assert last == (f"error: WorkdirError: dataset snip, 16 bits, method pl_hash, level 0.5, "
                  f"seed 1 is in both {tmp_path / 'a.csv'}:6 and "
                  f"{tmp_path / 'c.csv'}:{len(others) + 2}: give each run once (one "
                  "results.csv per method, with its chosen weights)")
  assert not fresh.exists()

  # a metric no file measured: a usage error, nothing written
  proc = compare(f"--results={tmp_path / 'a.csv'}", f"--out={fresh}", "--metric=ndcg@100")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --metric=ndcg@100: not measured in these results (they hold p@100, map@100)")
  assert not fresh.exists()

