"""The sparse input path: same parameters, losses, gradients and codes as dense."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from configs import digits, synthetic
from hashvae import data, methods
from hashvae.core import optim, sparse
from hashvae.core.models import HashModel
from hashvae.core.sparse import SparseRows
from hashvae.sweep import specs
from hashvae.training import device_data
from hashvae.training import grid as grid_lib


@pytest.fixture(scope="module")
def dataset():
  return data.load(data.spec_from_fields(synthetic.get_config().data.to_dict()))


def config_with(input_mode, optimizer="exact", **fields):
  config = synthetic.get_config("method=ssb_vae")
  with config.unlocked():
    config.model.sparse_input = input_mode
    config.optimizer = optimizer
    for k, v in fields.items():
      config[k] = v
  return config


def densify(indices, values, dims):
  out = np.zeros((indices.shape[0], dims + 1), np.float32)
  np.put_along_axis(out, indices, values, axis=1)
  return out[:, :dims]


def test_padded_rows_hold_each_row_and_pad_with_an_out_of_range_index():
  x = np.zeros((4, 7), np.float32)
  x[0, [1, 5]] = [0.5, 2.0]
  x[2, [0, 3, 6]] = [1.0, 3.0, 4.0]  # row 1 and row 3 stay empty
  indices, values = sparse.padded_rows(x)
  assert indices.shape == values.shape == (4, 3)
  assert indices.dtype == np.int32 and values.dtype == np.float32
  np.testing.assert_array_equal(indices[0], [1, 5, 7])
  np.testing.assert_array_equal(indices[1], [7, 7, 7])
  np.testing.assert_array_equal(values[indices == 7], 0.0)
  np.testing.assert_array_equal(densify(indices, values, 7), x)


def test_auto_picks_sparse_only_for_mostly_zero_rows(dataset):
  # synthetic: 50 words, up to ~20 distinct per document: dense.
  assert not sparse.use_sparse_input("auto", dataset)
  assert sparse.use_sparse_input("sparse", dataset)
  assert not sparse.use_sparse_input("dense", dataset)
  config = synthetic.get_config()
  with config.unlocked():
    config.data.dims = 2000
  wide = data.load(data.spec_from_fields(config.data.to_dict()))  # ~30 words of 2,000: sparse
  assert sparse.use_sparse_input("auto", wide)
  with pytest.raises(ValueError, match="sparse_input"):
    sparse.use_sparse_input("yes", wide)


def test_same_key_gives_the_same_parameters_on_both_paths(dataset):
  hp = dict(alpha=0.1, beta=0.1, gamma=1.0, learning_rate=1e-3,
            temperature=0.67)
  params = []
  for mode in ("dense", "sparse"):
    run = specs.make_run(config_with(mode), dataset)
    params.append(run.init(run.arrays, jax.random.key(3), 0.5, hp).params)
  jax.tree.map(np.testing.assert_array_equal, params[0], params[1])


def test_same_loss_and_gradients_on_the_same_batch(dataset):
  db = dataset.database
  model = HashModel(dims=dataset.dims, bits=8, num_classes=dataset.num_classes,
                    hidden=(32, 16))
  x = db.inputs[:24].toarray()
  sparse_x = SparseRows(*map(jnp.asarray, sparse.padded_rows(x)))
  variables = model.init({"params": jax.random.key(0),
                          "sample": jax.random.key(0)}, x[:1], 1.0, train=False)
  labelled = np.array([1.0, 0.0] * 12, np.float32)
  batch = dict(targets=db.targets[:24].toarray(), labelled=labelled,
               label_rows=np.eye(4, dtype=np.float32)[db.labels[:24]]
               * labelled[:, None])
  hp = dict(alpha=jnp.float32(0.1), beta=jnp.float32(0.2),
            gamma=jnp.float32(10.0))
  objective = methods.get("ssb_vae").objective

  sparse_targets = SparseRows(*map(jnp.asarray,
                                   sparse.padded_rows(db.targets[:24])))

  def loss(params, inputs, is_sparse):
    out, _ = model.apply({"params": params,
                          "batch_stats": variables["batch_stats"]},
                         inputs, 0.67, train=True, mutable=["batch_stats"],
                         rngs={"sample": jax.random.key(7)})
    targets = sparse_targets if is_sparse else batch["targets"]
    return objective(out, dict(batch, targets=targets), hp,
                     methods.default_options("ssb_vae"))[0]

  value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=2)
  dense_loss, dense_grads = value_and_grad(variables["params"], x, False)
  # The sparse path reads its reconstruction targets as padded rows, too.
  sparse_loss, sparse_grads = value_and_grad(variables["params"], sparse_x,
                                             True)
  np.testing.assert_allclose(sparse_loss, dense_loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7),
               sparse_grads, dense_grads)
  # The kernel gradient is zero outside the batch's columns on both paths.
  absent = ~(x != 0).any(axis=0)
  assert absent.any()
  kernel_grad = dense_grads["encoder"]["Dense_0"]["kernel"]
  np.testing.assert_array_equal(kernel_grad[absent], 0.0)


def test_gradient_by_rows_equals_the_dense_kernel_gradient_rows():
  rng = np.random.default_rng(0)
  dims, feats = 30, 5
  x = np.where(rng.uniform(size=(6, dims)) < 0.2, rng.uniform(size=(6, dims)),
               0.0).astype(np.float32)
  indices, values = sparse.padded_rows(x)
  kernel = rng.normal(size=(dims, feats)).astype(np.float32)
  head = rng.normal(size=(feats,)).astype(np.float32)
  size = sparse.max_batch_rows(sparse.row_widths(x), 6, dims)
  rows, local = sparse.batch_rows(jnp.asarray(indices), dims, size)
  dense = jax.grad(lambda k: jnp.sum(jnp.tanh(x @ k) * head))(kernel)
  by_rows = jax.grad(lambda r: jnp.sum(jnp.tanh(jnp.einsum(
      "bj,bjf->bf", values, jnp.take(r, local, axis=0, mode="fill",
                                     fill_value=0))) * head))(
                                         jnp.take(kernel, rows, axis=0,
                                                  mode="fill", fill_value=0))
  present = np.flatnonzero((x != 0).any(axis=0))
  np.testing.assert_array_equal(rows[:len(present)], present)
  np.testing.assert_array_equal(rows[len(present):], dims)  # padding
  np.testing.assert_allclose(by_rows[:len(present)], dense[present], rtol=1e-6)


def test_one_epoch_of_exact_adam_matches_on_both_paths(dataset):
  key = jax.random.key(1)
  hp = dict(alpha=0.01, beta=0.1, gamma=10.0, learning_rate=1e-3,
            temperature=0.67)
  states, terms = [], []
  for mode in ("dense", "sparse"):
    run = specs.make_run(config_with(mode), dataset)
    state = run.init(run.arrays, key, 0.5, hp)
    state, t = jax.jit(run.train_epoch)(run.arrays, state)
    states.append(state)
    terms.append(t)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4),
               terms[0], terms[1])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               (states[0].params, states[0].opt_state),
               (states[1].params, states[1].opt_state))


def test_epochs_longer_than_a_decay_chunk_match_the_dense_path(dataset,
                                                              monkeypatch):
  # 200 items / batch 32 = 6 steps an epoch: with chunks of 4, one whole
  # chunk and a remainder of 2, each followed by the deferred decay.
  monkeypatch.setattr(optim, "DECAY_CHUNK", 4)
  key = jax.random.key(2)
  hp = dict(alpha=0.01, beta=0.1, gamma=10.0, learning_rate=1e-3,
            temperature=0.67)
  states = []
  for mode in ("dense", "sparse"):
    run = specs.make_run(config_with(mode), dataset)
    assert run.steps_per_epoch == 6
    state = run.init(run.arrays, key, 0.5, hp)
    epoch = jax.jit(run.train_epoch)
    for _ in range(2):
      state, _ = epoch(run.arrays, state)
    states.append(state)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5),
               (states[0].params, states[0].opt_state),
               (states[1].params, states[1].opt_state))


def test_batch_entries_list_each_nonzero_once_in_row_major_order():
  x = np.zeros((3, 9), np.float32)
  x[0, [2, 7]] = [1.0, 2.0]
  x[2, [0, 4, 8]] = [3.0, 4.0, 5.0]  # row 1 empty
  indices, values = sparse.padded_rows(x)
  cols, vals, items = map(np.asarray, sparse.batch_entries(
      jnp.asarray(indices), jnp.asarray(values), 9, size=7))
  np.testing.assert_array_equal(cols, [2, 7, 0, 4, 8, 9, 9])
  np.testing.assert_array_equal(vals, [1, 2, 3, 4, 5, 0, 0])
  np.testing.assert_array_equal(items, [0, 0, 2, 2, 2, 3, 3])  # 3: padding
  assert int(sparse.batch_distinct(jnp.asarray(indices), 9)) == 5


def test_typical_sizes_bound_random_batches():
  x = (rng_uniform((400, 300)) < 0.05).astype(np.float32)
  rows, entries = sparse.typical_batch_sizes(x, 20)
  assert rows % 64 == 0 and entries % 64 == 0
  gen = np.random.default_rng(5)
  for _ in range(50):
    nz = x[gen.choice(400, 20, replace=False)] != 0
    assert nz.any(axis=0).sum() <= rows and nz.sum() <= entries
  # Dense rows and their CSR form give the same sizes.
  assert sparse.typical_batch_sizes(scipy.sparse.csr_matrix(x), 20) == (rows, entries)


def without_pre_norm_bias(tree):
  """`tree` with the first layer's bias, its Adam moments and the first
  batch norm's running mean zeroed: batch norm cancels that bias, so its
  exact gradient is zero and Adam normalises the float noise left in it
  (summed in another order on each path) into steps of ~learning_rate."""
  def zero(path, a):
    keys = jax.tree_util.keystr(path)
    noise = (("Dense_0']['bias']" in keys) or
             ("BatchNorm_0']['mean']" in keys))
    return jnp.zeros_like(a) if noise else a
  return jax.tree_util.tree_map_with_path(zero, tree)


def rng_uniform(shape):
  return np.random.default_rng(3).uniform(size=shape)


def train_two_epochs(config, dataset, axis_name=sparse.RUNS_AXIS):
  """Two epochs (6 steps each) of a 3-run vmapped grid."""
  run = specs.make_run(config, dataset)
  keys = jax.random.split(jax.random.key(4), 3)
  hp = dict(alpha=0.01, beta=0.1, gamma=10.0, learning_rate=1e-3,
            temperature=0.67)
  hps = {k: jnp.full(3, v, jnp.float32) for k, v in hp.items()}
  levels = jnp.asarray([0.1, 0.5, 1.0], jnp.float32)
  state = jax.vmap(run.init, in_axes=(None, 0, 0, 0))(run.arrays, keys, levels,
                                                       hps)
  epoch = jax.jit(jax.vmap(run.train_epoch, in_axes=(None, 0),
                           axis_name=axis_name))
  for _ in range(2):
    state, terms = epoch(run.arrays, state)
  return state, terms


def count_paths(monkeypatch):
  """Counts, as the program runs, the steps that take each path of the
  sparse step: [typical sizes, worst case] (train_step's run_if order)."""
  counts, traced, run_if = [0, 0], [], sparse.run_if

  def counted_run_if(flag, fn, carry):
    path = len(traced) % 2
    traced.append(path)

    def counted(c):
      jax.debug.callback(lambda: counts.__setitem__(path, counts[path] + 1))
      return fn(c)
    return run_if(flag, counted, carry)

  monkeypatch.setattr(sparse, "run_if", counted_run_if)
  return counts


@pytest.fixture(scope="module")
def dense_two_epochs(dataset):
  return train_two_epochs(config_with("dense"), dataset)


# synthetic, batches of 32 of 200 items: ~390 entries (at most 640 slots), 43
# to 49 distinct of 50 words. 46 rows: ~2/3 of the batches fit; 403 entries:
# ~80%; with 3 runs agreeing, some steps take each path.
@pytest.mark.parametrize("sizes,paths", [
    ((1, 1), "worst case"), ((50, 600), "typical"), ((46, 600), "both"),
    ((50, 403), "both"), ((46, 403), "per run")])
def test_every_batch_size_path_matches_the_dense_path(
    dataset, dense_two_epochs, monkeypatch, sizes, paths):
  monkeypatch.setattr(sparse, "typical_batch_sizes", lambda *a: sizes)
  counts = count_paths(monkeypatch)
  dense, dense_terms = dense_two_epochs
  sparse_state, sparse_terms = train_two_epochs(
      config_with("sparse"), dataset,
      axis_name=None if paths == "per run" else sparse.RUNS_AXIS)
  state = lambda s: without_pre_norm_bias((s.params, s.opt_state,
                                           s.batch_stats))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               state(dense), state(sparse_state))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4),
               dense_terms, sparse_terms)
  jax.effects_barrier()
  want = {"worst case": [0, 12], "typical": [12, 0]}.get(paths)
  if want:
    assert counts == want
  elif paths == "both":  # the runs agree: one path per step
    assert sum(counts) == 12 and min(counts) > 0, counts


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_fast_mode_takes_either_path_alike(dataset, monkeypatch):
  states = []
  for sizes in ((1, 1), (46, 403)):
    monkeypatch.setattr(sparse, "typical_batch_sizes", lambda *a, s=sizes: s)
    states.append(train_two_epochs(config_with("sparse", "fast"), dataset)[0])
  state = lambda s: without_pre_norm_bias((s.params, s.opt_state,
                                           s.batch_stats))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               state(states[0]), state(states[1]))


