"""Adam, and two row-wise forms of it for the first kernel on the sparse path.

`make_optimiser(mode, row_gradients)` gives an `Optimiser`; the training
step calls `update(grads, state, params, learning_rate, deferred)` and the
epoch scans with `scan`. Every mode keeps optax's ScaleByAdamState over the
whole parameter tree, so checkpoints and tests are shared.

- dense Adam ("exact" with dense inputs): optax's scale_by_adam on every
  weight, as released.
- exact row Adam ("exact" with sparse inputs): the first kernel's gradient
  comes as the rows a batch read (`Gradients.rows`); every kernel row still
  gets Adam's update (rows outside the batch have a zero gradient, so their
  moments only decay), with the moments' decay deferred for up to
  DECAY_CHUNK steps (`dense_adam_rows`): the same update up to float
  rounding, half the memory traffic.
- lazy Adam ("fast"): only the rows a batch read, and their moments, are
  updated, with the bias correction of the global step count, as the
  lazy/sparse Adam of other frameworks does. Not the released optimiser.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from hashvae.core.sparse_rows import gather_rows

ADAM = dict(b1=0.9, b2=0.999, eps=1e-7)  # the released Keras settings
FIRST_KERNEL = ("encoder", "Dense_0", "kernel")  # the [dims, hidden] kernel
# Most steps dense_adam_rows defers the moments' decay for: 0.9**100 = 2.7e-5,
# so the stored moments (divided by it) stay far from float32's range limits.
DECAY_CHUNK = 100


class Gradients(NamedTuple):
  """A step's gradients: the parameter tree's, and, on the sparse path, the
  first kernel's as the rows a batch read (its entry in `tree` unused)."""

  tree: Any
  rows: Optional[jax.Array] = None  # [size] distinct, ascending, padded with dims
  row_grads: Optional[jax.Array] = None  # [size, features]


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


def adam_step(param, mu, nu, count, learning_rate):
  """param - lr * mu_hat / (sqrt(nu_hat) + eps), optax's arithmetic."""
  mu_hat = optax.tree.bias_correction(mu, ADAM["b1"], count)
  nu_hat = optax.tree.bias_correction(nu, ADAM["b2"], count)
  return param - learning_rate * (mu_hat / (jnp.sqrt(nu_hat) + ADAM["eps"]))


def decays(steps):
  """(b1**steps, b2**steps) as float32 scalars."""
  steps = jnp.asarray(steps, jnp.float32)
  return (jnp.power(jnp.float32(ADAM["b1"]), steps),
          jnp.power(jnp.float32(ADAM["b2"]), steps))


def apply_decay(mu, nu, steps):
  """The true moments from ones stored with `steps` decays deferred."""
  b1, b2 = decays(steps)
  return b1 * mu, b2 * nu


