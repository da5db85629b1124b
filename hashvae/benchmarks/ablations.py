"""The training step with a part taken out, as a registered optimiser mode and
a registered method, and the train section's step_breakdown that times them:

- optimizer "sgd": plain SGD (`param - lr * grad`) on every weight, the
  first kernel updated by the rows its batch read on the sparse path. It
  keeps Adam's state untouched (as every mode keeps optax's
  ScaleByAdamState), so the state a step carries is the same size as
  Adam's and only Adam's arithmetic and memory traffic are gone.
- method "ssb_vae_no_reconstruction": ssb_vae's weights, options and
  network, its objective without the reconstruction term (logged as 0):
  the decoder and its softmax are then unused and compile away.

Registration is scoped (`registered()`), not done on import: a registry
that lists modes and methods (error messages, a sweep over every method)
then never sees these outside a benchmark.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import optax

from hashvae import methods
from hashvae.benchmarks import common
from hashvae.core import losses, optim, sparse
from hashvae.methods import blocks
from hashvae.sweep import specs

SGD = "sgd"
NO_RECONSTRUCTION = "ssb_vae_no_reconstruction"
BASE_METHOD = "ssb_vae"


def sgd_update(grads: optim.Gradients, opt_state, params, learning_rate, deferred):
  """params - lr * grads; on the sparse path the first kernel by its rows
  (its entry in grads.tree is unused there). Adam's state passes through."""
  del deferred  # nothing is deferred
  step = lambda p, g: p - learning_rate * g
  if grads.rows is None:
    return jax.tree.map(step, params, grads.tree), opt_state
  drop = lambda tree: optim.replace_path(tree, optim.FIRST_KERNEL, None)
  rest = jax.tree.map(step, drop(params), drop(grads.tree))
  kernel = optim.get_path(params, optim.FIRST_KERNEL).at[grads.rows].add(
      -learning_rate * grads.row_grads, mode="drop", indices_are_sorted=True)
  return optim.replace_path(rest, optim.FIRST_KERNEL, kernel), opt_state


def sgd(row_gradients: bool) -> optim.Optimiser:
  """The "sgd" mode's optimiser (either input path)."""
  del row_gradients  # sgd_update reads the gradients' form from them
  return optim.Optimiser(init=optax.scale_by_adam(**optim.ADAM).init,
                         update=sgd_update, scan=optim.plain_scan)


def ssb_vae_no_reconstruction(out, batch, hp, options):
  """ssb_vae's objective (study.bernoulli_objective with S = P P^T) without
  the reconstruction term."""
  similarity = blocks.predicted_similarity(blocks.class_probabilities(out, options),
                                           options)
  kl = jnp.mean(losses.bernoulli_kl_uniform(out["logits"]))
  ce = blocks.pointwise(out, batch, options)
  pair = blocks.pairwise(out["sample"], batch, similarity, options,
                         labelled_only=False)
  loss = hp["beta"] * kl + hp["alpha"] * (hp["gamma"] * ce + pair)
  return loss, dict(loss=loss, reconstruction=jnp.zeros_like(loss), kl=kl,
                    pointwise=ce, pairwise=pair)


def register():
  """Adds the "sgd" mode to optim.OPTIMISERS and the method to the method
  registry; returns the names it added (those not there already)."""
  added = []
  if SGD not in optim.OPTIMISERS:
    optim.OPTIMISERS[SGD] = sgd
    added.append(SGD)
  if NO_RECONSTRUCTION not in methods.METHODS:
    base = methods.get(BASE_METHOD)
    methods.register(NO_RECONSTRUCTION, weights=base.weights, options=base.options,
                     choices=base.choices, model=base.model)(ssb_vae_no_reconstruction)
    added.append(NO_RECONSTRUCTION)
  return added


@contextlib.contextmanager
def registered():
  """The ablations registered for the block (runs are built, and so look
  them up, inside it); afterwards the registries are as they were."""
  added = register()
  try:
    yield
  finally:
    if SGD in added:
      del optim.OPTIMISERS[SGD]
    if NO_RECONSTRUCTION in added:
      del methods.METHODS[NO_RECONSTRUCTION]


def ablated(config, adam: bool = True, reconstruction: bool = True):
  """A copy of `config` training ssb_vae without Adam (SGD in its place)
  and/or without the reconstruction term; the ablated method takes
  ssb_vae's weights. Build the run inside `registered()`."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    if not adam:
      config.optimizer = SGD
    if not reconstruction:
      config.methods = (NO_RECONSTRUCTION,)
      if BASE_METHOD in config.weights:
        config.weights[NO_RECONSTRUCTION] = config.weights[BASE_METHOD]
  return config


# step_breakdown's variants: (Adam kept, reconstruction term kept).
VARIANTS = dict(full=(True, True), no_adam=(False, True),
                no_reconstruction=(True, False), neither=(False, False))


def step_breakdown(config, dataset, runs, rounds):
  """Where a vmapped exact sparse step's time goes: the same program with
  SGD in place of Adam, without the reconstruction term, and without both
  (py), timed side by side. The differences are each part's
  share (the parts overlap a little: they share memory traffic)."""
  config = common.with_modes(config, "sparse", "exact")
  programs = {}
  with registered():  # the runs look the ablations up when built
    for name, (adam, reconstruction) in VARIANTS.items():
      cfg = ablated(config, adam=adam, reconstruction=reconstruction)
      run = specs.make_run(cfg, dataset)
      programs[name] = common.vmapped_program(run, common.first_runs(cfg, runs, cfg.methods[0]))
      programs[name]()  # warm-up
  times = common.take_turns(programs, rounds)
  ms = common.ms_per_step(times, run.steps_per_epoch * runs)
  share = lambda k: (ms["full"] - ms[k]) / ms["full"]
  widths = sparse.row_widths(dataset.database.inputs)
  return dict(
      figure="step_breakdown", dataset="snippets", runs=runs, rounds=rounds,
      training_items=dataset.database_size, ms_per_run_step=ms,
      adam_share=share("no_adam"),
      reconstruction_share=share("no_reconstruction"),
      rest_share=ms["neither"] / ms["full"],
      padded_width=int(widths.max()), mean_nonzeros=float(widths.mean()),
      how="median ms per run-step of each variant, one vmapped program each "
          "(optimizer 'sgd', method 'ssb_vae_no_reconstruction': "
          "hashvae/benchmarks/py); share = 1 - variant / full")
