"""CV-Hash: SSB-VAE whose classifier must agree with itself on a
word-dropped view of each document (this project's method).

The idea. At a low labelled fraction SSB-VAE's classifier sees few labels,
and its predictions P shape every code through S = P P^T. The unlabelled
items can still teach it something: a document with a few of its words
removed is the same document, so its predicted class should not change.
Each training step encodes a second view x~ of every item, the input with
each word dropped with probability rho and the kept ones scaled by
1 / (1 - rho) (so a layer's expected input is unchanged), and trains

    rec + beta KL_bern + alpha (gamma CE + L_pair(S = P P^T))
        + kappa (1/B) sum_i CE(sg(p_i), p~_i)

with p_i the clean view's predicted class distribution, p~_i the dropped
view's, and sg a stop-gradient: the clean view is the target, as in
consistency training for text classification. CE is the categorical
cross-entropy (the summed binary cross-entropy on the multi-label sigmoid
path). The first four terms are SSB-VAE's blocks, with the same options;
every item, labelled or not, takes part in the consistency term. The view
goes through the network as at inference (batch norm's running averages),
so that its statistics do not enter the averages the codes are computed
with; with the view in the running averages, kappa = 1 fell below
SSB-VAE on Snippets' validation split (p@100 0.738 against 0.786).

Asking the codes to agree as well (a BCE between the two views' code
probabilities) was tried and dropped: at weight 1 it cost Snippets about
0.1 of validation p@100 (docs/own_methods.md).

Weights: alpha, beta, gamma (SSB-VAE's) and kappa (the consistency term).
rho = WORD_DROP, a prior choice (not tuned on any dataset's test split); a
method with another rate registers its own model (`views_model(spec, rate)`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from hashvae.core import losses
from hashvae.core.models import HashModel
from hashvae.core.sparse_rows import SparseEntries, SparseRows
from hashvae.methods import blocks
from hashvae.methods.registry import register
from hashvae.methods.study import PREDICTED, bernoulli_objective

WORD_DROP = 0.2


def drop_words(key, x, rate: float):
  """x ([batch, dims] dense, or a SparseRows / SparseEntries batch) with each
  stored value zeroed with probability `rate` and the others divided by
  1 - rate."""
  sparse = isinstance(x, (SparseRows, SparseEntries))
  values = x.values if sparse else x
  keep = jax.random.bernoulli(key, 1.0 - rate, values.shape)
  dropped = jnp.where(keep, values / (1.0 - rate), 0.0).astype(values.dtype)
  return x._replace(values=dropped) if sparse else dropped


class ViewsModel(HashModel):
  """The study's Bernoulli network, plus the class logits
  (`view_class_logits`, [batch, classes]) of a word-dropped view."""

  word_drop: float = WORD_DROP

  def __call__(self, x, temperature, train: bool = True):
    out = super().__call__(x, temperature, train)
    # train=False: batch norm reads its running averages (see the module
    # docstring).
    h = self.encoder(drop_words(self.make_rng("sample"), x, self.word_drop), train=False)
    return dict(out, view_class_logits=self.classifier(h))


def views_model(spec, rate: float = WORD_DROP):
  """ViewsModel for a ModelSpec, dropping words at `rate`."""
  return ViewsModel(**dataclasses.asdict(spec), word_drop=rate)


def class_consistency(probs, view_class_logits, sigmoid: bool):
  """(1/B) sum_i CE(sg(p_i), p~_i) from the clean view's predictions and the
  dropped view's logits, both [batch, classes]."""
  target = jax.lax.stop_gradient(probs)
  if sigmoid:
    ce = losses.sigmoid_cross_entropy(view_class_logits, target, 1.0)
  else:
    ce = losses.softmax_cross_entropy(view_class_logits, target)
  return jnp.mean(ce)


@register("cv_hash", weights=dict(alpha=1.0, beta=1.0, gamma=1.0, kappa=1.0),
          model=views_model, extends="ssb_vae", **PREDICTED)
def cv_hash(out, batch, hp, options):
  """CV-Hash: SSB-VAE plus kappa x the cross-entropy of each item's
  word-dropped view against its own prediction."""
  probs = blocks.class_probabilities(out, options)
  s = blocks.predicted_similarity(probs, options)
  loss, terms = bernoulli_objective(out, batch, hp, options, s, labelled_only=False)
  classes = class_consistency(probs, out["view_class_logits"], blocks.sigmoid_labels(options))
  loss = loss + hp["kappa"] * classes
  return loss, dict(terms, loss=loss, class_consistency=classes)
