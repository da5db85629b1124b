"""hashvae.data.corpora on tiny copies of each release format: builds are
byte-identical, bad copies are refused in one line with no output folder
left, the recipes fit on the training part only, and splits are seeded and
recorded."""

import gzip
import json
import os
import re

import corpus_sources as sources
import numpy as np
import pytest
import scipy.io
from sklearn.feature_extraction.text import TfidfVectorizer

from hashvae import data
from hashvae.data import corpora
from hashvae.data.corpora.sources import digest
from hashvae.data.text import TOKEN_PATTERN

FORMATS = {"agnews": sources.agnews, "dbpedia": sources.dbpedia, "yahoo": sources.yahoo,
           "20news": sources.newsgroups, "rcv1": sources.rcv1}


def folder_bytes(folder) -> dict:
  return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def one_line_error(excinfo) -> str:
  message = str(excinfo.value)
  assert "\n" not in message
  return message


def leftovers(parent) -> list:
  """Anything a build left beside its --out (a staging folder)."""
  return [n for n in os.listdir(parent) if n.startswith(".")]


def build(corpus, source, out, recipe="vdsh_tfidf", **kwargs):
  return corpora.build(corpus, recipe, str(out), source=str(source), **kwargs)


def load(out, manifest):
  """The built folder read back by the project's loader for its layout."""
  if manifest["layout"] == "vdsh_mat":
    (name,) = [n for n in manifest["files"] if n.endswith(".mat")]
    return data.load(data.VdshMatSpec(path=str(out / name)))
  return data.load(data.TextTableSpec(path=str(out / "train.csv"),
                                      validation_path=str(out / "validation.csv"),
                                      test_path=str(out / "test.csv"), max_features=50))


CASES = [(name, "vdsh_tfidf") for name in FORMATS] + [
    ("agnews", "raw"), ("agnews", "count_stop_df"), ("20news", "raw"), ("yahoo", "raw")]


@pytest.mark.parametrize("name,recipe", CASES)
def test_builds_twice_byte_identical_and_loads(tmp_path, name, recipe):
  corpus, source = FORMATS[name](tmp_path / "src")
  first = build(corpus, source, tmp_path / "a", recipe)
  build(corpus, source, tmp_path / "b", recipe)
  a, b = folder_bytes(tmp_path / "a"), folder_bytes(tmp_path / "b")
  assert a == b
  assert set(a) == set(first["files"]) | {"manifest.json"}
  assert b"Created on" not in b"".join(a.values())  # no time in a .mat header
  dataset = load(tmp_path / "a", first)
  for split, got in (("train", dataset.train), ("validation", dataset.validation),
                     ("test", dataset.test)):
    assert len(got) == first["counts"][split]["items"]
  assert dataset.multilabel == (name == "rcv1")
  assert dataset.num_classes == len(first["classes"])


