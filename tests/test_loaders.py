"""The svmlight and text-table loaders on tiny files: exact sparse rows and
label matrices, one width for every file, and errors naming file and line."""

import gzip
import json

import numpy as np
import pytest
import scipy.sparse

from configs import svmlight as svmlight_config
from configs import table as table_config
from hashvae import data
from hashvae.data import DataError
from hashvae.data.text import vectorise_corpus
from hashvae.sweep import config_check, experiment

from conftest import with_fields


def write(tmp_path, name, lines):
  path = tmp_path / name
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(path)


def check_sparse_split(split):
  """CSR inputs; targets on the same nonzeros, each row summing to 1."""
  assert isinstance(split.inputs, scipy.sparse.csr_matrix)
  assert isinstance(split.targets, scipy.sparse.csr_matrix)
  np.testing.assert_array_equal(split.targets.indptr, split.inputs.indptr)
  np.testing.assert_array_equal(split.targets.indices, split.inputs.indices)
  np.testing.assert_allclose(np.asarray(split.targets.sum(axis=1)).ravel(), 1, rtol=1e-6)
  assert split.inputs.dtype == split.targets.dtype == np.float32


# --- svmlight ---------------------------------------------------------------

def svm_config(train, test, **fields):
  """The svmlight config's data spec reading `train` and `test`."""
  config = svmlight_config.get_config().data
  return data.spec_from_fields(with_fields(config, path=train, test_path=test, **{
      "validation_fraction": 0.0, **fields}).to_dict())


def test_svmlight_single_label_rows_are_exact_and_share_one_width(tmp_path):
  train = write(tmp_path, "train.svm", [
      "# one-based indices; comments and blank lines hold no item",
      "3 1:0.5 4:1.5",
      "",
      "-1 2:2 # a trailing comment",
      "7 1:1 2:1 3:2",
      "3 4:0.25"])
  test = write(tmp_path, "test.svm", ["7 6:1", "-1 1:4 5:2"])  # column 6: wider than train
  d = data.load(svm_config(train, test))
  assert d.dims == 6 and d.num_classes == 3 and not d.multilabel
  assert d.class_names == ("-1", "3", "7")
  for split in (d.train, d.test):
    check_sparse_split(split)
    assert split.inputs.shape[1] == 6
  np.testing.assert_array_equal(d.train.inputs.indptr, [0, 2, 3, 6, 7])
  np.testing.assert_array_equal(d.train.inputs.indices, [0, 3, 1, 0, 1, 2, 3])
  np.testing.assert_array_equal(d.train.inputs.data, [0.5, 1.5, 2, 1, 1, 2, 0.25])
  np.testing.assert_allclose(d.train.targets.data, [0.25, 0.75, 1, 0.25, 0.25, 0.5, 1])
  np.testing.assert_array_equal(d.test.inputs.indices, [5, 0, 4])
  assert d.train.labels.dtype == np.int32
  np.testing.assert_array_equal(d.train.labels, [1, 0, 2, 1])
  np.testing.assert_array_equal(d.test.labels, [2, 0])
  assert len(d.validation) == 0


def test_svmlight_multilabel_gives_multi_hot_rows(tmp_path):
  train = write(tmp_path, "train.svm", ["1,5,17 3:0.12 9:0.4", "5 1:1", "17,1 2:3 9:1",
                                        "1,1 2:1"])  # a repeated label counts once
  test = write(tmp_path, "test.svm", ["5 3:1", "1,17 1:1 2:1"])
  d = data.load(svm_config(train, test))
  assert d.multilabel and d.num_classes == 3 and d.class_names == ("1", "5", "17")
  assert d.train.labels.dtype == np.uint8
  np.testing.assert_array_equal(d.train.labels, [[1, 1, 1], [0, 1, 0], [1, 0, 1], [1, 0, 0]])
  np.testing.assert_array_equal(d.test.labels, [[0, 1, 0], [1, 0, 1]])
  np.testing.assert_array_equal(d.train.inputs[0].indices, [2, 8])
  np.testing.assert_allclose(d.train.targets[0].data, [0.12 / 0.52, 0.4 / 0.52], rtol=1e-6)
  check_sparse_split(d.train)