def test_same_codes_after_a_short_training(dataset):
  outputs = []
  for mode in ("dense", "sparse"):
    config = config_with(mode)
    grid = specs.build_grid(config, "ssb_vae")
    outputs.append(grid_lib.train_grid(specs.make_run(config, dataset), grid,
                                       config.base_seed))
  np.testing.assert_array_equal(outputs[0].db_codes, outputs[1].db_codes)
  np.testing.assert_array_equal(outputs[0].query_codes,
                                outputs[1].query_codes)
  np.testing.assert_allclose(outputs[0].epoch_metrics["loss"],
                             outputs[1].epoch_metrics["loss"], rtol=1e-4)


def test_sparse_arrays_replace_the_dense_inputs(dataset):
  db = dataset.database
  assert db.sparse  # the synthetic corpus is a bag of words, CSR on the host
  arrays = device_data.device_arrays(dataset, sparse=True)
  inputs = arrays["inputs"]
  assert isinstance(inputs, sparse.CsrRows)
  assert isinstance(arrays["query_inputs"], sparse.CsrRows)
  # Memory grows with the nonzeros: [nnz] entries, never [items, dims].
  assert inputs.values.shape == (db.inputs.nnz,) == arrays["targets"].shape
  # A batch read from the CSR arrays equals the host rows, padded.
  idx = jnp.array([3, 0, len(db) - 1, 3])
  batch = inputs.take(idx)
  want = db.inputs[np.asarray(idx)].toarray()
  np.testing.assert_array_equal(
      densify(np.asarray(batch.indices), np.asarray(batch.values), dataset.dims), want)
  assert batch.indices.shape == (4, sparse.row_widths(db.inputs).max())
  # The targets are other values on the same nonzeros.
  targets = device_data.read_targets(arrays, idx, dense=False)
  np.testing.assert_array_equal(targets.indices, batch.indices)
  np.testing.assert_array_equal(
      densify(np.asarray(targets.indices), np.asarray(targets.values), dataset.dims),
      db.targets[np.asarray(idx)].toarray())
  dense_targets = device_data.read_targets(arrays, idx, dense=True)
  np.testing.assert_array_equal(dense_targets, db.targets[np.asarray(idx)].toarray())
  empty = np.zeros((3, 5), np.float32)
  assert sparse.padded_rows(empty)[0].shape == (3, 1)
  assert sparse.CsrRows.from_host(empty).width == 1


def test_dense_features_on_the_sparse_path_keep_dense_targets():
  dataset = data.load(data.spec_from_fields(digits.get_config().data.to_dict()))
  assert not dataset.database.sparse
  arrays = device_data.device_arrays(dataset, sparse=True)
  assert isinstance(arrays["inputs"], sparse.CsrRows)
  np.testing.assert_array_equal(arrays["targets"], dataset.database.targets)
  x = device_data.read_inputs(arrays["inputs"], jnp.arange(5), dense=True)
  np.testing.assert_array_equal(x, dataset.database.inputs[:5])
