"""The training benchmark's step-breakdown variants remove what they claim, and
its consecutive contenders train the runs they time."""

import contextlib

import jax
import numpy as np
import pytest

from configs import synthetic
from hashvae import data, train
from launch import bench_train


def one_epoch(patches):
  config = bench_train.with_modes(synthetic.get_config("method=ssb_vae"), "sparse")
  dataset = data.load(config.data)
  hp = dict(alpha=0.01, beta=0.1, gamma=10.0, learning_rate=1e-3, temperature=0.67)
  with contextlib.ExitStack() as stack:
    for patch in patches:
      stack.enter_context(patch)
    run = train.make_run(config, dataset)
    state = run.init(run.arrays, jax.random.key(0), 0.5, hp)
    return state, *jax.jit(run.train_epoch)(run.arrays, state)


def test_without_adam_leaves_the_moments_and_still_trains():
  before, after, _ = one_epoch(bench_train.without_adam())
  jax.tree.map(np.testing.assert_array_equal, before.opt_state.mu, after.opt_state.mu)
  kernel = lambda s: s.params["encoder"]["Dense_0"]["kernel"]
  assert not np.array_equal(kernel(before), kernel(after))


def test_without_reconstruction_zeroes_only_that_term():
  _, _, terms = one_epoch(bench_train.without_reconstruction())
  _, _, full = one_epoch([])
  assert float(terms["reconstruction"]) == 0.0 and float(full["reconstruction"]) > 0.0
  assert float(terms["pairwise"]) > 0.0


@pytest.mark.parametrize("size", [1, 2, 3])
def test_consecutive_runs_train_the_grid_runs(size):
  config = synthetic.get_config("method=ssb_vae")
  run = train.make_run(config, data.load(config.data))
  grid = bench_train.first_runs(config, 4)
  whole = bench_train.Program(jax.vmap(run.train_epoch, in_axes=(None, 0),
                                       axis_name=train.RUNS_AXIS),
                              run.arrays, bench_train.init_stacked(run, grid))
  whole()
  consecutive = bench_train.Consecutive(run, grid, epochs=1, size=size)
  consecutive()  # leaves the last chunk trained for one epoch
  # The last chunk: run 3 alone for sizes 1 and 3 (3 + 1, padded), else 2, 3.
  last = jax.tree.map(lambda a: a[4 - (4 % size or size):], whole.state)
  if size == 1:
    last = jax.tree.map(lambda a: a[0], last)
  # Loose: a run's float arithmetic depends on how many runs share its
  # program; another run (another init key) would differ by far more.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
               last.params, consecutive.last.params)
