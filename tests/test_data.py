"""Loaders on real or same-layout files, and their errors."""

import os

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from hashvae import data
from hashvae.data import DataError

from conftest import shared_file


def cfg(**fields):
  """The spec of a data block given as keyword fields (name= and the rest)."""
  return data.spec_from_fields(fields)


def check_targets(split):
  sums = np.asarray(split.targets.sum(1)).ravel()
  assert np.all((np.abs(sums - 1) < 1e-4) | (sums == 0))
  if split.sparse:  # text data: CSR, the targets on the inputs' nonzeros
    assert scipy.sparse.issparse(split.targets)
    assert np.shares_memory(split.targets.indices, split.inputs.indices)


def test_digits_split_is_stratified_and_deterministic():
  a = data.load(cfg(name="digits", split_seed=0))
  b = data.load(cfg(name="digits", split_seed=0))
  assert (len(a.train), len(a.validation), len(a.test)) == (1437, 0, 360)
  assert a.dims == 64 and a.num_classes == 10
  np.testing.assert_array_equal(a.test.labels, b.test.labels)
  np.testing.assert_array_equal(a.train.inputs, b.train.inputs)
  per_class = np.bincount(a.test.labels, minlength=10)
  assert per_class.min() >= 35 and per_class.max() <= 37  # 20% of 174..183
  check_targets(a.train)
  assert a.train.inputs.max() <= 1.0


def test_snippets_follows_the_protocol():
  folder = os.path.dirname(shared_file("snippets", "train.txt"))
  d = data.load(cfg(name="snippets", path=folder, max_features=10000,
                    validation_fraction=0.1, split_seed=0))
  assert (len(d.train), len(d.validation), len(d.test)) == (9054, 1006, 2280)
  assert d.dims == 10000 and d.num_classes == 8
  counts = np.bincount(d.database_labels, minlength=8)
  assert d.database_size == len(d.database) == 10060
  assert sorted(counts) == sorted([1200, 1200, 1880, 2360, 220, 880, 1200, 1120])
  check_targets(d.train)
  check_targets(d.test)
  # input = log(1 + tf) where target = tf / sum(tf)
  assert d.train.sparse and d.test.sparse  # never densified
  row = d.train.inputs[0].toarray()[0]
  tf = np.expm1(row)
  np.testing.assert_allclose(d.train.targets[0].toarray()[0], tf / tf.sum(), rtol=1e-4)


def write_lines(tmp_path, name, lines):
  (tmp_path / name).write_text("\n".join(lines) + "\n")


def test_snippets_errors_name_the_problem(tmp_path):
  load = lambda: data.load(cfg(name="snippets", path=str(tmp_path),
                               max_features=100, validation_fraction=0.1,
                               split_seed=0))
  with pytest.raises(DataError, match="train.txt"):
    load()  # missing file
  write_lines(tmp_path, "train.txt", ["alpha beta gamma sports",
                                      "lonely", "delta epsilon arts"])
  write_lines(tmp_path, "test.txt", ["alpha sports"])
  with pytest.raises(DataError, match=r"train.txt:2: malformed line"):
    load()
  write_lines(tmp_path, "train.txt", ["alpha beta gamma sports",
                                      "delta epsilon arts"])
  write_lines(tmp_path, "test.txt", ["alpha cooking"])
  with pytest.raises(DataError, match=r"test.txt.*\['cooking'\]"):
    load()
  write_lines(tmp_path, "test.txt", [""])
  with pytest.raises(DataError, match="empty corpus"):
    load()
  with pytest.raises(DataError, match="folder not found"):
    data.load(cfg(name="snippets", path=str(tmp_path / "nope"), max_features=1,
                  validation_fraction=0.1, split_seed=0))


def test_vdsh_mat_reads_the_tmc_subset_as_multilabel():
  d = data.load(cfg(name="vdsh_mat", path=shared_file("tmc_subset.tfidf.mat")))
  assert (len(d.train), len(d.validation), len(d.test)) == (3985, 570, 1139)
  assert d.multilabel and d.num_classes == 22 and d.dims == 10000
  assert d.train.labels.shape == (3985, 22)
  assert 2.0 < d.train.labels.sum(1).mean() < 2.3
  check_targets(d.train)


