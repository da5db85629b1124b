"""`make_run(config, data)`: a whole training run as one pure function.

    run = make_run(config, data)
    codes, metrics = run(key, level, hparams)

`hparams` is a dict of per-run traced float32 scalars: alpha, beta, gamma,
learning_rate, temperature. Everything that sets a shape (bits, batch size,
epochs, data sizes) is read from the config and closed over, so one compiled
program serves every level and weight, and `jax.vmap(run)` trains a grid.

The run is also exposed in pieces (`init`, `train_epoch`, `encode`), each a
pure function of (arrays, ...). They take the device arrays as an argument:
a jitted function that closed over the data would embed it in the program
as a constant (slow to compile, and copied).

Two switches for bag-of-words data (Snippets: ~14 of 10,000 words a row):
- `config.model.sparse_input`: the encoder reads each item as a padded list
  of its nonzero (column, value) pairs (models.SparseRows) instead of the
  dense row, so the first layer gathers ~width kernel rows per item instead
  of multiplying by all `dims` of them, and its gradient comes as the rows
  a batch read (the [dims, hidden] gradient is never formed). Same
  parameters, same losses, gradients and Adam updates up to float rounding.
  A training step sizes its row list (and reads the batch as a flat list
  of entries, models.SparseEntries) for a typical batch (Snippets: 1,344
  rows and 1,792 entries against a worst case of 3,714 and 100 x 59); a
  batch that needs more takes the worst-case sizes (`run_if`), so no batch
  is ever truncated.
- `config.optimizer`: "exact" is Adam on every weight at every step (as
  released; on the sparse path the first kernel's moment decay is deferred
  for up to DECAY_CHUNK steps, see dense_adam_rows: the same update up to
  float rounding, half the memory traffic); "fast" is lazy Adam for the
  first kernel: only the rows of the features present in the batch (and
  their moments) are read and updated, with the bias correction of the
  global step count (as the lazy/sparse Adam of other frameworks does). It
  changes the optimiser (absent rows' moments neither decay nor move them),
  so it is not the released behaviour; it needs the sparse input path.

A grid vmaps `train_epoch` with axis_name=RUNS_AXIS so that its runs agree
on each step's sizes (in_every_run); without it each run picks its own,
which vmap turns into computing both (correct, slower).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hashvae import methods
from hashvae.data import Dataset
from hashvae.label_mask import label_mask
from hashvae.models import HashModel, SparseEntries, SparseRows, gather_rows

HPARAM_NAMES = ("alpha", "beta", "gamma", "learning_rate", "temperature")
INPUT_MODES = ("auto", "sparse", "dense")  # config.model.sparse_input
OPTIMIZERS = ("exact", "fast")  # config.optimizer
# "auto" picks the sparse path when the padded width (the most nonzeros in
# any row) is under this fraction of the input width: the gather then reads
# at most a tenth of the kernel rows the dense matmul multiplies by.
AUTO_SPARSE_WIDTH = 0.1
ADAM = dict(b1=0.9, b2=0.999, eps=1e-7)  # the released Keras settings
FIRST_KERNEL = ("encoder", "Dense_0", "kernel")  # the [dims, hidden] kernel
# Most steps dense_adam_rows defers the moments' decay for: 0.9**100 = 2.7e-5,
# so the stored moments (divided by it) stay far from float32's range limits.
DECAY_CHUNK = 100


class TrainState(NamedTuple):
  """Everything a run carries between steps (one run; vmap adds [runs])."""

  params: Any
  batch_stats: Any
  opt_state: Any
  step: jax.Array  # int32, optimiser steps taken
  loop_key: jax.Array  # shuffles and sampling noise derive from it
  labelled: jax.Array  # [items] float32 in {0, 1}
  hparams: dict


def row_widths(x: np.ndarray) -> np.ndarray:
  """[items, dims] -> [items] number of nonzeros per row."""
  return np.count_nonzero(x, axis=1)


def padded_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[items, dims] -> (indices, values), both [items, width] (host side).

  Row i lists its nonzero columns in increasing order, then padding (index
  dims, value 0); width is the most nonzeros in any row (at least 1).
  """
  items, dims = x.shape
  row, col = np.nonzero(x)  # row-major: grouped by row, columns ascending
  counts = np.bincount(row, minlength=items)
  width = max(int(counts.max(initial=0)), 1)
  slot = np.arange(len(row)) - (np.cumsum(counts) - counts)[row]
  indices = np.full((items, width), dims, np.int32)
  values = np.zeros((items, width), np.float32)
  indices[row, slot] = col
  values[row, slot] = x[row, col]
  return indices, values


