"""SSB-VAE's supervision on other methods: the semi-supervised forms.

SSB-VAE (METHOD.md section 3) supervises a Bernoulli VAE with two terms on a
classifier head: the masked cross-entropy on the observed labels, and a
pairwise Hamming-margin term whose targets S = P P^T come from the
classifier's predictions for every item, labelled or not (gradients flow
through P, as released). `with_predicted_pairs(base, name)` registers the
method

    L_name = L_base + alpha * (gamma * CE + L_pair(S = P P^T))

for a registered base whose network gives `class_logits` [batch, classes]
and a relaxed code in [0, 1]^bits that thresholds at 1/2 to the hash code
(`codes(out)`: the Bernoulli sample, or sigmoid of a Gaussian sample whose
sign is the code): the base's objective, network, options and neighbours, plus SSB's
pointwise and pairwise blocks (blocks.pointwise, blocks.pairwise) and their
options with SSB-VAE's paper-parity defaults. With alpha = 0 the method is
its base exactly. The label-fraction protocol is everyone's: only the
observed labels enter the cross-entropy, and S needs no label at all.

Defaults: alpha = 0.001 and gamma = 1000 (cross-entropy weight 1, pair
weight 0.001), the released SSB-VAE setting at level 0.1 on 20 Newsgroups
(16 and 32 bits; TMC's has the same alpha). The released rows vary over
eight decades between levels and corpora, so the weights are for
`launch.tune` to choose on validation, as every method's are.

The forms registered here (FORMS) are those of the unsupervised text
methods with the highest validation p@100 on Snippets at 16 bits with
their default weights (seed 0; docs/methods_text.md, "Semi-supervised
forms"): PairRec (0.697) and SNUH (0.678 at its default beta, which was
itself chosen on that validation split), and NbrReg (0.620), the second
before SNUH's default was set. NbrReg's codes are Gaussian with the code
the sign of the sample's mean, so its pair term reads sigmoid(sample),
above 1/2 exactly where the sample is positive; SNUH's means lie in
(0, 1) and threshold at 1/2, so its pair term reads the mean. WISH, the
strongest unsupervised method on the TMC subset (docs/results_field.md),
has a form too.
"""

from __future__ import annotations

from typing import Callable

import jax

from hashvae.methods import blocks, nbrreg, pairrec, registry, snuh, wish  # noqa: F401 (bases)

SSB_WEIGHTS = dict(alpha=0.001, gamma=1000.0)
SSB_OPTIONS = dict(blocks.LABELS, **blocks.PAIRS, **blocks.PREDICTED_PAIRS)
SSB_CHOICES = dict(blocks.LABEL_CHOICES, **blocks.PAIR_CHOICES,
                   **blocks.PREDICTED_PAIR_CHOICES)


def bernoulli_sample(out):
  return out["sample"]


def predicted_pair_terms(out, batch, hp, options, codes=bernoulli_sample):
  """(alpha (gamma CE + L_pair), {pointwise, pairwise}): SSB-VAE's supervised
  terms on the network's class_logits and relaxed codes(out) [batch, bits]."""
  ce = blocks.pointwise(out, batch, options)
  s = blocks.predicted_similarity(blocks.class_probabilities(out, options), options)
  pair = blocks.pairwise(codes(out), batch, s, options, labelled_only=False)
  return hp["alpha"] * (hp["gamma"] * ce + pair), dict(pointwise=ce, pairwise=pair)


def with_predicted_pairs(base: str, name: str, codes: Callable = bernoulli_sample):
  """Registers `name`: the registered method `base` plus SSB-VAE's pointwise
  and predicted-pair terms on codes(out), the relaxed codes [batch, bits]
  (module docstring). Returns its objective."""
  method = registry.get(base)
  clash = sorted((set(SSB_WEIGHTS) & set(method.weights))
                 | {k for k in SSB_OPTIONS if method.options.get(k, SSB_OPTIONS[k])
                    != SSB_OPTIONS[k]})
  if clash:  # an option both declare alike is one option
    raise registry.MethodError(f"method {base!r} already declares {clash}: its "
                               "semi-supervised form would shadow them")

  def objective(out, batch, hp, options):
    loss, terms = method.objective(out, batch, hp, options)
    supervised, more = predicted_pair_terms(out, batch, hp, options, codes)
    loss = loss + supervised
    return loss, dict(terms, **more, loss=loss)

  objective.__doc__ = (f"{base} + alpha * (gamma * CE + pairwise with S = P P^T from "
                       "the predictions): SSB-VAE's supervision on "
                       f"{base}'s network.")
  return registry.register(
      name, weights=dict(method.weights, **SSB_WEIGHTS),
      options=dict(method.options, **SSB_OPTIONS),
      choices=dict(method.choices, **SSB_CHOICES), model=method.model,
      extends=base, neighbours=method.neighbours)(objective)


def gaussian_sample_as_bits(out):
  """sigmoid of a Gaussian sample [batch, bits]: in (0, 1), above 1/2 where
  the sample is positive (the code's sign)."""
  return jax.nn.sigmoid(out["sample"])


def gaussian_mean(out):
  """A Gaussian code's mean [batch, bits] in (0, 1) (SNUH's)."""
  return out["mu"]


FORMS = {"pairrec_ssb": "pairrec", "snuh_ssb": "snuh", "nbrreg_ssb": "nbrreg",
         "wish_ssb": "wish"}  # form -> base
with_predicted_pairs("pairrec", "pairrec_ssb")
with_predicted_pairs("wish", "wish_ssb")
with_predicted_pairs("snuh", "snuh_ssb", gaussian_mean)
with_predicted_pairs("nbrreg", "nbrreg_ssb", gaussian_sample_as_bits)