def test_svmlight_zero_based_choices(tmp_path):
  zero = write(tmp_path, "zero.svm", ["1 0:1 2:1", "2 1:1"])
  one = write(tmp_path, "one.svm", ["1 1:1 3:1", "2 2:1"])
  # auto: index 0 in either file makes both zero-based, with one width.
  d = data.load(svm_config(one, zero))
  assert d.dims == 4
  np.testing.assert_array_equal(d.train.inputs.indices, [1, 3, 2])
  np.testing.assert_array_equal(d.test.inputs.indices, [0, 2, 1])
  d = data.load(svm_config(one, one))  # auto, no index 0: one-based
  assert d.dims == 3 and d.train.inputs.indices.tolist() == [0, 2, 1]
  d = data.load(svm_config(one, one, zero_based="true"))  # the command line's text
  assert d.dims == 4 and d.train.inputs.indices.tolist() == [1, 3, 2]
  with pytest.raises(DataError, match=r"zero.svm:1: malformed line: feature index 0: "
                                      r"indices start at 1"):
    data.load(svm_config(one, zero, zero_based="false"))
  with pytest.raises(DataError, match=r"zero_based='maybe'"):
    data.load(svm_config(one, one, zero_based="maybe"))
  d = data.load(svm_config(one, one, n_features=10))
  assert d.dims == 10 and d.test.inputs.shape == (2, 10)


def test_svmlight_validation_file_or_fraction(tmp_path):
  lines = [f"{i % 2} {i % 5 + 1}:1 7:{i + 1}" for i in range(10)]
  train = write(tmp_path, "train.svm", lines)
  test = write(tmp_path, "test.svm", ["0 1:1", "1 2:1"])
  held = write(tmp_path, "held.svm", ["1 3:1", "0 3:2 7:1", "1 8:1"])
  d = data.load(svm_config(train, test, validation_path=held))
  assert (len(d.train), len(d.validation), len(d.test)) == (10, 3, 2)
  assert d.dims == 8 and d.validation.labels.tolist() == [1, 0, 1]
  a = data.load(svm_config(train, test, validation_fraction=0.3, split_seed=1))
  b = data.load(svm_config(train, test, validation_fraction=0.3, split_seed=1))
  assert (len(a.train), len(a.validation)) == (7, 3)
  np.testing.assert_array_equal(a.validation.inputs.data, b.validation.inputs.data)
  # The two parts are the training file's items, each in file order.
  values = sorted(a.train.inputs[:, 6].data.tolist() + a.validation.inputs[:, 6].data.tolist())
  assert values == list(range(1, 11))


SVM_ERRORS = [
    ("bad label", ["1 1:1", "# comment", "x 2:1"], r"train.svm:3: malformed line: cannot "
     r"read the label 'x'"),
    ("bad feature", ["1 1:1", "2 3:abc"], r"train.svm:2: malformed line: cannot read the "
     r"feature '3:abc'"),
    ("feature without a colon", ["1 1:1 word"], r"train.svm:1: .*feature 'word'"),
    ("unsorted indices", ["1 1:1", "", "2 4:1 2:1"], r"train.svm:3: malformed line: feature "
     r"index 2 after 4: indices must increase"),
    ("negative value", ["1 1:1", "# c", "2 2:-0.5", "2 1:-1"], r"train.svm:3: a negative "
     r"value among the features \(2 item\(s\)"),
    ("NaN", ["1 1:1", "2 2:nan"], r"train.svm:2: NaN or inf"),
    ("overflow", ["1 1:1", "2 2:1e300"], r"train.svm:2: NaN or inf \(or beyond float32\)"),
    ("empty document", ["1 1:1", "2", "1 3:1"], r"train.svm:2: an empty document"),
    ("only a stored zero", ["1 1:1", "2 2:0"], r"train.svm:2: an empty document"),
    ("no label", ["1 1:1", "2,3 2:1", " 3:1"], r"train.svm:3: an item with no label"),
    ("empty file", ["# nothing here"], r"svmlight: .*train.svm holds no item"),
]


@pytest.mark.parametrize("lines,message", [c[1:] for c in SVM_ERRORS],
                         ids=[c[0] for c in SVM_ERRORS])
