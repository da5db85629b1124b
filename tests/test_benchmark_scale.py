"""The scale benchmark's corpus generator, its cache and its growth exponent;
the section end to end at --quick sizes (slow)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse

from configs import tmc
from hashvae import data as data_lib
from hashvae.benchmarks import rcv1_like, scale

from conftest import ROOT


def same(a, b) -> bool:
  return (a.shape == b.shape and np.array_equal(a.indptr, b.indptr)
          and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data))


@pytest.fixture(scope="module")
def corpus():
  return rcv1_like.rcv1_like(2000, seed=0)


def test_corpus_is_seeded(corpus):
  again, other = rcv1_like.rcv1_like(2000, seed=0), rcv1_like.rcv1_like(2000, seed=1)
  for name in ("train", "cv", "test"):
    assert same(corpus[name], again[name])
    assert np.array_equal(corpus[f"gnd_{name}"], again[f"gnd_{name}"])
    assert not same(corpus[name], other[name])


def test_corpus_has_rcv1_shape_and_stays_sparse(corpus):
  sizes = dict(train=2000, cv=200, test=200)
  for name, items in sizes.items():
    x, gnd = corpus[name], corpus[f"gnd_{name}"]
    assert scipy.sparse.issparse(x) and x.format == "csr"
    assert x.shape == (items, rcv1_like.TERMS) and x.has_canonical_format
    widths = np.diff(x.indptr)
    assert widths.min() >= 1 and abs(widths.mean() - rcv1_like.NONZEROS) < 2
    assert (x.data > 0).all() and np.isfinite(x.data).all()
    assert gnd.shape == (items, rcv1_like.CLASSES) and (gnd.sum(axis=1) == 1).all()
  # every class present; tf-idf values, not bare counts
  assert (corpus["gnd_train"].sum(axis=0) > 0).all()
  assert not np.allclose(corpus["train"].data, np.round(corpus["train"].data))


def test_classes_differ_in_their_terms(corpus):
  """Each class's documents put more weight on their own topic terms than
  the other classes' documents do: the classes are learnable."""
  x, labels = corpus["train"], corpus["gnd_train"].argmax(axis=1)
  means = np.stack([np.asarray(x[labels == c].mean(axis=0)).ravel()
                    for c in range(rcv1_like.CLASSES)])  # [classes, terms]
  own = means.argmax(axis=0)  # the class using each term most
  top = np.argsort(-means, axis=1)[:, :10]  # each class's ten heaviest terms
  owners = own[top]
  assert (owners == np.arange(rcv1_like.CLASSES)[:, None]).mean() > 0.5


def test_cache_round_trips_through_the_loader(tmp_path):
  path, facts = rcv1_like.cached_corpus(str(tmp_path), 1000, seed=3)
  assert not facts["cached"] and facts["train_nonzeros"] > 0
  mtime = os.path.getmtime(path)
  again, facts_again = rcv1_like.cached_corpus(str(tmp_path), 1000, seed=3)
  assert again == path and facts_again["cached"] and os.path.getmtime(path) == mtime
  assert rcv1_like.cached_corpus(str(tmp_path), 1000, seed=4)[0] != path
  config = tmc.get_config("method=ssb_vae")
  with config.unlocked():
    config.data.path = path
  dataset = data_lib.load(data_lib.spec_from_fields(config.data.to_dict()))
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (1000, 100, 100)
  assert dataset.num_classes == rcv1_like.CLASSES and not dataset.multilabel
  assert dataset.dims == rcv1_like.TERMS
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]


def test_growth_exponent_recovers_known_powers():
  x = np.array([1e5, 2e5, 4e5, 8e5])
  assert scale.growth_exponent(x, 3 * x) == pytest.approx(1.0)
  assert scale.growth_exponent(x, x ** 2) == pytest.approx(2.0)
  assert scale.growth_exponent(x, np.full(4, 7.0)) == pytest.approx(0.0, abs=1e-12)
  assert scale.growth_exponent(x, 5 * np.sqrt(x) * [1.1, 0.9, 1.1, 0.9]) == pytest.approx(
      0.5, abs=0.1)
  assert scale.growth_exponent([1e5], [2.0]) is None  # one size: no slope
  assert scale.growth_exponent(x, [1.0, 0.0, 2.0, 3.0]) is None  # no log of 0


def test_sizes_are_checked():
  assert scale.check_sizes(["4000", 2000]) == [2000, 4000]
  with pytest.raises(ValueError, match="at least"):
    next(scale.run([500]))
  with pytest.raises(ValueError, match="whole numbers"):
    scale.check_sizes(["1e5"])


@pytest.mark.slow
def test_quick_section_end_to_end(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "launch.benchmark", "--sections=scale",
                         "--quick", f"--scale_cache={tmp_path}", "--scale_runs=2"],
                        cwd=ROOT, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [json.loads(line) for line in proc.stdout.splitlines()]
  sizes = [f for f in lines if f.get("figure") == "scale"]
  assert [f["train_items"] for f in sizes] == list(scale.QUICK_SIZES)
  for f in sizes:
    assert f["section"] == "scale" and "failed" not in f
    assert f["database_items"] == f["train_items"] * 11 // 10
    assert f["queries"] == f["train_items"] // 10
    assert f["peak_rss_bytes"] >= f["loaded_rss_bytes"] > 0
    assert all(f[name] > 0 for name in scale.GROWING if name != "evaluate_peak_above_bytes")
    assert f["p@100"] > 1.5 / rcv1_like.CLASSES  # one epoch already beats chance
  (growth,) = [f for f in lines if f.get("figure") == "scale_growth"]
  assert growth["train_items"] == list(scale.QUICK_SIZES)
  assert set(growth["exponents"]) == set(scale.GROWING)
