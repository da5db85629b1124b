"""Reports from a handmade results.csv, and launch.reproduce / launch.report."""

import os
import subprocess
import sys

import numpy as np
import pytest

from hashvae.retrieval import metrics
from hashvae.store import reports, results

from conftest import ROOT

HEADER = "dataset,method,bits,seed,level,alpha,beta,gamma,status,diverged_epoch,p@100,map@100\n"
ROWS = """snip,ssb_vae,16,0,0.1,1,1,1,ok,,0.60,0.70
snip,ssb_vae,16,1,0.1,1,1,1,ok,,0.64,0.74
snip,ssb_vae,16,2,0.1,1,1,1,diverged,3,0.00,0.00
snip,ssb_vae,16,0,1.0,1,1,1,ok,,0.70,0.80
snip,phs_gs,16,0,0.1,1,1,1,ok,,0.40,0.50
snip,phs_gs,16,1,0.1,1,1,1,ok,,0.50,0.52
snip,ssb_vae,32,0,0.1,1,1,1,ok,,0.90,0.91
"""


def handmade(tmp_path):
  path = tmp_path / "results.csv"
  path.write_text(HEADER + ROWS)
  return results.read_csv(str(path))


def test_table_cells_are_means_and_stds_of_the_rows(tmp_path):
  rows = handmade(tmp_path)
  text = reports.markdown(rows)
  ssb = np.array([0.60, 0.64])  # the diverged seed is left out
  assert f"| SSB-VAE | {ssb.mean():.3f} ± {ssb.std():.3f} (1 div.) | 0.700 ± 0.000 |" in text
  phs = np.array([0.40, 0.50])
  assert f"| PHS-GS | {phs.mean():.3f} ± {phs.std():.3f} |  |" in text
  assert "## snip, 16 bits" in text and "## snip, 32 bits" in text
  assert "### map@100" in text
  tex = reports.latex(rows)
  assert r"SSB-VAE & 0.620 $\pm$ 0.020 (1 div.) & 0.700 $\pm$ 0.000 \\" in tex
  assert tex.count(r"\begin{tabular}") == 4  # 2 metrics x 2 code lengths