def split_widths(data: Dataset, splits=("train", "validation", "test")):
  """[items] nonzeros per row of the named splits' inputs, concatenated."""
  return np.concatenate([row_widths(getattr(data, s).inputs) for s in splits])


def use_sparse_input(mode: str, data: Dataset) -> bool:
  """Resolves config.model.sparse_input ("auto", "sparse", "dense")."""
  if mode not in INPUT_MODES:
    raise ValueError(f"model.sparse_input={mode!r}: one of {INPUT_MODES}")
  if mode != "auto":
    return mode == "sparse"
  return split_widths(data).max(initial=0) < AUTO_SPARSE_WIDTH * data.dims


def device_arrays(data: Dataset, sparse: bool = False,
                  sparse_targets: bool = False) -> dict:
  """The dataset as device arrays: training set (train + validation) and queries.

  With `sparse`, inputs and query_inputs are SparseRows (padded on the host
  once) instead of dense [items, dims] arrays; with `sparse_targets`, so are
  the reconstruction targets (the softmax reconstruction reads only their
  nonzeros; a step then gathers ~width entries per item, not dims).
  """
  db = data.database
  labels = db.labels
  rows = (labels.astype(np.float32) if data.multilabel
          else np.eye(data.num_classes, dtype=np.float32)[labels])
  as_rows = lambda x: SparseRows(*map(jnp.asarray, padded_rows(x)))
  return dict(inputs=as_rows(db.inputs) if sparse else jnp.asarray(db.inputs),
              targets=(as_rows(db.targets) if sparse_targets
                       else jnp.asarray(db.targets)),
              label_rows=jnp.asarray(rows),
              query_inputs=(as_rows(data.test.inputs) if sparse
                            else jnp.asarray(data.test.inputs)))


def take_items(x, idx):
  """Rows `idx` of a dense [items, ...] array or of a SparseRows batch."""
  return jax.tree.map(lambda a: a[idx], x)


def batch_rows(indices, dims: int, size: int):
  """The distinct kernel rows a sparse batch reads, in a fixed-size list.

  indices [...] in [0, dims] (dims = padding) -> (rows [size] ascending,
  padded with dims; local [...]: each entry's position in `rows`, padding
  -> size). `size` must bound the distinct count (batch_distinct).
  """
  seen = columns_seen(indices, dims)
  rows = jnp.nonzero(seen, size=size, fill_value=dims)[0]
  position = jnp.cumsum(seen) - 1  # [dims]: the slot of each seen row
  local = jnp.where(indices < dims,
                    position[jnp.minimum(indices, dims - 1)], size)
  return rows, local


def batch_entries(indices, values, dims: int, size: int):
  """A padded [items, width] sparse batch's entries as a flat list.

  indices, values [items, width] (padding: index dims) -> (indices, values,
  items), each [size]: the entries in row-major order, then padding (index
  dims, value 0, item = items). `size` must bound the entry count.
  """
  items, width = indices.shape
  slot = jnp.nonzero((indices < dims).reshape(-1), size=size,
                     fill_value=items * width)[0]
  take = lambda a, fill: jnp.take(a.reshape(-1), slot, mode="fill",
                                  fill_value=fill)
  return take(indices, dims), take(values, 0), slot // width


