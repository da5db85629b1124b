"""A search index of a network with a chain of dense heads after its encoder
(SMASH: logits_head(tanh(long_head(h)))), or with one dense layer and no
hidden layer (AMMI): its numpy encoder gives the jax encoder's codes on
sparse and dense inputs, and a network whose chain the numpy encoder does
not compute is refused."""

import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pandas as pd
import pytest
from test_index import corpus
from test_index_ids import UntrainedSweep, table_rows

from hashvae import api, data
from hashvae.core import models
from hashvae.retrieval import encoder as encoder_lib
from hashvae.retrieval import index, index_file, numpy_encoder
from hashvae.retrieval.encoder import Encoder


def trained_like(variables, seed=0):
  """Every variable drawn anew (batch norm's variances positive), so that
  the batch norm is no identity and the tanh saturates in places, as in a
  trained network; scores stay far from 0 for most items."""
  leaves, tree = jax.tree.flatten_with_path(variables)
  rng = np.random.default_rng(seed)
  drawn = []
  for path, leaf in leaves:
    value = rng.normal(0, 1, np.shape(leaf)).astype(np.float32)
    if "var" in jax.tree_util.keystr(path):
      value = np.abs(value) + 0.5
    drawn.append(value)
  return jax.tree.unflatten(tree, drawn)


def untrained_index(folder, method):
  """(loaded index, the jax Encoder, dataset) of a `method` network on a text table."""
  rows = table_rows(45, np.random.default_rng(3))
  pd.DataFrame(rows).to_csv(folder / "train.csv", index=False)
  pd.DataFrame(rows[:9]).to_csv(folder / "test.csv", index=False)
  dataset = data.load(data.TextTableSpec(path=str(folder / "train.csv"),
                                         test_path=str(folder / "test.csv"),
                                         max_features=100))
  sweep = UntrainedSweep(dataset, str(folder), bits=8, hidden=(10, 9), method=method,
                         change=trained_like)
  path = str(folder / f"{method}.hvi")
  index.build(sweep, 0, path)
  return index.load(path), sweep.encoder(0), dataset


@pytest.fixture(scope="module")
def smash_index(tmp_path_factory):
  return untrained_index(tmp_path_factory.mktemp("chain"), "smash")


@pytest.fixture(scope="module")
def ammi_index(tmp_path_factory):
  return untrained_index(tmp_path_factory.mktemp("linear"), "ammi")


def test_a_smash_index_holds_its_chain_of_two_heads(smash_index):
  loaded, encoder, _ = smash_index
  assert loaded.meta["encoder"]["chain"] == [dict(name="long_head", activation="tanh"),
                                             dict(name="logits_head", activation="identity")]
  long_head = encoder.variables["params"]["long_head"]
  np.testing.assert_array_equal(loaded.arrays["encoder/head_0/kernel"], long_head["kernel"])
  assert loaded.arrays["encoder/head_1/kernel"].shape == (long_head["kernel"].shape[1], 8)
  # A hashvae that predates chains finds no lone head, so it refuses the file.
  assert "encoder/head/kernel" not in loaded.arrays


def test_an_ammi_index_is_its_encoders_one_layer_as_a_lone_head(ammi_index):
  loaded, encoder, _ = ammi_index
  # The config's hidden widths are not AMMI's network: no hidden layer is stored.
  assert encoder.spec.hidden == (10, 9)
  assert (loaded.meta["encoder"]["layers"], loaded.meta["encoder"]["chain"]) == (
      0, [dict(name="encoder", activation="identity")])
  layer = encoder.variables["params"]["encoder"]["Dense_0"]
  np.testing.assert_array_equal(loaded.arrays["encoder/head/kernel"], layer["kernel"])
  np.testing.assert_array_equal(loaded.arrays["encoder/head/bias"], layer["bias"])
  assert not any(name.startswith("encoder/dense_") for name in loaded.arrays)