def test_svmlight_bad_lines_are_named(tmp_path, lines, message):
  train = write(tmp_path, "train.svm", lines)
  test = write(tmp_path, "test.svm", ["1 1:1"])
  with pytest.raises(DataError, match=message):
    data.load(svm_config(train, test))


def test_svmlight_file_level_errors(tmp_path):
  train = write(tmp_path, "train.svm", ["1 1:1", "2 2:1 5:1"])
  test = write(tmp_path, "test.svm", ["1 1:1", "# c", "9 2:1"])
  with pytest.raises(DataError, match=r"test.svm:3: labels \['9'\] do not occur in the "
                                      r"training data \(known: \['1', '2'\]\)"):
    data.load(svm_config(train, test))
  with pytest.raises(DataError, match=r"data file not found: .*missing.svm"):
    data.load(svm_config(train, str(tmp_path / "missing.svm")))
  with pytest.raises(DataError, match=r"train.svm:2: feature column 4 \(counted from 0\) "
                                      r"lies beyond config.data.n_features=3"):
    data.load(svm_config(train, train, n_features=3))
  with pytest.raises(DataError, match=r"set --config.data.path .* --config.data.test_path"):
    data.load(svm_config(train, ""))
  # Compressed files are read as they are, and their lines named the same way.
  packed = tmp_path / "train.svm.gz"
  packed.write_bytes(gzip.compress(b"1 1:1\n\n2 2:1 1:1\n"))
  with pytest.raises(DataError, match=r"train.svm.gz:3: malformed line: feature index 1 after 2"):
    data.load(svm_config(str(packed), test))
  packed.write_bytes(gzip.compress(b"1 1:1\n2 2:1\n")[:-12])  # a download cut short
  with pytest.raises(DataError, match=r"svmlight: cannot read .*train.svm.gz"):
    data.load(svm_config(str(packed), test))


# --- text tables ------------------------------------------------------------

def table_config_for(train, test, **fields):
  """The table config's data spec reading `train` and `test`."""
  config = table_config.get_config().data
  return data.spec_from_fields(with_fields(config, path=train, test_path=test, **{
      "validation_fraction": 0.0, "max_features": 100, **fields}).to_dict())


SPORT = ["football match goal striker", "tennis match serve racket",
         "football league striker goal", "marathon runner race medal"]
MUSIC = ["guitar concert album singer", "piano concerto orchestra album",
         "singer album tour concert", "violin orchestra symphony concert"]


def test_csv_single_label_is_vectorised_as_snippets(tmp_path):
  rows = ["text,id,label"] + [f'"{t}, again",{i},sport' for i, t in enumerate(SPORT)]
  rows += [f"{t},{i},music" for i, t in enumerate(MUSIC)]
  train = write(tmp_path, "train.csv", rows)
  test = write(tmp_path, "test.csv", ["label,text", "music,album concert tonight",
                                      "sport,striker goal"])
  config = table_config_for(train, test, validation_fraction=0.25, split_seed=3)
  d = data.load(config)
  assert d.class_names == ("music", "sport") and not d.multilabel
  assert (len(d.train), len(d.validation), len(d.test)) == (6, 2, 2)
  np.testing.assert_array_equal(d.test.labels, [0, 1])
  assert d.test.texts == ("album concert tonight", "striker goal")
  for split in (d.train, d.validation, d.test):
    check_sparse_split(split)
  # The same documents through vectorise_corpus give the same splits.
  docs = [f"{t}, again" for t in SPORT] + MUSIC
  names = ["sport"] * 4 + ["music"] * 4
  ref = vectorise_corpus("snippets", docs, names, ["album concert tonight", "striker goal"],
                         ["music", "sport"], max_features=100, validation_fraction=0.25,
                         split_seed=3, where_test=test)
  for part in ("train", "validation", "test"):
    mine, theirs = getattr(d, part), getattr(ref, part)
    assert (mine.inputs != theirs.inputs).nnz == 0 and mine.texts == theirs.texts
    np.testing.assert_array_equal(mine.labels, theirs.labels)
  np.testing.assert_allclose(d.train.inputs.data, np.log1p(
      d.vectoriser.counts(list(d.train.texts)).data), rtol=1e-6)  # log(1 + tf)


