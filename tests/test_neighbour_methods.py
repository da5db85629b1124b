"""Methods that learn from document neighbours: the table the sweep builds,
the neighbour each step draws, PairRec's and NbrReg's objectives against
numpy, vmapped == one at a time, and methods without neighbours untouched."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic
from hashvae import data, methods
from hashvae.data import neighbours as neighbours_lib
from hashvae.data.dataset import Dataset, make_split
from hashvae.methods import nbrreg, pairrec
from hashvae.sweep import experiment, specs
from hashvae.training import grid as grid_lib
from hashvae.training import neighbour_batch
from hashvae.training import train as train_lib

rng = np.random.default_rng(3)
B, K, D = 5, 4, 7


@pytest.fixture(scope="module")
def corpus():
  return data.load(data.spec_from_fields(synthetic.get_config().data.to_dict()))


def small_config(method, **fields):
  config = synthetic.get_config(f"method={method}")
  with config.unlocked():
    config.update(dict(epochs=1, seeds=(0,), levels=(1.0,)), **fields)
  return config


def dense_dataset(train=30, validation=10, test=6, dims=6, empty=()):
  """Dense items whose column 0 is 1 + the item's position in the training
  arrays (train then validation), so a network can read which item it saw."""
  n = train + validation
  x = rng.uniform(0.1, 1.0, size=(n + test, dims)).astype(np.float32)
  x[:n, 0] = 1 + np.arange(n)
  x[list(empty)] = 0.0
  labels = np.arange(n + test) % 2
  split = lambda a, b: make_split(x[a:b], x[a:b], labels[a:b])
  return Dataset("dense", split(0, train), split(train, n), split(n, n + test), 2)


def np_cosine_top_k(x, k):
  """Brute force: each row's k most cosine-similar other rows, ties by lower index."""
  u = x / np.linalg.norm(x, axis=1, keepdims=True)
  s = (u @ u.T).astype(np.float32)
  np.fill_diagonal(s, -np.inf)
  return np.array([sorted(range(len(x)), key=lambda j: (-s[i, j], j))[:k]
                   for i in range(len(x))])


# --- the table --------------------------------------------------------------

def test_table_is_over_the_training_items_in_training_order():
  dataset = dense_dataset()
  table = specs.neighbour_indices(dataset, methods.Neighbours(k=4))
  db = dataset.database.inputs
  assert table.dtype == np.int32 and table.shape == (40, 4)
  np.testing.assert_array_equal(table, np_cosine_top_k(db.astype(np.float64), 4))


def test_an_empty_item_is_its_own_neighbour_and_never_anothers():
  dataset = dense_dataset(empty=(3,))
  table = specs.neighbour_indices(dataset, methods.Neighbours(k=3))
  np.testing.assert_array_equal(table[3], [3, 3, 3])
  others = np.delete(np.arange(40), 3)
  assert not (table[others] == 3).any()
  assert not (table[others] == others[:, None]).any()


def test_features_by_kind_of_data(corpus):
  need = methods.Neighbours(k=5)
  features, similarity = specs.neighbour_features(dense_dataset(), need)
  assert similarity == "cosine" and features.shape == (40, 6)
  # Bag-of-words with no texts to count: tf-idf on the inputs.
  features, similarity = specs.neighbour_features(corpus, need)
  assert similarity == "tfidf" and features.shape == (200, 50)
  assert specs.neighbour_features(corpus, methods.Neighbours(similarity="cosine"))[1] == "cosine"


def test_declarations_and_missing_tables_fail_in_one_line(corpus):
  with pytest.raises(methods.MethodError, match="k must be an integer"):
    methods.Neighbours(k=0)
  with pytest.raises(methods.MethodError, match="similarity"):
    methods.Neighbours(similarity="jaccard")
  spec, opts = specs.trainer_spec(small_config("pairrec")), methods.default_options("pairrec")
  with pytest.raises(methods.MethodError, match="learns from document neighbours"):
    train_lib.make_run(spec, corpus, "pairrec", opts)
  with pytest.raises(methods.MethodError, match=r"shape \(200, 25\)"):
    train_lib.make_run(spec, corpus, "pairrec", opts, np.zeros((200, 3), np.int32))
  with pytest.raises(methods.MethodError, match="declares no neighbours"):
    train_lib.make_run(spec, corpus, "nash", methods.default_options("nash"),
                       np.zeros((200, 25), np.int32))


