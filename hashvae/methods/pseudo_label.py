"""PL-Hash: SSB-VAE whose pairwise targets are anchored on the known labels
and on confident pseudo-labels (this project's method).

The idea. SSB-VAE builds the pairwise similarity S = P P^T from the
classifier's predictions for every item, the labelled ones included, so at
a low labelled fraction its codes follow a classifier trained on few items,
and a labelled item's own label never reaches the pairwise term. PL-Hash
gives each item of the batch a class target q_i:

    q_i = y_i                       if item i is labelled,
    q_i = sg(onehot(argmax_c p_i))  if unlabelled and max_c p_ic >= tau,
    q_i = p_i                       otherwise (SSB-VAE's soft target,
                                    gradients through p_i),

with p_i the classifier's predicted distribution and sg a stop-gradient,
and trains

    rec + beta KL_bern + alpha (gamma CE_labelled + L_pair(S = Q Q^T))
        + lam * (1/B) sum_i u_i c_i CE(sg(onehot(argmax p_i)), p_i)

where u_i = 1 for unlabelled items, c_i = 1[max_c p_ic >= tau], and the
last term is the pseudo-label cross-entropy (confident predictions on
unlabelled items trained as if they were labels, as in self-training). The
pairwise term, the KL and the reconstruction are SSB-VAE's blocks, with the
same options.

Multi-label data on the sigmoid path: p_i are per-class sigmoids, an item is
confident when every class is (max(p_ic, 1 - p_ic) >= tau), its pseudo-label
is 1[p_ic > 1/2], S is Q Q^T with each q row divided by its sum (as SSB-VAE
normalises P), and the pseudo-label term is the summed binary cross-entropy.

Weights: alpha, beta, gamma (SSB-VAE's) and lam (the pseudo-label term).
Option `confidence`: tau (static; 0.9 by default, a prior choice, not tuned
on any dataset's test split).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hashvae.core import losses
from hashvae.methods import blocks
from hashvae.methods.registry import register
from hashvae.methods.study import BERNOULLI_CHOICES, BERNOULLI_OPTIONS, bernoulli_objective


def confident_pseudo_labels(probs, sigmoid: bool, confidence: float):
  """Hard pseudo-labels of predictions [batch, classes] and whether each item
  is confident [batch] (float 0/1), both without gradients."""
  probs = jax.lax.stop_gradient(probs)
  if sigmoid:
    hard = (probs > 0.5).astype(probs.dtype)
    sure = jnp.min(jnp.maximum(probs, 1.0 - probs), axis=-1) >= confidence
  else:
    hard = jax.nn.one_hot(jnp.argmax(probs, axis=-1), probs.shape[-1], dtype=probs.dtype)
    sure = jnp.max(probs, axis=-1) >= confidence
  return hard, sure.astype(probs.dtype)


def anchored_targets(probs, label_rows, labelled, hard, sure):
  """q [batch, classes]: labels where known, confident pseudo-labels, else
  the predictions themselves (with their gradients)."""
  known, pseudo = labelled[:, None], ((1.0 - labelled) * sure)[:, None]
  return known * label_rows + pseudo * hard + (1.0 - known - pseudo) * probs


def pseudo_label_loss(class_logits, hard, weights, sigmoid: bool):
  """Mean over the batch of weights [batch] x the cross-entropy of the
  logits [batch, classes] against the hard pseudo-labels."""
  if sigmoid:
    ce = losses.sigmoid_cross_entropy(class_logits, hard, weights)
  else:
    ce = weights * losses.softmax_cross_entropy(class_logits, hard)
  return jnp.mean(ce)


@register("pl_hash", weights=dict(alpha=1.0, beta=1.0, gamma=1.0, lam=1.0),
          options=dict(BERNOULLI_OPTIONS, **blocks.PREDICTED_PAIRS, confidence=0.9),
          choices=dict(BERNOULLI_CHOICES, **blocks.PREDICTED_PAIR_CHOICES),
          latent="bernoulli", extends="ssb_vae")
def pl_hash(out, batch, hp, options):
  """PL-Hash: SSB-VAE with S from the labels, confident pseudo-labels and
  otherwise the predictions, plus lam x the pseudo-label cross-entropy."""
  sigmoid = blocks.sigmoid_labels(options)
  probs = blocks.class_probabilities(out, options)
  labelled = batch["labelled"]
  hard, sure = confident_pseudo_labels(probs, sigmoid, options.confidence)
  q = anchored_targets(probs, batch["label_rows"], labelled, hard, sure)
  s = blocks.predicted_similarity(q, options)
  loss, terms = bernoulli_objective(out, batch, hp, options, s, labelled_only=False)
  pl = pseudo_label_loss(out["class_logits"], hard, (1.0 - labelled) * sure, sigmoid)
  loss = loss + hp["lam"] * pl
  unlabelled = jnp.maximum(jnp.sum(1.0 - labelled), 1.0)
  return loss, dict(terms, loss=loss, pseudo_label=pl,
                    confident_fraction=jnp.sum((1.0 - labelled) * sure) / unlabelled)
