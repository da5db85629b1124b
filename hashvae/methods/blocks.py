"""Blocks the methods share: reconstruction, the pointwise and pairwise
supervised terms, and the options they read (with their paper-parity
defaults, METHOD.md section 3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hashvae.core import losses
from hashvae.methods import registry

# "softmax" (parity) or "gaussian" (squared error, the corrected decoder for
# real-valued features).
RECONSTRUCTION = dict(reconstruction="softmax")
RECONSTRUCTION_CHOICES = dict(reconstruction=("softmax", "gaussian"))
# Multi-label data: "softmax" (parity, fact 5: the single-label path on
# multi-hot rows) or "sigmoid" (binary CE, similarities in [0, 1]). Ignored
# for single-label data.
LABELS = dict(multilabel="softmax")
LABEL_CHOICES = dict(multilabel=("softmax", "sigmoid"))
# The pairwise term: "sum" over all B^2 pairs (parity, fact 1) or "mean";
# PHS-GS counts only labelled-labelled pairs (fact 3's correction) or every
# pair (parity); include the i = j pairs (parity, fact 4); hinge margin
# m = margin_fraction * bits (1/3 in the study).
PAIRS = dict(pair_reduction="sum", pair_labelled_only=False, pair_diagonal=True,
             margin_fraction=1.0 / 3.0)
PAIR_CHOICES = dict(pair_reduction=("sum", "mean"))
# S from the predictions on the sigmoid path: each row of P raised to this
# power before its row-sum normalisation (1: a drawn label's match
# probability; larger sharpens confident rows, flat rows stay 1 / classes).
PREDICTED_PAIRS = dict(similarity_power=1.0)
PREDICTED_PAIR_CHOICES = dict(similarity_power=registry.AtLeast(1.0))


def sigmoid_labels(options) -> bool:
  """Whether labels take the multi-label sigmoid path."""
  return options.multilabel_data and options.multilabel == "sigmoid"


def reconstruction(out, batch, options):
  """[batch] reconstruction loss per item (options.reconstruction)."""
  if options.reconstruction == "gaussian":
    return losses.gaussian_reconstruction(out["recon_logits"], batch["targets"])
  return losses.softmax_reconstruction(out["recon_logits"], batch["targets"])


def class_probabilities(out, options):
  """[batch, classes] predicted distribution (sigmoids for multi-label)."""
  if sigmoid_labels(options):
    return jax.nn.sigmoid(out["class_logits"])
  return jax.nn.softmax(out["class_logits"])


def predicted_similarity(probs, options):
  """[batch, batch] S = P P^T from predictions or targets [batch, classes]
  (row-normalised, after options.similarity_power, on the sigmoid path)."""
  sigmoid = sigmoid_labels(options)
  return losses.prediction_similarity(probs, normalise=sigmoid,
                                      power=options.similarity_power if sigmoid else 1.0)


def pointwise(out, batch, options):
  """Mean over the batch of the masked cross-entropy (unlabelled items count
  as zeros in the mean, as released)."""
  if sigmoid_labels(options):
    ce = losses.sigmoid_cross_entropy(out["class_logits"], batch["label_rows"],
                                      batch["labelled"])
  else:
    ce = losses.softmax_cross_entropy(out["class_logits"], batch["label_rows"])
  return jnp.mean(ce)


def pairwise(codes, batch, similarity, options, labelled_only):
  """The pairwise Hamming-margin term on relaxed codes [batch, bits]."""
  labelled = batch["labelled"]
  weights = jnp.ones_like(similarity)
  if labelled_only:
    weights = weights * labelled[:, None] * labelled[None, :]
  if not options.pair_diagonal:
    weights = weights * (1.0 - jnp.eye(similarity.shape[0]))
  margin = options.margin_fraction * codes.shape[-1]
  return losses.pairwise_hamming_margin(codes, similarity, margin, weights,
                                        options.pair_reduction)