def test_tsv_and_jsonl_multilabel(tmp_path):
  tsv = ["text\tlabel"] + [f"{t}\tsport" for t in SPORT[:3]]
  tsv += [f"{t}\tmusic| live " for t in MUSIC[:2]] + [f"{SPORT[3]}\tsport|live|sport"]
  train = write(tmp_path, "train.tsv", tsv)
  test = write(tmp_path, "test.tsv", ["text\tlabel", "concert album\tmusic|live"])
  d = data.load(table_config_for(train, test))
  assert d.multilabel and d.class_names == ("live", "music", "sport")
  assert d.train.labels.dtype == np.uint8
  np.testing.assert_array_equal(d.train.labels, [[0, 0, 1]] * 3 + [[1, 1, 0]] * 2
                                + [[1, 0, 1]])
  np.testing.assert_array_equal(d.test.labels, [[1, 1, 0]])
  check_sparse_split(d.train)
  jsonl = [json.dumps({"text": t, "label": ["sport"]}) for t in SPORT]
  jsonl += [json.dumps({"label": ["music", "live"], "text": t}) for t in MUSIC]
  train = write(tmp_path, "train.jsonl", jsonl[:5] + [""] + jsonl[5:])
  test = write(tmp_path, "test.jsonl", [json.dumps({"text": "goal", "label": "sport"})])
  d = data.load(table_config_for(train, test))
  assert d.multilabel and d.class_names == ("live", "music", "sport")
  np.testing.assert_array_equal(d.train.labels, [[0, 0, 1]] * 4 + [[1, 1, 0]] * 4)
  np.testing.assert_array_equal(d.test.labels, [[0, 0, 1]])
  # One label a document (a string, or a list of one): single-label.
  names = ["a"] * 4 + ["b"] * 4
  single = write(tmp_path, "s.jsonl", [json.dumps({"text": t, "label": [n] if i % 2 else n})
                                       for i, (t, n) in enumerate(zip(SPORT + MUSIC, names,
                                                                      strict=True))])
  d = data.load(table_config_for(single, single))
  assert not d.multilabel and d.train.labels.tolist() == [0] * 4 + [1] * 4


def test_table_options(tmp_path):
  rows = ["body;topic"] + [f"{t};sport" for t in SPORT] + [f"{t};music" for t in MUSIC]
  train = write(tmp_path, "train.txt", [r.replace(";", ",") for r in rows])
  held = write(tmp_path, "held.csv", ["body,topic", "guitar solo encore,music",
                                      "sprint hurdles,sport"])
  test = write(tmp_path, "test.csv", ["body,topic", "encore hurdles,music"])
  config = table_config_for(train, test, format="csv", text_column="body",
                            label_column="topic", validation_path=held, tfidf=True)
  d = data.load(config)
  assert (len(d.train), len(d.validation), len(d.test)) == (8, 2, 1)
  vocabulary = d.vectoriser.counter.vocabulary_
  assert "encore" in vocabulary and "hurdles" in vocabulary  # fitted on train + validation
  norms = np.sqrt(np.asarray(d.train.inputs.multiply(d.train.inputs).sum(axis=1)).ravel())
  np.testing.assert_allclose(norms, 1, rtol=1e-5)  # tf-idf rows, L2-normalised
  check_sparse_split(d.train)
  # A cell with the separator is one label when the separator is empty.
  one = write(tmp_path, "one.csv", ["text,label"] + [f"{t},a|b" for t in SPORT]
              + [f"{t},c" for t in MUSIC])
  d = data.load(table_config_for(one, one, label_separator=""))
  assert not d.multilabel and d.class_names == ("a|b", "c")


def test_csv_quoted_text_spanning_lines_keeps_line_numbers(tmp_path):
  train = write(tmp_path, "train.csv", ["\ufefftext,label",  # a spreadsheet's BOM
                                        '"football match,', 'goal ""striker""",sport',
                                        "guitar concert album,music",
                                        ",music"])
  with pytest.raises(DataError, match=r"train.csv:5: an empty document"):
    data.load(table_config_for(train, train))
  lines = (tmp_path / "train.csv").read_text(encoding="utf-8").splitlines()[:4]
  train = write(tmp_path, "train.csv", lines)
  d = data.load(table_config_for(train, train))
  assert d.train.texts[0] == 'football match,\ngoal "striker"'


