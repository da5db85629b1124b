"""Bad inputs to every entry point, as a new user would type them: each ends
with its exit status, one line `error: ...` matching a pattern, no traceback,
no usage text, and the files already in the case's folder byte-identical.

One table, one line per case: (entry point, arguments, exit status, the
pattern of the error line, the setup that makes the case's files). In the
arguments, {case} is the case's own folder, {data} a small good Snippets
folder, {sweep} a copy of a finished sweep in the case's folder and {index}
a copy of its index file. Each entry point runs all of its cases in one
process (tests/scripts/run_entry_cases.py), so jax is imported six times,
not a hundred.
"""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import scipy.io

from conftest import ROOT

RUNNER = os.path.join(ROOT, "tests", "scripts", "run_entry_cases.py")
S = "--config=configs/synthetic.py"
SNIP = "--config=configs/snippets.py:method=ssb_vae"
TINY_SNIP = ["--config.data.path={data}", "--config.seeds=(0,)", "--config.levels=(1.0,)",
             "--config.ks=(5,)", "--config.batch_size=16"]
# absl log lines ("I1201 11:57:31.074 1401 file.py:12] ...") and orbax's
# ("ERROR:absl:...") are not the message.
LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]|ERROR:absl:|"
                      r"WARNING:absl:)")
# ...but jax's backend probe is not logged at all without --verbose (the first
# case of a runner that looks for devices would show it).
PROBE_LINE = re.compile(r"Unable to initialize backend|xla_bridge|may be present on this "
                        r"machine|hardware_utils")


# --- setups: each writes the case's files into its folder -------------------

def text(name, content, encoding="utf-8"):
  def setup(case, shared):
    path = case / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
  return setup


def snippets(train, test="aaa bbb sports\nccc ddd arts\n"):
  return lambda case, shared: [text("d/train.txt", train)(case, shared),
                               text("d/test.txt", test)(case, shared)]


