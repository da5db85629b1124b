"""A table of bad inputs, configs and data files: each fails with its type and
a message naming the problem."""

import numpy as np
import pytest
import scipy.io

from configs import digits, synthetic
from hashvae import data
from hashvae.data import DataError
from hashvae.store import workdir
from hashvae.sweep import config_check, experiment
from hashvae.sweep.config_check import ConfigError

from conftest import with_fields


def config_with(**fields):
  return with_fields(synthetic.get_config(), **fields)


def check(**fields):
  return lambda tmp: config_check.check(config_with(**fields))


def write(tmp, name, text):
  path = tmp / name
  path.write_text(text)
  return path


def snippets(train, test):
  def load(tmp):
    write(tmp, "train.txt", train)
    write(tmp, "test.txt", test)
    return data.load(data.SnippetsSpec(path=str(tmp), max_features=100,
                                       validation_fraction=0.0, split_seed=0))
  return load


def mat(drop=(), rows_off=0, unlabelled_test_row=None):
  def load(tmp):
    rng = np.random.default_rng(0)
    arrays = {}
    for key, n in (("train", 20), ("cv", 5), ("test", 5)):
      arrays[key] = rng.uniform(size=(n + (rows_off if key == "cv" else 0), 8))
      arrays["gnd_" + key] = np.eye(3)[rng.integers(0, 3, n)]
    if unlabelled_test_row is not None:
      arrays["gnd_test"][unlabelled_test_row] = 0
    for key in drop:
      del arrays[key]
    scipy.io.savemat(tmp / "x.mat", arrays)
    return data.load(data.VdshMatSpec(path=str(tmp / "x.mat")))
  return load


def features(x, y):
  def load(tmp):
    np.save(tmp / "x.npy", x)
    np.save(tmp / "y.npy", y)
    return data.load(data.FeaturesNpySpec(path=str(tmp / "x.npy"),
                                          labels_path=str(tmp / "y.npy"),
                                          queries_per_class=2, split_seed=0))
  return load


def sweep(**fields):
  return lambda tmp: experiment.run_sweep(config_with(**fields))


def drifted_workdir(tmp):
  workdir.prepare(str(tmp), synthetic.get_config().to_dict())
  workdir.prepare(str(tmp), config_with(bits=12).to_dict())


nan_features = np.ones((20, 3))
nan_features[4, 2] = np.inf

CASES = [
    ("unknown method", check(methods=("vdsh_x",)), ConfigError, r"unknown method 'vdsh_x'"),
    ("unknown dataset", check(data__name="cifar100"), ConfigError, r"data.name.*unknown dataset"),
    ("bits below 1", check(bits=0), ConfigError, r"config.bits=0"),
    ("level above 1", check(levels=(0.5, 1.2)), ConfigError, r"levels.*\[0, 1\]"),
    ("negative weight", check(weights__phs_gs__beta=(-1.0,)), ConfigError,
     r"weights.phs_gs.beta.*>= 0"),
    ("infinite weight", check(weights__vdsh_s__alpha=(float("inf"),)), ConfigError,
     r"weights.vdsh_s.alpha.*finite"),
    ("zero learning rate", check(learning_rate=0.0), ConfigError, r"learning_rate"),
    ("zero epochs", check(epochs=0), ConfigError, r"config.epochs"),
    ("unknown multilabel mode", check(loss__multilabel="max"), ConfigError, r"loss.multilabel"),
    ("similarity power below 1", check(methods=("ssb_vae",), loss__similarity_power=0.5),
     ConfigError, r"loss.similarity_power=0.5: a finite number >= 1 \(method 'ssb_vae'\)"),
    ("batch larger than the training set", sweep(batch_size=10_000), ConfigError,
     r"batch_size=10000: at most the training set size \(200 items\)"),
    ("no cut-off within the database", sweep(ks=(500, 1000)), ConfigError,
     r"ks=\(500, 1000\): no cut-off is at most the database size \(200"),
    ("unknown config argument key", lambda tmp: digits.get_config("bit=16"), ValueError,
     r"'bit=16'"),
    ("missing data folder", (lambda tmp: data.load(
        data.SnippetsSpec(path=str(tmp / "no"), max_features=5, validation_fraction=0.1,
                          split_seed=0))), DataError, r"folder not found"),
    ("malformed line", snippets("aaa bbb sports\nxyz\n", "aaa sports\n"), DataError,
     r"train.txt:2: malformed line"),
    ("empty document", snippets("aaa bbb sports\nccc ddd arts\nsports\n", "aaa sports\n"),
     DataError, r"train.txt:3: malformed line: an empty document .*'sports'"),
    ("unknown label in the test split", snippets("aaa bbb sports\nccc ddd arts\n",
                                                 "aaa cooking\n"), DataError,
     r"\['cooking'\] do not occur"),
    ("empty corpus", snippets("\n\n", "aaa sports\n"), DataError, r"empty corpus"),
    ("no vocabulary", snippets("an of sports\nto be arts\n", "an sports\n"), DataError,
     r"cannot build a vocabulary"),
    (".mat without gnd_test", mat(drop=("gnd_test",)), DataError, r"lacks keys \['gnd_test'\]"),
    (".mat row without a label", mat(unlabelled_test_row=3), DataError,
     r"1 rows of gnd_test have no label \(first: row 3\)"),
    (".mat rows do not match labels", mat(rows_off=2), DataError,
     r"cv has 7 rows but gnd_cv has 5"),
    ("missing .mat file", lambda tmp: data.load(data.VdshMatSpec(path=str(tmp / "none.mat"))),
     DataError, r"file not found"),
    (".npy rows do not match labels", features(np.ones((20, 3)), np.zeros(19, int)),
     DataError, r"19.*20 feature rows"),
    ("inf in the features", features(nan_features, np.repeat([0, 1], 10)), DataError,
     r"1 rows hold NaN or inf \(first: row 4\)"),
    ("non-integer labels", features(np.ones((20, 3)), np.linspace(0, 1, 20)), DataError,
     r"labels must be non-negative integers"),
    ("config changed in a workdir", drifted_workdir, workdir.WorkdirError, r"bits \(8 -> 12\)"),
]


@pytest.mark.parametrize("name,trigger,error,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_clearly(tmp_path, name, trigger, error, message):
  with pytest.raises(error, match=message):
    trigger(tmp_path)
