"""The first kernel's optimisers: dense Adam from gradient rows, and lazy Adam."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import synthetic
from hashvae import data
from hashvae.core import optim
from hashvae.data.dataset import make_split
from hashvae.sweep import specs
from hashvae.training import grid as grid_lib

HP = dict(alpha=0.01, beta=0.1, gamma=10.0, learning_rate=1e-3,
          temperature=0.67)
KERNEL = optim.FIRST_KERNEL
rng = np.random.default_rng(0)


def optax_adam_steps(kernel, dense_grads, learning_rate=1e-3):
  """Reference: optax's scale_by_adam on the whole kernel, one step per grad."""
  adam = optax.scale_by_adam(**optim.ADAM)
  state = adam.init(kernel)
  for g in dense_grads:
    update, state = adam.update(g, state)
    kernel = kernel - learning_rate * update
  return kernel, state.mu, state.nu


def row_steps(update_rows, kernel, steps):
  """`update_rows` applied for each (rows, grad_rows) in `steps`, the
  moments' decay deferred over all of them (as one DECAY_CHUNK), then
  applied."""
  kernel = jnp.asarray(kernel)
  mu, nu = jnp.zeros_like(kernel), jnp.zeros_like(kernel)
  for count, (rows, grad_rows) in enumerate(steps, start=1):
    kernel, mu, nu = update_rows(kernel, mu, nu, jnp.asarray(rows),
                                 jnp.asarray(grad_rows), count, 1e-3, count)
  if update_rows is optim.dense_adam_rows:
    mu, nu = optim.apply_decay(mu, nu, len(steps))
  return kernel, mu, nu


def row_steps_for(present_rows, dims, feats, size):
  """For each list of present rows, a step of (padded rows, grad rows) with
  random gradients, and the dense gradients those steps stand for."""
  steps, dense = [], []
  for present in present_rows:
    g = rng.normal(size=(len(present), feats)).astype(np.float32)
    full = np.zeros((dims, feats), np.float32)
    full[present] = g
    dense.append(full)
    steps.append((padded(present, size, dims),
                  np.concatenate([g, np.zeros((size - len(present), feats),
                                              np.float32)])))
  return steps, dense


def padded(rows, size, dims):
  return np.concatenate([rows, np.full(size - len(rows), dims)]).astype(np.int32)