# --- the draw ---------------------------------------------------------------

def test_draw_is_one_of_the_k_keyed_by_run_and_step():
  table = jnp.asarray(rng.integers(0, 1000, size=(1000, 8)), jnp.int32)
  idx = jnp.arange(0, 1000, 7)
  key = jax.random.key(0)
  drawn, columns = neighbour_batch.draw_neighbours(table, key, 5, idx)
  assert drawn.shape == columns.shape == idx.shape
  np.testing.assert_array_equal(np.asarray(table)[np.asarray(idx), columns], drawn)
  np.testing.assert_array_equal(drawn, neighbour_batch.draw_neighbours(table, key, 5, idx)[0])
  assert (drawn != neighbour_batch.draw_neighbours(table, key, 6, idx)[0]).mean() > 0.5
  assert (drawn != neighbour_batch.draw_neighbours(table, jax.random.key(1), 5, idx)[0]).mean() > 0.5
  # Uniform over the k positions.
  many = jax.vmap(lambda s: neighbour_batch.draw_neighbours(
      jnp.tile(jnp.arange(8), (1, 1)), key, s, jnp.zeros(1, jnp.int32))[0])(jnp.arange(4000))
  counts = np.bincount(np.asarray(many).ravel(), minlength=8)
  assert counts.min() > 400 and counts.max() < 600


def test_several_draws_are_distinct_ascending_and_uniform_over_pairs():
  table = jnp.asarray(np.random.default_rng(7).integers(0, 1000, size=(50, 5)), jnp.int32)
  idx = jnp.arange(50)
  drawn, columns = neighbour_batch.draw_neighbours(table, jax.random.key(3), 2, idx, draws=3)
  assert drawn.shape == columns.shape == (50, 3)
  columns = np.asarray(columns)
  assert (np.diff(columns, axis=1) > 0).all()  # distinct, ascending
  np.testing.assert_array_equal(np.take_along_axis(np.asarray(table), columns, 1), drawn)
  pairs = jax.vmap(lambda s: neighbour_batch.draw_neighbours(
      jnp.tile(jnp.arange(4), (1, 1)), jax.random.key(0), s, jnp.zeros(1, jnp.int32),
      draws=2)[1])(jnp.arange(3000))
  code = np.asarray(pairs)[:, 0, 0] * 4 + np.asarray(pairs)[:, 0, 1]
  counts = np.bincount(code, minlength=16)[[1, 2, 3, 6, 7, 11]]  # the 6 pairs i < j
  assert counts.sum() == 3000 and counts.min() > 400 and counts.max() < 600
  with pytest.raises(methods.MethodError, match="draws"):
    methods.Neighbours(k=3, draws=4)


class ProbeModel(nn.Module):
  """Passes its input through (column 0 names the item) with one parameter."""

  dims: int
  bits: int
  num_classes: int
  hidden: tuple = ()
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x, temperature, train=True):
    return dict(x=x, w=self.param("w", nn.initializers.ones, (1,)))

  def code_scores(self, x, train=False):
    return x[:, :self.bits] + self.param("w", nn.initializers.ones, (1,))