def test_vdsh_mat_single_label_and_errors(tmp_path):
  rng = np.random.default_rng(0)
  mats = {}
  for key, n in (("train", 30), ("cv", 10), ("test", 8)):
    mats[key] = scipy.sparse.csc_matrix(rng.uniform(size=(n, 12)) *
                                        (rng.uniform(size=(n, 12)) < 0.4))
    mats["gnd_" + key] = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, n)]
  path = str(tmp_path / "ng.mat")
  scipy.io.savemat(path, mats)
  d = data.load(cfg(name="vdsh_mat", path=path))
  assert not d.multilabel and d.train.labels.shape == (30,)
  np.testing.assert_array_equal(d.test.labels, mats["gnd_test"].argmax(1))
  del mats["gnd_cv"]
  scipy.io.savemat(path, mats)
  with pytest.raises(DataError, match=r"lacks keys \['gnd_cv'\]"):
    data.load(cfg(name="vdsh_mat", path=path))


def test_features_npy_cifar_layout(tmp_path):
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(10), 30)
  features = rng.normal(size=(300, 16)).astype(np.float32) + labels[:, None]
  np.save(tmp_path / "x.npy", features)
  np.save(tmp_path / "y.npy", labels)
  config = cfg(name="features_npy", path=str(tmp_path / "x.npy"),
               labels_path=str(tmp_path / "y.npy"), queries_per_class=5,
               split_seed=0)
  d = data.load(config)
  assert len(d.test) == 50 and len(d.train) == 250
  assert np.bincount(d.test.labels).tolist() == [5] * 10
  np.testing.assert_allclose(d.train.inputs.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(d.train.inputs.std(0), 1, atol=1e-4)
  np.save(tmp_path / "y.npy", labels[:-1])
  with pytest.raises(DataError, match="299.*300 feature rows"):
    data.load(config)


def test_synthetic_is_seeded():
  config = cfg(name="synthetic", num_classes=3, dims=20, train_size=30,
               validation_size=5, test_size=6, doc_length=10, noise=0.2,
               split_seed=4)
  a, b = data.load(config), data.load(config)
  assert a.train.sparse  # a bag of words, kept sparse
  np.testing.assert_array_equal(a.train.inputs.toarray(), b.train.inputs.toarray())
  assert a.train.inputs.shape == (30, 20) and len(a.test) == 6
  check_targets(a.train)


def test_unknown_dataset():
  with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*digits"):
    data.load(cfg(name="mnist"))


def test_nan_features_are_rejected(tmp_path):
  x = np.ones((40, 3), np.float32)
  x[2, 1] = np.nan
  np.save(tmp_path / "x.npy", x)
  np.save(tmp_path / "y.npy", np.repeat([0, 1], 20))
  with pytest.raises(DataError, match="NaN or inf"):
    data.load(cfg(name="features_npy", path=str(tmp_path / "x.npy"),
                  labels_path=str(tmp_path / "y.npy"), queries_per_class=2,
                  split_seed=0))


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_newsgroups_from_the_raw_posts():
  path = shared_file("20news-bydate.tar.gz")
  d = data.load(cfg(name="newsgroups", path=path, max_features=10000,
                    validation_fraction=0.1, split_seed=0))
  assert d.num_classes == 20 and d.dims == 10000
  # bydate: 11,314 training and 7,532 test posts, a few dropped as empty
  assert 11_200 < len(d.train) + len(d.validation) <= 11_314
  assert 7_450 < len(d.test) <= 7_532
  assert abs(len(d.validation) - 0.1 * (len(d.train) + len(d.validation))) < 10
  for split in (d.train, d.validation, d.test):
    assert (np.diff(split.inputs.indptr) > 0).all()  # empty posts are dropped
    check_targets(split)
    np.testing.assert_allclose(scipy.sparse.linalg.norm(split.inputs, axis=1), 1,
                               rtol=1e-4)
  assert "Newsgroups:" not in d.train.texts[0]  # headers (which name the label) removed
  assert len(d.train.texts) == len(d.train)


def test_newsgroups_from_a_folder(tmp_path):
  for split, cls, i, text in [("train", "sci.space", 1, "orbit launch rocket fuel"),
                              ("train", "rec.autos", 2, "engine brakes wheel"),
                              ("train", "sci.space", 3, "rocket orbit moon"),
                              ("test", "rec.autos", 4, "wheel engine oil")]:
    folder = tmp_path / "20ng" / f"20news-bydate-{split}" / cls
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(i)).write_text(f"From: someone\nNewsgroups: {cls}\n\n{text}\n")
  # A file that is not a numbered post (left by a file browser) is skipped.
  (tmp_path / "20ng" / "20news-bydate-train" / "sci.space" / ".DS_Store").write_bytes(
      b"\x00\x01 not a post")
  d = data.load(cfg(name="newsgroups", path=str(tmp_path), max_features=50,
                    validation_fraction=0.0, split_seed=0))
  assert d.class_names == ("rec.autos", "sci.space")
  assert len(d.train) == 3 and d.test.labels.tolist() == [0]
  assert "newsgroups" not in d.vectoriser.counter.vocabulary_  # header words unseen


