"""`make_run(spec, data, method, options)`: a whole training run as one pure function.

    run = make_run(TrainerSpec(bits=16), data, "ssb_vae", options)
    codes, metrics = run(key, level, hparams)

`hparams` holds the run's traced float32 scalars: the method's declared
weights and the trainer's learning_rate and temperature. Everything that
sets a shape (bits, batch size, epochs, data sizes) comes from the
TrainerSpec and the data and is closed over, so one compiled program serves every level and weight, and
`jax.vmap(run)` trains a grid.

The run is also exposed in pieces (`init`, `train_epoch`, `encode`), each a
pure function of (arrays, ...). They take the device arrays as an argument:
a jitted function that closed over the data would embed it in the program
as a constant (slow to compile, and copied).

A step: batch -> the method's network and objective -> gradients ->
optimiser. Two things vary and live behind their own small interfaces: how
the input is read (dense rows, or sparse.SparseInput for bag-of-words:
gradients as the kernel rows a batch reads) and the optimiser (optim.py).

A method that learns from document neighbours (methods.Neighbours) also
gets arrays["neighbours"] [items, k], the training items' neighbours among
the training items (train then validation, as the arrays order them); each
step draws one per batch item and the batch carries what the method reads
of it (neighbour_batch.py, methods/registry.py).

A method that declares a part of its network with an update of its own
(methods.OwnUpdate) has that part trained only by the part's objective,
with an Adam state of its own (TrainState.own_opt_state), before the
method's objective, whose gradient and optimiser cover the rest
(own_update.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from hashvae import methods
from hashvae.core import optim
from hashvae.core.label_mask import label_mask
from hashvae.core.models import ModelSpec
from hashvae.core.sparse import (
  RUNS_AXIS,
  SparseInput,
  gather_rows,
  in_every_run,
  use_sparse_input,
)
from hashvae.data import Dataset
from hashvae.training import encode, own_update
from hashvae.training.device_data import device_arrays, read_inputs, read_targets
from hashvae.training.neighbour_batch import (
  checked_neighbours,
  draw_neighbours,
  with_neighbour_outputs,
)
from hashvae.training.specs import TrainerSpec

__all__ = ["RUNS_AXIS", "Run", "TrainState", "TrainerSpec", "device_arrays", "make_run"]

FITS_BLOCK = 64  # steps whose batches are checked against the typical sizes at once


class TrainState(NamedTuple):
  """Everything a run carries between steps (one run; vmap adds [runs])."""

  params: Any
  batch_stats: Any
  opt_state: Any
  step: jax.Array  # int32, optimiser steps taken
  loop_key: jax.Array  # shuffles and sampling noise derive from it
  labelled: jax.Array  # [items] float32 in {0, 1}
  hparams: dict  # name -> float32 scalar
  own_opt_state: Any = None  # a declared part's Adam state (own_update); else None


@dataclasses.dataclass(frozen=True)
class Run:
  """The pure pieces of one training run, plus the data they run on."""

  init: Callable  # (arrays, key, level, hparams) -> TrainState
  train_epoch: Callable  # (arrays, state) -> (state, {term: scalar})
  encode: Callable  # (arrays, state) -> {"db_codes", "query_codes"} uint8, "query_scores"
  arrays: dict
  epochs: int
  steps_per_epoch: int
  weights: tuple  # the names of the per-run traced values in `hparams`

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


def run_key(base_seed: int, seed):
  """fold_in(key(base_seed), seed): seed s is the same run in every sweep."""
  return jax.random.fold_in(jax.random.key(base_seed), seed)


def run_mask(spec: TrainerSpec, data: Dataset):
  """(run key, level) -> [items] float32 in {0, 1}: which training items keep
  their label in that run (train then validation, as device_arrays orders
  them). Every method of a sweep, trained or fitted, draws the same mask."""
  n_train, n_val = len(data.train), len(data.validation)
  segments = (n_train, n_val) if spec.mask_per_split else (n_train + n_val,)
  mask_seed = spec.shared_mask_seed

  def mask(key, level):
    mask_key = jax.random.split(key, 3)[1]
    if mask_seed is not None:  # the released protocol: one mask for all seeds
      mask_key = jax.random.key(mask_seed)
    return label_mask(mask_key, level, segments)
  return mask



@dataclasses.dataclass(frozen=True)
class Steps:
  """A run's pure pieces, closed over its static settings (each a method).

  Attributes:
    model: the method's network (a linen module).
    method: the registered methods.Method (its objective is called in
      `gradients`, the one place a method enters the step).
    options: the method's static options.
    sparse: how a sparse batch is read (sparse.SparseInput), or None for
      dense rows.
    optimiser: optim.Optimiser.
    mask: (run key, level) -> [items] label mask (run_mask).
    names: the names of the traced values in `hparams`.
  """

  model: Any
  method: methods.Method
  options: methods.Options
  sparse: Optional[SparseInput]
  optimiser: optim.Optimiser
  mask: Callable
  names: tuple
  items: int
  batch_size: int
  steps_per_epoch: int
  eval_batch_size: int

  @property
  def encodes_neighbours(self) -> bool:
    """Whether each step applies the network to the drawn neighbours too."""
    return self.method.neighbours is not None and self.method.neighbours.encode

  def init(self, arrays, key, level, hparams) -> TrainState:
    init_key, _, loop_key = jax.random.split(key, 3)  # the second draws the mask
    variables = self.model.init({"params": init_key, "sample": init_key},
                                self.read(arrays["inputs"], jnp.arange(1)), 1.0,
                                train=False)
    params = variables["params"]
    trained, part = own_update.split(params, self.method)
    return TrainState(
        params=params, batch_stats=variables.get("batch_stats", {}),
        opt_state=self.optimiser.init(trained), step=jnp.zeros((), jnp.int32),
        loop_key=loop_key, labelled=self.mask(key, level),
        hparams={k: jnp.asarray(hparams[k], jnp.float32) for k in self.names},
        own_opt_state=own_update.init(self.method.own_update, part))

  def gradients(self, params, state: TrainState, x, batch, sizes):
    """(optim.Gradients, (terms, batch_stats, part)) for `params`, all but a
    declared part (own_update), whose (params, Adam state) after its own
    steps is `part` (else None); sizes: None (dense input) or the sparse row
    list's sizes."""
    hp = methods.Weights(self.method.name, state.hparams)
    noise_key = jax.random.fold_in(jax.random.fold_in(state.loop_key, 1), state.step)
    own, (_, part) = self.method.own_update, own_update.split(state.params, self.method)

    def loss_fn(params, x):
      out, updated = self.model.apply(
          {"params": own_update.joined(params, own, part), "batch_stats": state.batch_stats},
          x, hp["temperature"], train=True, rngs={"sample": noise_key},
          mutable=["batch_stats"])
      if self.encodes_neighbours:
        out = with_neighbour_outputs(out, self.batch_size, self.method.neighbours.draws)
      part_state, part_terms = None, {}
      if own is not None:  # the part's own steps come first; the objective reads them
        out, part_state, part_terms = own_update.update_part(
            own, part, state.own_opt_state, out, batch, hp, self.options)
      loss, terms = self.method.objective(out, batch, hp, self.options)
      return loss, (dict(terms, **part_terms), updated.get("batch_stats", {}), part_state)

    if sizes is None:
      grads, aux = jax.grad(loss_fn, has_aux=True)(params, x)
      return optim.Gradients(grads), aux
    # With respect to the kernel rows the batch reads, not the whole kernel:
    # the [dims, features] gradient, unused, is compiled away.
    rows, as_input = self.sparse.with_rows(x, sizes)
    kernel_rows = gather_rows(optim.get_path(params, optim.FIRST_KERNEL), rows)
    (grads, row_grads), aux = jax.grad(
        lambda p, r: loss_fn(p, as_input(r)), argnums=(0, 1), has_aux=True)(
            params, kernel_rows)
    return optim.Gradients(grads, rows, row_grads), aux

  def train_step(self, arrays, state: TrainState, xs):
    """One step on the batch of items idx [batch] (and, for a method that
    learns from neighbours, their drawn neighbours' positions and table
    columns: draw_neighbours) -> (state, {term: scalar})."""
    idx, fits, *drawn, deferred = xs
    labelled = state.labelled[idx]
    batch = dict(targets=read_targets(arrays, idx, self.sparse is None),
                 label_rows=arrays["label_rows"][idx] * labelled[:, None],
                 labelled=labelled)
    if drawn:
      batch.update(neighbour=drawn[0], neighbour_rank=drawn[1])
      if drawn[0].ndim == 1:
        batch["neighbour_targets"] = read_targets(arrays, drawn[0], self.sparse is None)
    x = self.read(arrays["inputs"], self.rows_read(idx, *drawn))

    def update(sizes, params, opt_state):
      grads, (terms, batch_stats, part) = self.gradients(params, state, x, batch, sizes)
      params, opt_state = self.optimiser.update(
          grads, opt_state, params, state.hparams["learning_rate"], deferred)
      return params, opt_state, batch_stats, terms, part

    trained, _ = own_update.split(state.params, self.method)  # all but a declared part
    if self.sparse is None:
      params, opt_state, batch_stats, terms, part = update(None, trained, state.opt_state)
    else:  # the typical sizes where the batch fits them, else the worst case
      params, opt_state, batch_stats, terms, part = self.sparse.by_size(
          fits, update, trained, state.opt_state)
    state = state._replace(params=params, batch_stats=batch_stats,
                           opt_state=opt_state, step=state.step + 1)
    return own_update.with_part(state, self.method.own_update, part), terms

  def train_epoch(self, arrays, state: TrainState):
    """One reshuffled pass: floor(items / batch) full batches -> (state, mean terms)."""
    epoch = state.step // self.steps_per_epoch
    shuffle_key = jax.random.fold_in(jax.random.fold_in(state.loop_key, 0), epoch)
    order = jax.random.permutation(shuffle_key, self.items)
    batches = order[:self.steps_per_epoch * self.batch_size].reshape(
        self.steps_per_epoch, self.batch_size)
    drawn = ()
    if self.method.neighbours is not None:  # each step's draw, by its step number
      steps = state.step + jnp.arange(self.steps_per_epoch)
      drawn = jax.vmap(functools.partial(draw_neighbours, draws=self.method.neighbours.draws),
                       in_axes=(None, None, 0, 0))(
          arrays["neighbours"], state.loop_key, steps, batches)
    fits = jnp.zeros(self.steps_per_epoch, bool)
    if self.sparse is not None and self.sparse.typical is not None:
      # Each step's path, for the whole epoch at once: the runs agree on all
      # of them in one reduction, not one per step.
      # In blocks of steps: all at once would read the whole epoch's rows.
      fits = in_every_run(jax.lax.map(
          lambda i: self.sparse.fits_typical(arrays["inputs"].take(i).indices),
          self.rows_read(batches, *drawn), batch_size=FITS_BLOCK))
    state, terms = self.optimiser.scan(lambda s, xs: self.train_step(arrays, s, xs),
                                       state, (batches, fits, *drawn))
    return state, jax.tree.map(jnp.mean, terms)

  def encode(self, arrays, state: TrainState):
    """{"db_codes", "query_codes"}: [items, bits] uint8, and "query_scores"
    [queries, bits] float32, the scores the query codes threshold at 0
    (for rankings that use them: retrieval.rerank); batch norm in inference
    mode."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}

    def code_scores(inputs, name):
      score = lambda i: self.model.apply(variables, self.read(inputs, i), method="code_scores")
      items, block = encode.stream_shape(inputs, self.eval_batch_size, self.sparse is not None)
      return encode.streamed_scores(score, items, block, name)

    query_scores = code_scores(arrays["query_inputs"], "queries")
    return dict(db_codes=(code_scores(arrays["inputs"], "database") > 0).astype(jnp.uint8),
                query_codes=(query_scores > 0).astype(jnp.uint8), query_scores=query_scores)

  def read(self, inputs, idx):
    return read_inputs(inputs, idx, dense=self.sparse is None)

  def rows_read(self, idx, *drawn):
    """The items [..., batch] whose inputs a step reads: the batch, then its
    drawn neighbours when the network encodes them ([..., (1 + draws) batch],
    draw by draw)."""
    if not self.encodes_neighbours:
      return idx
    positions = drawn[0]
    if positions.ndim > idx.ndim:  # [..., batch, draws] -> [..., draws batch]
      positions = jnp.swapaxes(positions, -1, -2).reshape(idx.shape[:-1] + (-1,))
    return jnp.concatenate([idx, positions], -1)


def with_precision(f: Callable, precision: str) -> Callable:
  """`f` traced under jax.default_matmul_precision(precision): the setting
  is read when a product is traced, so it reaches the compiled program."""
  @functools.wraps(f)
  def traced(*args):
    with jax.default_matmul_precision(precision):
      return f(*args)
  return traced


def make_run(spec: TrainerSpec, data: Dataset, method: str,
             options: methods.Options, neighbours=None) -> Run:
  """Builds the run of the registered method `method` with its static
  `options` (methods.default_options gives the declared ones).

  `neighbours` [items, k] int: for a method that declares methods.Neighbours,
  each training item's k neighbours, as positions among the training items
  (train then validation); None for any other method.
  """
  method = methods.get(method)
  if method.fit is not None:
    raise methods.MethodError(f"method {method.name!r} is fitted, not trained: "
                              "hashvae.training.fitted.fit_grid runs it")
  db = data.database
  n, batch_size = len(db), spec.batch_size
  if not 0 < batch_size <= n:
    raise ValueError(f"batch_size={batch_size} must lie in [1, {n}] (the "
                     "training set size)")
  neighbours = checked_neighbours(method, neighbours, n)
  read = batch_size * (1 + method.neighbours.draws
                       if method.neighbours is not None and method.neighbours.encode
                       else 1)  # the rows a step reads
  sparse = (SparseInput.plan(db.inputs, read)
            if use_sparse_input(spec.sparse_input, data) else None)
  steps = Steps(
      model=method.build_model(ModelSpec(
          dims=data.dims, bits=spec.bits, num_classes=data.num_classes,
          hidden=tuple(spec.hidden), batch_norm=spec.batch_norm)),
      method=method, options=options, sparse=sparse,
      optimiser=optim.make_optimiser(spec.optimizer, row_gradients=sparse is not None),
      mask=run_mask(spec, data),
      names=tuple(method.weights) + methods.registry.TRAINER_WEIGHTS,
      items=n, batch_size=batch_size,
      steps_per_epoch=n // batch_size,  # the remainder is reshuffled next epoch
      eval_batch_size=spec.eval_batch_size)
  traced = lambda f: with_precision(f, spec.precision)
  arrays = device_arrays(data, sparse is not None, db)
  if neighbours is not None:
    arrays["neighbours"] = jnp.asarray(neighbours)
  return Run(init=traced(steps.init), train_epoch=traced(steps.train_epoch),
             encode=traced(steps.encode), arrays=arrays, epochs=spec.epochs,
             steps_per_epoch=steps.steps_per_epoch, weights=steps.names)
