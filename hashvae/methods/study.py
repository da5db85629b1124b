"""The study's methods (METHOD.md section 3) and their unsupervised cases.

    VDSH-S:  rec + beta KL_gauss + alpha CE(classifier on the sample)
    PHS-GS:  rec + beta KL_bern + alpha (gamma CE + L_pair(S = Y Y^T))
    SSB-VAE: as PHS-GS with S = P P^T from the predictions (gradients through P)
"""

from __future__ import annotations

import jax.numpy as jnp

from hashvae.core import losses
from hashvae.methods import blocks
from hashvae.methods.registry import register

GAUSSIAN_OPTIONS = dict(blocks.RECONSTRUCTION, **blocks.LABELS)
GAUSSIAN_CHOICES = dict(blocks.RECONSTRUCTION_CHOICES, **blocks.LABEL_CHOICES)
BERNOULLI_OPTIONS = dict(GAUSSIAN_OPTIONS, **blocks.PAIRS)
BERNOULLI_CHOICES = dict(GAUSSIAN_CHOICES, **blocks.PAIR_CHOICES)
BERNOULLI = dict(options=BERNOULLI_OPTIONS, choices=BERNOULLI_CHOICES, latent="bernoulli")
# Methods whose S comes from the predictions.
PREDICTED = dict(BERNOULLI, options=dict(BERNOULLI_OPTIONS, **blocks.PREDICTED_PAIRS),
                 choices=dict(BERNOULLI_CHOICES, **blocks.PREDICTED_PAIR_CHOICES))
GAUSSIAN = dict(options=GAUSSIAN_OPTIONS, choices=GAUSSIAN_CHOICES, latent="gaussian",
                classifier_on="sample")


def bernoulli_objective(out, batch, hp, options, similarity, labelled_only):
  rec = jnp.mean(blocks.reconstruction(out, batch, options))
  kl = jnp.mean(losses.bernoulli_kl_uniform(out["logits"]))
  ce = blocks.pointwise(out, batch, options)
  pair = blocks.pairwise(out["sample"], batch, similarity, options, labelled_only)
  loss = rec + hp["beta"] * kl + hp["alpha"] * (hp["gamma"] * ce + pair)
  return loss, dict(loss=loss, reconstruction=rec, kl=kl, pointwise=ce,
                    pairwise=pair)


@register("vdsh_s", weights=dict(alpha=1.0, beta=1.0), **GAUSSIAN)
def vdsh_s(out, batch, hp, options):
  """VDSH-S: Gaussian VAE + alpha * pointwise cross-entropy on the sample."""
  rec = jnp.mean(blocks.reconstruction(out, batch, options))
  kl = jnp.mean(losses.gaussian_kl(out["mu"], out["logvar"]))
  ce = blocks.pointwise(out, batch, options)
  loss = rec + hp["beta"] * kl + hp["alpha"] * ce
  return loss, dict(loss=loss, reconstruction=rec, kl=kl, pointwise=ce)


@register("phs_gs", weights=dict(alpha=1.0, beta=1.0, gamma=1.0), **BERNOULLI)
def phs_gs(out, batch, hp, options):
  """PHS-GS: Bernoulli VAE + alpha * (gamma * CE + pairwise with S = Y Y^T)."""
  s = losses.label_similarity(batch["label_rows"], binary=blocks.sigmoid_labels(options))
  return bernoulli_objective(out, batch, hp, options, s,
                             labelled_only=options.pair_labelled_only)


@register("ssb_vae", weights=dict(alpha=1.0, beta=1.0, gamma=1.0), **PREDICTED)
def ssb_vae(out, batch, hp, options):
  """SSB-VAE: as PHS-GS but S = P P^T from the classifier's predictions for
  every item (gradients flow through P, as released)."""
  s = blocks.predicted_similarity(blocks.class_probabilities(out, options), options)
  return bernoulli_objective(out, batch, hp, options, s, labelled_only=False)


@register("vdsh", weights=dict(beta=1.0), **GAUSSIAN)
def vdsh(out, batch, hp, options):
  """VDSH: the unsupervised Gaussian VAE (VDSH-S with alpha = 0)."""
  return vdsh_s(out, batch, dict(hp, alpha=jnp.zeros_like(hp["beta"])), options)


@register("bernoulli_vae", weights=dict(beta=1.0), **BERNOULLI)
def bernoulli_vae(out, batch, hp, options):
  """The unsupervised Bernoulli VAE (PHS-GS with alpha = 0)."""
  zero = jnp.zeros_like(hp["beta"])
  return phs_gs(out, batch, dict(hp, alpha=zero, gamma=zero), options)
