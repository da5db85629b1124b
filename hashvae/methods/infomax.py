"""IM-Hash: SSB-VAE plus the mutual information between the items and their
predicted class (this project's method).

The idea. SSB-VAE's codes follow the classifier's predictions P through the
pairwise similarity S = P P^T; at a low labelled fraction that classifier
sees few labels and predicts soft, hedging distributions, which make every
pair half similar. IM-Hash trains the classifier on the unlabelled items
too, by maximising the mutual information between an item x and its
predicted class c over the batch (as in information-maximising
clustering):

    I(x; c) = H(pbar) - (1/B) sum_i H(p_i),   pbar = (1/B) sum_i p_i,

confident predictions for each item (the second term) that still use every
class across the batch (the first term, which keeps confident predictions
from collapsing onto one class). The loss is SSB-VAE's minus delta I:

    rec + beta KL_bern + alpha (gamma CE + L_pair(S = P P^T)) - delta I(x; c)

with H the categorical entropy on the softmax path; on the multi-label
sigmoid path each class is a Bernoulli variable and H sums their entropies.
Sharper predictions make S closer to 0/1, so the pairwise term pulls
same-class codes together and pushes the others past the margin more
decisively.

Weights: alpha, beta, gamma (SSB-VAE's) and delta (the information term).
"""

from __future__ import annotations

import jax.numpy as jnp

from hashvae.methods import blocks
from hashvae.methods.registry import register
from hashvae.methods.study import PREDICTED, bernoulli_objective

TINY = 1e-8  # keeps log(0) out of the entropies (0 log 0 = 0)


def entropy(probs, sigmoid: bool):
  """[..., classes] -> [...]: categorical entropy, or the sum of per-class
  Bernoulli entropies when `sigmoid`."""
  h = -probs * jnp.log(probs + TINY)
  if sigmoid:
    # A floor, not `1 - p + TINY`: XLA folds that into `(1 + TINY) - p`,
    # which is `1 - p` in float32, so a saturated sigmoid (p == 1 from a
    # logit above about 16.6) gave 0 * log(0) = NaN.
    q = 1.0 - probs
    h = h - q * jnp.log(jnp.maximum(q, TINY))
  return jnp.sum(h, axis=-1)


def class_information(probs, sigmoid: bool):
  """I(x; c) over the batch: H(mean_i p_i) - mean_i H(p_i). [batch, classes]
  -> scalar, in [0, log classes] on the softmax path."""
  return entropy(jnp.mean(probs, axis=0), sigmoid) - jnp.mean(entropy(probs, sigmoid))


@register("im_hash", weights=dict(alpha=1.0, beta=1.0, gamma=1.0, delta=1.0),
          extends="ssb_vae", **PREDICTED)
def im_hash(out, batch, hp, options):
  """IM-Hash: SSB-VAE minus delta x the mutual information between the
  items of the batch and their predicted class."""
  sigmoid = blocks.sigmoid_labels(options)
  probs = blocks.class_probabilities(out, options)
  s = blocks.predicted_similarity(probs, options)
  loss, terms = bernoulli_objective(out, batch, hp, options, s, labelled_only=False)
  info = class_information(probs, sigmoid)
  loss = loss - hp["delta"] * info
  return loss, dict(terms, loss=loss, class_information=info)
