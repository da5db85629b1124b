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
from hashvae.models import HashModel

HPARAM_NAMES = ("alpha", "beta", "gamma", "learning_rate", "temperature")


class TrainState(NamedTuple):
  """Everything a run carries between steps (one run; vmap adds [runs])."""

  params: Any
  batch_stats: Any
  opt_state: Any
  step: jax.Array  # int32, optimiser steps taken
  loop_key: jax.Array  # shuffles and sampling noise derive from it
  labelled: jax.Array  # [items] float32 in {0, 1}
  hparams: dict


def device_arrays(data: Dataset) -> dict:
  """The dataset as device arrays: training set (train + validation) and queries."""
  db = data.database
  labels = db.labels
  rows = (labels.astype(np.float32) if data.multilabel
          else np.eye(data.num_classes, dtype=np.float32)[labels])
  return dict(inputs=jnp.asarray(db.inputs), targets=jnp.asarray(db.targets),
              label_rows=jnp.asarray(rows),
              query_inputs=jnp.asarray(data.test.inputs))


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
  optimiser = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-7)
  eval_batch = config.eval_batch_size

  def init(arrays, key, level, hparams):
    init_key, mask_key, loop_key = jax.random.split(key, 3)
    if mask_seed is not None:  # the released protocol: one mask for all seeds
      mask_key = jax.random.key(mask_seed)
    variables = model.init({"params": init_key, "sample": init_key},
                           arrays["inputs"][:1], 1.0, train=False)
    params = variables["params"]
    return TrainState(
        params=params, batch_stats=variables.get("batch_stats", {}),
        opt_state=optimiser.init(params), step=jnp.zeros((), jnp.int32),
        loop_key=loop_key, labelled=label_mask(mask_key, level, segments),
        hparams={k: jnp.asarray(hparams[k], jnp.float32) for k in HPARAM_NAMES})

  def train_step(arrays, state: TrainState, idx):
    labelled = state.labelled[idx]
    batch = dict(targets=arrays["targets"][idx],
                 label_rows=arrays["label_rows"][idx] * labelled[:, None],
                 labelled=labelled)
    noise_key = jax.random.fold_in(jax.random.fold_in(state.loop_key, 1),
                                   state.step)
    hp = state.hparams

    def loss_fn(params):
      out, updated = model.apply(
          {"params": params, "batch_stats": state.batch_stats},
          arrays["inputs"][idx], hp["temperature"], train=True,
          rngs={"sample": noise_key}, mutable=["batch_stats"])
      loss, terms = method.objective(out, batch, hp, options)
      return loss, (terms, updated.get("batch_stats", {}))

    grads, (terms, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimiser.update(grads, state.opt_state, state.params)
    params = jax.tree.map(lambda p, u: p - hp["learning_rate"] * u,
                          state.params, updates)
    return state._replace(params=params, batch_stats=batch_stats,
                          opt_state=opt_state, step=state.step + 1), terms

  def train_epoch(arrays, state: TrainState):
    epoch = state.step // steps_per_epoch
    shuffle_key = jax.random.fold_in(jax.random.fold_in(state.loop_key, 0),
                                     epoch)
    order = jax.random.permutation(shuffle_key, n)
    batches = order[:steps_per_epoch * batch_size].reshape(steps_per_epoch,
                                                           batch_size)
    state, terms = jax.lax.scan(lambda s, i: train_step(arrays, s, i), state,
                                batches)
    return state, jax.tree.map(jnp.mean, terms)

  def encode(arrays, state: TrainState):
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    scores = lambda x: model.apply(variables, x, method=HashModel.code_scores)
    code = lambda x: (jax.lax.map(scores, x, batch_size=eval_batch) > 0
                      ).astype(jnp.uint8)
    return dict(db_codes=code(arrays["inputs"]),
                query_codes=code(arrays["query_inputs"]))

  return Run(init=init, train_epoch=train_epoch, encode=encode,
             arrays=device_arrays(data), epochs=config.epochs,
             steps_per_epoch=steps_per_epoch)
