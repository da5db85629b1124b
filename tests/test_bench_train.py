"""The training benchmark's ablations (a registered optimiser mode and method)
take out what they claim and only that, and its consecutive contenders train
the runs they time."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic
from hashvae import data, methods
from hashvae.benchmarks import ablations, common
from hashvae.core import optim
from hashvae.methods import study
from hashvae.sweep import config_check, specs
from hashvae.training import train

HP = dict(alpha=0.01, beta=0.1, gamma=10.0, learning_rate=1e-3, temperature=0.67)
KERNEL = lambda tree: optim.get_path(tree, optim.FIRST_KERNEL)  # of params or moments


def one_epoch(adam=True, reconstruction=True, sparse_input="sparse"):
  """(state before, state after, terms) of one epoch on the synthetic data."""
  return trained(adam, reconstruction, sparse_input)


@functools.cache  # the unablated epoch serves two tests: one compile fewer
def trained(adam, reconstruction, sparse_input):
  config = common.with_modes(synthetic.get_config("method=ssb_vae"), sparse_input)
  with ablations.registered():
    config = ablations.ablated(config, adam=adam, reconstruction=reconstruction)
    config_check.check(config)  # the config names them as any mode or method
    run = specs.make_run(config, data.load(data.spec_from_fields(config.data.to_dict())))
  state = run.init(run.arrays, jax.random.key(0), 0.5, HP)
  return state, *jax.jit(run.train_epoch)(run.arrays, state)


def test_the_ablations_are_registered_only_while_asked_for():
  assert ablations.SGD not in optim.OPTIMISERS
  assert ablations.NO_RECONSTRUCTION not in methods.METHODS
  with ablations.registered():
    assert optim.OPTIMISERS[ablations.SGD] is ablations.sgd
    method, base = methods.get(ablations.NO_RECONSTRUCTION), methods.get("ssb_vae")
    assert (method.weights, method.options, method.choices, method.model) == (
        base.weights, base.options, base.choices, base.model)
    with ablations.registered():  # nested: the outer block keeps them
      pass
    assert ablations.SGD in optim.OPTIMISERS
  assert ablations.SGD not in optim.OPTIMISERS
  assert ablations.NO_RECONSTRUCTION not in methods.METHODS


def test_the_ablated_config_takes_ssb_vae_weights():
  config = synthetic.get_config("method=ssb_vae")
  with config.unlocked():
    config.weights.ssb_vae.alpha = (0.25,)
  ablated = ablations.ablated(config, adam=False, reconstruction=False)
  assert (ablated.optimizer, tuple(ablated.methods)) == ("sgd", (ablations.NO_RECONSTRUCTION,))
  assert tuple(ablated.weights[ablations.NO_RECONSTRUCTION].alpha) == (0.25,)
  assert (config.optimizer, tuple(config.methods)) == ("exact", ("ssb_vae",))


def test_sgd_update_is_param_minus_lr_grad_with_kernel_rows():
  params = {"encoder": {"Dense_0": {"kernel": jnp.arange(12.0).reshape(4, 3)},
                        "Dense_1": {"bias": jnp.ones(3)}}}
  grads = jax.tree.map(jnp.ones_like, params)
  state = object()  # Adam's state passes through untouched
  dense, kept = ablations.sgd_update(optim.Gradients(grads), state, params, 0.5, 1)
  assert kept is state
  jax.tree.map(lambda p, n: np.testing.assert_allclose(n, p - 0.5), params, dense)
  rows, row_grads = jnp.array([1, 3, 4]), jnp.full((3, 3), 2.0)  # 4: padding, dropped
  by_rows, _ = ablations.sgd_update(optim.Gradients(grads, rows, row_grads), state,
                                    params, 0.5, 1)
  kernel = np.arange(12.0).reshape(4, 3)
  kernel[[1, 3]] -= 1.0
  np.testing.assert_allclose(optim.get_path(by_rows, optim.FIRST_KERNEL), kernel)
  np.testing.assert_allclose(by_rows["encoder"]["Dense_1"]["bias"], 0.5)


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
@pytest.mark.parametrize("sparse_input", ["sparse", "dense"])
def test_sgd_leaves_the_moments_and_still_trains(sparse_input):
  before, after, _ = one_epoch(adam=False, sparse_input=sparse_input)
  jax.tree.map(np.testing.assert_array_equal, before.opt_state.mu, after.opt_state.mu)
  assert int(after.opt_state.count) == int(before.opt_state.count)
  assert not np.array_equal(KERNEL(before.params), KERNEL(after.params))
  _, adam, _ = one_epoch(sparse_input=sparse_input)  # Adam moves the moments
  assert not np.array_equal(KERNEL(adam.opt_state.mu), KERNEL(before.opt_state.mu))


def test_no_reconstruction_is_ssb_vae_less_that_term():
  rng = np.random.default_rng(0)
  b, k, c, d = 6, 4, 3, 5
  logits = rng.normal(size=(b, k)).astype(np.float32)
  out = dict(logits=logits, sample=jax.nn.sigmoid(logits + 0.1),
             recon_logits=rng.normal(size=(b, d)).astype(np.float32),
             class_logits=rng.normal(size=(b, c)).astype(np.float32))
  labelled = np.array([1, 1, 0, 1, 0, 0], np.float32)
  targets = rng.uniform(size=(b, d)).astype(np.float32)
  batch = dict(targets=targets / targets.sum(1, keepdims=True), labelled=labelled,
               label_rows=np.eye(c, dtype=np.float32)[rng.integers(0, c, b)]
               * labelled[:, None])
  hp = dict(alpha=jnp.float32(0.3), beta=jnp.float32(0.2), gamma=jnp.float32(5.0))
  options = methods.default_options("ssb_vae")
  loss, terms = study.ssb_vae(out, batch, hp, options)
  less, less_terms = ablations.ssb_vae_no_reconstruction(out, batch, hp, options)
  assert float(terms["reconstruction"]) > 0.1
  np.testing.assert_allclose(less, loss - terms["reconstruction"], rtol=1e-5)
  assert float(less_terms["reconstruction"]) == 0.0
  for name in ("kl", "pointwise", "pairwise"):
    assert float(less_terms[name]) == float(terms[name]), name
  # Without the term, the decoder gets no gradient.
  grad = jax.grad(lambda r: ablations.ssb_vae_no_reconstruction(
      dict(out, recon_logits=r), batch, hp, options)[0])(out["recon_logits"])
  assert not np.any(grad)


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_training_without_reconstruction_zeroes_only_that_term():
  _, _, terms = one_epoch(reconstruction=False)
  _, _, full = one_epoch()
  assert float(terms["reconstruction"]) == 0.0 and float(full["reconstruction"]) > 0.0
  assert float(terms["pairwise"]) > 0.0
  assert float(terms["loss"]) < float(full["loss"])


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
@pytest.mark.parametrize("size", [1, 2, 3])
def test_consecutive_runs_train_the_grid_runs(size):
  config = synthetic.get_config("method=ssb_vae")
  run = specs.make_run(config, data.load(data.spec_from_fields(config.data.to_dict())))
  grid = common.first_runs(config, 4)
  whole = common.Program(jax.vmap(run.train_epoch, in_axes=(None, 0),
                                  axis_name=train.RUNS_AXIS),
                         run.arrays, common.init_stacked(run, grid))
  whole()
  consecutive = common.Consecutive(run, grid, epochs=1, size=size)
  consecutive()  # leaves the last chunk trained for one epoch
  assert len(consecutive.round_seconds) == 1 and consecutive.round_seconds[0] > 0
  # The last chunk: run 3 alone for sizes 1 and 3 (3 + 1, padded), else 2, 3.
  last = jax.tree.map(lambda a: a[4 - (4 % size or size):], whole.state)
  if size == 1:
    last = jax.tree.map(lambda a: a[0], last)
  # Loose: a run's float arithmetic depends on how many runs share its
  # program; another run (another init key) would differ by far more.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
               last.params, consecutive.last.params)


def test_take_turns_interleaves_and_times_every_round():
  calls = []
  times = common.take_turns(dict(a=lambda: calls.append("a"), b=lambda: calls.append("b")),
                            rounds=3)
  assert calls == ["a", "b"] * 3
  assert {k: len(v) for k, v in times.items()} == dict(a=3, b=3)
  assert common.ms_per_step(dict(a=[1.0, 3.0, 2.0]), steps=4) == dict(a=500.0)