def dense_adam_rows(kernel, mu, nu, rows, grad_rows, count, learning_rate,
                    deferred):
  """Adam on every row of the kernel, from the gradient's nonzero rows, with
  the moments' decay deferred.

  The same update as optax's scale_by_adam given the dense gradient that is
  `grad_rows` at `rows` and zero elsewhere. The decay is not written to
  memory every step: `mu` and `nu` come in divided by b1**(deferred - 1)
  and b2**(deferred - 1) and go out divided by b1**deferred and
  b2**deferred, so a step adds the scaled gradient terms to the batch's
  rows only and reads the true moments in the one pass that updates the
  kernel (4 array passes instead of 8: the step is bound by memory
  traffic). `apply_decay(mu, nu, steps)` brings them back to the true
  moments; keep the steps between calls short enough that b1**steps stays
  normal (`scan_deferring_decay` uses at most DECAY_CHUNK).

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


def lazy_adam_rows(kernel, mu, nu, rows, grad_rows, count, learning_rate,
                   deferred=None):
  """Adam on the kernel rows a batch read; other rows and their moments untouched.

  Arguments as dense_adam_rows (`deferred` is ignored). The bias correction
  uses the global step count; a batch that reads every row gets exactly the
  dense update.
  """
  take = lambda a: gather_rows(a, rows)
  m = ADAM["b1"] * take(mu) + (1 - ADAM["b1"]) * grad_rows
  v = ADAM["b2"] * take(nu) + (1 - ADAM["b2"]) * jnp.square(grad_rows)
  put = lambda a, new: a.at[rows].set(new, mode="drop", indices_are_sorted=True)
  return (put(kernel, adam_step(take(kernel), m, v, count, learning_rate)),
          put(mu, m), put(nu, v))


def adam(grads, opt_state, params, learning_rate):
  """Dense Adam on every weight (the released optimiser), through optax."""
  updates, opt_state = optax.scale_by_adam(**ADAM).update(grads, opt_state, params)
  params = jax.tree.map(lambda p, u: p - learning_rate * u, params, updates)
  return params, opt_state


def adam_with_kernel_rows(update_rows, grads: Gradients, opt_state, params,
                          learning_rate, deferred):
  """Adam through optax on every weight but the first kernel, whose gradient
  comes as rows; `update_rows` (dense_adam_rows or lazy_adam_rows) updates it."""
  drop = lambda tree: replace_path(tree, FIRST_KERNEL, None)
  rest = optax.ScaleByAdamState(count=opt_state.count, mu=drop(opt_state.mu),
                                nu=drop(opt_state.nu))
  new_params, rest = adam(drop(grads.tree), rest, drop(params), learning_rate)
  kernel, mu, nu = update_rows(
      get_path(params, FIRST_KERNEL), get_path(opt_state.mu, FIRST_KERNEL),
      get_path(opt_state.nu, FIRST_KERNEL), grads.rows, grads.row_grads, rest.count,
      learning_rate, deferred)
  put = lambda tree, value: replace_path(tree, FIRST_KERNEL, value)
  return put(new_params, kernel), optax.ScaleByAdamState(
      count=rest.count, mu=put(rest.mu, mu), nu=put(rest.nu, nu))


def plain_scan(step, state, xs):
  """lax.scan of step(state, (*xs[t], 1)) over the steps of xs."""
  steps = xs[0].shape[0]
  return jax.lax.scan(step, state, (*xs, jnp.ones(steps, jnp.int32)))


def scan_deferring_decay(step, state, xs):
  """lax.scan of step(state, (*xs[t], deferred)) over the steps of xs (a
  tuple of [steps, ...] arrays) for dense_adam_rows: chunks of at most
  DECAY_CHUNK steps, the first kernel's deferred moment decay applied after
  each, so the state between chunks (and so between epochs) holds the true
  moments. `state` is a NamedTuple with an `opt_state` field.

  Returns (state, per-step outputs [steps]).
  """
  if ADAM["b1"] ** DECAY_CHUNK < 1e-20:  # the stored moments would overflow
    raise ValueError(f"DECAY_CHUNK={DECAY_CHUNK}: b1**DECAY_CHUNK must stay "
                     "above 1e-20")

  def chunk(state, chunk_xs):  # [k, ...] each
    k = chunk_xs[0].shape[0]
    state, out = jax.lax.scan(
        step, state, (*chunk_xs, jnp.arange(1, k + 1, dtype=jnp.int32)))
    opt = state.opt_state
    mu, nu = apply_decay(get_path(opt.mu, FIRST_KERNEL),
                         get_path(opt.nu, FIRST_KERNEL), k)
    opt = opt._replace(mu=replace_path(opt.mu, FIRST_KERNEL, mu),
                       nu=replace_path(opt.nu, FIRST_KERNEL, nu))
    return state._replace(opt_state=opt), out

  steps = xs[0].shape[0]
  whole = steps - steps % DECAY_CHUNK
  parts = []
  if whole:
    state, out = jax.lax.scan(chunk, state, tuple(
        a[:whole].reshape(-1, DECAY_CHUNK, *a.shape[1:]) for a in xs))
    parts.append(jax.tree.map(lambda a: a.reshape(whole, *a.shape[2:]), out))
  if steps > whole:
    state, out = chunk(state, tuple(a[whole:] for a in xs))
    parts.append(out)
  return state, jax.tree.map(lambda *a: jnp.concatenate(a), *parts)


@dataclasses.dataclass(frozen=True)
class Optimiser:
  """init(params) -> state; update(Gradients, state, params, lr, deferred) ->
  (params, state); scan(step, train_state, xs) runs an epoch's steps."""

  init: Callable
  update: Callable
  scan: Callable


def dense_or_rows(rows: Callable, scan: Callable, name: str):
  """A mode that is optax's Adam on dense gradients and `rows` (dense_adam_rows
  or lazy_adam_rows) for the first kernel's row gradients, scanned by `scan`."""
  def make(row_gradients: bool) -> Optimiser:
    init = optax.scale_by_adam(**ADAM).init
    if not row_gradients:
      if rows is lazy_adam_rows:
        raise ValueError(f"optimizer={name!r} updates the first kernel's rows of the "
                         "features present in a batch, which needs the sparse input "
                         "path (model.sparse_input 'sparse', or 'auto' on sparse data)")
      return Optimiser(init, lambda grads, state, params, lr, deferred: adam(
          grads.tree, state, params, lr), plain_scan)
    return Optimiser(init, lambda grads, state, params, lr, deferred: adam_with_kernel_rows(
        rows, grads, state, params, lr, deferred), scan)
  return make


# config.optimizer -> (row_gradients: bool) -> Optimiser. Another module may
# add a mode (the benchmark's ablations do).
OPTIMISERS: dict[str, Callable[[bool], Optimiser]] = {
    "exact": dense_or_rows(dense_adam_rows, scan_deferring_decay, "exact"),
    "fast": dense_or_rows(lazy_adam_rows, plain_scan, "fast"),
}


def make_optimiser(mode: str, row_gradients: bool) -> Optimiser:
  """The optimiser of config.optimizer `mode`; `row_gradients`: the first
  kernel's gradient comes as rows (the sparse input path)."""
  if mode not in OPTIMISERS:
    raise ValueError(f"optimizer={mode!r}: one of {sorted(OPTIMISERS)}")
  return OPTIMISERS[mode](row_gradients)
