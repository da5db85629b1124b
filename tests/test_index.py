"""The searchable index, the search CLI and the notebook API, on a small text corpus."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from hashvae import api
from hashvae.data import DataError
from hashvae.data.text import TextVectoriser
from hashvae.retrieval import index, index_file, metrics, query_text, ranking, rerank
from hashvae.retrieval.multi_index import MultiIndex

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


@pytest.fixture(scope="module")
def built(trained):
  folder, workdir, _ = trained
  path = str(folder / "index.hvi")
  index.build(api.Sweep(workdir), 1, path)
  return path


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


def test_index_round_trip_equals_evaluate_ranking(trained, built):
  folder, workdir, _ = trained
  sweep = api.Sweep(workdir)
  loaded = index.load(built)
  query_codes, db_codes = sweep.codes(1)
  np.testing.assert_array_equal(loaded.db_codes, db_codes)
  assert loaded.db_texts[5] == sweep.dataset.database.texts[5]
  result = loaded.ranked(query_codes, k=len(db_codes))
  # evaluate's order: by distance, ties by database index.
  for q in range(len(query_codes)):
    dist = (query_codes[q] != db_codes).sum(1)
    expected = np.lexsort((np.arange(len(dist)), dist))
    np.testing.assert_array_equal(result.positions[q], expected)
    np.testing.assert_array_equal(result.distances[q], dist[expected])
    np.testing.assert_array_equal(result.counts[q],
                                  np.bincount(dist, minlength=loaded.bits + 1))
  # precision of the index's top 10 equals evaluate's p@10.
  positions, _ = loaded.search(query_codes, 10)
  labels = sweep.dataset.database.labels
  hits = (labels[positions] == sweep.dataset.test.labels[:, None]).mean()
  assert hits == pytest.approx(metrics.evaluate(query_codes, db_codes,
                                                sweep.dataset.test.labels, labels,
                                                (10,))["p@10"], abs=1e-6)


@pytest.mark.parametrize("bits,k", [(3, 7), (6, 40), (13, 1), (6, 500)])
def test_ranking_equals_brute_force_with_many_ties(bits, k):
  rng = np.random.default_rng(bits)
  db, queries = rng.integers(0, 2, (300, bits)), rng.integers(0, 2, (9, bits))
  db[50:120] = db[3]  # 71 copies of one code: a long tie
  got = ranking.rank(queries, MultiIndex.build(db), k)
  for q in range(len(queries)):
    dist = (queries[q] != db).sum(1)
    order = np.lexsort((np.arange(len(db)), dist))[:k]
    np.testing.assert_array_equal(got.positions[q], order)
    np.testing.assert_array_equal(got.distances[q], dist[order])
    # exact up to the k-th item's distance; beyond it, -1 or the exact count
    last = dist[order[-1]]
    counts = np.bincount(dist, minlength=bits + 1)
    np.testing.assert_array_equal(got.counts[q][:last + 1], counts[:last + 1])
    assert np.all((got.counts[q][last + 1:] == -1) | (got.counts[q][last + 1:] == counts[last + 1:]))


def test_numpy_encoder_gives_the_jax_encoders_codes(trained, built):
  _, workdir, _ = trained
  sweep = api.Sweep(workdir)
  loaded, encoder = index.load(built), sweep.encoder(1)
  test, db = sweep.dataset.test, sweep.dataset.database
  # Seeded: no score within rounding of 0, so the bits agree exactly.
  np.testing.assert_array_equal(loaded.encode_texts(test.texts),
                                encoder.encode_texts(test.texts))
  np.testing.assert_array_equal(loaded.encode_texts(db.texts), sweep.codes(1)[1])
  dense = db.inputs[:20].toarray()
  scores = np.asarray(encoder._scores(encoder.variables, dense))
  np.testing.assert_allclose(loaded.encoder.scores(dense), scores, rtol=1e-5, atol=1e-5)
  # The batch norm statistics were trained away from their initial values.
  assert not np.allclose(loaded.arrays["encoder/norm_0/var"], 1.0)
  # One head, stored where an index written before head chains kept it.
  assert loaded.meta["encoder"]["chain"] == [dict(name="logits_head", activation="identity")]
  assert "encoder/head/kernel" in loaded.arrays and "encoder/head_0/kernel" not in loaded.arrays


def test_an_index_written_before_head_chains_loads_and_answers_the_same(built, tmp_path):
  loaded = index.load(built)
  header = index_file.read_header(built)
  head = {k: v for k, v in header.items() if k != "arrays"}
  layout = {k: v for k, v in head["meta"]["encoder"].items() if k != "chain"}
  assert layout == dict(layers=1, batch_norm=True, epsilon=1e-3, head="logits_head")
  old_path = str(tmp_path / "before_chains.hvi")
  index_file.write(old_path, dict(head, meta=dict(head["meta"], encoder=layout)),
                   {k: np.asarray(v) for k, v in loaded.arrays.items()})
  old = index.load(old_path)
  assert "chain" not in old.meta["encoder"] and old.encoder.activations == ("identity",)
  texts = ["football goal league", "doctor virus clinic", "linux server code data"]
  np.testing.assert_array_equal(old.text_scores(texts), loaded.text_scores(texts))
  for by in ("hamming", "tie_break"):
    a = old.ranked(old.encode_texts(texts), 7, old.text_scores(texts), by=by)
    b = loaded.ranked(loaded.encode_texts(texts), 7, loaded.text_scores(texts), by=by)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.distances, b.distances)


@pytest.mark.parametrize("tfidf", [False, True])
def test_query_vectoriser_equals_the_training_vectoriser(tfidf):
  docs = ["The football MATCH, the goal! 3rd goal", "doctor-patient: the doctor's clinic",
          "Linux server code; server code linux", "café naïve café über 42abc abc42"] * 3
  fitted = TextVectoriser.fit(docs, max_features=40, tfidf=tfidf, name="t")
  settings = dict(query_text.settings(fitted.counter), tfidf=tfidf)
  terms = fitted.counter.get_feature_names_out().tolist()
  mine = query_text.QueryVectoriser(settings, index_file.StringTable(
      *index_file.string_arrays(terms)), fitted.idf)
  queries = docs + ["goal goal football match the goal", "nothing known here", ""]
  indptr, indices, values = mine.rows(queries)
  theirs, _ = fitted.rows(fitted.counts(queries))
  np.testing.assert_array_equal(indptr, theirs.indptr)
  np.testing.assert_array_equal(indices, theirs.indices)
  np.testing.assert_array_equal(values, theirs.data)


def test_a_query_with_no_known_word_is_an_error_naming_it(built):
  loaded = index.load(built)
  with pytest.raises(index.NoKnownWordError, match=r"query 2 \('the xyzzy'\) has no word"):
    loaded.encode_texts(["football goal", "the xyzzy", "of"])


def test_opening_maps_the_arrays_and_reads_no_text(built):
  loaded = index.load(built)
  for name, array in loaded.arrays.items():
    assert isinstance(array, np.memmap), name
  assert isinstance(loaded.db_texts.data, np.memmap)
  assert loaded.first_line(7) == loaded.db_texts[7]  # one short line


def test_first_line_skips_blank_lines_and_cuts_long_ones():
  texts = ["\n  \n  Subject:   héllo   world \nbody", "x" * 5000, "\n" * 3000 + "late line",
           "", "é" * 300]
  data, offsets = index_file.string_arrays(texts)
  item = index.Index("mem", dict(text={}), dict(db_texts=data, db_texts_offsets=offsets))
  assert item.first_line(0) == "Subject: héllo world"
  assert item.first_line(1, width=50) == "x" * 47 + "..."
  assert item.first_line(2) == "late line"  # past the part read first
  assert item.first_line(3) == ""
  assert item.first_line(4, width=20) == "é" * 17 + "..."


def test_old_and_damaged_index_files_fail_clearly(built, tmp_path):
  np.savez(tmp_path / "old.npz", meta=np.array(json.dumps(dict(version=2, run=4))),
           db_codes=np.zeros((2, 1), np.uint8))
  with pytest.raises(index.IndexFormatError, match=r"old .npz format .*rebuild it with "
                     r"python -m launch.index --workdir=\S+ --run=4 --out=\S+old.hvi"):
    index.load(str(tmp_path / "old.npz"))
  raw = open(built, "rb").read()
  (tmp_path / "cut.hvi").write_bytes(raw[:len(raw) // 2])
  with pytest.raises(index.IndexFormatError, match="corrupt or truncated"):
    index.load(str(tmp_path / "cut.hvi"))
  (tmp_path / "text.hvi").write_bytes(b"not an index at all")
  with pytest.raises(index.IndexFormatError, match="not a hashvae index"):
    index.load(str(tmp_path / "text.hvi"))
  loaded = index.load(built)
  header = index_file.read_header(built)

  def rewritten(name, change_header=None, **arrays):
    path = str(tmp_path / name)
    head = {k: v for k, v in header.items() if k != "arrays"}
    index_file.write(path, change_header(head) if change_header else head,
                     {**{k: np.asarray(v) for k, v in loaded.arrays.items()}, **arrays})
    return path

  with pytest.raises(index.IndexFormatError, match="version 99"):
    index.load(rewritten("future.hvi", lambda h: dict(h, version=99)))
  items = len(loaded.db_ids)
  with pytest.raises(index.IndexFormatError, match=rf"db_codes has {items - 3} rows for "
                                                   rf"{items} ids"):
    index.load(rewritten("rows.hvi", db_codes=loaded.packed_codes[:-3]))
  wrong = np.zeros((3, loaded.bits), np.float32)
  with pytest.raises(index.IndexFormatError, match=r"encoder/head/kernel has shape"):
    index.load(rewritten("shape.hvi", **{"encoder/head/kernel": wrong}))
  assert index.load(rewritten("same.hvi")).search(loaded.db_codes[:2], 3)[0].shape == (2, 3)


def test_search_gives_the_order_evaluate_scores(built):
  loaded = index.load(built)
  queries = np.concatenate([loaded.db_codes[:30]] * 3)  # 90 queries, repeated codes
  positions, distances = loaded.search(queries, k=25)
  np.testing.assert_array_equal(positions, metrics.nearest(queries, loaded.db_codes, 25))
  np.testing.assert_array_equal(
      distances, (queries[:, None, :] != loaded.db_codes[positions]).sum(-1))


@pytest.mark.parametrize("by", ["tie_break", "asymmetric"])
def test_the_index_ranks_by_the_query_scores_as_evaluation_does(built, by):
  loaded = index.load(built)
  texts = [loaded.db_texts[i] for i in (0, 7, 40, 41, 90, 0)]
  scores = loaded.text_scores(texts)
  codes = loaded.encoder.codes(scores)
  result = loaded.ranked(codes, 40, scores, by)
  np.testing.assert_array_equal(result.positions,
                                rerank.top_k(scores, loaded.db_codes, 40, by))
  np.testing.assert_array_equal(
      result.distances, (codes[:, None, :] != loaded.db_codes[result.positions]).sum(-1))
  if by == "tie_break":  # the Hamming list's distances, reordered within each
    np.testing.assert_array_equal(result.distances, loaded.ranked(codes, 40).distances)
  proc = run_cli("launch.search", f"--index={built}", "--text", texts[0], "--k=5",
                 f"--ranking={by}", "--width=200")
  assert proc.returncode == 0, proc.stderr[-2000:]
  shown = [int(line.split()[3]) for line in proc.stdout.splitlines() if " d=" in line]
  assert shown == [int(loaded.item_id(p)) for p in result.positions[0, :5]]
  proc = run_cli("launch.search", f"--index={built}", "--query-id=5", f"--ranking={by}")
  assert proc.returncode == 2 and "query with --text or --query-file" in proc.stderr


def run_cli(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_search_cli_shows_ids_distances_and_ties(built, tmp_path):
  proc = run_cli("launch.search", f"--index={built}", "--text", "football goal league",
                 "--k=12")
  assert proc.returncode == 0, proc.stderr[-2000:]
  results = [line for line in proc.stdout.splitlines() if " d=" in line]
  assert len(results) == 12 and all(len(line) <= 100 for line in proc.stdout.splitlines())
  heads = [line for line in proc.stdout.splitlines() if line.startswith("  distance ")]
  shown = sum(int(h.split(", ")[1].split()[0]) if "shown" in h
              else int(h.split(": ")[1].split()[0]) for h in heads)
  assert heads and shown == 12
  (tmp_path / "q.txt").write_text("football goal\n\nthe of xyzzy\n")
  proc = run_cli("launch.search", f"--index={built}", f"--query-file={tmp_path}/q.txt")
  terms = len(index.load(built).vectoriser.vocabulary_table)
  assert proc.returncode == 2
  assert proc.stderr.strip().endswith(f"q.txt:3: the query 'the of xyzzy' has no word of "
                                      f"the index's vocabulary ({terms} terms): nothing "
                                      "to search with")


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_index_cli_writes_what_search_reads(trained):
  folder, workdir, _ = trained
  made = run_cli("launch.index", f"--workdir={workdir}", "--run=best", "--level=1.0",
                 "--metric=p@10")
  assert made.returncode == 0, made.stderr[-2000:]
  path = next(str(p) for p in (folder / "run").glob(f"index_*{index.SUFFIX}"))
  proc = run_cli("launch.search", f"--index={path}", "--text", "football goal stadium",
                 "--k=3")
  assert proc.returncode == 0 and "queries answered in" in proc.stderr
  assert len([line for line in proc.stdout.splitlines() if " d=" in line]) == 3
  proc = run_cli("launch.search", f"--index={path}", "--query-id=5", "--k=1")
  assert proc.returncode == 0 and " id        5 " in proc.stdout
  proc = run_cli("launch.index", f"--workdir={workdir}", "--run=99")
  assert proc.returncode != 0 and "run 99 is not a row of results.csv" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_index_cli_writes_a_faiss_index_that_faiss_reads_back(trained, tmp_path):
  faiss = pytest.importorskip("faiss", reason="faiss is an optional extra: pip install .[faiss]")
  _, workdir, _ = trained
  out, faiss_out = str(tmp_path / "run1.hvi"), str(tmp_path / "run1.faiss")
  made = run_cli("launch.index", f"--workdir={workdir}", "--run=1", f"--out={out}",
                 f"--faiss_out={faiss_out}")
  assert made.returncode == 0, made.stderr[-2000:]
  loaded = index.load(out)
  queries = loaded.db_codes[:12]
  distances, _ = faiss.read_index_binary(faiss_out).search(np.packbits(queries, axis=1), 15)
  np.testing.assert_array_equal(distances, loaded.search(queries, 15)[1])


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
