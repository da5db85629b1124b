"""WISH and its supervised variant (Ye, Manotumruksa, Yilmaz, "Unsupervised
Few-Bits Semantic Hashing with Implicit Topics Modeling", Findings of EMNLP
2020).

Each bit stands for a topic: a learned topic book T [bits, topic_dim] holds
one topic vector per bit, and the decoder reads the code's mixture of
topics (h = the shared encoder's hidden vector):

    q(z | x) = prod_k Bern(z_k; q_k),  q = sigmoid(l),  l = Dense(K)(h)
    z = 1[q > u],  u ~ U(0, 1)^K        (training: straight-through, NASH's)
    b = 1[q > 1/2] = 1[l > 0]            (test: the hash code)
    m = z T                              (the codes' topic mixture)
    p(x | z) = softmax(W m + c)          [topic_dim] -> [dims]
    p(z) = prod_k Bern(z_k; 1/2)

    wish:   L = mean_i[ rec_i + beta KL(q(z|x_i) || Bern(1/2)) ]
                + orthogonality * ||T T^T - I||_F^2
    wish_s: L = wish + alpha * mean_i CE(y_i, softmax(V z_i + d))

KL_i = K log 2 + sum_k [q log q + (1 - q) log(1 - q)]
(losses.bernoulli_kl_uniform); the penalty keeps the topic vectors near
orthonormal, so that different bits describe different topics; CE_i the
masked cross-entropy (0 for an unlabelled item; the mean divides by B).

Checked against the public code (smartyfh/WISH, models/WISH.py,
train_WISH.py); where it and this implementation differ:
- The KL weight: the public script anneals it from 0 by 5e-6 per step up
  to 1, which reaches 0.015 after 30 Snippets epochs (3,000 steps of 100
  over the 10,060 database items). Here beta is constant, default 1/64
  (the value the ramp ends near, and the study's Bernoulli-VAE beta for
  Snippets and 20 Newsgroups).
- The orthogonality weight (`orthogonality`, public `alpha`): 1, as public.
- Topic book: TOPIC_DIM = 100 and entries drawn from U(0, 1), as public (a
  constant of the network, which sees only the ModelSpec); the mixture is
  the public default "sum" (the public "average", z T / |z|_1, is not
  offered).
- Straight-through gradient: the public code passes the sign's gradient as
  the identity, d z / d q = 1/2; here NASH's estimator, d z / d q = 1 (a
  factor 2 on the encoder's reconstruction gradient).
- Encoder: the study's (2 x 500 ReLU + batch norm), not the public 2 x 1000
  ReLU with dropout 0.2; the config's epochs, not the public 1,000.
- The public script picks the epoch with the best validation p@100 and
  reports its test figure; here the last epoch's codes are evaluated and
  nothing is chosen on the test split.
- wish_s is not in the paper (which is unsupervised): a classifier on the
  straight-through sample z adds alpha * CE from the observed labels, as
  nash_s does (default alpha 10, the study's VDSH-S weight).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from hashvae.core.models import Dense, Encoder, ModelSpec, SpecModule, WideDense
from hashvae.methods import nash
from hashvae.methods.nash import CHOICES, OPTIONS
from hashvae.methods.registry import register

TOPIC_DIM = 100  # the width of a topic vector (public default)


def orthogonality_penalty(topics):
  """||T T^T - I||_F^2 for topics T [bits, topic_dim] -> scalar."""
  gram = topics @ topics.T
  return jnp.sum(jnp.square(gram - jnp.eye(topics.shape[0], dtype=topics.dtype)))


class WishModel(SpecModule):
  """NASH's encoder and straight-through code, a topic book, a decoder on
  the code's topic mixture, and a classifier on the code (read by wish_s)."""

  def setup(self):
    # Named `encoder`: the sparse input path and the row-wise optimiser
    # address params["encoder"]["Dense_0"]["kernel"].
    self.encoder = Encoder(self.hidden, self.batch_norm, input_dims=self.dims)
    self.logits_head = Dense(self.bits)
    self.topics = self.param("topics", nn.initializers.uniform(1.0),
                             (self.bits, TOPIC_DIM))
    self.classifier = Dense(self.num_classes)
    self.decoder = WideDense(self.dims)

  def code_scores(self, x, train: bool = False):
    """[batch, dims] (or a sparse batch) -> [batch, bits] logits (code 1[> 0])."""
    return self.logits_head(self.encoder(x, train))

  def __call__(self, x, temperature, train: bool = True):
    """One stochastic pass. `temperature` is unused (no relaxation).

    Returns hidden, logits [batch, bits], sample (the binary z), class_logits
    [batch, classes], recon_logits [batch, dims] and topics [bits,
    topic_dim] (not per item).
    """
    del temperature
    h = self.encoder(x, train)
    logits = self.logits_head(h)
    z = nash.straight_through_bernoulli(self.make_rng("sample"), logits)
    return dict(hidden=h, logits=logits, sample=z, class_logits=self.classifier(z),
                recon_logits=self.decoder(z @ self.topics), topics=self.topics)


def wish_model(spec: ModelSpec):
  return WishModel(**dataclasses.asdict(spec))


def orthogonality_term(out, hp):
  """(orthogonality * penalty, penalty)."""
  penalty = orthogonality_penalty(out["topics"])
  return hp["orthogonality"] * penalty, penalty


@register("wish", weights=dict(beta=1.0 / 64, orthogonality=1.0), options=OPTIONS,
          choices=CHOICES, model=wish_model)
def wish(out, batch, hp, options):
  """WISH: NASH's code, a decoder on the code's topic mixture, uniform prior:
  rec + beta KL + orthogonality ||T T^T - I||^2."""
  elbo, terms = nash.nash(out, batch, hp, options)
  weighted, penalty = orthogonality_term(out, hp)
  loss = elbo + weighted
  return loss, dict(terms, loss=loss, orthogonality=penalty)


@register("wish_s", weights=dict(alpha=10.0, beta=1.0 / 64, orthogonality=1.0),
          options=OPTIONS, choices=CHOICES, model=wish_model)
def wish_s(out, batch, hp, options):
  """Supervised WISH: wish + alpha * CE of a classifier on the code
  (observed labels only)."""
  supervised, terms = nash.nash_s(out, batch, hp, options)
  weighted, penalty = orthogonality_term(out, hp)
  loss = supervised + weighted
  return loss, dict(terms, loss=loss, orthogonality=penalty)