TABLE_ERRORS = [
    ("no text column", "t.csv", ["body,label", "aaa bbb,x"],
     r"t.csv:1: no column 'text' in the header \(columns: \['body', 'label'\]\)"),
    ("wrong number of fields", "t.csv", ["text,label", "aaa bbb,x", "ccc, ddd,y"],
     r"t.csv:3: 3 fields where the header has 2"),
    ("empty text", "t.tsv", ["text\tlabel", "aaa bbb\tx", "  \ty"],
     r"t.tsv:3: an empty document"),
    ("no label", "t.csv", ["text,label", "aaa bbb,x", "ccc ddd,"],
     r"t.csv:3: an item with no label"),
    ("an empty label in a list", "t.csv", ["text,label", "aaa bbb,x||y"],
     r"t.csv:2: an empty label name in 'x\|\|y'"),
    ("bad JSON", "t.jsonl", ['{"text": "aaa", "label": "x"}', "", '{"text": "bbb", '],
     r"t.jsonl:3: not valid JSON"),
    ("JSON not an object", "t.jsonl", ['["aaa", "x"]'], r"t.jsonl:1: expected a JSON object"),
    ("JSON field missing", "t.jsonl", ['{"text": "aaa", "label": "x"}', '{"text": "bbb"}'],
     r"t.jsonl:2: no field 'label'"),
    ("JSON text not a string", "t.jsonl", ['{"text": 3, "label": "x"}'],
     r"t.jsonl:1: the 'text' field is int, not text"),
    ("JSON label an object", "t.jsonl", ['{"text": "aaa", "label": {"a": 1}}'],
     r"t.jsonl:1: label \{'a': 1\}: a string or an integer"),
    ("empty corpus", "t.csv", ["text,label"], r"t.csv: empty corpus"),
    ("unknown extension", "t.json", ['{"text": "aaa", "label": "x"}'],
     r"cannot tell the format of .*t.json from its extension '.json'"),
]


@pytest.mark.parametrize("name,lines,message", [c[1:] for c in TABLE_ERRORS],
                         ids=[c[0] for c in TABLE_ERRORS])
def test_table_bad_lines_are_named(tmp_path, name, lines, message):
  train = write(tmp_path, name, lines)
  test = write(tmp_path, "ok.csv", ["text,label", "aaa bbb,x"])
  with pytest.raises(DataError, match=message):
    data.load(table_config_for(train, test))


def test_table_file_level_errors(tmp_path):
  train = write(tmp_path, "train.csv", ["text,label", "aaa bbb,x", "ccc ddd,y|z"])
  test = write(tmp_path, "test.csv", ["text,label", "aaa,x", "ccc,w|y"])
  with pytest.raises(DataError, match=r"test.csv:3: labels \['w'\] do not occur in the "
                                      r"training data"):
    data.load(table_config_for(train, test))
  test = write(tmp_path, "test.csv", ["text,label", "aaa,x", "ccc,w"])
  with pytest.raises(DataError, match=r"test.csv:3: labels \['w'\] do not occur"):
    data.load(table_config_for(train, test, label_separator=""))
  with pytest.raises(DataError, match=r"data file not found: .*nope.csv"):
    data.load(table_config_for(train, str(tmp_path / "nope.csv")))
  with pytest.raises(DataError, match=r"format='xml': one of"):
    data.load(table_config_for(train, test, format="xml"))
  with pytest.raises(DataError, match=r"validation_fraction=1.0: a fraction in"):
    data.load(table_config_for(train, test, validation_fraction=1.0))


# --- configs and a tiny training run ----------------------------------------

def test_the_configs_pass_their_checks():
  for module, name in ((svmlight_config, "svmlight"), (table_config, "text_table")):
    config = module.get_config("method=ssb_vae,bits=32")
    config_check.check(config)
    assert config.data.name == name and name in data.LOADERS


def tiny(config, **fields):
  """One run, one epoch, small shapes: the sweep's whole path in little time."""
  return with_fields(config, epochs=1, seeds=(0,), levels=(1.0,), batch_size=8, ks=(5,),
                     model__hidden=(8,), model__sparse_input="sparse", checkpoint_every=0,
                     **fields)