@pytest.mark.parametrize("which", ["smash_index", "ammi_index"])
def test_an_index_gives_the_jax_encoders_codes_on_sparse_and_dense_inputs(which, request):
  loaded, encoder, dataset = request.getfixturevalue(which)
  db = dataset.database
  dense = db.inputs.toarray().astype(np.float32)
  theirs = np.asarray(encoder._scores(encoder.variables, dense))
  # Codes compare bit for bit only away from a score of 0 (float rounding).
  assert np.abs(theirs).min() > 1e-3
  np.testing.assert_allclose(loaded.encoder.scores(dense), theirs, rtol=1e-5, atol=1e-5)
  csr = db.inputs.tocsr()
  sparse = loaded.encoder.sparse_scores(csr.indptr, csr.indices, csr.data)
  np.testing.assert_allclose(sparse, theirs, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(loaded.encoder.codes(sparse), encoder.encode(db.inputs))
  np.testing.assert_array_equal(loaded.encoder.codes(loaded.encoder.scores(dense)),
                                encoder.encode(dense))
  np.testing.assert_array_equal(loaded.db_codes, encoder.encode(db.inputs))
  np.testing.assert_array_equal(loaded.encode_texts(dataset.test.texts),
                                encoder.encode_texts(dataset.test.texts))


def test_the_numpy_chain_is_the_product_written_out():
  rng = np.random.default_rng(4)
  widths = (5, 4, 7, 3)  # inputs, two heads' outputs, bits
  kernels = [rng.normal(size=(a, b)).astype(np.float32) for a, b in zip(widths[:-1], widths[1:], strict=True)]
  biases = [rng.normal(size=b).astype(np.float32) for b in widths[1:]]
  arrays = {}
  for name, kernel, bias in zip(numpy_encoder.head_names(3), kernels, biases, strict=True):
    arrays[f"{name}/kernel"], arrays[f"{name}/bias"] = kernel, bias
  x = rng.random((6, 5)).astype(np.float32)
  got = numpy_encoder.NumpyEncoder(arrays, 0, False, 1e-3, ("tanh", "identity", "tanh"))
  want = np.tanh(x @ kernels[0] + biases[0]) @ kernels[1] + biases[1]
  want = np.tanh(want @ kernels[2] + biases[2])
  np.testing.assert_allclose(got.scores(x), want, rtol=1e-6, atol=1e-6)
  assert (got.dims, got.bits) == (5, 3)
  with pytest.raises(ValueError, match=r"activations \['relu'\]: each must be one of"):
    numpy_encoder.NumpyEncoder(arrays, 0, False, 1e-3, ("relu",))


class ReluChainModel(models.SpecModule):
  """The study's encoder, then two dense heads with a ReLU between them: an
  activation the numpy encoder does not compute."""

  def setup(self):
    self.encoder = models.Encoder(self.hidden, self.batch_norm, input_dims=self.dims)
    self.long_head = models.Dense(12)
    self.logits_head = models.Dense(self.bits)

  def code_scores(self, x, train: bool = False):
    return self.logits_head(nn.relu(self.long_head(self.encoder(x, train))))


def untrained_encoder(method, model=None, bits=5):
  spec = models.ModelSpec(dims=14, bits=bits, num_classes=3, hidden=(6,))
  model = model(**dataclasses.asdict(spec)) if model else encoder_lib.build_model(method, spec)
  variables = model.init(jax.random.key(2), np.zeros((1, 14), np.float32),
                         method="code_scores")
  return Encoder(method, spec, trained_like(variables, seed=5))


def test_an_unsupported_activation_in_the_chain_is_refused(monkeypatch):
  monkeypatch.setattr(encoder_lib, "build_model",
                      lambda method, spec: ReluChainModel(**dataclasses.asdict(spec)))
  with pytest.raises(index.NotIndexableError, match=r"method 'relu_chain': .*what follows "
                     r"its head 'long_head' is none of the activations \['identity', 'tanh'\]"):
    untrained_encoder("relu_chain").numpy_arrays()


def test_a_wrong_guess_of_the_chain_is_refused_by_the_probe(monkeypatch):
  monkeypatch.setattr(Encoder, "head_chain", lambda self: [
      dict(name="long_head", activation="identity"),
      dict(name="logits_head", activation="identity")])
  with pytest.raises(index.NotIndexableError, match="not the encoder MLP and the chain of "
                                                    "dense heads found in it"):
    untrained_encoder("smash").numpy_arrays()


def test_a_chained_file_with_a_bad_layout_is_refused(smash_index, tmp_path):
  loaded = smash_index[0]
  header = index_file.read_header(loaded.path)
  arrays = {k: np.asarray(v) for k, v in loaded.arrays.items()}

  def rewritten(name, layout, **changed):
    head = {k: v for k, v in header.items() if k != "arrays"}
    head["meta"] = dict(head["meta"], encoder=layout)
    path = str(tmp_path / name)
    index_file.write(path, head, {**arrays, **changed})
    return path

  layout = loaded.meta["encoder"]
  relu = dict(layout, chain=[dict(layout["chain"][0], activation="relu"), layout["chain"][1]])
  with pytest.raises(index.IndexFormatError, match=r"head activations \['relu', 'identity'\]"):
    index.load(rewritten("relu.hvi", relu))
  unchained = {k: v for k, v in layout.items() if k != "chain"}  # read as one head
  with pytest.raises(index.IndexFormatError, match="the weight encoder/head/kernel is missing"):
    index.load(rewritten("unchained.hvi", unchained))
  wrong = np.zeros((3, 8), np.float32)
  with pytest.raises(index.IndexFormatError, match=r"encoder/head_1/kernel has shape \(3, 8\)"):
    index.load(rewritten("shape.hvi", layout, **{"encoder/head_1/kernel": wrong}))


@pytest.mark.slow  # trains a sweep: compiling it takes seconds on 2 cores
@pytest.mark.parametrize("method, activations", [("smash_s", ["tanh", "identity"]),
                                                 ("ammi", ["identity"])])
def test_a_trained_runs_index_answers_as_the_sweep_encoded(method, activations, tmp_path):
  rng = np.random.default_rng(0)
  (tmp_path / "data").mkdir()
  (tmp_path / "data" / "train.txt").write_text(corpus(rng, 240))
  (tmp_path / "data" / "test.txt").write_text(corpus(rng, 30))
  workdir = str(tmp_path / "run")
  api.run(f"configs/snippets.py:method={method}", workdir,
          **{"data.path": str(tmp_path / "data"), "seeds": (0,), "levels": (1.0,),
             "epochs": 2, "batch_size": 20, "model.hidden": (32,), "ks": (10,)})
  sweep = api.Sweep(workdir)
  index.build(sweep, 0, str(tmp_path / f"{method}.hvi"))
  loaded = index.load(str(tmp_path / f"{method}.hvi"))
  query_codes, db_codes = sweep.codes(0)
  assert [link["activation"] for link in loaded.meta["encoder"]["chain"]] == activations
  np.testing.assert_array_equal(loaded.db_codes, db_codes)
  np.testing.assert_array_equal(loaded.encode_texts(sweep.dataset.test.texts), query_codes)