def typical_batch_sizes(parts, batch_size: int, samples: int = 256,
                        margin: float = 1.1, multiple: int = 64):
  """(distinct columns, nonzero entries) a random batch needs, with room.

  parts: [items, dims] arrays whose rows, together, are the training items
  (train and validation; not concatenated, to spare a copy). The most of
  each count over `samples` random batches (a fixed seed), times `margin`,
  rounded up to `multiple`. A step whose batch needs more takes the
  worst-case sizes instead (exact either way; see make_run), so this only
  decides how often the cheap sizes serve.
  """
  starts = np.cumsum([0] + [len(p) for p in parts])
  rng = np.random.default_rng(0)
  distinct = entries = 0
  for _ in range(samples):
    picked = np.sort(rng.choice(starts[-1], batch_size, replace=False))
    part = np.searchsorted(starts, picked, side="right") - 1
    nonzero = np.concatenate([parts[i][picked[part == i] - starts[i]] != 0
                              for i in np.unique(part)])
    distinct = max(distinct, int(nonzero.any(axis=0).sum()))
    entries = max(entries, int(nonzero.sum()))
  room = lambda n: int(-(-max(n, 1) * margin // multiple) * multiple)
  return room(distinct), room(entries)


def run_if(flag, fn, carry):
  """fn(carry) if flag else carry, as a while loop of 0 or 1 trips.

  Not lax.cond: a conditional's branches get copies of large operands they
  update (the stacked kernel and its moments, here), while a loop updates
  its carry in place.
  """
  return jax.lax.while_loop(lambda c: c[0], lambda c: (False, fn(c[1])),
                            (flag, carry))[1]


RUNS_AXIS = "vmapped_runs"  # not the device mesh's axis ("runs")


def in_every_run(flag):
  """`flag` (bool, any shape) reduced elementwise with `and` over the runs of
  a grid vmapped with axis_name=RUNS_AXIS: the result is the same for all
  runs, so a `run_if` on it stays a branch instead of running under vmap
  for every run, masked. Outside such a vmap it is `flag` itself (per-run
  branches, still correct)."""
  try:
    return jax.lax.pmin(flag.astype(jnp.int32), RUNS_AXIS) > 0
  except NameError:  # not under a vmap with that axis name
    return flag


def columns_seen(indices, dims: int):
  """[dims] bool: which columns the indices [...] (dims = padding) name."""
  return jnp.zeros(dims + 1, bool).at[indices].set(True)[:dims]


def batch_distinct(indices, dims: int):
  """How many distinct columns the indices [...] name (a scalar)."""
  return columns_seen(indices, dims).sum()


def max_batch_rows(widths: np.ndarray, batch_size: int, dims: int) -> int:
  """An upper bound on the distinct columns one batch can touch: the
  `batch_size` largest row widths, summed (at most dims)."""
  top = np.sort(widths)[::-1][:batch_size]
  return int(min(max(top.sum(), 1), dims))


def get_path(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def replace_path(tree, path, value):
  """A copy of the nested dict `tree` with tree[path] = value (a missing
  value removes the entry)."""
  head, *rest = path
  out = dict(tree)
  if rest:
    out[head] = replace_path(tree[head], rest, value)
  elif value is None:
    del out[head]
  else:
    out[head] = value
  return out


def dense_adam_rows(kernel, mu, nu, rows, grad_rows, count, learning_rate,
                    deferred):
  """Adam on every row of the kernel, from the gradient's nonzero rows, with
  the moments' decay deferred.

  The same update as optax's scale_by_adam given the dense gradient that is
  `grad_rows` at `rows` and zero elsewhere: a row outside the batch has a
  zero gradient, so its moments only decay (and it still moves by them).
  The decay is not written to memory every step: `mu` and `nu` come in
  divided by b1**(deferred - 1) and b2**(deferred - 1) (the decays of the
  steps since the last `apply_decay`) and go out divided by b1**deferred and
  b2**deferred, so a step adds the scaled gradient terms to the batch's
  rows only and reads the true moments in the one pass that updates the
  kernel (4 array passes instead of 8: the step is bound by memory
  traffic). `apply_decay(mu, nu, steps)` brings them back to the
  true moments; keep the steps between calls short enough that b1**steps
  stays normal (train_epoch uses at most DECAY_CHUNK).

  kernel, mu, nu [dims, features]; rows [size] distinct, ascending, padded
  with dims (dropped); grad_rows [size, features]; count = the step count
  after this step (1 on the first); deferred = steps since the last
  apply_decay, this one included.
  """
  b1, b2 = decays(deferred)
  add = lambda a, new: a.at[rows].add(new, mode="drop", indices_are_sorted=True)
  mu = add(mu, ((1 - ADAM["b1"]) / b1) * grad_rows)
  nu = add(nu, ((1 - ADAM["b2"]) / b2) * jnp.square(grad_rows))
  return adam_step(kernel, b1 * mu, b2 * nu, count, learning_rate), mu, nu


def decays(steps):
  """(b1**steps, b2**steps) as float32 scalars."""
  steps = jnp.asarray(steps, jnp.float32)
  return (jnp.power(jnp.float32(ADAM["b1"]), steps),
          jnp.power(jnp.float32(ADAM["b2"]), steps))


def apply_decay(mu, nu, steps):
  """The true moments from ones stored with `steps` decays deferred."""
  b1, b2 = decays(steps)
  return b1 * mu, b2 * nu


def lazy_adam_rows(kernel, mu, nu, rows, grad_rows, count, learning_rate,
                   deferred=None):
  """Adam on the kernel rows a batch read; other rows and their moments untouched.

  Arguments as dense_adam_rows (nothing is deferred: `deferred` is
  ignored). The bias correction uses the global step count, as the lazy
  Adam of other frameworks does; a batch that reads every row gets exactly
  the dense update.
  """
  take = lambda a: gather_rows(a, rows)
  m = ADAM["b1"] * take(mu) + (1 - ADAM["b1"]) * grad_rows
  v = ADAM["b2"] * take(nu) + (1 - ADAM["b2"]) * jnp.square(grad_rows)
  put = lambda a, new: a.at[rows].set(new, mode="drop", indices_are_sorted=True)
  return (put(kernel, adam_step(take(kernel), m, v, count, learning_rate)),
          put(mu, m), put(nu, v))


def scan_deferring_decay(step, state: TrainState, xs):
  """lax.scan of step(state, (*xs[t], deferred)) over the steps of xs (a
  tuple of [steps, ...] arrays) for dense_adam_rows: chunks of at most
  DECAY_CHUNK steps, the first kernel's deferred moment decay applied after
  each, so the state between chunks (and so between epochs) holds the true
  moments.

  Returns (state, per-step terms [steps]).
  """
  if ADAM["b1"] ** DECAY_CHUNK < 1e-20:  # the stored moments would overflow
    raise ValueError(f"DECAY_CHUNK={DECAY_CHUNK}: b1**DECAY_CHUNK must stay "
                     "above 1e-20")

  def chunk(state, chunk_xs):  # [k, ...] each
    k = chunk_xs[0].shape[0]
    state, terms = jax.lax.scan(
        step, state, (*chunk_xs, jnp.arange(1, k + 1, dtype=jnp.int32)))
    opt = state.opt_state
    mu, nu = apply_decay(get_path(opt.mu, FIRST_KERNEL),
                         get_path(opt.nu, FIRST_KERNEL), k)
    opt = opt._replace(mu=replace_path(opt.mu, FIRST_KERNEL, mu),
                       nu=replace_path(opt.nu, FIRST_KERNEL, nu))
    return state._replace(opt_state=opt), terms

  steps = xs[0].shape[0]
  whole = steps - steps % DECAY_CHUNK
  parts = []
  if whole:
    state, terms = jax.lax.scan(chunk, state, tuple(
        a[:whole].reshape(-1, DECAY_CHUNK, *a.shape[1:]) for a in xs))
    parts.append(jax.tree.map(lambda a: a.reshape(whole, *a.shape[2:]), terms))
  if steps > whole:
    state, terms = chunk(state, tuple(a[whole:] for a in xs))
    parts.append(terms)
  return state, jax.tree.map(lambda *a: jnp.concatenate(a), *parts)


def adam_step(param, mu, nu, count, learning_rate):
  """param - lr * mu_hat / (sqrt(nu_hat) + eps), optax's arithmetic."""
  mu_hat = optax.tree.bias_correction(mu, ADAM["b1"], count)
  nu_hat = optax.tree.bias_correction(nu, ADAM["b2"], count)
  return param - learning_rate * (mu_hat / (jnp.sqrt(nu_hat) + ADAM["eps"]))


def adam(optimiser, grads, opt_state, params, learning_rate):
  """Dense Adam on every weight (the released optimiser), through optax."""
  updates, opt_state = optimiser.update(grads, opt_state, params)
  params = jax.tree.map(lambda p, u: p - learning_rate * u, params, updates)
  return params, opt_state


def adam_with_kernel_rows(update_rows, optimiser, grads, row_grads, rows,
                          opt_state, params, learning_rate, deferred):
  """Adam through optax on every weight but the first kernel, whose gradient
  comes as rows; `update_rows` (dense_adam_rows or lazy_adam_rows) updates it.

  The optimiser state keeps the dense layout (optax's ScaleByAdamState over
  the whole parameter tree), so every mode shares checkpoints and tests.
  """
  drop = lambda tree: replace_path(tree, FIRST_KERNEL, None)
  rest = optax.ScaleByAdamState(count=opt_state.count, mu=drop(opt_state.mu),
                                nu=drop(opt_state.nu))
  new_params, rest = adam(optimiser, drop(grads), rest, drop(params),
                          learning_rate)
  kernel, mu, nu = update_rows(
      get_path(params, FIRST_KERNEL), get_path(opt_state.mu, FIRST_KERNEL),
      get_path(opt_state.nu, FIRST_KERNEL), rows, row_grads, rest.count,
      learning_rate, deferred)
  put = lambda tree, value: replace_path(tree, FIRST_KERNEL, value)
  return put(new_params, kernel), optax.ScaleByAdamState(
      count=rest.count, mu=put(rest.mu, mu), nu=put(rest.nu, nu))


def loss_options(config, data: Dataset) -> methods.LossOptions:
  fields = {f.name for f in dataclasses.fields(methods.LossOptions)}
  given = {k: v for k, v in config.loss.items() if k in fields}
  return methods.LossOptions(**given, multilabel_data=data.multilabel)


@dataclasses.dataclass(frozen=True)
class Run:
  """The pure pieces of one training run, plus the data they run on."""

  init: Callable  # (arrays, key, level, hparams) -> TrainState
  train_epoch: Callable  # (arrays, state) -> (state, {term: scalar})
  encode: Callable  # (arrays, state) -> {"db_codes", "query_codes"} uint8
  arrays: dict
  epochs: int
  steps_per_epoch: int

  def run(self, arrays, key, level, hparams):
    """The whole run: init, `epochs` epochs in a scan, codes.

    Returns (codes dict of [items, bits] uint8, metrics dict of [epochs]).
    """
    state = self.init(arrays, key, level, hparams)
    state, metrics = jax.lax.scan(
        lambda s, _: self.train_epoch(arrays, s), state, None,
        length=self.epochs)
    return self.encode(arrays, state), metrics

  def __call__(self, key, level, hparams):
    """`run` on this run's own data (closes over it: fine for small data)."""
    return self.run(self.arrays, key, level, hparams)


def make_run(config, data: Dataset, method: str | None = None) -> Run:
  """Builds the run of `method` (default: the config's only method)."""
  if method is None:
    if len(config.methods) != 1:
      raise ValueError(f"config names {len(config.methods)} methods "
                       f"{tuple(config.methods)}; pass the one to build")
    method = config.methods[0]
  method = methods.get(method)
  options = loss_options(config, data)
  input_mode = config.model.get("sparse_input", "auto")
  sparse = use_sparse_input(input_mode, data)
  optimizer = config.get("optimizer", "exact")
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"optimizer={optimizer!r}: one of {OPTIMIZERS}")
  lazy = optimizer == "fast"
  if lazy and not sparse:
    raise ValueError("optimizer='fast' updates the first kernel's rows of the "
                     "features present in a batch, which needs the sparse "
                     f"input path; model.sparse_input={input_mode!r} resolved "
                     "to dense for this data (set it to 'sparse', or use "
                     "optimizer='exact')")
  model = HashModel(dims=data.dims, bits=config.bits,
                    num_classes=data.num_classes, latent=method.latent,
                    classifier_on=method.classifier_on,
                    hidden=tuple(config.model.hidden),
                    batch_norm=config.model.batch_norm)
  n = len(data.train) + len(data.validation)
  batch_size = config.batch_size
  if not 0 < batch_size <= n:
    raise ValueError(f"batch_size={batch_size} must lie in [1, {n}] (the "
                     "training set size)")
  steps_per_epoch = n // batch_size  # the remainder is reshuffled next epoch
  segments = ((len(data.train), len(data.validation)) if config.mask_per_split
              else (n,))
  mask_seed = config.get("shared_mask_seed")
  optimiser = optax.scale_by_adam(**ADAM)
  eval_batch = config.eval_batch_size
  dims = data.dims
  # How many distinct kernel rows a batch can read: the fixed length of the
  # row list the sparse path differentiates and updates. `typical`: the
  # (rows, entries) a random batch needs, with room: the cheaper sizes
  # most steps run with (None when they save nothing).
  distinct = typical = None
  if sparse:
    widths = split_widths(data, ("train", "validation"))
    distinct = max_batch_rows(widths, batch_size, dims)
    padded = batch_size * max(int(widths.max(initial=0)), 1)
    typical = typical_batch_sizes(
        (data.train.inputs, data.validation.inputs), batch_size)
    typical = (min(typical[0], distinct), min(typical[1], padded))
    if typical == (distinct, padded):
      typical = None

  def init(arrays, key, level, hparams):
    init_key, mask_key, loop_key = jax.random.split(key, 3)
    if mask_seed is not None:  # the released protocol: one mask for all seeds
      mask_key = jax.random.key(mask_seed)
    variables = model.init({"params": init_key, "sample": init_key},
                           take_items(arrays["inputs"], slice(0, 1)), 1.0,
                           train=False)
    params = variables["params"]
    return TrainState(
        params=params, batch_stats=variables.get("batch_stats", {}),
        opt_state=optimiser.init(params), step=jnp.zeros((), jnp.int32),
        loop_key=loop_key, labelled=label_mask(mask_key, level, segments),
        hparams={k: jnp.asarray(hparams[k], jnp.float32) for k in HPARAM_NAMES})

  def fits_typical(arrays, idx):
    """Whether the batch `idx` [batch] fits the typical sizes (a bool)."""
    indices = arrays["inputs"].indices[idx]
    return jnp.logical_and(batch_distinct(indices, dims) <= typical[0],
                           (indices < dims).sum() <= typical[1])

  def train_step(arrays, state: TrainState, idx, fits, deferred):
    labelled = state.labelled[idx]
    batch = dict(targets=take_items(arrays["targets"], idx),
                 label_rows=arrays["label_rows"][idx] * labelled[:, None],
                 labelled=labelled)
    noise_key = jax.random.fold_in(jax.random.fold_in(state.loop_key, 1),
                                   state.step)
    hp = state.hparams
    x = take_items(arrays["inputs"], idx)

    def loss_fn(params, x):
      out, updated = model.apply(
          {"params": params, "batch_stats": state.batch_stats},
          x, hp["temperature"], train=True,
          rngs={"sample": noise_key}, mutable=["batch_stats"])
      loss, terms = method.objective(out, batch, hp, options)
      return loss, (terms, updated.get("batch_stats", {}))

    def sparse_update(row_slots, entry_slots, params, opt_state):
      # Differentiate with respect to the kernel rows the batch reads rather
      # than the whole kernel: the gradient comes as [rows, features] and
      # the [dims, features] one, unused, is compiled away. entry_slots:
      # None reads the batch as padded [items, width] rows, else as a flat
      # list of that many entries.
      if entry_slots is None:
        rows, local = batch_rows(x.indices, dims, row_slots)
        as_input = lambda kernel_rows: SparseRows(local, x.values, kernel_rows)
      else:
        cols, values, items = batch_entries(x.indices, x.values, dims,
                                            entry_slots)
        rows, local = batch_rows(cols, dims, row_slots)
        as_input = lambda kernel_rows: SparseEntries(
            local, values, items, kernel_rows, batch_size)
      (grads, row_grads), (terms, batch_stats) = jax.grad(
          lambda p, kernel_rows: loss_fn(p, as_input(kernel_rows)),
          argnums=(0, 1), has_aux=True)(
              params, gather_rows(get_path(params, FIRST_KERNEL), rows))
      params, opt_state = adam_with_kernel_rows(
          lazy_adam_rows if lazy else dense_adam_rows, optimiser, grads,
          row_grads, rows, opt_state, params, hp["learning_rate"], deferred)
      return params, opt_state, batch_stats, terms

    if sparse and typical is None:
      params, opt_state, batch_stats, terms = sparse_update(
          distinct, None, state.params, state.opt_state)
    elif sparse:
      # Most batches fit the typical sizes; the rare one that does not (in
      # any run: `fits` comes from train_epoch, agreed by the runs) takes
      # the worst-case sizes, so every batch is computed exactly.
      sized = lambda sizes: lambda c: sparse_update(*sizes, c[0], c[1])
      carry = (state.params, state.opt_state)
      carry += (state.batch_stats,
                jax.tree.map(jnp.zeros_like,
                             jax.eval_shape(sized(typical), carry)[3]))
      carry = run_if(fits, sized(typical), carry)
      params, opt_state, batch_stats, terms = run_if(
          jnp.logical_not(fits), sized((distinct, None)), carry)
    else:
      grads, (terms, batch_stats) = jax.grad(loss_fn, has_aux=True)(
          state.params, x)
      params, opt_state = adam(optimiser, grads, state.opt_state,
                               state.params, hp["learning_rate"])
    return state._replace(params=params, batch_stats=batch_stats,
                          opt_state=opt_state, step=state.step + 1), terms

  def train_epoch(arrays, state: TrainState):
    epoch = state.step // steps_per_epoch
    shuffle_key = jax.random.fold_in(jax.random.fold_in(state.loop_key, 0),
                                     epoch)
    order = jax.random.permutation(shuffle_key, n)
    batches = order[:steps_per_epoch * batch_size].reshape(steps_per_epoch,
                                                           batch_size)
    if typical is None:
      fits = jnp.zeros(steps_per_epoch, bool)  # unused
    else:
      # Each step's path, for the whole epoch at once: the runs agree on
      # all of them in one reduction, not one per step.
      fits = in_every_run(jax.vmap(lambda i: fits_typical(arrays, i))(batches))
    step = lambda s, xs: train_step(arrays, s, *xs)
    if sparse and not lazy:
      state, terms = scan_deferring_decay(step, state, (batches, fits))
    else:
      state, terms = jax.lax.scan(
          step, state, (batches, fits, jnp.ones(steps_per_epoch, jnp.int32)))
    return state, jax.tree.map(jnp.mean, terms)

  def encode(arrays, state: TrainState):
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    scores = lambda x: model.apply(variables, x, method=HashModel.code_scores)
    code = lambda x: (jax.lax.map(scores, x, batch_size=eval_batch) > 0
                      ).astype(jnp.uint8)
    return dict(db_codes=code(arrays["inputs"]),
                query_codes=code(arrays["query_inputs"]))

  return Run(init=init, train_epoch=train_epoch, encode=encode,
             arrays=device_arrays(
                 data, sparse,
                 sparse_targets=sparse and options.reconstruction == "softmax"),
             epochs=config.epochs,
             steps_per_epoch=steps_per_epoch)