# --- degenerate data: refused or warned before training ----------------------

def split_of(labels, inputs=None):
  labels = np.asarray(labels)
  inputs = np.random.default_rng(0).uniform(size=(len(labels), 4)) if inputs is None else inputs
  return data.dataset.make_split(inputs, inputs, labels)


def dataset_of(train_labels, num_classes=3, inputs=None):
  test = split_of(np.eye(num_classes, dtype=np.uint8)[[0, 1]] if np.ndim(train_labels) == 2
                  else [0, 1])
  return data.Dataset(name="t", train=split_of(train_labels, inputs),
                      validation=split_of(np.asarray(train_labels)[:0]), test=test,
                      num_classes=num_classes)


def test_fewer_than_two_training_classes_are_refused():
  with pytest.raises(DataError, match=r"t: the training items hold 1 class \(\[2\]\)"):
    dataset_of([2, 2, 2, 2])
  with pytest.raises(DataError, match=r"hold 1 class"):  # multi-hot, one column used
    dataset_of(np.array([[0, 1, 0]] * 4, np.uint8))
  assert dataset_of([0, 2, 2, 2]).num_classes == 3  # two classes are enough
  assert dataset_of(np.array([[1, 1, 0]] * 4, np.uint8)).multilabel


def test_a_label_matrix_of_class_ids_is_refused(tmp_path):
  with pytest.raises(DataError, match=r"a column of class ids, not one-hot"):
    dataset_of(np.array([[0, 2, 1]] * 4, np.uint8))
  rng = np.random.default_rng(0)
  arrays = {k: rng.uniform(size=(10, 5)) for k in ("train", "cv", "test")}
  arrays.update({f"gnd_{k}": np.arange(10)[:, None] % 3 + 1 for k in ("train", "cv",
                                                                        "test")})
  scipy.io.savemat(tmp_path / "x.mat", arrays)
  with pytest.raises(DataError, match=r"gnd_train holds values 1, 2, 3 in a \(10, 1\) "
                                      r"matrix: a column of class ids"):
    data.load(cfg(name="vdsh_mat", path=str(tmp_path / "x.mat")))


def test_constant_features_are_warned_about(tmp_path, caplog):
  np.save(tmp_path / "x.npy", np.full((40, 6), 3.0))
  np.save(tmp_path / "y.npy", np.repeat([0, 1], 20))
  load = lambda: data.load(cfg(name="features_npy", path=str(tmp_path / "x.npy"),
                               labels_path=str(tmp_path / "y.npy"), queries_per_class=2,
                               split_seed=0))
  with caplog.at_level("WARNING", logger="hashvae"):
    load()
  assert "every training feature has the same value in every item" in caplog.text
  caplog.clear()
  np.save(tmp_path / "x.npy", np.arange(240.0).reshape(40, 6))
  with caplog.at_level("WARNING", logger="hashvae"):
    load()
  assert "same value" not in caplog.text


