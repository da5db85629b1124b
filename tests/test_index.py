"""The searchable index, the search CLI and the notebook API, on a small text corpus."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from hashvae import api
from hashvae.data import DataError
from hashvae.retrieval import index, metrics

from conftest import ROOT

TOPICS = {
    "sports": "football match goal team league score player coach stadium season",
    "health": "doctor patient hospital medicine disease treatment nurse clinic virus",
    "computers": "software computer program code linux windows network server data",
}


def corpus(rng, n):
  lines = []
  for i in range(n):
    label = list(TOPICS)[i % 3]
    words = rng.choice(TOPICS[label].split(), size=8).tolist()
    lines.append(" ".join(words) + f" item{i} {label}")
  return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  folder = tmp_path_factory.mktemp("idx")
  rng = np.random.default_rng(0)
  (folder / "data").mkdir()
  (folder / "data" / "train.txt").write_text(corpus(rng, 240))
  (folder / "data" / "test.txt").write_text(corpus(rng, 30))
  workdir = str(folder / "run")
  frame = api.run("configs/snippets.py:method=ssb_vae", workdir,
                  **{"data.path": str(folder / "data"), "seeds": (0, 1),
                     "levels": (1.0,), "epochs": 8, "batch_size": 20,
                     "model.hidden": (32,), "ks": (10,)})
  return folder, workdir, frame


def test_api_returns_the_results_and_reencodes_the_codes(trained):
  _, workdir, frame = trained
  assert list(frame["seed"]) == [0, 1] and (frame["method"] == "ssb_vae").all()
  sweep = api.Sweep(workdir)
  # results.csv, read back, holds every column of the returned frame.
  assert list(sweep.results.columns) == list(frame.columns)
  for column in frame.columns:
    if pd.api.types.is_numeric_dtype(frame[column]):
      np.testing.assert_allclose(sweep.results[column].astype(float),
                                 frame[column].astype(float), rtol=1e-6)
    else:
      assert list(sweep.results[column].astype(str)) == list(frame[column].astype(str))
  query_codes, db_codes = sweep.codes(1)
  encoder = sweep.encoder(1)
  np.testing.assert_array_equal(encoder.encode(sweep.dataset.database.inputs), db_codes)
  np.testing.assert_array_equal(encoder.encode_texts(sweep.dataset.test.texts), query_codes)
  assert sweep.best_run(1.0, "p@10") in (0, 1)


def test_index_search_equals_evaluate_ranking(trained):
  folder, workdir, _ = trained
  sweep = api.Sweep(workdir)
  path = str(folder / "index.npz")
  index.build(sweep, 1, path)
  loaded = index.load(path)
  query_codes, db_codes = sweep.codes(1)
  np.testing.assert_array_equal(loaded.db_codes, db_codes)
  positions, distances = loaded.search(query_codes, k=len(db_codes))
  # evaluate's order: by distance, ties by database index.
  for q in range(len(query_codes)):
    dist = (query_codes[q] != db_codes).sum(1)
    expected = np.lexsort((np.arange(len(dist)), dist))
    np.testing.assert_array_equal(positions[q], expected)
    np.testing.assert_array_equal(distances[q], dist[expected])
  # precision of the index's top 10 equals evaluate's p@10.
  labels = sweep.dataset.database.labels
  hits = (labels[positions[:, :10]] == sweep.dataset.test.labels[:, None]).mean()
  assert hits == pytest.approx(metrics.evaluate(query_codes, db_codes,
                                                sweep.dataset.test.labels, labels,
                                                (10,))["p@10"], abs=1e-6)


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_search_cli_answers_text_queries(trained):
  folder, workdir, _ = trained
  path = str(folder / "cli_index.npz")
  made = subprocess.run([sys.executable, "-m", "launch.index", f"--workdir={workdir}",
                         "--run=best", "--level=1.0", "--metric=p@10", f"--out={path}"], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert made.returncode == 0, made.stderr[-2000:]
  proc = subprocess.run([sys.executable, "-m", "launch.search", f"--index={path}",
                         "--text", "football goal league stadium", "--k=3"], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = [line for line in proc.stdout.splitlines() if "distance" in line]
  assert len(lines) == 3 and all("sports" in line for line in lines)
  assert "queries answered in" in proc.stderr and "warning" not in proc.stderr
  search = lambda *args: subprocess.run(
      [sys.executable, "-m", "launch.search", f"--index={path}", *args], cwd=ROOT,
      capture_output=True, text=True, timeout=300)
  # A query with no vocabulary term is answered, with a warning naming it.
  proc = search("--query-file=" + str(write(folder / "q.txt", "football goal\nthe of\n")))
  assert proc.returncode == 0
  assert "warning: query 2 ('the of') has no term" in proc.stderr
  assert "query 1" not in proc.stderr
  proc = search("--query-file=" + str(write(folder / "blank.txt", "\n  \n")))
  assert proc.returncode != 0 and "holds no query" in proc.stderr
  proc = search("--text", "football", "--k=0")
  assert proc.returncode != 0 and "--k" in proc.stderr
  proc = subprocess.run([sys.executable, "-m", "launch.index", f"--workdir={workdir}",
                         "--run=99", f"--out={path}"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode != 0 and "run 99 is not a row of results.csv" in proc.stderr
  assert "Traceback" not in proc.stderr


def write(path, text):
  path.write_text(text)
  return path


def test_search_in_blocks_of_queries_equals_all_at_once(trained, monkeypatch):
  folder, workdir, _ = trained
  built = api.Sweep(workdir)
  path = str(folder / "blocks.npz")
  index.build(built, 0, path)
  loaded = index.load(path)
  queries = np.concatenate([built.codes(0)[0]] * 3)  # 90 queries
  whole = loaded.search(queries, k=25)
  monkeypatch.setattr(index, "QUERY_BLOCK", 7)  # 13 blocks, the last of 6
  blocks = loaded.search(queries, k=25)
  for a, b in zip(whole, blocks, strict=True):
    np.testing.assert_array_equal(a, b)
  assert whole[0].shape == (90, 25)


def test_a_sweep_whose_data_changed_is_refused(trained, tmp_path):
  folder, workdir, _ = trained
  changed = tmp_path / "data"
  changed.mkdir()
  (changed / "train.txt").write_text((folder / "data" / "train.txt").read_text())
  test = (folder / "data" / "test.txt").read_text().splitlines()
  test[0] = test[0].rsplit(" ", 1)[0] + (" health" if test[0].endswith("sports")
                                         else " sports")
  (changed / "test.txt").write_text("\n".join(test) + "\n")
  copy = tmp_path / "run"
  copy.mkdir()
  for name in ("results.csv", "codes.npz"):
    (copy / name).write_bytes((folder / "run" / name).read_bytes())
  config = (folder / "run" / "config.json").read_text()
  (copy / "config.json").write_text(config.replace(str(folder / "data"), str(changed)))
  with pytest.raises(DataError, match="no longer matches the sweep"):
    _ = api.Sweep(str(copy)).dataset
  assert api.Sweep(workdir).dataset.name == "snippets"  # the unchanged data loads


def test_bad_index_files_fail_clearly(trained, tmp_path):
  folder, workdir, _ = trained
  good = str(folder / "index.npz")
  if not os.path.exists(good):
    index.build(api.Sweep(workdir), 0, good)
  data = open(good, "rb").read()
  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(data[: len(data) // 2])
  with pytest.raises(index.IndexFormatError, match="corrupt or truncated"):
    index.load(str(truncated))
  garbage = tmp_path / "garbage.npz"
  garbage.write_bytes(b"not an index at all")
  with pytest.raises(index.IndexFormatError, match="corrupt or truncated"):
    index.load(str(garbage))
  with np.load(good, allow_pickle=False) as f:
    arrays = {k: f[k] for k in f.files}
  arrays["meta"] = np.array(str(arrays["meta"]).replace(f'"version": {index.VERSION}', '"version": 99'))
  np.savez(tmp_path / "future.npz", **arrays)
  with pytest.raises(index.IndexFormatError, match="version 99"):
    index.load(str(tmp_path / "future.npz"))
  np.savez(tmp_path / "other.npz", x=np.zeros(3))
  with pytest.raises(index.IndexFormatError, match="not a hashvae index"):
    index.load(str(tmp_path / "other.npz"))
