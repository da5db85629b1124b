"""AMMI (Stratos, Wiseman, "Learning Discrete Structured Representations by
Adversarially Maximizing Mutual Information", ICML 2020).

Codes that maximise the mutual information I(X; Z) = H(Z) - H(Z | X)
between documents and their codes. H(Z | X) is exact for a posterior that
draws the bits independently; H(Z), the entropy of the codes over the
documents, is not tractable, and is bounded above by the cross-entropy
against a learned prior q over the bits, which is minimised over q while
the encoder maximises it: an adversarial game, the prior taking its own
(inner) steps before each step of the encoder (x = the document's input
row):

    p(z | x) = prod_k Bern(z_k; p_k),  p = sigmoid(l),  l = W x + c
    b = 1[p > 1/2] = 1[l > 0]                           (the hash code)
    q(z) = prod_k Bern(z_k; sigmoid(theta[k, c_k(z)]))   (the prior)
    c_k(z) = (z_{k-1}, ..., z_{k-R}) read as a number    (bits before the first are 0)

    H(Z | X) ~ mean_i sum_k h(p_ik),    h(p) = -p log p - (1 - p) log(1 - p)
    H(Z) <= H_q(Z) ~ mean_i E_{z ~ p(z | x_i)}[-log q(z)]
    prior:  min_theta H_q(Z)          (STEPS Adam steps per step, p held fixed)
    ammi:   min  H(Z | X) - entropy_weight * H_q(Z)   (theta held fixed)

q is autoregressive: bit k's logit is a free parameter per position k and
context c_k, the R = PRIOR_ORDER bits before it (a Markov chain of order R
over the positions). Because p(z | x) is a product, the expectation in
H_q is exact: position k's context has probability prod_t (p_{k-t} or
1 - p_{k-t}), so H_q sums 2^R terms per bit (`prior_cross_entropy`), with
no sampling. The batch mean of each document's cross-entropy is the
cross-entropy of the batch's mixture of posteriors, the codes' empirical
distribution, which is what bounds H(Z).

The prior is the network's part `prior` (params["prior"]), declared as a
methods.OwnUpdate: the trainer updates it only by its own objective,
`prior_objective`, with an Adam of its own, and hands the updated
parameters to `ammi` as out["prior"] (training/own_update.py).

Checked against the public code (karlstratos/ammi: ammi.py, entropy.py,
model.py, pytorch_helper.py, commands.txt) for unsupervised document
hashing; what it does and where this implementation differs:
- Objective: the same, hZ_cond - entropy_weight * hZ, with the per-bit
  entropies (posterior order 0) and the exact cross-entropy against the
  prior; no reconstruction term, and no second view (the public second
  posterior q(z | x) is for its article-pair task only).
- entropy_weight: default 2, the public default (the public 16-bit runs
  of commands.txt use 2 on Reuters, 2.5 on 20 Newsgroups and 3 on TMC,
  chosen by a random search on validation).
- Prior: Markov order 3 (the public default, never changed in
  commands.txt) with raw logits per position and context (`--raw_prior`,
  used by every public 16-bit run); the public alternative, an embedding
  per position through a feed-forward layer, is not offered. Initial
  logits U(-0.1, 0.1), the public `--init` default. Bits before the first
  are 0, as public.
- Inner steps: 4 per step (the public default and every 16-bit run), on
  the step's batch with the posterior held fixed. The public code builds
  a new Adam for the prior at every step, so its moments start from zero
  each time; the declaration's `reset_moments=True` does the same. Then
  the encoder's step uses the updated prior, as public.
- The prior's learning rate: `prior_learning_rate`, a weight, default
  0.01, the public prior's (lr_prior = lr, default 0.01), while the
  encoder takes the trainer's (1e-3 by default). At the trainer's rate
  the prior fell behind on the digits data: each document's gradient
  moves it towards the code the lagging prior finds least likely, the
  same code for all, and after 60 epochs every item had one code (p@100
  0.100, 10 classes; 0.579 at 0.01, and 0.538 with 16 steps at 1e-3).
  On Snippets the two rates gave the same validation p@100 (0.571 and
  0.572).
- Encoder: the public linear map from the inputs to the logits
  (`--num_layers_posterior 0`), with a Glorot kernel (public U(-0.1, 0.1));
  the config's hidden widths and batch norm are not used. The study's
  encoder (2 x 500 ReLU + batch norm, then a dense layer to the logits)
  was tried first, on Snippets at 16 bits: it drove the bound to its
  ceiling (H_q(Z) 11.6 nats, H(Z | X) 0.37 after 30 epochs) with codes
  that carry little of the topic, validation p@100 0.170 (8 classes)
  against 0.571 for the linear map. Nothing in the objective asks similar
  documents to share a code; a network that wide can spread them over the
  codes in any way.
  The inputs are the dataset's (log(1 + tf) for Snippets), not tf-idf.
- Optimiser: the trainer's Adam for the encoder (epsilon 1e-7, the
  config's learning rate 1e-3, batch 100, the config's epochs), not the
  public Adam at 0.01, batch 16, up to 40 epochs; no gradient-norm
  clipping (public: 10 by default, on the encoder and the prior). At the
  public 0.01 the encoder gave validation p@100 0.567 on Snippets, 0.571
  at 1e-3 (both with the prior at the trainer's rate).
- The code is 1[l > 0], the public Viterbi decoding of an order-0
  posterior. The public script keeps the epoch with the best validation
  p@100 (stopping after 6 worse epochs); here the last epoch's codes are
  evaluated.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from hashvae.core import losses
from hashvae.core.models import Dense, ModelSpec, SparseDense, SpecModule
from hashvae.core.sparse_rows import SparseEntries, SparseRows
from hashvae.methods.registry import OwnUpdate, register

PRIOR_ORDER = 3  # bits of context of each prior logit (public --order_prior)
PRIOR_STEPS = 4  # the prior's steps per encoder step (public --num_steps_prior)
PRIOR_INIT = 0.1  # initial prior logits U(-0.1, 0.1) (public --init)


def context_probabilities(probs, order: int):
  """The probability of each context of each bit under independent bits.

  probs [batch, bits] (P(z_k = 1)) -> [batch, bits, 2^order]: entry c of
  bit k is the probability that z_{k-t} = bit t-1 of c for t = 1..order,
  bits before the first being 0.
  """
  padded = jnp.concatenate([jnp.zeros(probs.shape[:-1] + (order,), probs.dtype), probs],
                           -1)
  bits = probs.shape[-1]
  context = jnp.ones(probs.shape + (1,), probs.dtype)
  for t in range(1, order + 1):
    before = padded[..., order - t:order - t + bits, None]  # z_{k-t}: [batch, bits, 1]
    # z_{k-t} becomes the highest bit of the context read so far.
    context = jnp.concatenate([context * (1 - before), context * before], -1)
  return context


def prior_cross_entropy(probs, table):
  """E_{z ~ prod_k Bern(probs_k)}[-log q(z)], exactly, per item.

  probs [batch, bits]; table [bits, 2^R], the prior's logits per position
  and context (context_probabilities' order) -> [batch].
  """
  order = table.shape[-1].bit_length() - 1
  context = context_probabilities(probs, order)  # [batch, bits, 2^R]
  log_one, log_zero = jax.nn.log_sigmoid(table), jax.nn.log_sigmoid(-table)
  per_context = probs[..., None] * log_one + (1 - probs[..., None]) * log_zero
  return -jnp.sum(context * per_context, axis=(-2, -1))


def prior_bit_logits(table, codes):
  """Each bit's prior logit given the code's bits before it.

  table [bits, 2^R]; codes [batch, bits] in {0, 1} -> [batch, bits]; with
  these, log q(z) = sum_k log sigmoid((2 z_k - 1) logit_k).
  """
  order = table.shape[-1].bit_length() - 1
  bits = codes.shape[-1]
  padded = jnp.concatenate([jnp.zeros(codes.shape[:-1] + (order,), jnp.int32),
                            codes.astype(jnp.int32)], -1)
  context = jnp.zeros(codes.shape, jnp.int32)
  for t in range(1, order + 1):
    context = context | (padded[..., order - t:order - t + bits] << (t - 1))
  return table[jnp.arange(bits), context]


def symmetric_uniform(scale: float):
  """A linen initialiser: U(-scale, scale)."""
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -scale, scale)


class MarkovPrior(nn.Module):
  """The prior's logits, one per position and context of `order` bits:
  () -> [bits, 2^order]."""

  bits: int
  order: int = PRIOR_ORDER

  @nn.compact
  def __call__(self):
    return self.param("logits", symmetric_uniform(PRIOR_INIT), (self.bits, 2**self.order))


class LinearEncoder(nn.Module):
  """[batch, dims] (or a sparse batch) -> [batch, features]: one dense layer,
  the public posterior's. Its layer is named as the study's encoder's first
  (params["encoder"]["Dense_0"]), which the sparse input path and the
  row-wise optimiser address."""

  features: int
  input_dims: int

  @nn.compact
  def __call__(self, x):
    if isinstance(x, (SparseRows, SparseEntries)):
      return SparseDense(self.features, self.input_dims, name="Dense_0")(x)
    return Dense(self.features, name="Dense_0")(x)


class AmmiModel(SpecModule):
  """A linear map from the inputs to one logit per bit, and the prior
  (params["prior"], trained by its own objective; the network's pass does
  not read it). The spec's hidden widths and batch norm are not used."""

  def setup(self):
    self.encoder = LinearEncoder(self.bits, self.dims)
    self.prior = MarkovPrior(self.bits)

  def code_scores(self, x, train: bool = False):
    """[batch, dims] (or a sparse batch) -> [batch, bits] logits (code 1[> 0])."""
    return self.encoder(x)

  def __call__(self, x, temperature, train: bool = True):
    """One deterministic pass (`temperature` is unused: nothing is sampled).

    Returns logits [batch, bits].
    """
    del temperature, train
    if self.is_initializing():  # creates params["prior"]; the trainer hands it over
      self.prior()
    return dict(logits=self.encoder(x))


def ammi_model(spec: ModelSpec):
  return AmmiModel(**dataclasses.asdict(spec))


def prior_objective(part, out, batch, hp, options):
  """The prior's own objective: H_q(Z), the batch mean of the cross-entropy
  of each posterior against q (the posterior held fixed by the trainer)."""
  del batch, hp, options
  cross = jnp.mean(prior_cross_entropy(jax.nn.sigmoid(out["logits"]), part["logits"]))
  return cross, dict(cross_entropy=cross)


@register("ammi", weights=dict(entropy_weight=2.0, prior_learning_rate=0.01),
          model=ammi_model,
          own_update=OwnUpdate(part="prior", objective=prior_objective, steps=PRIOR_STEPS,
                               learning_rate="prior_learning_rate", reset_moments=True))
def ammi(out, batch, hp, options):
  """AMMI: H(Z | X) - entropy_weight * H_q(Z), against the prior after its
  own steps (out["prior"], held fixed)."""
  del batch, options
  logits = out["logits"]
  conditional = -jnp.mean(jnp.sum(losses.negative_bernoulli_entropy(logits), -1))
  cross = jnp.mean(prior_cross_entropy(jax.nn.sigmoid(logits), out["prior"]["logits"]))
  loss = conditional - hp["entropy_weight"] * cross
  return loss, dict(loss=loss, conditional_entropy=conditional, code_entropy=cross,
                    information_bound=cross - conditional)