@pytest.fixture
def probe():
  """A method reading the neighbours, whose terms check what the batch holds."""
  dataset = dense_dataset()
  table = specs.neighbour_indices(dataset, methods.Neighbours(k=3))
  targets = jnp.asarray(dataset.database.targets)

  def objective(out, batch, hp, options):
    own = out["x"][:, 0].astype(jnp.int32) - 1
    seen = out["neighbour"]["x"][:, 0].astype(jnp.int32) - 1
    terms = dict(
        in_table=jnp.mean(jnp.any(jnp.asarray(table)[own] == seen[:, None], 1)),
        is_batch_neighbour=jnp.mean(batch["neighbour"] == seen),
        targets_match=jnp.mean(jnp.all(batch["neighbour_targets"] == targets[seen], 1)),
        neighbour_sum=jnp.sum(seen).astype(jnp.float32))
    loss = jnp.sum(out["w"] ** 2)
    return loss, dict(terms, loss=loss)

  methods.register("test_neighbour_probe", weights={},
                   model=lambda spec: ProbeModel(**dataclasses.asdict(spec)),
                   neighbours=methods.Neighbours(k=3, encode=True))(objective)
  spec = dataclasses.replace(specs.trainer_spec(small_config("nash")), batch_size=8,
                             sparse_input="dense")
  yield train_lib.make_run(spec, dataset, "test_neighbour_probe",
                           methods.default_options("test_neighbour_probe"), table)
  del methods.METHODS["test_neighbour_probe"]


def test_batch_carries_a_drawn_neighbour_and_its_outputs(probe):
  hp = dict(learning_rate=1e-3, temperature=1.0)
  init, epoch = jax.jit(probe.init), jax.jit(probe.train_epoch)
  state = init(probe.arrays, train_lib.run_key(0, 0), 1.0, hp)
  state, first = epoch(probe.arrays, state)
  for name in ("in_table", "is_batch_neighbour", "targets_match"):
    assert float(first[name]) == 1.0, name
  _, again = epoch(probe.arrays, init(probe.arrays, train_lib.run_key(0, 0), 1.0, hp))
  _, second = epoch(probe.arrays, state)
  _, other_seed = epoch(probe.arrays, init(probe.arrays, train_lib.run_key(0, 1), 1.0, hp))
  assert float(again["neighbour_sum"]) == float(first["neighbour_sum"])
  assert float(second["neighbour_sum"]) != float(first["neighbour_sum"])
  assert float(other_seed["neighbour_sum"]) != float(first["neighbour_sum"])


def test_two_draws_reach_the_batch_and_the_network_draw_by_draw():
  dataset = dense_dataset()
  table = jnp.asarray(specs.neighbour_indices(dataset, methods.Neighbours(k=3)))

  def objective(out, batch, hp, options):
    own = out["x"][:, 0].astype(jnp.int32) - 1
    seen = out["neighbour"]["x"][..., 0].astype(jnp.int32) - 1  # [2, batch]
    rank = batch["neighbour_rank"]
    terms = dict(
        shapes=jnp.float32(seen.shape == (2, 8) and rank.shape == (8, 2)),
        seen_is_drawn=jnp.mean(seen.T == batch["neighbour"]),
        rank_is_column=jnp.mean(jnp.take_along_axis(table[own], rank, 1) == seen.T),
        ascending=jnp.mean(rank[:, 0] < rank[:, 1]),
        no_targets=jnp.float32("neighbour_targets" not in batch))
    loss = jnp.sum(out["w"] ** 2)
    return loss, dict(terms, loss=loss)

  methods.register("test_two_draws_probe", weights={},
                   model=lambda spec: ProbeModel(**dataclasses.asdict(spec)),
                   neighbours=methods.Neighbours(k=3, encode=True, draws=2))(objective)
  try:
    spec = dataclasses.replace(specs.trainer_spec(small_config("nash")), batch_size=8,
                               sparse_input="dense")
    run = train_lib.make_run(spec, dataset, "test_two_draws_probe",
                             methods.default_options("test_two_draws_probe"), table)
    hp = dict(learning_rate=1e-3, temperature=1.0)
    state = run.init(run.arrays, train_lib.run_key(0, 0), 1.0, hp)
    _, terms = jax.jit(run.train_epoch)(run.arrays, state)
  finally:
    del methods.METHODS["test_two_draws_probe"]
  for name in ("shapes", "seen_is_drawn", "rank_is_column", "ascending", "no_targets"):
    assert float(terms[name]) == 1.0, name