def test_report_entry_point_merges_files_and_draws_the_figure(tmp_path):
  handmade(tmp_path)
  other = tmp_path / "more.csv"
  other.write_text(HEADER + "snip,vdsh_s,16,0,0.1,1,1,1,ok,,0.30,0.31\n")
  out = tmp_path / "out"
  proc = subprocess.run([sys.executable, "-m", "launch.report",
                         f"--results={tmp_path / 'results.csv'},{other}", f"--out={out}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "| VDSH-S | 0.300 ± 0.000 |" in (out / "summary.md").read_text()
  png = (out / "p_at_100.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_reports_of_a_method_whose_runs_all_diverged(tmp_path):
  rows = handmade(tmp_path)
  for row in rows:
    if row["method"] == "phs_gs":
      row.update(status="diverged", diverged_epoch=2)
  written = reports.write_reports(rows, str(tmp_path))
  assert [os.path.basename(p) for p in written] == ["summary.md", "summary.tex",
                                                   "p_at_100.png"]
  table = reports.markdown(rows)
  assert "| PHS-GS | diverged |" in table and "| SSB-VAE | 0.620" in table


def test_reproduce_rejects_misspelt_fields_and_bad_data_in_one_line(tmp_path):
  base = [sys.executable, "-m", "launch.reproduce", "--dataset=snippets", "--bits=16",
          f"--workdir={tmp_path}"]
  # epochs=0 would fail its check: a run that ignored the typo stops at once.
  typo = subprocess.run(base + ["--set=epoch=1,epochs=0"], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)
  assert typo.returncode != 0 and "unknown config field 'epoch'" in typo.stderr
  missing = subprocess.run(base + [f"--data_path={tmp_path}/missing"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
  assert missing.returncode != 0 and "Traceback" not in missing.stderr
  assert "DataError" in missing.stderr and "missing" in missing.stderr
  assert not (tmp_path / "snippets_16" / "config.json").exists()


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_reproduce_runs_cells_and_skips_finished_ones(tmp_path):
  args = [sys.executable, "-m", "launch.reproduce", "--dataset=synthetic", "--bits=4,8",
          f"--workdir={tmp_path}", "--set=epochs=1,seeds=(0,1),ks=(10,)"]
  first = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert first.returncode == 0, first.stderr[-2000:]
  rows = results.read_csv(str(tmp_path / "results.csv"))
  assert len(rows) == 2 * 3 * 2 * 2  # bits x methods x levels x seeds
  assert {r["bits"] for r in rows} == {4, 8}
  assert (tmp_path / "synthetic_8" / "summary.md").exists()
  again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0
  assert again.stderr.count("finished earlier, skipping") == 2
  assert results.read_csv(str(tmp_path / "results.csv")) == rows


@pytest.mark.slow  # two tunes of two methods (about a minute on 2 cores)
def test_reproduce_tune_compares_the_tuned_methods_of_every_cell(tmp_path):
  args = [sys.executable, "-m", "launch.reproduce", "--tune", "--dataset=synthetic",
          "--bits=4", "--method=ssb_vae+pl_hash", f"--workdir={tmp_path}", "--cpu_devices=1",
          "--set=epochs=2,seeds=(0,1),ks=(10,),tune.seeds=(0,),tune.candidates=1,"
          "tune.metric=p@10"]
  first = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert first.returncode == 0, first.stderr[-3000:]
  cell = tmp_path / "synthetic_4"
  chosen = results.read_csv(str(cell / "weights.csv"))
  assert {r["method"] for r in chosen} == {"ssb_vae", "pl_hash"}
  rows = results.read_csv(str(tmp_path / "results.csv"))
  assert rows == results.read_csv(str(cell / "final" / "results.csv"))
  for r in rows:  # the final sweep trained the weights chosen on validation
    pick = next(c for c in chosen if c["method"] == r["method"] and c["p"] == r["level"])
    assert r["alpha"] == pytest.approx(pick["alpha"])
  compare = (tmp_path / "compare.md").read_text()
  assert "SSB-VAE" in compare and "PL-Hash" in compare
  assert (tmp_path / "compare_synthetic_4.png").exists()
  again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stderr.count("search already finished") == 2
  assert (tmp_path / "compare.md").read_text() == compare


def test_pr_figure_draws_one_line_per_method_and_level_averaged_over_seeds(tmp_path):
  rows = handmade(tmp_path)  # 16 bits: ssb_vae at 0.1 (2 ok, 1 diverged) and 1.0,
  # phs_gs at 0.1; 32 bits: ssb_vae at 0.1.
  curves = []
  for i, row in enumerate(rows):
    bits = row["bits"]
    precision = np.linspace(1, 0.5, bits + 1) - 0.01 * i
    curves.append(dict(radius=np.arange(bits + 1), precision=precision,
                       recall=np.linspace(0, 1, bits + 1), empty=np.zeros(bits + 1)))
  means = reports.mean_curves(rows, curves)
  # Rows 0 and 1 are the finished ssb_vae seeds at 0.1; row 2 diverged.
  np.testing.assert_allclose(means[("snip", 16)][("ssb_vae", 0.1)]["precision"],
                             np.linspace(1, 0.5, 17) - 0.005)
  path = tmp_path / "pr.png"
  drawn = reports.pr_figure(rows, curves, str(path))
  assert drawn == {("snip", 16): ["SSB-VAE, 0.1", "SSB-VAE, 1", "PHS-GS, 0.1"],
                   ("snip", 32): ["SSB-VAE, 0.1"]}
  png = path.read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
  with pytest.raises(ValueError, match="one curve per row"):
    reports.pr_figure(rows, curves[:-1], str(path))


def test_pr_figure_of_real_radius_curves(tmp_path):
  rng = np.random.default_rng(0)
  ql, dl = rng.integers(0, 3, 20), rng.integers(0, 3, 90)
  rows, curves = [], []
  for seed in (0, 1):
    centres = rng.integers(0, 2, (3, 6))
    qc = centres[ql] ^ (rng.uniform(size=(20, 6)) < 0.2)
    dc = centres[dl] ^ (rng.uniform(size=(90, 6)) < 0.2)
    rows.append(dict(dataset="toy", method="ssb_vae", bits=6, seed=seed, level=0.1,
                     status="ok"))
    curves.append(metrics.radius_curve(qc, dc, ql, dl))
  drawn = reports.pr_figure(rows, curves, str(tmp_path / "pr.png"))
  assert drawn == {("toy", 6): ["SSB-VAE, 0.1"]}
  mean = reports.mean_curves(rows, curves)[("toy", 6)][("ssb_vae", 0.1)]
  assert np.all(np.diff(mean["recall"]) >= 0) and mean["recall"][-1] == 1.0


def test_tables_include_the_new_metrics_when_measured(tmp_path):
  rows = handmade(tmp_path)
  for i, row in enumerate(rows):
    row.update({"ndcg@100": 0.5 + 0.01 * i, "map@all": 0.3, "p@r2": 0.7, "p@r2_empty": 0.1})
  text = reports.markdown(rows)
  assert "### ndcg@100" in text and "### map@all" in text and "### p@r2 " in text
  assert "p@r2_empty" not in text  # a diagnostic, not a table
  assert text.index("### map@100") < text.index("### ndcg@100")  # METRICS order


def test_tables_lead_with_the_first_cut_off_when_it_is_not_100(tmp_path):
  rows = [dict(dataset="toy", method="ssb_vae", bits=8, seed=0, level=0.1, status="ok",
               diverged_epoch="", **{"p@10": 0.4, "r@10": 0.1, "map@all": 0.3, "p@r2": 0.5})]
  tables = reports.cells(rows)[("toy", 8)]
  assert list(tables) == ["p@10", "map@all", "p@r2"]
