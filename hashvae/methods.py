"""The objectives, composed from the terms in losses.py, and their registry.

A method is one pure function

    objective(out, batch, hp, options) -> (loss, terms)

registered with the latent it needs. `out` is HashModel's output dict,
`batch` holds targets [batch, dims] (or, for the softmax reconstruction, a
models.SparseRows batch), label_rows [batch, classes] (zero rows
for unlabelled items) and labelled [batch] in {0, 1}; `hp` holds the traced
per-run weights (alpha, beta, gamma); `options` the static LossOptions.
`terms` is a dict of scalars logged per epoch.

To add a method, write such a function and decorate it with
`@register("name", latent="bernoulli")` (from your own module, too).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from hashvae import losses
from hashvae.models import SparseRows


@dataclasses.dataclass(frozen=True)
class LossOptions:
  """Static switches; the defaults are paper parity (METHOD.md section 3).

  Attributes:
    pair_reduction: "sum" over all B^2 pairs (parity, fact 1) or "mean".
    pair_labelled_only: PHS-GS counts only labelled-labelled pairs (fact 3's
      correction); parity counts every pair, so unlabelled items are pushed
      apart.
    pair_diagonal: include the i = j pairs (parity, fact 4).
    multilabel: "softmax" (parity, fact 5: the single-label path on multi-hot
      rows) or "sigmoid" (binary CE, similarities in [0, 1]). Ignored for
      single-label data.
    reconstruction: "softmax" (parity) or "gaussian" (squared error, the
      corrected decoder for real-valued features).
    margin_fraction: hinge margin m = margin_fraction * bits (1/3 in the study).
    multilabel_data: whether label rows may hold several ones (set from the
      dataset, not by the user).
  """

  pair_reduction: str = "sum"
  pair_labelled_only: bool = False
  pair_diagonal: bool = True
  multilabel: str = "softmax"
  reconstruction: str = "softmax"
  margin_fraction: float = 1.0 / 3.0
  multilabel_data: bool = False

  @property
  def sigmoid_labels(self) -> bool:
    return self.multilabel_data and self.multilabel == "sigmoid"


Objective = Callable[..., tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  objective: Objective
  latent: str  # "gaussian" or "bernoulli"
  classifier_on: str  # "hidden" or "sample"


METHODS: dict[str, Method] = {}


def register(name: str, *, latent: str, classifier_on: str = "hidden"):
  """Decorator: registers `objective` under `name` and returns it unchanged."""
  if latent not in ("gaussian", "bernoulli"):
    raise ValueError(f"latent must be 'gaussian' or 'bernoulli', got {latent!r}")
  if classifier_on not in ("hidden", "sample"):
    raise ValueError(f"classifier_on must be 'hidden' or 'sample', got "
                     f"{classifier_on!r}")

  def decorate(objective: Objective) -> Objective:
    METHODS[name] = Method(name, objective, latent, classifier_on)
    return objective

  return decorate


def get(name: str) -> Method:
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}")
  return METHODS[name]


# --- shared blocks ----------------------------------------------------------


def reconstruction(out, batch, options: LossOptions):
  """[batch] reconstruction loss per item.

  batch["targets"] is [batch, dims], or (softmax only) a SparseRows batch.
  """
  targets = batch["targets"]
  if options.reconstruction == "gaussian":
    return losses.gaussian_reconstruction(out["recon_logits"], targets)
  if isinstance(targets, SparseRows):
    return losses.sparse_softmax_reconstruction(
        out["recon_logits"], targets.indices, targets.values)
  return losses.softmax_reconstruction(out["recon_logits"], targets)


def class_probabilities(out, options: LossOptions):
  """[batch, classes] predicted distribution (sigmoids for multi-label)."""
  if options.sigmoid_labels:
    return jax.nn.sigmoid(out["class_logits"])
  return jax.nn.softmax(out["class_logits"])


def pointwise(out, batch, options: LossOptions):
  """Mean over the batch of the masked cross-entropy (unlabelled items count
  as zeros in the mean, as released)."""
  if options.sigmoid_labels:
    ce = losses.sigmoid_cross_entropy(out["class_logits"], batch["label_rows"],
                                      batch["labelled"])
  else:
    ce = losses.softmax_cross_entropy(out["class_logits"], batch["label_rows"])
  return jnp.mean(ce)


def pairwise(out, batch, similarity, options: LossOptions, labelled_only):
  labelled = batch["labelled"]
  weights = jnp.ones_like(similarity)
  if labelled_only:
    weights = weights * labelled[:, None] * labelled[None, :]
  if not options.pair_diagonal:
    weights = weights * (1.0 - jnp.eye(similarity.shape[0]))
  margin = options.margin_fraction * out["sample"].shape[-1]
  return losses.pairwise_hamming_margin(out["sample"], similarity, margin,
                                        weights, options.pair_reduction)


def bernoulli_objective(out, batch, hp, options, similarity, labelled_only):
  rec = jnp.mean(reconstruction(out, batch, options))
  kl = jnp.mean(losses.bernoulli_kl_uniform(out["logits"]))
  ce = pointwise(out, batch, options)
  pair = pairwise(out, batch, similarity, options, labelled_only)
  loss = rec + hp["beta"] * kl + hp["alpha"] * (hp["gamma"] * ce + pair)
  return loss, dict(loss=loss, reconstruction=rec, kl=kl, pointwise=ce,
                    pairwise=pair)


# --- the study's methods ----------------------------------------------------


@register("vdsh_s", latent="gaussian", classifier_on="sample")
def vdsh_s(out, batch, hp, options):
  """VDSH-S: Gaussian VAE + alpha * pointwise cross-entropy on the sample."""
  rec = jnp.mean(reconstruction(out, batch, options))
  kl = jnp.mean(losses.gaussian_kl(out["mu"], out["logvar"]))
  ce = pointwise(out, batch, options)
  loss = rec + hp["beta"] * kl + hp["alpha"] * ce
  return loss, dict(loss=loss, reconstruction=rec, kl=kl, pointwise=ce)


@register("phs_gs", latent="bernoulli")
def phs_gs(out, batch, hp, options):
  """PHS-GS: Bernoulli VAE + alpha * (gamma * CE + pairwise with S = Y Y^T)."""
  s = losses.label_similarity(batch["label_rows"], binary=options.sigmoid_labels)
  return bernoulli_objective(out, batch, hp, options, s,
                             labelled_only=options.pair_labelled_only)


@register("ssb_vae", latent="bernoulli")
def ssb_vae(out, batch, hp, options):
  """SSB-VAE: as PHS-GS but S = P P^T from the classifier's predictions for
  every item (gradients flow through P, as released)."""
  s = losses.prediction_similarity(class_probabilities(out, options),
                                   normalise=options.sigmoid_labels)
  return bernoulli_objective(out, batch, hp, options, s, labelled_only=False)


def unsupervised(objective):
  """The alpha = 0 case of a supervised objective."""
  return lambda out, batch, hp, options: objective(
      out, batch, dict(hp, alpha=jnp.zeros_like(hp["alpha"])), options)


register("vdsh", latent="gaussian", classifier_on="sample")(unsupervised(vdsh_s))
register("bernoulli_vae", latent="bernoulli")(unsupervised(phs_gs))
