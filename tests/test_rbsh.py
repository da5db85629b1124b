"""RBSH: the ranking hinge and the importance-weighted decoder against numpy,
rank = 0 as NASH's objective on the same network, gradients through the
hinge's straight-through codes, and training through the sweep."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import digits, synthetic
from hashvae import data, methods
from hashvae.core.models import ModelSpec
from hashvae.core.sparse_rows import SparseRows, padded_rows
from hashvae.methods import nash, rbsh
from hashvae.sweep import experiment, specs
from hashvae.training import neighbour_batch
from hashvae.training import train as train_lib

rng = np.random.default_rng(7)
B, K, D = 6, 4, 9
SPEC = ModelSpec(dims=D, bits=K, num_classes=2, hidden=(8,))


def np_log_softmax(x):
  x = x.astype(np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_bernoulli_kl(logits):
  q = 1 / (1 + np.exp(-logits.astype(np.float64)))
  return (np.log(2) + q * np.log(q) + (1 - q) * np.log(1 - q)).sum(-1)


def np_hinge(z, z1, z2, order, margin):
  """Brute force, triplet by triplet: the hinge averaged over the ranked
  triplets plus |D2 - D1| averaged over the tied ones."""
  ranked, tied = [], []
  for i in range(len(z)):
    d1 = sum((a - b) ** 2 for a, b in zip(z[i], z1[i], strict=True))
    d2 = sum((a - b) ** 2 for a, b in zip(z[i], z2[i], strict=True))
    if order[i] == 0:
      tied.append(abs(d2 - d1))
    else:
      ranked.append(max(0.0, margin - order[i] * (d2 - d1)))
  mean = lambda v: sum(v) / len(v) if v else 0.0
  return mean(ranked) + mean(tied)


def codes(*rows):
  return np.array(rows, np.float32)


def test_hinge_against_numpy_on_fixed_codes():
  z = codes([0, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1],
            [0, 0, 1, 1])
  z1 = codes([1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0],
             [0, 0, 1, 0])
  z2 = codes([1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1],
             [1, 1, 0, 0])
  # Gaps D2 - D1: 1 (exactly the margin), 0 (equal distances), 4 (past it),
  # -1 (wrong side), -1 (the order says d2 ranks first), 3 (a tie of the
  # weak ranking: |gap| counts whatever its sign).
  order = np.array([1, 1, 1, 1, -1, 0], np.float32)
  d1, d2 = rbsh.code_distance(z, z1), rbsh.code_distance(z, z2)
  np.testing.assert_array_equal(d1, (z != z1).sum(1))  # the Hamming distance
  np.testing.assert_array_equal(np.asarray(d2) - np.asarray(d1), [1, 0, 4, -1, -1, 3])
  for margin in (0.0, 1.0, 2.5):
    got = rbsh.ranking_hinge(d1, d2, order, margin)
    np.testing.assert_allclose(got, np_hinge(z, z1, z2, order, margin), rtol=1e-6)
  # By hand at m = 1: ranked (0 + 1 + 0 + 2 + 0) / 5, tied 3 / 1.
  np.testing.assert_allclose(rbsh.ranking_hinge(d1, d2, order, 1.0), 0.6 + 3.0, rtol=1e-6)
  # Only ranked triplets: no tie term (not a division by zero).
  np.testing.assert_allclose(rbsh.ranking_hinge(d1[:3], d2[:3], order[:3], 1.0), 1 / 3,
                             rtol=1e-6)
  np.testing.assert_allclose(rbsh.ranking_hinge(d1[5:], d2[5:], order[5:], 1.0), 3.0)


def test_triplet_order_from_the_draw():
  batch = dict(neighbour=jnp.array([[4, 7], [2, 2], [5, 1]]),
               neighbour_rank=jnp.array([[0, 3], [1, 2], [4, 2]]))
  # Ascending columns rank the first draw above; the same item twice is a tie.
  np.testing.assert_array_equal(rbsh.triplet_order(batch), [1, 0, -1])


def random_out():
  head = lambda lead: dict(
      logits=rng.normal(size=lead + (K,)).astype(np.float32),
      sample=(rng.uniform(size=lead + (K,)) < 0.5).astype(np.float32),
      recon_logits=rng.normal(size=lead + (D,)).astype(np.float32))
  return dict(head((B,)), neighbour=head((2, B)))


def random_batch():
  t = rng.uniform(size=(B, D)).astype(np.float32)
  columns = np.sort(np.stack([rng.choice(20, 2, replace=False) for _ in range(B)]), 1)
  positions = rng.integers(0, 50, size=(B, 2))
  positions[0, 1] = positions[0, 0]  # one item drawn twice: a tie
  return dict(targets=t / t.sum(1, keepdims=True), neighbour=jnp.asarray(positions),
              neighbour_rank=jnp.asarray(columns))


def test_objective_against_numpy_and_rank_zero_is_nash():
  out, batch = random_out(), random_batch()
  options = methods.default_options("rbsh")
  rec = -(batch["targets"] * np_log_softmax(out["recon_logits"])).sum(-1)
  kl = np_bernoulli_kl(out["logits"])
  order = np.array([0] + [1] * (B - 1))
  hinge = np_hinge(out["sample"], out["neighbour"]["sample"][0],
                   out["neighbour"]["sample"][1], order, 1.0)
  hp = dict(beta=jnp.float32(0.2), rank=jnp.float32(0.7))
  loss, terms = rbsh.rbsh(out, batch, hp, options)
  np.testing.assert_allclose(loss, rec.mean() + 0.2 * kl.mean() + 0.7 * hinge, rtol=1e-5)
  np.testing.assert_allclose(terms["ranking"], hinge, rtol=1e-6)
  assert hinge > 0
  # rank = 0: the Bernoulli VAE's objective, as NASH computes it.
  loss, _ = rbsh.rbsh(out, batch, dict(hp, rank=jnp.float32(0.0)), options)
  want, _, _ = nash.elbo_terms(out, batch, hp, methods.default_options("nash"))
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  np.testing.assert_allclose(loss, rec.mean() + 0.2 * kl.mean(), rtol=1e-5)


def init(model, x):
  return model.init({"params": jax.random.key(0), "sample": jax.random.key(1)}, x, 1.0,
                    train=False)


def test_decoder_scales_each_words_logit_by_its_importance():
  model = rbsh.RbshModel(**dataclasses.asdict(SPEC), noise=1.0)  # the public sigma
  x = jnp.asarray(rng.uniform(size=(B, D)), jnp.float32)
  variables = init(model, x)
  out = model.apply(variables, x, 1.0, train=False, rngs={"sample": jax.random.key(2)})
  p = {k: np.asarray(v, np.float64) for k, v in variables["params"]["decoder"].items()}
  assert p["kernel"].shape == (K, D) and ((p["importance"] >= 0.1)
                                          & (p["importance"] <= 1.0)).all()
  z_noisy = np.asarray(out["decoder_input"], np.float64)
  want = (z_noisy @ p["kernel"]) * p["importance"] + p["bias"]
  np.testing.assert_allclose(out["recon_logits"], want, rtol=1e-5, atol=1e-6)
  # The code is binary, the noise is added to it, and the test code is its sign.
  z = np.asarray(out["sample"])
  assert set(np.unique(z)) <= {0.0, 1.0} and not np.allclose(z_noisy, z)
  np.testing.assert_array_equal(model.apply(variables, x, method="code_scores"),
                                out["logits"])
  # The default (sigma = 0): the decoder reads the code itself.
  plain = rbsh.rbsh_model(SPEC).apply(variables, x, 1.0, train=False,
                                      rngs={"sample": jax.random.key(2)})
  np.testing.assert_array_equal(plain["decoder_input"], plain["sample"])


def test_sparse_input_gives_the_dense_outputs():
  model = rbsh.rbsh_model(SPEC)
  x = rng.uniform(size=(B, D)).astype(np.float32) * (rng.uniform(size=(B, D)) < 0.5)
  variables = init(model, jnp.asarray(x))
  sparse = SparseRows(*map(jnp.asarray, padded_rows(x)))
  dense_out, sparse_out = (model.apply(variables, v, 1.0, train=False,
                                       rngs={"sample": jax.random.key(3)})
                           for v in (jnp.asarray(x), sparse))
  np.testing.assert_allclose(sparse_out["recon_logits"], dense_out["recon_logits"],
                             rtol=1e-5, atol=1e-5)


def test_gradients_are_finite_and_the_hinge_reaches_the_encoder():
  model = rbsh.rbsh_model(SPEC)
  rows = jnp.asarray(rng.uniform(size=(3 * B, D)), jnp.float32)  # batch, then 2 draws
  variables = init(model, rows)
  batch = random_batch()
  options = methods.default_options("rbsh", rank_margin=2.0 * K)  # every hinge active

  def loss(params, hp):
    out, _ = model.apply(dict(variables, params=params), rows, 1.0, train=True,
                         rngs={"sample": jax.random.key(4)}, mutable=["batch_stats"])
    return rbsh.rbsh(neighbour_batch.with_neighbour_outputs(out, B, 2), batch, hp, options)[0]

  grad = jax.jit(jax.grad(loss))  # one program for the three weightings
  hp = lambda beta, rank: dict(beta=jnp.float32(beta), rank=jnp.float32(rank))
  grads = grad(variables["params"], hp(1 / 64, 0.5))
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  # The ranking term alone: its gradient reaches the logits through the
  # straight-through codes, and none reaches the decoder.
  rank_grads = jax.tree.map(lambda a, b: a - b, grad(variables["params"], hp(0, 1)),
                            grad(variables["params"], hp(0, 0)))
  assert np.abs(rank_grads["logits_head"]["kernel"]).max() > 1e-4
  assert np.abs(rank_grads["encoder"]["Dense_0"]["kernel"]).max() > 1e-6
  assert np.abs(rank_grads["decoder"]["kernel"]).max() < 1e-6


def small_config(module, method, **fields):
  config = module.get_config(f"method={method}")
  with config.unlocked():
    config.update(dict(epochs=1, seeds=(0,), levels=(1.0,)), **fields)
  return config


@pytest.mark.parametrize("sparse_input", ["dense", "sparse"])
def test_program_traces_with_two_draws(sparse_input):
  corpus = data.load(data.spec_from_fields(synthetic.get_config().data.to_dict()))
  config = small_config(synthetic, "rbsh")
  with config.unlocked():
    config.model.sparse_input = sparse_input
  run = specs.make_run(config, corpus)
  assert run.arrays["neighbours"].shape == (200, 20)
  hp = {k: jnp.float32(1.0) for k in run.weights}
  state = jax.eval_shape(run.init, run.arrays, train_lib.run_key(0, 0), jnp.float32(1.0),
                         hp)
  _, terms = jax.eval_shape(run.train_epoch, run.arrays, state)
  assert set(terms) == {"loss", "reconstruction", "kl", "ranking"}


@pytest.mark.slow
def test_trains_through_the_sweep_on_digits(tmp_path):
  config = small_config(digits, "ssb_vae+rbsh", epochs=3)
  dataset = experiment.checked_dataset(config)
  result = experiment.train_method(config, dataset, "rbsh", str(tmp_path))
  assert result.db_codes.shape == (1, dataset.database_size, config.bits)
  assert len(np.unique(result.db_codes[0], axis=0)) > 10
  assert np.isfinite(result.epoch_metrics["loss"]).all()
  assert (result.epoch_metrics["ranking"] > 0).all()