def jsonl_corpus(tmp_path):
  rng = np.random.default_rng(0)
  words = {"sport": " ".join(SPORT).split(), "music": " ".join(MUSIC).split()}
  rows = [json.dumps({"text": " ".join(rng.choice(words[n], 6)), "label": n})
          for n in ("sport", "music") * 12]
  return write(tmp_path, "train.jsonl", rows[:20]), write(tmp_path, "test.jsonl", rows[20:])


def test_a_sweep_of_a_classical_method_on_multilabel_svmlight(tmp_path):
  rng = np.random.default_rng(0)
  lines = [f"{1 + i % 2},{3 + i % 3} " + " ".join(
      f"{j}:{v:.3f}" for j, v in zip(np.sort(rng.choice(40, 5, replace=False)) + 1,
                                     rng.uniform(0.1, 1, 5), strict=True))
      for i in range(30)]
  train = write(tmp_path, "train.svm", lines[:24])
  test = write(tmp_path, "test.svm", lines[24:])
  config = tiny(svmlight_config.get_config("method=cca_itq,bits=8"), data__path=train,
                data__test_path=test, data__validation_fraction=0.25)
  sweep = experiment.run_sweep(config)
  assert len(sweep.rows) == 1 and sweep.rows[0]["status"] == "ok"
  assert sweep.db_codes.shape == (1, 24, 8) and sweep.query_codes.shape == (1, 6, 8)
  assert sweep.db_labels.shape == (24, 5) and 0.0 <= sweep.rows[0]["p@5"] <= 1.0


@pytest.mark.slow  # compiles a training program: beyond the default run's per-test budget
def test_a_tiny_ssb_vae_sweep_on_a_table(tmp_path):
  train, test = jsonl_corpus(tmp_path)
  config = tiny(table_config.get_config("method=ssb_vae,bits=8"), data__path=train,
                data__test_path=test, data__validation_fraction=0.2)
  sweep = experiment.run_sweep(config)
  assert len(sweep.rows) == 1 and sweep.rows[0]["status"] == "ok"
  assert sweep.db_codes.shape == (1, 20, 8) and sweep.query_codes.shape == (1, 4, 8)
  assert 0.0 <= sweep.rows[0]["p@5"] <= 1.0


def test_the_data_line_names_the_multilabel_loss_path_and_the_other(tmp_path, caplog):
  """SPORT documents are sport, MUSIC ones music and live: 12 of the 16
  training documents hold 2 labels, (4 + 24) / 16 = 1.75 an item."""
  jsonl = [json.dumps({"text": t, "label": ["sport"]}) for t in SPORT]
  jsonl += [json.dumps({"text": t, "label": ["music", "live"]}) for t in MUSIC + MUSIC + MUSIC]
  train = write(tmp_path, "train.jsonl", jsonl)
  test = write(tmp_path, "test.jsonl", jsonl[:1] + jsonl[-1:])
  said = {}
  for method, path in (("ssb_vae", "softmax"), ("ssb_vae", "sigmoid"), ("lsh", None)):
    config = tiny(table_config.get_config(f"method={method},bits=8"), data__path=train,
                  data__test_path=test, data__validation_fraction=0.25)
    if path:
      config = with_fields(config, loss__multilabel=path)
    caplog.clear()
    with caplog.at_level("INFO", logger="hashvae"):
      experiment.checked_dataset(config)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data ")]
    assert len(lines) == 1
    said[path] = lines[0]
  assert said["softmax"].startswith(
      "data text_table: 12 train + 4 validation items (the database), 2 test queries, ")
  assert ("3 classes, multi-label (1.75 labels an item); loss.multilabel='softmax': the "
          "single-label softmax path on multi-hot labels, as released (paper parity); "
          "--config.loss.multilabel=sigmoid selects binary cross-entropy; validation 4 "
          "items, data.validation_fraction=0.25 of the training items; loaded in ") in said[
              "softmax"]
  assert ("loss.multilabel='sigmoid': binary cross-entropy per class, similarities in "
          "[0, 1]; --config.loss.multilabel=softmax is the paper-parity path") in said["sigmoid"]
  assert "multi-label (1.75 labels an item); validation 4 items" in said[None]  # lsh: no loss