def test_dense_adam_from_rows_is_optax_adam_on_the_dense_gradient():
  dims, feats, size = 12, 3, 6
  kernel = rng.normal(size=(dims, feats)).astype(np.float32)
  steps, dense = row_steps_for(([1, 4, 7], [0, 4, 11], [2, 3]), dims, feats,
                               size)
  got = row_steps(optim.dense_adam_rows, kernel, steps)
  want = optax_adam_steps(kernel, dense)
  for a, b in zip(got, want, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_deferring_the_decay_for_a_whole_chunk_keeps_adam_on_the_dense_gradient():
  # DECAY_CHUNK steps with the decay deferred: the stored moments reach
  # 1 / 0.9**100 ~ 4e4 times the true ones, and the kernel must still follow
  # dense Adam step by step (rows absent for long stretches included).
  dims, feats = 30, 4
  kernel = rng.normal(size=(dims, feats)).astype(np.float32)
  present = (np.sort(rng.choice(dims, rng.integers(1, 7), replace=False))
             for _ in range(optim.DECAY_CHUNK))
  steps, dense = row_steps_for(present, dims, feats, 6)
  got = row_steps(optim.dense_adam_rows, kernel, steps)
  want = optax_adam_steps(kernel, dense)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
  for a, b in zip(got[1:], want[1:], strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)


def test_lazy_adam_is_dense_adam_when_every_row_is_present():
  dims, feats = 8, 3
  kernel = rng.normal(size=(dims, feats)).astype(np.float32)
  grads = [rng.normal(size=(dims, feats)).astype(np.float32) for _ in range(3)]
  every = np.arange(dims, dtype=np.int32)
  got = row_steps(optim.lazy_adam_rows, kernel, [(every, g) for g in grads])
  want = optax_adam_steps(kernel, grads)
  for a, b in zip(got, want, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_lazy_adam_leaves_absent_rows_alone_and_uses_the_global_count():
  dims, feats, size = 6, 2, 3
  kernel = rng.normal(size=(dims, feats)).astype(np.float32)
  g1 = rng.normal(size=(2, feats)).astype(np.float32)
  g2 = rng.normal(size=(1, feats)).astype(np.float32)
  pad = lambda g: np.concatenate([g, np.zeros((size - len(g), feats),
                                              np.float32)])
  steps = [(padded([0, 3], size, dims), pad(g1)),
           (padded([3], size, dims), pad(g2))]
  new, mu, nu = row_steps(optim.lazy_adam_rows, kernel, steps)
  # Row 0: updated at step 1 only, then frozen (dense Adam would keep moving
  # it by its momentum). Rows 1, 2, 4, 5: never present, never touched.
  once = optax_adam_steps(kernel[:1], [g1[:1]])
  np.testing.assert_allclose(new[0], once[0][0], rtol=1e-6)
  np.testing.assert_allclose(mu[0], once[1][0], rtol=1e-6)
  for r in (1, 2, 4, 5):
    np.testing.assert_array_equal(new[r], kernel[r])
    np.testing.assert_array_equal(mu[r], 0.0)
    np.testing.assert_array_equal(nu[r], 0.0)
  # Row 3: present at both steps: exactly dense Adam over those two steps.
  both = optax_adam_steps(kernel[3:4], [g1[1:2], g2])
  np.testing.assert_allclose(new[3], both[0][0], rtol=1e-6)
  # Dense Adam from the same rows moves row 0 at step 2 as well.
  dense_new = row_steps(optim.dense_adam_rows, kernel, steps)[0]
  assert not np.allclose(dense_new[0], new[0])


@pytest.fixture(scope="module")
def dataset():
  return data.load(data.spec_from_fields(synthetic.get_config().data.to_dict()))


def config_for(optimizer):
  config = synthetic.get_config("method=ssb_vae")
  with config.unlocked():
    config.model.sparse_input = "sparse"
    config.optimizer = optimizer
  return config


def with_inputs(dataset, change):
  """`dataset` as dense rows with `change` applied to every split's inputs
  (dense, so that the inputs' nonzeros may differ from the targets')."""
  split = lambda s: make_split(change(s.inputs.toarray()), s.targets.toarray(), s.labels)
  return dataclasses.replace(dataset, train=split(dataset.train),
                             validation=split(dataset.validation),
                             test=split(dataset.test))


def train_epochs(config, dataset, epochs):
  run = specs.make_run(config, dataset)
  first = run.init(run.arrays, jax.random.key(0), 0.5, HP)
  epoch = jax.jit(run.train_epoch)
  state = first
  for _ in range(epochs):
    state, _ = epoch(run.arrays, state)
  return first, state


def test_fast_mode_never_touches_rows_absent_from_every_batch(dataset):
  absent = np.arange(40, 50)

  def drop_columns(x):
    x = x.copy()
    x[:, absent] = 0.0
    return x

  first, state = train_epochs(config_for("fast"), with_inputs(dataset,
                                                              drop_columns), 2)
  kernel = lambda s: np.asarray(s.params["encoder"]["Dense_0"]["kernel"])
  moments = (state.opt_state.mu["encoder"]["Dense_0"]["kernel"],
             state.opt_state.nu["encoder"]["Dense_0"]["kernel"])
  np.testing.assert_array_equal(kernel(state)[absent], kernel(first)[absent])
  for m in moments:
    np.testing.assert_array_equal(np.asarray(m)[absent], 0.0)
    assert (np.abs(np.asarray(m)[:40]).sum(axis=1) > 0).all()
  assert not np.allclose(kernel(state)[:40], kernel(first)[:40])
  assert int(state.opt_state.count) == 2 * (200 // 32)


def test_fast_mode_equals_exact_mode_when_every_batch_has_every_feature(
    dataset):
  # Every input entry nonzero: each batch reads every kernel row.
  full = with_inputs(dataset, lambda x: x + 0.5)
  _, exact = train_epochs(config_for("exact"), full, 1)
  _, fast = train_epochs(config_for("fast"), full, 1)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               (exact.params, exact.opt_state), (fast.params, fast.opt_state))


def test_fast_mode_trains_a_vmapped_grid(dataset):
  config = config_for("fast")
  grid = specs.build_grid(config, "ssb_vae")
  out = grid_lib.train_grid(specs.make_run(config, dataset), grid, 0)
  loss = out.epoch_metrics["loss"]
  assert np.isfinite(loss).all() and (loss[-1] < loss[0]).all()
  assert out.db_codes.shape == (len(grid), 200, config.bits)


def test_fast_mode_needs_the_sparse_input_path(dataset):
  config = config_for("fast")
  with config.unlocked():
    config.model.sparse_input = "auto"  # synthetic resolves to dense
  with pytest.raises(ValueError, match="sparse input path"):
    specs.make_run(config, dataset)
