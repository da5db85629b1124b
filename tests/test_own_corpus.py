"""A newcomer's own corpus, end to end: the README's commands, in its order,
on a 2,000-document CSV table and on a multi-label JSON lines table.

Each command is the README's (checked below against README.md) with the
paths of this corpus and tiny shapes appended, run as a user runs it.
"""

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from hashvae import data

from conftest import ROOT

# Appended to every training command: the README's commands with tiny shapes.
TINY = ["--config.epochs=2", "--config.seeds=(0,)", "--config.levels=(0.1,1.0)",
        "--config.model.hidden=(32,)", "--config.data.max_features=300",
        "--config.eval_batch_size=500", "--cpu_devices=1"]
TUNE_TINY = ["--config.tune.candidates=2", "--config.tune.seeds=(0,)",
             "--config.tune.levels=(1.0,)", "--config.tune.halving_rounds=1"]


def synthetic_documents(items: int, seed: int):
  """(texts, labels): the synthetic generator's bag-of-words documents
  written out as words ("w17 w17 w3 ..."), 4 classes."""
  spec = data.SyntheticSpec(num_classes=4, dims=120, train_size=items, validation_size=1,
                            test_size=1, doc_length=25, noise=0.3, split_seed=seed)
  split = data.load(spec).train
  rows = split.inputs.tocsr()  # log(1 + tf): expm1 gives each word's count back
  texts = []
  for i in range(items):
    lo, hi = rows.indptr[i], rows.indptr[i + 1]
    words = [f"w{j}" for j, v in zip(rows.indices[lo:hi], np.expm1(rows.data[lo:hi]),
                                      strict=True) for _ in range(int(round(v)))]
    texts.append(" ".join(words))
  return texts, [f"topic{int(c)}" for c in split.labels]


def write_csv_corpus(folder):
  texts, labels = synthetic_documents(2000, seed=0)
  for name, rows in (("train.csv", range(0, 1800)), ("test.csv", range(1800, 2000))):
    with open(folder / name, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["id", "text", "label"])
      writer.writerows([f"doc-{i}", texts[i], labels[i]] for i in rows)
  return texts[1800]


def write_multilabel_corpus(folder):
  texts, labels = synthetic_documents(1200, seed=1)
  rng = np.random.default_rng(0)
  for name, rows in (("train.jsonl", range(0, 1000)), ("test.jsonl", range(1000, 1200))):
    with open(folder / name, "w", encoding="utf-8") as f:
      for i in rows:
        j = int(rng.integers(len(texts)))  # a second topic mixed in
        item = dict(text=texts[i] + " " + texts[j], label=sorted({labels[i], labels[j]}))
        f.write(json.dumps(item) + "\n")
  return texts[1000]


def run(*args, cwd):
  proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                        text=True, timeout=900,
                        env=dict(os.environ, PYTHONPATH=ROOT))
  assert proc.returncode == 0, f"{args}\n{proc.stderr[-3000:]}"
  return proc


def test_the_commands_are_the_readme_s():
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  for stem in ("python -m launch.main --config=configs/table.py:method=ssb_vae "
               "--config.data.path=train.jsonl",
               "python -m launch.tune --config=", "python -m launch.compare --out=",
               "python -m launch.index --workdir=", "python -m launch.search --index="):
    assert stem in readme, stem


@pytest.mark.parametrize("corpus", ["csv", "multilabel_jsonl"])
def test_own_corpus_from_table_to_search(tmp_path, corpus):
  if corpus == "csv":
    query = write_csv_corpus(tmp_path)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
  else:
    query = write_multilabel_corpus(tmp_path)
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
  runs = tmp_path / "runs"
  data_flags = [f"--config.data.path={train}", f"--config.data.test_path={test}"]

  # 1. the README's table.py sweep
  sweep = run("launch.main", "--config=configs/table.py:method=ssb_vae", *data_flags,
              f"--workdir={runs / 'mine'}", *TINY, cwd=ROOT)
  assert re.search(r"data text_table: .*(single|multi)-label", sweep.stderr)
  if corpus == "multilabel_jsonl":  # which loss path ran, and the switch
    assert "loss.multilabel" in sweep.stderr and "sigmoid" in sweep.stderr
  assert "dropped 5000" in sweep.stderr  # the default cut-off beyond 1,800 items
  with open(runs / "mine" / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
  assert "p@100" in rows[0] and "p@5000" not in rows[0]

  # 2. a tune of two methods, then the sweep of their chosen weights
  run("launch.tune", "--config=configs/table.py:method=ssb_vae+pca_itq", *data_flags,
      f"--workdir={runs / 'tune'}", *TINY, *TUNE_TINY, cwd=ROOT)
  with open(runs / "tune" / "weights.csv") as f:
    weights = list(csv.DictReader(f))
  assert {w["dataset"] for w in weights} == {"text_table"}  # keyed by this corpus
  final = runs / "tune" / "final" / "results.csv"
  assert final.exists()

  # 3. a compare of the tuned methods
  run("launch.compare", f"--out={runs / 'cmp'}", f"--results={final}", cwd=ROOT)
  table = (runs / "cmp" / "compare.md").read_text()
  assert "SSB-VAE" in table and "pca_itq" in table and "text_table, 16 bits" in table

  # 4. an index, 5. a text search
  index = tmp_path / "mine.hvi"
  run("launch.index", f"--workdir={runs / 'mine'}", "--run=best", "--level=1.0",
      f"--out={index}", cwd=ROOT)
  found = run("launch.search", f"--index={index}", "--text", query, "--k=5", cwd=ROOT)
  lines = [line for line in found.stdout.splitlines() if "d=" in line]
  assert len(lines) == 5, found.stdout
  if corpus == "csv":  # the ids of the user's id column
    assert all("doc-" in line for line in lines), found.stdout
  distances = [int(re.search(r"d=(\d+)", line).group(1)) for line in lines]
  assert distances == sorted(distances)
