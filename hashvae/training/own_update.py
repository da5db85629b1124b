"""A network part with an update of its own (methods.OwnUpdate), as the
trainer's step runs it.

The part is a top-level entry of the network's parameters, params[part].
One step of a method that declares it:
1. the network's pass on the batch (the one pass of the step), with the
   part's current parameters;
2. `steps` Adam steps of the part on its own objective, each on the step's
   batch, the pass's outputs held fixed (`update_part`);
3. the method's objective on the outputs with out[part] = the updated
   part, held fixed: its gradient reaches the rest of the network only,
   and the trainer's optimiser (and its state) covers the rest only.

The part's Adam state is TrainState.own_opt_state; a method without the
declaration has None there, and its parameters, optimiser state and
program are those it had before.
"""

from __future__ import annotations

from typing import Optional

import jax
import optax

from hashvae import methods
from hashvae.core import optim


def check_part(method: methods.Method, params: dict):
  """A one-line MethodError unless the declared part is a top-level entry of
  `params` that is not the encoder (whose first kernel the sparse input path
  and the row-wise optimiser update)."""
  own = method.own_update
  if own.part not in params:
    raise methods.MethodError(
        f"method {method.name!r}: OwnUpdate(part={own.part!r}) names no top-level "
        f"entry of the network's params; its entries: {sorted(params)}")
  if own.part == optim.FIRST_KERNEL[0]:
    raise methods.MethodError(
        f"method {method.name!r}: OwnUpdate(part={own.part!r}): the encoder is "
        "trained by the method's objective")


def split(params: dict, method: methods.Method):
  """(the parameters the method's objective trains, the declared part's, or
  None without a declaration)."""
  own = method.own_update
  if own is None:
    return params, None
  check_part(method, params)
  return {k: v for k, v in params.items() if k != own.part}, params[own.part]


def joined(trained: dict, own: Optional[methods.OwnUpdate], part) -> dict:
  """The whole parameter tree from split's two halves."""
  return trained if own is None else {**trained, own.part: part}


def init(own: Optional[methods.OwnUpdate], part):
  """The part's Adam state (None without a declared part)."""
  return None if own is None else optax.scale_by_adam(**optim.ADAM).init(part)


def with_part(state, own: Optional[methods.OwnUpdate], part_state):
  """A TrainState with the part's (params, Adam state) from update_part."""
  if own is None:
    return state
  part, opt_state = part_state
  return state._replace(params=joined(state.params, own, part), own_opt_state=opt_state)


def update_part(own: methods.OwnUpdate, part, opt_state, out: dict, batch: dict,
                hp, options):
  """The part's `own.steps` Adam steps on its objective, `out` held fixed.

  Returns (out with out[own.part] = the updated part, held fixed; (the
  updated part, its Adam state); {own.part + "_" + term: scalar} of the
  last step's objective, before that step's update).
  """
  fixed_out = jax.lax.stop_gradient(out)
  learning_rate = hp[own.learning_rate or "learning_rate"]
  if own.reset_moments:
    opt_state = init(own, part)

  def one(carry, _):
    part, opt_state = carry
    grads, terms = jax.grad(
        lambda p: own.objective(p, fixed_out, batch, hp, options), has_aux=True)(part)
    return optim.adam(grads, opt_state, part, learning_rate), terms

  (part, opt_state), terms = jax.lax.scan(one, (part, opt_state), None,
                                          length=own.steps)
  part = jax.lax.stop_gradient(part)
  return (dict(out, **{own.part: part}), (part, opt_state),
          {f"{own.part}_{k}": v[-1] for k, v in terms.items()})
