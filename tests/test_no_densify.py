"""No stage densifies text data: loading, training, encoding and evaluating a
bag-of-words corpus never builds an [items, vocabulary] array."""

import dataclasses

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from configs import tmc
from hashvae import data
from hashvae.core import sparse
from hashvae.sweep import experiment
from hashvae.training import train
from hashvae.tuning import tune_space

ITEMS_BEFORE_DENSE = 64  # a block this many rows deep may be densified (a batch)


@pytest.fixture
def no_dense_copies(monkeypatch):
  """Fails any scipy.sparse -> dense conversion of more than a batch of rows."""
  seen = []
  for cls in (scipy.sparse.csr_matrix, scipy.sparse.coo_matrix, scipy.sparse.csc_matrix):
    for name in ("toarray", "todense"):
      original = getattr(cls, name)

      def guarded(self, *args, _original=original, **kwargs):
        seen.append(self.shape)
        if self.shape[0] > ITEMS_BEFORE_DENSE and self.shape[1] > ITEMS_BEFORE_DENSE:
          raise AssertionError(f"a {self.shape} sparse matrix was densified")
        return _original(self, *args, **kwargs)
      monkeypatch.setattr(cls, name, guarded)
  return seen


def write_corpus(tmp_path) -> str:
  """A two-class bag-of-words corpus in the VDSH .mat layout; its path."""
  rng = np.random.default_rng(3)

  def split(items):  # two classes, each with its own half of the vocabulary
    labels = rng.integers(0, 2, items)
    rows = scipy.sparse.random(items, 400, density=0.03, format="csr", random_state=rng)
    rows = rows + scipy.sparse.random(items, 400, density=0.03, format="csr",
                                      random_state=rng).multiply(
        (np.arange(400) < 200) == labels[:, None])
    return scipy.sparse.csr_matrix(rows), np.eye(2)[labels]
  mat = {}
  for name, items in (("train", 300), ("cv", 60), ("test", 80)):
    mat[name], mat[f"gnd_{name}"] = split(items)
  path = str(tmp_path / "corpus.mat")
  scipy.io.savemat(path, mat, do_compression=False)
  return path


def tiny_config(path):
  config = tmc.get_config("method=ssb_vae")
  with config.unlocked():
    config.data.path = path
    config.seeds, config.levels, config.epochs, config.bits = (0,), (0.5,), 1, 8
    config.ks = (10,)
    config.model.hidden = (16,)
  return config


def test_loading_and_device_arrays_keep_text_sparse(tmp_path, no_dense_copies):
  config = tiny_config(write_corpus(tmp_path))
  dataset = data.load(data.spec_from_fields(config.data.to_dict()))
  for split in (dataset.train, dataset.validation, dataset.test, dataset.database):
    assert split.sparse and scipy.sparse.issparse(split.targets)
  arrays = train.device_arrays(dataset, sparse=False)  # even for the dense input path
  assert isinstance(arrays["inputs"], sparse.CsrRows)
  assert arrays["targets"].shape == (dataset.database.inputs.nnz,)
  held = tune_space.search_dataset(dataclasses.replace(
      dataset, validation=dataset.validation.take(slice(0, 0))), config.tune)
  assert held.test.sparse and held.train.sparse
  assert no_dense_copies == []  # nothing was densified, not even a batch


@pytest.mark.slow
def test_a_text_corpus_trains_and_is_evaluated_without_a_dense_copy(tmp_path,
                                                                    no_dense_copies):
  config = tiny_config(write_corpus(tmp_path))
  with pytest.raises(AssertionError, match="densified"):  # the guard works
    scipy.sparse.random(100, 100, density=0.1, format="csr").toarray()
  sweep = experiment.run_sweep(config)
  assert sweep.db_codes.shape == (1, 360, 8)
  assert np.isfinite(sweep.rows[0]["p@10"])