def test_checksum_mismatch_is_one_line_and_leaves_nothing(tmp_path):
  corpus, source = sources.agnews(tmp_path / "src")
  with open(source / "test.csv", "ab") as f:
    f.write(b'"1","an extra","row"\n')
  with pytest.raises(data.DataError) as e:
    build(corpus, source, tmp_path / "out")
  assert re.search(r"test\.csv: sha256 \w+\.\.\. \(\d+ bytes\) matches no recorded checksum",
                   one_line_error(e))
  assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_truncated_tar_is_one_line_and_leaves_nothing(tmp_path):
  _, path = sources.dbpedia(tmp_path / "src")
  whole = path.read_bytes()
  path.write_bytes(whole[:len(whole) * 2 // 3])  # a download cut short
  corpus = sources.accepting("dbpedia", {path.name: path}, None)  # its checksum: this copy
  with pytest.raises(data.DataError) as e:
    build(corpus, path, tmp_path / "out")
  assert "cannot read" in one_line_error(e) and "truncated" in str(e.value)
  assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_csv_row_with_wrong_field_count_names_its_line(tmp_path):
  folder = tmp_path / "src"
  sources.agnews(folder)
  lines = (folder / "train.csv").read_bytes().split(b"\n")
  lines[6] = b'"2","a title only"'
  (folder / "train.csv").write_bytes(b"\n".join(lines))
  corpus = sources.accepting("agnews", {n: folder / n for n in ("train.csv", "test.csv")},
                             None)
  with pytest.raises(data.DataError) as e:
    build(corpus, folder, tmp_path / "out")
  assert re.search(r"train\.csv:7: 2 fields where the release has 3", one_line_error(e))
  assert not (tmp_path / "out").exists()


def test_copy_short_of_the_published_rows_is_refused(tmp_path):
  folder = tmp_path / "src"
  _, _ = sources.agnews(folder)
  lines = (folder / "train.csv").read_bytes().splitlines(keepends=True)
  (folder / "train.csv").write_bytes(b"".join(lines[:30]))  # cut at a row boundary
  corpus = sources.accepting("agnews", {n: folder / n for n in ("train.csv", "test.csv")},
                             (40, 12))
  with pytest.raises(data.DataError) as e:
    build(corpus, folder, tmp_path / "out")
  assert "holds 30 training and 12 test items, the release 40 and 12" in one_line_error(e)


def test_unknown_checksum_and_missing_file_are_refused(tmp_path):
  folder = tmp_path / "src"
  folder.mkdir()
  with pytest.raises(data.DataError, match="lacks nyt_corpus_LDC2008T19.tgz"):
    build(corpora.CORPORA["nyt"], folder, tmp_path / "out")
  (folder / "nyt_corpus_LDC2008T19.tgz").write_bytes(b"x")
  with pytest.raises(data.DataError, match="no published checksum is recorded"):
    build(corpora.CORPORA["nyt"], folder, tmp_path / "out")


def test_an_out_folder_with_files_is_never_overwritten(tmp_path):
  corpus, source = sources.agnews(tmp_path / "src")
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "keep.txt").write_text("mine")
  with pytest.raises(data.DataError, match="exists and is not an empty folder"):
    build(corpus, source, tmp_path / "out")
  assert os.listdir(tmp_path / "out") == ["keep.txt"]


def texts_by_id(folder, file):
  """{row number as written in ids_*.txt: title + description} of a CSV."""
  import csv
  with open(folder / file, newline="") as f:
    return {str(i): " ".join(row[1:]) for i, row in enumerate(csv.reader(f))}


def test_tfidf_vocabulary_and_idf_come_from_train_only(tmp_path):
  corpus, source = sources.agnews(tmp_path / "src", train=60, test=12)
  # A word only in the test file and validation-heavy df shifts: neither
  # may reach the vocabulary or the idf.
  test_csv = (source / "test.csv").read_text().replace("topic0alpha", "queryonlyword")
  (source / "test.csv").write_text(test_csv)
  corpus = sources.accepting("agnews", {n: source / n for n in ("train.csv", "test.csv")},
                             (60, 12))
  manifest = build(corpus, source, tmp_path / "out", validation_fraction=0.25)
  out = tmp_path / "out"
  vocabulary = (out / "vocabulary.txt").read_text().split()
  assert "queryonlyword" not in vocabulary and len(vocabulary) == manifest["vocabulary_size"]
  ids = {s: (out / f"ids_{s}.txt").read_text().split() for s in ("train", "validation", "test")}
  train_texts, test_texts = texts_by_id(source, "train.csv"), texts_by_id(source, "test.csv")
  # scikit-learn's tf-idf, fitted on the training part alone, as the reference.
  reference = TfidfVectorizer(vocabulary=vocabulary, token_pattern=TOKEN_PATTERN,
                              dtype=np.float64).fit([train_texts[i] for i in ids["train"]])
  mat = scipy.io.loadmat(str(out / "agnews.vdsh_tfidf.mat"))
  for split, texts in (("validation", train_texts), ("test", test_texts)):
    want = reference.transform([texts[i] for i in ids[split]]).toarray()
    np.testing.assert_allclose(mat[{"validation": "cv"}.get(split, split)].toarray(), want,
                               rtol=1e-5, atol=1e-6)
  # The same vocabulary fitted on every training row gives other values.
  everything = TfidfVectorizer(vocabulary=vocabulary, token_pattern=TOKEN_PATTERN).fit(
      list(train_texts.values()))
  assert not np.allclose(everything.idf_, reference.idf_)


def test_count_recipe_bounds_and_length_filter(tmp_path):
  corpus, source = sources.agnews(tmp_path / "src", train=60, test=12)
  lines = (source / "train.csv").read_text().splitlines()
  lines[0] = '"1","rareword rareword","rareword"'  # in one document only: below min_df
  lines[1] = '"2","report","today"'  # two terms: fewer than five
  (source / "train.csv").write_text("\n".join(lines) + "\n")
  corpus = sources.accepting("agnews", {n: source / n for n in ("train.csv", "test.csv")},
                             (60, 12))
  manifest = build(corpus, source, tmp_path / "out", "count_stop_df", validation_fraction=0)
  vocabulary = (tmp_path / "out" / "vocabulary.txt").read_text().split()
  assert "rareword" not in vocabulary and "report" in vocabulary
  kept = (tmp_path / "out" / "ids_train.txt").read_text().split()
  assert "1" not in kept and manifest["counts"]["train"]["dropped"] >= 1
  counts = scipy.io.loadmat(str(tmp_path / "out" / "agnews.count_stop_df.mat"))["train"]
  assert (np.asarray(counts.sum(axis=1)).ravel() >= 5).all()
  assert np.array_equal(counts.data, np.round(counts.data))  # term counts


def test_splits_are_seeded_disjoint_and_recorded(tmp_path):
  corpus, source = sources.agnews(tmp_path / "src", train=80)
  ids = {}
  for seed in (0, 0, 1):
    out = tmp_path / f"out{len(ids)}"
    manifest = build(corpus, source, out, "raw", seed=seed)
    assert manifest["seed"] == seed and manifest["validation_fraction"] == 0.1
    assert json.loads((out / "manifest.json").read_text()) == manifest
    rows = {s: [line.split(",")[0] for line in (out / f"{s}.csv").read_text().split("\n")[1:-1]]
            for s in ("train", "validation")}
    assert not set(rows["train"]) & set(rows["validation"])
    assert sorted(rows["train"] + rows["validation"], key=int) == [str(i) for i in range(80)]
    assert manifest["counts"]["validation"]["items"] == len(rows["validation"]) == 8
    ids[len(ids)] = rows["validation"]
  assert ids[0] == ids[1] and ids[0] != ids[2]


def test_manifest_records_sources_and_output_checksums(tmp_path):
  corpus, source = sources.newsgroups(tmp_path / "src")
  manifest = build(corpus, source, tmp_path / "out", command="python -m launch.data x")
  (record,) = manifest["sources"]
  assert record["sha256"] == digest(str(source), "sha256") and record["url"].startswith("http")
  for name, sha in manifest["files"].items():
    assert digest(str(tmp_path / "out" / name), "sha256") == sha
  assert manifest["command"] == "python -m launch.data x"
  assert manifest["classes"] == ["alt.atheism", "rec.autos", "sci.space"]


def test_download_path_fetches_the_recorded_address(tmp_path):
  import dataclasses
  corpus, source = sources.newsgroups(tmp_path / "src")
  url = (source.resolve()).as_uri()  # file:// stands in for the release's address
  corpus = dataclasses.replace(corpus, files=(dataclasses.replace(corpus.files[0], url=url),))
  manifest = corpora.build(corpus, "vdsh_tfidf", str(tmp_path / "out"))
  assert (tmp_path / "out.download" / "20news-bydate.tar.gz").read_bytes() == source.read_bytes()
  assert manifest["sources"][0]["url"] == url


def test_rcv1_topics_are_multi_hot_and_features_from_train(tmp_path):
  corpus, folder = sources.rcv1(tmp_path / "src")
  build(corpus, folder, tmp_path / "out", validation_fraction=0.25)
  mat = scipy.io.loadmat(str(tmp_path / "out" / "rcv1.vdsh_tfidf.mat"))
  assert (mat["gnd_test"].sum(axis=1) == 2).all()  # two topics a document
  norms = np.sqrt(np.asarray(mat["test"].multiply(mat["test"]).sum(axis=1)).ravel())
  np.testing.assert_allclose(norms, 1.0, rtol=1e-6)
  qrels = gzip.decompress((folder / "rcv1v2.topics.qrels.gz").read_bytes()).decode()
  first_test = (tmp_path / "out" / "ids_test.txt").read_text().split()[0]
  topics = sorted(line.split()[0] for line in qrels.splitlines()
                  if line.split()[1] == first_test)
  classes = ["C15", "ECAT", "GCAT", "M14"]
  assert [classes[i] for i in np.flatnonzero(mat["gnd_test"][0])] == topics
