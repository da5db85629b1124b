"""Doc2Hash and its supervised variant (Zhang, Zhu, "Doc2hash: Learning
Discrete Latent Variables for Documents Retrieval", NAACL 2019).

Each bit is a two-way categorical variable relaxed with the Gumbel-softmax
at an annealed temperature (h = the shared encoder's hidden vector):

    q(z_k | x) = softmax(l_k, 0),  l = Dense(K)(h)    (q_k = sigmoid(l_k))
    y_k = softmax((l_k + g_k1, g_k0) / tau_t)_0,  g ~ Gumbel(0, 1)  (training)
    b_k = argmax(l_k, 0) = 1[l_k > 0]                  (test: the hash code)
    p(x | y) = softmax(W y + c)                        (the study's decoder)
    p(z) = prod_k Cat(1/2, 1/2)
    tau_t = max(tau_0 * rate^t, tau_min),  t = optimiser steps taken

    doc2hash:   L = mean_i[ rec_i + beta KL(q(z|x_i) || uniform) ]
    doc2hash_s: L = doc2hash + alpha * mean_i CE(y_i, softmax(V y + d))

KL_i = K log 2 + sum_k [q log q + (1 - q) log(1 - q)]
(losses.bernoulli_kl_uniform), CE_i the masked cross-entropy (0 for an
unlabelled item; the mean divides by B). These are NASH's and NASH-S's
terms (nash.py) on this network's outputs; the methods differ in the
sample the decoder and the classifier read.

The temperature. The trainer traces one `temperature` per run (the
config's `temperature`) and hands it to the network, which PHS-GS uses as a
constant binary-concrete temperature; the trainer has no schedule. The
public code (allenhaozhu/doc2hash, train_gumble.py, train_s_gumbel.py)
multiplies the temperature by 0.96 after every step down to a floor of 0.1,
from 1 (unsupervised) or 0.2 (supervised). That schedule is expressed here
exactly: the network counts its training steps in its `batch_stats`
collection (which the trainer carries and checkpoints with the batch-norm
statistics) and computes tau_t from the run's `temperature` as tau_0 with
the public rate 0.96 and floor 0.1 (ANNEAL_RATE, MIN_TEMPERATURE: constants
of the network, which sees only the ModelSpec and the temperature, not a
method's options). tau reaches its floor within 60 steps from any tau_0 <=
1, so the config's tau_0 (0.67 by default, not the public 1 or 0.2) matters
for the first epoch only.

Choices, and where the paper and the public code differ:
- Parameterisation: the public encoder emits two logits per bit and the
  decoder reads the one-hot pair ([batch, 2K]). A two-way softmax depends
  only on the difference of its logits, and W1 y + W0 (1 - y) is affine in
  y, so one logit per bit (l = l1 - l0) and a decoder on y [batch, K] is
  the same family of models with fewer parameters; it also keeps the code
  a sign of one dense head, which the search index computes.
- Relaxed or straight-through sample: the paper trains on the relaxed
  values (its Figure 1 shows (0.05, 0.95)-like pairs); the public code uses
  the straight-through Gumbel-softmax (one-hot forward, relaxed backward).
  Here the paper's relaxed sample.
- KL: the public code computes it on a softmax over all 2K logits at once
  (not per bit), a term bounded between -log K and log 2; here it is the
  per-bit KL to the uniform prior of the paper's ELBO. beta (default
  1/64, the study's Bernoulli-VAE beta for Snippets and 20 Newsgroups, also
  NASH's here) weights it: the public weight 2 multiplies the other,
  bounded, term and does not carry over, and the ELBO's beta = 1 with a
  uniform prior pushes q to 1/2 on short documents (nash.py).
- doc2hash_s: the public code ramps the label weight from 0 by 0.003 per
  step up to 150 (9 after 30 Snippets epochs, 3,000 steps); here alpha is
  constant (default 10, the study's VDSH-S weight, also nash_s's), the
  classifier reads the relaxed sample y, and only observed labels count.
- Encoder: the study's (2 x 500 ReLU + batch norm), not the public 2 x 500
  ReLU with dropout 0.2; Adam at the config's learning rate (public 5e-4).
- The public scripts report the best test precision over 100 epochs; here
  the last epoch's codes are evaluated and nothing is chosen on the test
  split.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from hashvae.core.models import Dense, Encoder, ModelSpec, SpecModule, WideDense
from hashvae.methods import nash
from hashvae.methods.nash import CHOICES, OPTIONS
from hashvae.methods.registry import register

ANNEAL_RATE = 0.96  # tau's factor per step (public code)
MIN_TEMPERATURE = 0.1  # tau's floor (public code)


def two_way_gumbel_softmax(logits, gumbels, temperature):
  """The relaxed value of each bit's '1' category: softmax((l + g1, g0) /
  tau)_0, for logits l [batch, bits] and Gumbel noise gumbels [batch, bits,
  2] (g1, g0). -> [batch, bits] in (0, 1)."""
  pair = jnp.stack([logits, jnp.zeros_like(logits)], axis=-1) + gumbels
  return jax.nn.softmax(pair / temperature, axis=-1)[..., 0]


def annealed_temperature(initial, step, rate, floor):
  """max(initial * rate^step, floor) (the public code's per-step decay)."""
  return jnp.maximum(initial * jnp.power(rate, step), floor)


class StepCount(nn.Module):
  """The training steps taken, kept in the 'batch_stats' collection (carried
  between steps and checkpointed by the trainer); a training call returns
  the count before it and adds one."""

  @nn.compact
  def __call__(self, train: bool):
    count = self.variable("batch_stats", "steps", lambda: jnp.zeros((), jnp.float32))
    taken = count.value
    if train and not self.is_initializing():
      count.value = taken + 1.0
    return taken


class Doc2HashModel(SpecModule):
  """Encoder, one logit per bit, the two-way Gumbel-softmax sample at the
  annealed temperature, the study's decoder and a classifier on the sample."""

  def setup(self):
    # Named `encoder`: the sparse input path and the row-wise optimiser
    # address params["encoder"]["Dense_0"]["kernel"].
    self.encoder = Encoder(self.hidden, self.batch_norm, input_dims=self.dims)
    self.logits_head = Dense(self.bits)
    self.anneal = StepCount()
    self.classifier = Dense(self.num_classes)
    self.decoder = WideDense(self.dims)

  def code_scores(self, x, train: bool = False):
    """[batch, dims] (or a sparse batch) -> [batch, bits] logits; the code is
    the argmax of each pair, 1[logits > 0]."""
    return self.logits_head(self.encoder(x, train))

  def __call__(self, x, temperature, train: bool = True):
    """One stochastic pass at tau_t from tau_0 = `temperature`.

    Returns hidden, logits [batch, bits], sample (the relaxed y), class_logits
    [batch, classes], recon_logits [batch, dims] and temperature (tau_t, a
    scalar).
    """
    h = self.encoder(x, train)
    logits = self.logits_head(h)
    tau = annealed_temperature(temperature, self.anneal(train), ANNEAL_RATE,
                               MIN_TEMPERATURE)
    gumbels = jax.random.gumbel(self.make_rng("sample"), logits.shape + (2,),
                                logits.dtype)
    y = two_way_gumbel_softmax(logits, gumbels, tau)
    return dict(hidden=h, logits=logits, sample=y, class_logits=self.classifier(y),
                recon_logits=self.decoder(y), temperature=tau)


def doc2hash_model(spec: ModelSpec):
  return Doc2HashModel(**dataclasses.asdict(spec))


@register("doc2hash", weights=dict(beta=1.0 / 64), options=OPTIONS, choices=CHOICES,
          model=doc2hash_model)
def doc2hash(out, batch, hp, options):
  """Doc2Hash: two-way Gumbel-softmax bits at an annealed temperature, the
  study's decoder, uniform prior: rec + beta KL."""
  return nash.nash(out, batch, hp, options)  # the same terms on other outputs


@register("doc2hash_s", weights=dict(alpha=10.0, beta=1.0 / 64), options=OPTIONS,
          choices=CHOICES, model=doc2hash_model)
def doc2hash_s(out, batch, hp, options):
  """Supervised Doc2Hash: rec + beta KL + alpha * CE of a classifier on the
  relaxed code (observed labels only)."""
  return nash.nash_s(out, batch, hp, options)