def test_text_with_undecodable_bytes_is_warned_about(tmp_path, caplog):
  (tmp_path / "train.txt").write_bytes(b"aaa bbb sports\nccc d\xffd arts\neee f\xfe arts\n")
  with caplog.at_level("WARNING", logger="hashvae"):
    docs, labels = data.text.read_labelled_lines(str(tmp_path / "train.txt"))
  assert "2 line(s) hold bytes that are not UTF-8 (first: line 2)" in caplog.text
  assert docs[1] == "ccc d\ufffdd" and labels == ["sports", "arts", "arts"]
  caplog.clear()
  (tmp_path / "ok.txt").write_text("aaa bbb sports\n")
  with caplog.at_level("WARNING", logger="hashvae"):
    data.text.read_labelled_lines(str(tmp_path / "ok.txt"))
  assert "UTF-8" not in caplog.text


def test_npy_of_objects_or_truncated_is_refused(tmp_path):
  np.save(tmp_path / "x.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
  np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1]))
  load = lambda: data.load(cfg(name="features_npy", path=str(tmp_path / "x.npy"),
                               labels_path=str(tmp_path / "y.npy"), queries_per_class=1,
                               split_seed=0))
  with pytest.raises(DataError, match=r"x.npy: it holds pickled Python objects"):
    load()
  np.save(tmp_path / "x.npy", np.ones((400, 8)))
  raw = (tmp_path / "x.npy").read_bytes()
  (tmp_path / "x.npy").write_bytes(raw[:len(raw) // 2])
  with pytest.raises(DataError, match=r"x.npy: not a complete .npy file"):
    load()


def test_validation_fraction_outside_zero_one_is_refused(tmp_path):
  (tmp_path / "train.txt").write_text("aaa bbb sports\nccc ddd arts\n")
  (tmp_path / "test.txt").write_text("aaa sports\n")
  for fraction in (1.5, 1.0, -0.1):
    with pytest.raises(DataError, match=rf"validation_fraction={fraction}: a fraction in "
                                        r"\[0, 1\)"):
      data.load(cfg(name="snippets", path=str(tmp_path), max_features=10,
                    validation_fraction=fraction, split_seed=0))


def test_newsgroups_archive_cut_short_is_refused(tmp_path):
  import io
  import tarfile
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
    for i in range(50):
      payload = os.urandom(2000)
      info = tarfile.TarInfo(f"20news-bydate-train/sci.space/{i}")
      info.size = len(payload)
      archive.addfile(info, io.BytesIO(payload))
  raw = buffer.getvalue()
  (tmp_path / "ng.tar.gz").write_bytes(raw[:len(raw) // 2])
  with pytest.raises(DataError, match=r"cannot read .*ng.tar.gz as a tar archive .*"
                                      r"truncated download"):
    data.load(cfg(name="newsgroups", path=str(tmp_path / "ng.tar.gz"), max_features=10,
                  validation_fraction=0.1, split_seed=0))


def test_index_consistency_checks():
  from hashvae.retrieval import index_check
  codes, ids = np.zeros((5, 16), np.uint8), np.arange(5)
  assert index_check.length_problems(codes, ids, np.zeros(5), ("t",) * 5, 16) == []
  assert index_check.length_problems(codes[:3], ids, np.zeros(5), (), 16) == [
      "db_codes has 3 rows for 5 ids (db_ids)"]
  assert "db_texts has 4 rows" in index_check.length_problems(codes, ids, np.zeros(5),
                                                              ("t",) * 4, 16)[0]
  assert "needs 2 bytes" in index_check.length_problems(np.zeros((5, 3)), ids, np.zeros(5),
                                                        (), 16, packed=True)[0]
  assert index_check.missing_arrays({"meta": 1, "db_codes": 1}) == ["db_ids", "db_labels",
                                                                    "db_texts"]