def npy(features, labels, pickled=False, truncate=False):
  def setup(case, shared):
    np.save(case / "x.npy", features, allow_pickle=pickled)
    np.save(case / "y.npy", labels)
    if truncate:
      data = (case / "x.npy").read_bytes()
      (case / "x.npy").write_bytes(data[:len(data) // 2])
  return setup


def mat(gnd_column=False, drop=(), truncate=False):
  def setup(case, shared):
    rng = np.random.default_rng(0)
    arrays = {}
    for key, n in (("train", 30), ("cv", 6), ("test", 6)):
      arrays[key] = rng.uniform(size=(n, 8))
      ids = rng.integers(0, 3, n)
      arrays["gnd_" + key] = ids[:, None] + 1 if gnd_column else np.eye(3)[ids]
    for key in drop:
      del arrays[key]
    scipy.io.savemat(case / "x.mat", arrays)
    if truncate:
      data = (case / "x.mat").read_bytes()
      (case / "x.mat").write_bytes(data[:len(data) // 3])
  return setup


def newsgroups_archive(truncate):
  def setup(case, shared):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
      for split in ("20news-bydate-train", "20news-bydate-test"):
        for label in ("sci.space", "rec.autos"):
          for i in range(30):
            body = f"From: x\n\nrocket orbit engine wheel {label} {i} " * 20
            info = tarfile.TarInfo(f"{split}/{label}/{100 + i}")
            payload = os.urandom(200).hex().encode() + body.encode()
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    data = buffer.getvalue()
    (case / "ng.tar.gz").write_bytes(data[:len(data) // 2] if truncate else data)
  return setup


def config_json(content):
  return text("w/config.json", content)


def other_config(case, shared):
  (case / "w").mkdir()
  (case / "w" / "config.json").write_text(json.dumps({"bits": 99}))


def locked(folder):
  """The folder held by a live process (this test's), as a running sweep
  would hold it."""
  def setup(case, shared):
    import fcntl
    (case / folder).mkdir(parents=True)
    fd = os.open(case / folder / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps(dict(pid=os.getpid(), host="testhost",
                                 started="2024-01-01 00:00:00")).encode())
    shared["keep_open"].append(fd)
  return setup


def read_only(case, shared):
  (case / "w").mkdir()
  os.chmod(case / "w", 0o555)


def sweep_copy(damage=None):
  def setup(case, shared):
    shutil.copytree(shared["sweep"], case / "sweep")
    if damage:
      damage(case / "sweep")
  return setup


def truncate(relative):
  def damage(folder):
    path = folder / relative
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
  return damage


def results_cell(folder):
  path = folder / "results.csv"
  lines = path.read_text().splitlines()
  header = lines[0].split(",")
  cells = lines[1].split(",")
  cells[header.index("p@5")] = "abc"
  path.write_text("\n".join([lines[0], ",".join(cells)] + lines[2:]) + "\n")


def index_copy(change=None):
  """A copy of the shared index, its arrays (and its header, as "meta")
  changed by `change(files)`."""
  from hashvae.retrieval import index_file

  def setup(case, shared):
    header = index_file.read_header(str(shared["index"]))
    files = {k: np.asarray(v) for k, v in index_file.map_arrays(str(shared["index"]),
                                                                header).items()}
    files["meta"] = {k: v for k, v in header.items() if k != "arrays"}
    if change:
      change(files)
    index_file.write(str(case / "index.hvi"), files.pop("meta"), files)
  return setup


def drop_array(name):
  return lambda files: files.pop(name)


def fewer_code_rows(files):
  files["db_codes"] = files["db_codes"][:-3]


def wrong_weight(files):
  """The code head's kernel one row taller than the encoder's output."""
  name = "encoder/head/kernel"
  files[name] = np.zeros((files[name].shape[0] + 1, files[name].shape[1]), np.float32)


def meta_field(**fields):
  def change(files):
    files["meta"].update(fields)
  return change


def truncated_index(case, shared):
  data = open(shared["index"], "rb").read()
  (case / "index.hvi").write_bytes(data[:len(data) // 2])


def both(*setups):
  return lambda case, shared: [s(case, shared) for s in setups]


GOOD_TRAIN = "aaa bbb sports\nccc ddd arts\n"
ONE_CLASS = "aaa bbb sports\nccc ddd sports\neee fff sports\n"
RESULTS_HEAD = "dataset,method,bits,seed,level,status,p@5\n"
METRICS = json.dumps(dict(method="m", epoch=1, loss=dict(mean=1.0, runs=[1.0])))
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0

M, R, P, N, Q, B = ("launch.main", "launch.reproduce", "launch.report", "launch.index",
                    "launch.search", "launch.benchmark")
CMP = "launch.compare"
W = "--workdir={case}/w"

CASES = [
    # --- launch.main: the command line (exit status 2)
    ("misspelt override", M, [S, W, "--config.batchsize=10"], 2,
     r"--config.batchsize: no config field 'batchsize' \(did you mean 'batch_size'\?\)", None),
    ("misspelt nested override", M, [S, W, "--config.model.hiden=(8,)"], 2,
     r"no config field 'hiden' \(did you mean 'hidden'\?\)", None),
    ("bad config argument", M, ["--config=configs/synthetic.py:bitz=8", W], 2,
     r"--config=configs/synthetic.py:bitz=8: .*'bitz=8'", None),
    ("config argument of the wrong type", M, ["--config=configs/synthetic.py:bits=x", W], 2,
     r"bits=x", None),
    ("config file missing", M, ["--config=configs/nope.py", W], 2,
     r"no such config file 'configs/nope.py'", None),
    ("no --config", M, [W], 2, r"--config must have a value", None),
    ("no --workdir", M, [S], 2, r"--workdir must have a value", None),
    ("misspelt flag", M, [S, "--wrkdir={case}/w"], 2, r"'wrkdir'.*workdir", None),
    ("stray argument", M, [S, W, "extra"], 2, r"unexpected arguments: \['extra'\]", None),
    ("repeated tuple override", M, [S, W, "--config.ks=(10,)", "--config.ks=(500,)"], 2,
     r"--config.ks is given 2 times", None),
    ("repeated scalar override", M, [S, W, "--config.epochs=2", "--config.epochs=5"], 2,
     r"--config.epochs is given 2 times", None),
    ("integer field given text", M, [S, W, "--config.epochs=abc"], 2,
     r"--config.epochs=abc: invalid literal", None),
    ("tuple field given text", M, [S, W, "--config.ks=abc"], 2,
     r"--config.ks=abc: expected a tuple of numbers", None),
    ("unclosed tuple", M, [S, W, "--config.levels=(0.1"], 2,
     r"--config.levels=\(0.1: expected a tuple of numbers", None),
    ("tuple field given text items", M, [S, W, "--config.levels=(0.1,x)"], 2,
     r"--config.levels=\(0.1,x\): expected a tuple of numbers", None),
    ("negative --cpu_devices", M, [S, W, "--cpu_devices=-1"], 2, r"--cpu_devices=-1", None),
    ("--num_processes not a number", M, [S, W, "--num_processes=abc"], 2,
     r"--num_processes", None),
    # --- launch.main: the config (exit status 1)
    ("level above 1", M, [S, W, "--config.levels=(1.5,)"], 1,
     r"ConfigError: config.levels=\(1.5,\): every level must lie in \[0, 1\]", None),
    ("unknown method", M, ["--config=configs/synthetic.py:method=nope", W], 2,
     r"unknown method 'nope'", None),
    ("zero bits", M, [S, W, "--config.bits=0"], 1, r"config.bits=0", None),
    ("batch larger than the data", M, [S, W, "--config.batch_size=10000"], 1,
     r"batch_size=10000: at most the training set size", None),
    ("no cut-off within the database", M, [S, W, "--config.ks=(500,1000)"], 1,
     r"no cut-off is at most the database size", None),
    ("extra module missing", M, [S, W, "--config.extra_modules=no_such_module"], 2,
     r"cannot import 'no_such_module'", None),
    ("unknown dataset", M, [S, W, "--config.data.name=nope"], 1, r"data.name='nope'", None),
    ("zero-width layer", M, [S, W, "--config.model.hidden=(0,)"], 1, r"model.hidden", None),
    ("zero learning rate", M, [S, W, "--config.learning_rate=0.0"], 1, r"learning_rate",
     None),
    ("fast optimiser on dense input", M, [S, W, "--config.optimizer=fast",
                                          "--config.model.sparse_input=dense"], 1,
     r"'fast' needs the sparse input path", None),
    # --- launch.main: the workdir
    ("workdir is a file", M, [S, "--workdir={case}/f"], 1,
     r"--workdir=.*/f is a file, not a folder", text("f", "mine\n")),
    ("workdir under a file", M, [S, "--workdir={case}/f/w"], 1,
     r"cannot create the folder", text("f", "mine\n")),
    # root may write anywhere: as root the case would train a sweep
    *([] if ROOT_USER else [("workdir not writable", M, [S, W], 1, r"is not writable",
                             read_only)]),
    ("truncated config.json", M, [S, W], 1, r"w/config.json is damaged .*--restart",
     config_json('{"bits": 8, "data": {"na')),
    ("config.json not an object", M, [S, W], 1, r"config.json is damaged",
     config_json("[1, 2]\n")),
    ("config.json of another sweep", M, [S, W], 1,
     r"holds a sweep with a different config: .*bits \(99 -> 8\)", other_config),
    ("workdir held by a running sweep", M, [S, W], 1,
     r"WorkdirLocked: .*/w is in use by pid \d+ on host testhost since 2024-01-01",
     locked("w")),
    # --- launch.main: the data
    ("validation fraction above 1", M, [SNIP, W, *TINY_SNIP,
                                        "--config.data.validation_fraction=1.5"], 1,
     r"validation_fraction=1.5: a fraction in \[0, 1\)", None),
    ("snippets negative max_features", M, [SNIP, W, *TINY_SNIP,
                                           "--config.data.max_features=-1"], 1,
     r"config.data.max_features=-1: an integer >= 1", None),
    ("synthetic zero train_size", M, [S, W, "--config.data.train_size=0"], 1,
     r"config.data.train_size=0: an integer >= 1", None),
    ("snippets folder missing", M, [SNIP, W, "--config.data.path={case}/none"], 1,
     r"data folder not found", None),
    ("snippets malformed line", M, [SNIP, W, "--config.data.path={case}/d"], 1,
     r"train.txt:2: malformed line", snippets("aaa bbb sports\nxyz\n")),
    ("snippets test label unseen", M, [SNIP, W, "--config.data.path={case}/d"], 1,
     r"\['cooking'\] do not occur", snippets(GOOD_TRAIN, "aaa cooking\n")),
    ("snippets single class", M, [SNIP, W, "--config.data.path={case}/d",
                                  "--config.data.validation_fraction=0.0"], 1,
     r"training items hold 1 class .*at least two", snippets(ONE_CLASS, "aaa sports\n")),
    ("snippets empty train.txt", M, [SNIP, W, "--config.data.path={case}/d"], 1,
     r"empty corpus", snippets("\n\n")),
    ("snippets without test.txt", M, [SNIP, W, "--config.data.path={case}/d"], 1,
     r"data file not found: .*test.txt", text("d/train.txt", GOOD_TRAIN)),
    ("features .npy of pickled objects", M, ["--config=configs/cifar.py", W,
                                             "--config.data.path={case}/x.npy",
                                             "--config.data.labels_path={case}/y.npy"], 1,
     r"x.npy: it holds pickled Python objects",
     npy(np.array([{"a": 1}] * 20, dtype=object), np.repeat([0, 1], 10), pickled=True)),
    ("features .npy truncated", M, ["--config=configs/cifar.py", W,
                                    "--config.data.path={case}/x.npy",
                                    "--config.data.labels_path={case}/y.npy"], 1,
     r"x.npy: not a complete .npy file",
     npy(np.ones((400, 8)), np.repeat([0, 1], 200), truncate=True)),
    ("features and labels disagree", M, ["--config=configs/cifar.py", W,
                                         "--config.data.path={case}/x.npy",
                                         "--config.data.labels_path={case}/y.npy"], 1,
     r"labels for 20 feature rows", npy(np.ones((20, 8)), np.zeros(19, int))),
    ("features file missing", M, ["--config=configs/cifar.py", W,
                                  "--config.data.path={case}/none.npy",
                                  "--config.data.labels_path={case}/none.npy"], 1,
     r"features_npy: file not found", None),
    ("labels not integers", M, ["--config=configs/cifar.py", W,
                                "--config.data.path={case}/x.npy",
                                "--config.data.labels_path={case}/y.npy"], 1,
     r"labels must be non-negative integers", npy(np.ones((20, 8)), np.linspace(0, 1, 20))),
    ("features single class", M, ["--config=configs/cifar.py", W,
                                  "--config.data.path={case}/x.npy",
                                  "--config.data.labels_path={case}/y.npy",
                                  "--config.data.queries_per_class=2"], 1,
     r"training items hold 1 class", npy(np.random.default_rng(0).normal(size=(30, 8)),
                                         np.zeros(30, int))),
    (".mat labels a column of class ids", M, ["--config=configs/tmc.py", W,
                                              "--config.data.path={case}/x.mat"], 1,
     r"gnd_train holds values 1, 2, 3 .*a column of class ids", mat(gnd_column=True)),
    (".mat truncated", M, ["--config=configs/tmc.py", W, "--config.data.path={case}/x.mat"],
     1, r"cannot read .*x.mat as a .mat file", mat(truncate=True)),
    (".mat without gnd_test", M, ["--config=configs/tmc.py", W,
                                  "--config.data.path={case}/x.mat"], 1,
     r"lacks keys \['gnd_test'\]", mat(drop=("gnd_test",))),
    (".mat missing", M, ["--config=configs/tmc.py", W, "--config.data.path={case}/x.mat"],
     1, r"vdsh_mat: data file not found", None),
    ("newsgroups archive cut short", M, ["--config=configs/newsgroups.py", W,
                                         "--config.data.path={case}/ng.tar.gz"], 1,
     r"cannot read .*ng.tar.gz as a tar archive .*truncated download",
     newsgroups_archive(truncate=True)),
    ("newsgroups archive not an archive", M, ["--config=configs/newsgroups.py", W,
                                              "--config.data.path={case}/ng.tar.gz"], 1,
     r"cannot read .*ng.tar.gz as a tar archive", text("ng.tar.gz", "not a tar\n")),
    ("newsgroups archive missing", M, ["--config=configs/newsgroups.py", W,
                                       "--config.data.path={case}/none.tar.gz"], 1,
     r"newsgroups: not found", None),
    # --- launch.reproduce
    ("reproduce: bits not a number", R, ["--bits=abc", W], 2, r"--bits=abc: expected", None),
    ("reproduce: zero bits", R, ["--bits=0", W], 2, r"--bits=0: every code length", None),
    ("reproduce: unknown dataset", R, ["--dataset=nope", W], 2, r"unknown dataset 'nope'",
     None),
    ("reproduce: --set item without =", R, ["--dataset=synthetic", "--set=epochs", W], 2,
     r"--set item 'epochs': expected key=value", None),
    ("reproduce: --set misspelt field", R, ["--dataset=synthetic", "--set=epoch=1", W], 2,
     r"unknown config field 'epoch'", None),
    ("reproduce: --set wrong type", R, ["--dataset=synthetic", "--set=epochs=abc", W], 2,
     r"--set: config.epochs='abc': expected an integer such as \d+$", None),
    ("reproduce: --set number for a tuple", R, ["--dataset=synthetic", "--set=seeds=5", W],
     2, r"--set: config.seeds=5: expected a tuple of numbers such as \(0,1\)$", None),
    ("reproduce: --set text for a tuple", R, ["--dataset=synthetic", "--set=seeds=abc", W],
     2, r"--set: config.seeds='abc': expected a tuple of numbers such as \(", None),
    ("reproduce: --set text in a tuple", R,
     ["--dataset=synthetic", "--set=levels=(0.1,x)", W], 2,
     r"--set: config.levels='\(0.1,x\)': expected a tuple of numbers such as \(0.2,1.0\)$",
     None),
    ("reproduce: --set string item in a tuple", R,
     ["--dataset=synthetic", "--set=levels=(0.1,'a')", W], 2,
     r"--set: config.levels=\(0.1, 'a'\): expected a tuple of numbers", None),
    ("reproduce: --set a number for a group", R, ["--dataset=synthetic", "--set=model=5", W],
     2, r"--set: config.model=5: expected a group of fields: set one, such as model\.", None),
    ("reproduce: --tune with a bad search field", R,
     ["--tune", "--dataset=synthetic", "--set=tune.candidates=0", W], 2,
     r"--set: config.tune.candidates=0: an integer >= 1", None),
    ("reproduce: no such weights file", R, ["--dataset=synthetic", "--grid={case}/none.csv",
                                            W], 2, r"none.csv': no such weights file",
     None),
    ("reproduce: --set bad level", R, ["--dataset=synthetic", "--set=levels=(2.0,)", W], 1,
     r"ConfigError: config.levels=\(2.0,\)", None),
    ("reproduce: --data_path with two datasets", R, ["--dataset=snippets,tmc",
                                                     "--data_path={case}", W], 2,
     r"--data_path applies to one dataset", None),
    ("reproduce: data missing", R, ["--dataset=snippets", "--data_path={case}/none", W], 1,
     r"DataError: snippets: data folder not found", None),
    ("reproduce: no --workdir", R, ["--dataset=synthetic"], 2, r"--workdir must have", None),
    ("reproduce: workdir is a file", R, ["--dataset=synthetic", "--workdir={case}/f"], 1,
     r"is a file, not a folder", text("f", "mine\n")),
    ("reproduce: stray argument", R, ["--dataset=synthetic", W, "extra"], 2,
     r"unexpected arguments", None),
    ("reproduce: unknown method", R, ["--dataset=synthetic", "--method=nope", W], 2,
     r"unknown method 'nope'", None),
    ("reproduce: misspelt flag", R, ["--datset=synthetic", W], 2, r"'datset'", None),
    ("reproduce: workdir held", R, ["--dataset=synthetic", W], 1,
     r"is in use by pid \d+ on host testhost", locked("w")),
    ("reproduce: a cell held", R, ["--dataset=synthetic", "--bits=8", W], 1,
     r"w/synthetic_8 is in use by pid \d+", locked("w/synthetic_8")),
    ("reproduce: a cell's config.json damaged", R, ["--dataset=synthetic", "--bits=8", W],
     1, r"synthetic_8/config.json is damaged", text("w/synthetic_8/config.json", "{")),
    # --- launch.report
    ("report: results file missing", P, ["--results={case}/none.csv", "--out={case}/o"], 2,
     r"--results: no such file", None),
    ("report: a cell not a number", P, ["--results={case}/r.csv", "--out={case}/o"], 1,
     r"r.csv:3: column p@5 holds 'abc', not a number",
     text("r.csv", RESULTS_HEAD + "s,m,8,0,0.5,ok,0.5\ns,m,8,1,0.5,ok,abc\n")),
    ("report: header only", P, ["--results={case}/r.csv", "--out={case}/o"], 1,
     r"r.csv holds no rows", text("r.csv", RESULTS_HEAD)),
    ("report: columns missing", P, ["--results={case}/r.csv", "--out={case}/o"], 1,
     r"lacks the columns \['dataset', 'bits'\]", text("r.csv", "method,level\nm,0.5\n")),
    ("report: truncated row", P, ["--results={case}/r.csv", "--out={case}/o"], 1,
     r"r.csv:2: fewer cells than columns", text("r.csv", RESULTS_HEAD + "s,m,8,0\n")),
    ("report: not UTF-8", P, ["--results={case}/r.csv", "--out={case}/o"], 1,
     r"r.csv is not UTF-8 text", text("r.csv", b"\xff\xfe\x00bad\n")),
    ("report: results is a folder", P, ["--results={case}", "--out={case}/o"], 2,
     r"is a folder, not a file", None),
    ("report: no --out", P, ["--results={case}/r.csv"], 2, r"--out must have", None),
    ("report: nothing to report", P, ["--out={case}/o"], 2,
     r"give --results and/or --metrics", None),
    ("report: metrics file missing", P, ["--metrics={case}/m.jsonl", "--out={case}/o"], 2,
     r"--metrics: no such file", None),
    ("report: metrics truncated", P, ["--metrics={case}/m.jsonl", "--out={case}/o"], 1,
     r"m.jsonl:2: not a JSON line", text("m.jsonl", METRICS + "\n" + METRICS[:20])),
    ("report: metrics not records", P, ["--metrics={case}/m.jsonl", "--out={case}/o"], 1,
     r"m.jsonl:1: not a metrics record", text("m.jsonl", "[1, 2]\n")),
    ("report: --out is a file", P, ["--results={case}/r.csv", "--out={case}/r.csv"], 2,
     r"--out=.*r.csv is a file", text("r.csv", RESULTS_HEAD + "s,m,8,0,0.5,ok,0.5\n")),
    ("report: stray argument", P, ["--out={case}/o", "extra"], 2, r"unexpected arguments",
     None),
    # --- launch.compare
    ("compare: results file missing", CMP, ["--results={case}/none.csv", "--out={case}/o"],
     2, r"--results: no such file", None),
    ("compare: a cell not a number", CMP, ["--results={case}/r.csv", "--out={case}/o"], 1,
     r"r.csv:3: column p@5 holds 'abc', not a number",
     text("r.csv", RESULTS_HEAD + "s,m,8,0,0.5,ok,0.5\ns,m,8,1,0.5,ok,abc\n")),
    ("compare: a run given twice", CMP,
     ["--results={case}/r.csv,{case}/r2.csv", "--out={case}/o", "--metric=p@5"], 1,
     r"r2.csv:2 .*r.csv:2|r.csv:2 .*r2.csv:2",
     both(text("r.csv", RESULTS_HEAD + "s,m,8,0,0.5,ok,0.5\n"),
          text("r2.csv", RESULTS_HEAD + "s,m,8,0,0.5,ok,0.6\n"))),
    ("compare: metric not measured", CMP,
     ["--results={case}/r.csv", "--out={case}/o", "--metric=p@100"], 2, r"p@100",
     text("r.csv", RESULTS_HEAD + "s,m,8,0,0.5,ok,0.5\n")),
    ("compare: --out is a file", CMP, ["--results={case}/r.csv", "--out={case}/r.csv"], 2,
     r"--out=.*r.csv is a file", text("r.csv", RESULTS_HEAD + "s,m,8,0,0.5,ok,0.5\n")),
    # --- launch.index
    ("index: workdir missing", N, ["--workdir={case}/none"], 1, r"none: no such folder",
     None),
    ("index: no results.csv", N, ["--workdir={case}/sweep"], 1,
     r"holds no finished sweep \(results.csv is missing\)",
     sweep_copy(lambda f: os.remove(f / "results.csv"))),
    ("index: config.json truncated", N, ["--workdir={case}/sweep"], 1,
     r"sweep/config.json is damaged", sweep_copy(truncate("config.json"))),
    ("index: results.csv cell not a number", N, ["--workdir={case}/sweep"], 1,
     r"results.csv:2: column p@5 holds 'abc'", sweep_copy(results_cell)),
    ("index: codes.npz truncated", N, ["--workdir={case}/sweep"], 1,
     r"codes.npz: .*rerun the sweep", sweep_copy(truncate("codes.npz"))),
    ("index: finished method damaged", N, ["--workdir={case}/sweep"], 1,
     r"methods/ssb_vae.npz: ", sweep_copy(truncate("methods/ssb_vae.npz"))),
    ("index: trained variables missing", N, ["--workdir={case}/sweep"], 1,
     r"ssb_vae.variables is missing",
     sweep_copy(lambda f: shutil.rmtree(f / "methods" / "ssb_vae.variables"))),
    ("index: --run not a number", N, ["--workdir={case}/sweep", "--run=abc"], 2,
     r"--run=abc", sweep_copy()),
    ("index: --run out of range", N, ["--workdir={case}/sweep", "--run=99"], 2,
     r"run 99 is not a row", sweep_copy()),
    ("index: no run at the level", N, ["--workdir={case}/sweep", "--level=0.3"], 2,
     r"no finished run at level 0.3", sweep_copy()),
    ("index: unknown metric", N, ["--workdir={case}/sweep", "--metric=nope"], 2,
     r"no 'nope' column", sweep_copy()),
    ("index: --out is a folder", N, ["--workdir={case}/sweep", "--run=0",
                                     "--out={case}/sweep"], 2,
     r"--out=.* is a folder", sweep_copy()),
    ("index: no --workdir", N, [], 2, r"--workdir must have", None),
    # --- launch.search
    ("search: index missing", Q, ["--index={case}/none.hvi", "--text=goal"], 1,
     r"no such file or folder: .*none.hvi", None),
    ("search: index truncated", Q, ["--index={case}/index.hvi", "--text=goal"], 1,
     r"corrupt or truncated index file", truncated_index),
    ("search: index a text file", Q, ["--index={case}/index.hvi", "--text=goal"], 1,
     r"corrupt or truncated index file", text("index.hvi", "hello\n")),
    ("search: index without ids", Q, ["--index={case}/index.hvi", "--text=goal"], 1,
     r"'db_ids'", index_copy(drop_array("db_ids"))),
    ("search: a weight of another shape", Q, ["--index={case}/index.hvi", "--text=goal"],
     1, r"the weight .* has shape .*the model needs", index_copy(wrong_weight)),
    ("search: fewer code rows than ids", Q, ["--index={case}/index.hvi", "--text=goal"], 1,
     r"db_codes has \d+ rows for \d+ ids", index_copy(fewer_code_rows)),
    ("search: another index version", Q, ["--index={case}/index.hvi", "--text=goal"], 1,
     r"index version 99", index_copy(meta_field(version=99))),
    ("search: not a hashvae index", Q, ["--index={case}/index.hvi", "--text=goal"], 1,
     r"not a hashvae index", index_copy(meta_field(format="other"))),
    ("search: query file missing", Q, ["--index={case}/index.hvi",
                                       "--query-file={case}/q.txt"], 2,
     r"--query-file=.*q.txt: no such file", index_copy()),
    ("search: query file not UTF-8", Q, ["--index={case}/index.hvi",
                                         "--query-file={case}/q.txt"], 2,
     r"q.txt:2: not UTF-8 text", both(index_copy(), text("q.txt", b"goal\nfoot\xffball\n"))),
    ("search: query file empty", Q, ["--index={case}/index.hvi",
                                     "--query-file={case}/q.txt"], 2,
     r"holds no query", both(index_copy(), text("q.txt", "\n\n"))),
    ("search: k of 0", Q, ["--index={case}/index.hvi", "--text=goal", "--k=0"], 2,
     r"--k", index_copy()),
    ("search: no query", Q, ["--index={case}/index.hvi"], 2,
     r"give exactly one of --text, --query-file, --query-id", index_copy()),
    ("search: two queries", Q, ["--index={case}/index.hvi", "--text=goal", "--query-id=1"],
     2, r"give exactly one of", index_copy()),
    ("search: item out of range", Q, ["--index={case}/index.hvi", "--query-id=100000"], 2,
     r"--query-id=100000: no indexed item has this id", index_copy()),
    ("search: no --index", Q, ["--text=goal"], 2, r"--index must have", None),
    # --- launch.benchmark
    ("benchmark: unknown section", B, ["--sections=nope"], 2, r"unknown sections \['nope'\]",
     None),
    ("benchmark: search without a sweep", B, ["--sections=search"], 2,
     r"the search section needs --sweep", None),
    ("benchmark: misspelt flag", B, ["--sectons=eval"], 2, r"'sectons'", None),
    ("benchmark: stray argument", B, ["extra"], 2, r"unexpected arguments", None),
]


def case_id(case):
  return case[0]


def digest(folder) -> dict:
  """{relative path: sha256} of every file under `folder`."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def build_sweep(root) -> dict:
  """A finished tiny text sweep and its index (about 20 s: one compile)."""
  data = root / "data"
  data.mkdir()
  words = {"sports": "football match goal team player league cup score",
           "music": "guitar song album band concert singer melody drums",
           "science": "physics atom energy quantum theory experiment particle lab"}
  rng = np.random.default_rng(0)
  doc = lambda label: " ".join(rng.choice(words[label].split(), 8)) + " " + label
  (data / "train.txt").write_text("".join(doc(k) + "\n" for k in words for _ in range(20)))
  (data / "test.txt").write_text("".join(doc(k) + "\n" for k in words for _ in range(4)))
  sweep, index = root / "sweep", root / "index.hvi"
  script = (
      "import sys; from hashvae import api; from hashvae.retrieval import index\n"
      "api.run('configs/snippets.py:method=ssb_vae', sys.argv[1], seeds=(0,), levels=(1.0,),"
      " epochs=1, batch_size=16, ks=(5,), **{'model.hidden': (8,), 'data.path': sys.argv[3],"
      " 'data.max_features': 50, 'data.validation_fraction': 0.0})\n"
      "index.build(api.Sweep(sys.argv[1]), 0, sys.argv[2])\n")
  proc = subprocess.Popen([sys.executable, "-c", script, str(sweep), str(index), str(data)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=dict(os.environ, JAX_NUM_CPU_DEVICES="1"))
  return dict(proc=proc, sweep=sweep, index=index, data=data)


def start_runner(module, argvs, folder):
  """The runner of `module`'s cases; reads them from and writes outcomes to
  files in `folder` (pipes could fill up and stall it)."""
  cases_path, out_path = folder / f"{module}.cases.json", folder / f"{module}.out.json"
  cases_path.write_text(json.dumps(argvs))
  with open(cases_path) as cases, open(out_path, "w") as out:
    proc = subprocess.Popen([sys.executable, RUNNER, module], cwd=ROOT, stdin=cases,
                            stdout=out, stderr=subprocess.PIPE, text=True)
  proc.outcomes = out_path
  return proc


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
  """Every case's (outcome, files before, files after), run one process per
  entry point; the entry points that need no trained sweep start at once."""
  root = tmp_path_factory.mktemp("entry")
  shared = build_sweep(root)
  shared["keep_open"] = []
  before, procs, order = {}, {}, {}
  # index and search read the sweep, so they start once it is trained.
  waiting = {m: m in (N, Q) for m in dict.fromkeys(c[1] for c in CASES)}

  def prepare(module):
    argvs = []
    for number, case in enumerate(CASES):
      name, mod, args, _, _, setup = case
      if mod != module:
        continue
      folder = root / f"case_{number:03d}"
      folder.mkdir()
      if setup is not None:
        setup(folder, shared)
      before[name] = digest(folder)
      fill = dict(case=folder, data=shared["data"])
      argvs.append([module] + [a.format(**fill) for a in args])
      order.setdefault(module, []).append((name, folder))
    procs[module] = start_runner(module, argvs, root)

  for module, needs_sweep in waiting.items():
    if not needs_sweep:
      prepare(module)
  _, sweep_err = shared["proc"].communicate(timeout=600)
  assert shared["proc"].returncode == 0, sweep_err.decode()[-3000:]
  for module, needs_sweep in waiting.items():
    if needs_sweep:
      prepare(module)
  found = {}
  for module, proc in procs.items():
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{module} runner failed: {err[-3000:]}"
    for (name, folder), outcome in zip(order[module], json.loads(proc.outcomes.read_text()),
                                       strict=True):
      found[name] = (outcome, before[name], digest(folder))
  for fd in shared["keep_open"]:
    os.close(fd)
  return found


def message_lines(outcome) -> list[str]:
  """The lines of stdout and stderr that are not log lines."""
  lines = (outcome["stdout"] + outcome["stderr"]).splitlines()
  return [line for line in lines if line.strip() and not LOG_LINE.match(line)]


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(outcomes, case):
  name, _, _, code, pattern, _ = case
  outcome, before, after = outcomes[name]
  shown = outcome["stdout"][-1500:] + outcome["stderr"][-3000:]
  assert outcome["code"] == code, shown
  lines = message_lines(outcome)
  assert len(lines) == 1, shown
  assert lines[0].startswith("error: "), shown
  assert re.search(pattern, lines[0]), shown
  assert "Traceback" not in shown and "USAGE" not in shown
  assert not PROBE_LINE.search(outcome["stderr"]), shown
  assert after == before  # nothing written, removed or changed


def test_the_table_covers_every_entry_point():
  modules = [c[1] for c in CASES]
  assert len(CASES) >= 80
  assert {M, R, P, CMP, N, Q, B} == set(modules)
  assert len({case_id(c) for c in CASES}) == len(CASES)  # outcomes are keyed by name
