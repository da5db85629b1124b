"""The run as a pure function: vmapped == one at a time, one trace for all levels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic
from hashvae import data
from hashvae.sweep import specs
from hashvae.sweep.specs import make_run
from hashvae.training import grid as grid_lib


@pytest.fixture(scope="module")
def dataset():
  return data.load(data.spec_from_fields(synthetic.get_config().data.to_dict()))


@pytest.fixture
def setup(dataset):
  return synthetic.get_config("method=ssb_vae"), dataset


def test_vmapped_grid_equals_runs_one_at_a_time(setup):
  config, dataset = setup
  grid = specs.build_grid(config, "ssb_vae")
  run = make_run(config, dataset)
  out = grid_lib.train_grid(run, grid, config.base_seed)
  keys = grid.keys(config.base_seed)
  single = jax.jit(run.run)
  for i in range(len(grid)):
    codes, metrics = single(run.arrays, keys[i], grid.levels[i],
                            {k: v[i] for k, v in grid.hparams.items()})
    np.testing.assert_array_equal(codes["db_codes"], out.db_codes[i])
    np.testing.assert_array_equal(codes["query_codes"], out.query_codes[i])
    np.testing.assert_allclose(metrics["loss"], out.epoch_metrics["loss"][:, i],
                               rtol=1e-4)


def test_one_trace_serves_every_level_and_weight(setup):
  config, dataset = setup
  run = make_run(config, dataset)
  traces = []

  def counted(arrays, key, level, hparams):
    traces.append(1)
    return run.run(arrays, key, level, hparams)

  compiled = jax.jit(jax.vmap(counted, in_axes=(None, 0, 0, 0)))
  for level, alpha in [(0.1, 0.01), (0.5, 1.0), (1.0, 100.0)]:
    hp = {k: jnp.full((2,), v, jnp.float32) for k, v in dict(
        alpha=alpha, beta=0.1, gamma=10.0, learning_rate=1e-3,
        temperature=0.67).items()}
    keys = jax.random.split(jax.random.key(0), 2)
    codes, _ = compiled(run.arrays, keys, jnp.full((2,), level), hp)
    assert codes["db_codes"].shape == (2, 200, config.bits)
  assert len(traces) == 1


def test_training_lowers_the_loss_and_labels_help(setup):
  config, dataset = setup
  with config.unlocked():
    config.epochs = 15
    config.levels = (0.0, 1.0)
    config.seeds = (0,)
  grid = specs.build_grid(config, "ssb_vae")
  out = grid_lib.train_grid(make_run(config, dataset), grid, 0)
  loss = out.epoch_metrics["loss"]
  assert (loss[-1] < loss[0]).all()
  assert np.isfinite(loss).all()
  # With every label the pointwise term is trained; with none it stays 0.
  assert out.epoch_metrics["pointwise"][:, 0].max() == 0.0
  assert out.epoch_metrics["pointwise"][-1, 1] > 0.0


def test_grid_rows_and_per_level_weights(setup):
  config, _ = setup
  with config.unlocked():
    config.levels = (0.1, 0.5)
    config.seeds = (3, 4, 5)
    config.weights.ssb_vae.alpha = (1.0, 2.0)
  grid = specs.build_grid(config, "ssb_vae")
  rows = grid.rows()
  assert [(r["seed"], r["level"]) for r in rows] == [
      (3, pytest.approx(0.1)), (4, pytest.approx(0.1)), (5, pytest.approx(0.1)),
      (3, 0.5), (4, 0.5), (5, 0.5)]
  assert [r["alpha"] for r in rows] == [1.0] * 3 + [2.0] * 3
  with config.unlocked():
    config.weights.ssb_vae.alpha = (1.0, 2.0, 3.0)
  with pytest.raises(ValueError, match="one per level"):
    specs.build_grid(config, "ssb_vae")


@pytest.mark.slow
def test_seed_is_the_same_run_in_every_sweep(setup):
  config, dataset = setup
  with config.unlocked():
    config.levels = (1.0,)
    config.seeds = (1,)
  one = grid_lib.train_grid(make_run(config, dataset),
                            specs.build_grid(config, "ssb_vae"), 0)
  with config.unlocked():
    config.seeds = (0, 1)
  two = grid_lib.train_grid(make_run(config, dataset),
                            specs.build_grid(config, "ssb_vae"), 0)
  np.testing.assert_array_equal(one.db_codes[0], two.db_codes[1])