# --- the objectives against numpy ---------------------------------------------

def np_log_softmax(x):
  x = x.astype(np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_rec(logits, targets):
  return -(targets * np_log_softmax(logits)).sum(-1)


def np_bernoulli_kl(logits):
  q = 1 / (1 + np.exp(-logits.astype(np.float64)))
  return (np.log(2) + q * np.log(q) + (1 - q) * np.log(1 - q)).sum(-1)


def targets():
  t = rng.uniform(size=(B, D)).astype(np.float32)
  return t / t.sum(1, keepdims=True)


def test_pairrec_objective_against_numpy():
  head = lambda: dict(logits=rng.normal(size=(B, K)).astype(np.float32),
                      recon_logits=rng.normal(size=(B, D)).astype(np.float32))
  out, batch = dict(head(), neighbour=head()), dict(targets=targets())
  hp = dict(beta=jnp.float32(0.3), pair=jnp.float32(0.7))
  loss, terms = pairrec.pairrec(out, batch, hp, methods.default_options("pairrec"))
  own = np_rec(out["recon_logits"], batch["targets"])
  pair = np_rec(out["neighbour"]["recon_logits"], batch["targets"])
  kl, kl_pair = np_bernoulli_kl(out["logits"]), np_bernoulli_kl(out["neighbour"]["logits"])
  want = np.mean(own + 0.3 * kl + 0.7 * (pair + 0.3 * kl_pair))
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(terms["pair_reconstruction"], pair.mean(), rtol=1e-5)
  np.testing.assert_allclose(terms["pair_kl"], kl_pair.mean(), rtol=1e-5)


def test_nbrreg_objective_against_numpy():
  mu, logvar = rng.normal(size=(B, K)), rng.normal(size=(B, K))
  out = dict(mu=mu.astype(np.float32), logvar=logvar.astype(np.float32),
             recon_logits=rng.normal(size=(B, D)).astype(np.float32),
             neighbour_logits=rng.normal(size=(B, D)).astype(np.float32))
  batch = dict(targets=targets(), neighbour_targets=targets())
  hp = dict(beta=jnp.float32(0.4), neighbour=jnp.float32(2.0))
  loss, terms = nbrreg.nbrreg(out, batch, hp, methods.default_options("nbrreg"))
  rec = np_rec(out["recon_logits"], batch["targets"])
  nb = np_rec(out["neighbour_logits"], batch["neighbour_targets"])
  kl = 0.5 * (mu ** 2 + np.exp(logvar) - 1 - logvar).sum(-1)
  np.testing.assert_allclose(loss, np.mean(rec + 2.0 * nb + 0.4 * kl), rtol=1e-5)
  np.testing.assert_allclose(terms["neighbour_reconstruction"], nb.mean(), rtol=1e-5)


def test_nbrreg_network_has_a_second_head_on_the_same_sample():
  model = nbrreg.nbrreg_model(methods.registry.ModelSpec(dims=D, bits=K, num_classes=2,
                                                         hidden=(8,)))
  x = jnp.asarray(rng.uniform(size=(B, D)), jnp.float32)
  variables = model.init({"params": jax.random.key(0), "sample": jax.random.key(1)}, x,
                         1.0, train=False)
  out = model.apply(variables, x, 1.0, train=False, rngs={"sample": jax.random.key(2)})
  p = variables["params"]["neighbour_decoder"]
  kernel = p["Dense_0"]["kernel"] if "Dense_0" in p else p["kernel"]
  assert out["neighbour_logits"].shape == (B, D) and kernel.shape[0] in (K, K + 1)
  np.testing.assert_allclose(model.apply(variables, x, method="code_scores"), out["mu"],
                             rtol=1e-6)


# --- training -----------------------------------------------------------------

def abstract_state(run):
  hp = {k: jnp.float32(1.0) for k in run.weights}
  return jax.eval_shape(run.init, run.arrays, train_lib.run_key(0, 0), jnp.float32(1.0), hp)


def lowered_epoch(run):
  """The text of the run's compiled epoch, traced on abstract values only."""
  return jax.jit(run.train_epoch).lower(run.arrays, abstract_state(run)).as_text()


TERMS = dict(pairrec={"loss", "reconstruction", "pair_reconstruction", "kl", "pair_kl"},
             nbrreg={"loss", "reconstruction", "neighbour_reconstruction", "kl"})


@pytest.mark.parametrize("method", ["pairrec", "nbrreg"])
@pytest.mark.parametrize("sparse_input", ["dense", "sparse"])
def test_programs_trace_on_dense_and_sparse_input(method, sparse_input, corpus):
  config = small_config(method)
  with config.unlocked():
    config.model.sparse_input = sparse_input
  run = specs.make_run(config, corpus)
  assert run.arrays["neighbours"].shape == (200, methods.get(method).neighbours.k)
  _, terms = jax.eval_shape(run.train_epoch, run.arrays, abstract_state(run))
  assert set(terms) == TERMS[method]
  assert all(t.shape == () for t in terms.values())


def test_a_method_without_neighbours_gets_none_of_the_machinery(corpus):
  config = small_config("ssb_vae")
  run = specs.make_run(config, corpus, workdir=None)
  assert "neighbours" not in run.arrays
  reference = train_lib.make_run(specs.trainer_spec(config), corpus, "ssb_vae",
                                 methods.default_options("ssb_vae"))
  assert lowered_epoch(run) == lowered_epoch(reference)


@pytest.mark.slow
def test_pairrec_vmapped_grid_equals_runs_one_at_a_time(corpus):
  config = small_config("pairrec", seeds=(0, 1))
  grid = specs.build_grid(config, "pairrec")
  run = specs.make_run(config, corpus)
  out = grid_lib.train_grid(run, grid, config.base_seed)
  keys, single = grid.keys(config.base_seed), jax.jit(run.run)
  for i in range(len(grid)):
    codes, metrics = single(run.arrays, keys[i], grid.levels[i],
                            {k: v[i] for k, v in grid.hparams.items()})
    np.testing.assert_array_equal(codes["db_codes"], out.db_codes[i])
    np.testing.assert_allclose(metrics["pair_reconstruction"],
                               out.epoch_metrics["pair_reconstruction"][:, i], rtol=1e-4)
  assert (out.db_codes[0] != out.db_codes[1]).any()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pairrec", "nbrreg"])
def test_trains_through_the_sweep_and_reuses_the_cached_table(method, corpus, tmp_path,
                                                             monkeypatch):
  calls = []
  compute = neighbours_lib.compute
  monkeypatch.setattr(neighbours_lib, "compute", lambda *a, **k: calls.append(1)
                      or compute(*a, **k))
  config = small_config(method)
  for workdir in (tmp_path / "a", tmp_path / "a"):
    result = experiment.train_method(config, corpus, method, str(workdir))
    assert result.db_codes.shape == (1, 200, config.bits)
    assert len(np.unique(result.db_codes[0], axis=0)) > 1
    assert np.isfinite(result.epoch_metrics["loss"]).all()
  assert len(calls) == 1
  assert len(list((tmp_path / "a" / "cache").glob("neighbours-*.npz"))) == 1


@pytest.mark.slow
def test_a_method_without_neighbours_trains_as_before(corpus):
  config = small_config("ssb_vae")
  # The lower layer's run, built with no neighbour argument at all.
  reference = train_lib.make_run(specs.trainer_spec(config), corpus, "ssb_vae",
                                 methods.default_options("ssb_vae"))
  grid = specs.build_grid(config, "ssb_vae")
  with_sweep = experiment.train_method(config, corpus, "ssb_vae")
  alone = grid_lib.train_grid(reference, grid, config.base_seed)
  np.testing.assert_array_equal(with_sweep.db_codes, alone.db_codes)
  np.testing.assert_array_equal(with_sweep.query_codes, alone.query_codes)
