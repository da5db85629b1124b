"""NASH and its supervised variant (Shen, Su, Chapfuwa, Wang, Wang, Carin,
Henao, "NASH: Toward End-to-End Neural Architecture for Generative Semantic
Hashing", ACL 2018).

The model, as implemented here (h = the shared encoder's hidden vector):

    q(z | x)  = prod_k Bern(z_k; q_k),  q = sigmoid(l),  l = Dense(K)(h)
    z         = 1[q > u],  u ~ U(0, 1)^K       (training: stochastic threshold)
    b         = 1[q > 1/2] = 1[l > 0]           (test: the hash code)
    z'        = z + sigma * eps,  eps ~ N(0, I)  (decoder noise, sigma learned)
    p(x | z') = softmax(W z' + c)               (the study's softmax decoder)
    p(z)      = prod_k Bern(z_k; 1/2)

    nash:    L = mean_i[ rec_i + beta KL(q(z|x_i) || Bern(1/2)) ]
    nash_s:  L = nash + alpha * mean_i CE(y_i, softmax(V z_i + d))

rec_i = -sum_d t_d log softmax(W z'_i + c)_d, KL_i = K log 2 + sum_k [q log q
+ (1 - q) log(1 - q)] (losses.bernoulli_kl_uniform), CE_i the masked
cross-entropy (0 for an unlabelled item; the mean still divides by B, as the
study's pointwise term does).

Choices, and where they depart from the paper:
- Straight-through estimator: the forward value is the binary z; the
  backward pass treats dz/dq as 1, so d z / d l = q (1 - q)
  (`straight_through_bernoulli`). The paper compares a deterministic
  threshold (u = 1/2) with a stochastic one (u ~ U(0, 1)) in training and
  reports the stochastic one better; it is the one used here. At test the
  threshold is 1/2, so codes are deterministic.
- Data-dependent noise: the paper injects Gaussian noise into z before the
  decoder, with variances learned from the data rather than fixed (its
  rate-distortion argument). Here sigma is one learned value per bit,
  sigma_k = sigmoid(rho_k) in (0, 1), rho starting at 0 (sigma = 1/2):
  the bound keeps the noise below the distance between the two code values,
  and sigma gets its gradient from the reconstruction only (the KL does not
  involve it), so training may shrink it. The noise is used in training
  only; the code never sees it.
- Encoder: the study's (2 x 500 ReLU + batch norm), not the paper's MLP
  without batch norm, so that all methods share it; no dropout.
- beta (default 1/64, the study's Bernoulli-VAE beta for Snippets and 20
  Newsgroups) weights the KL; the paper's ELBO has beta = 1, which with a
  uniform prior pushes q to 1/2 on short documents.
- nash_s: the paper's supervised NASH predicts the label from the code z
  with a softmax layer and adds its cross-entropy; the classifier here reads
  the straight-through sample z (so label gradients reach the encoder
  through the estimator), and only observed labels count (the
  semi-supervised setting). alpha (default 10, the study's released VDSH-S
  weight for Snippets at most levels) weights it.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from hashvae.core import losses
from hashvae.core.models import Dense, Encoder, ModelSpec, SpecModule, WideDense
from hashvae.methods import blocks
from hashvae.methods.registry import register

OPTIONS = dict(blocks.RECONSTRUCTION, **blocks.LABELS)
CHOICES = dict(blocks.RECONSTRUCTION_CHOICES, **blocks.LABEL_CHOICES)


def straight_through_bernoulli(key, logits):
  """Binary sample z = 1[sigmoid(l) > u], u ~ U(0, 1), with the
  straight-through gradient dz/dl = d sigmoid(l)/dl.

  [batch, bits] -> [batch, bits] with values exactly 0 or 1 (written as
  hard + (q - stop_gradient(q)), whose value is hard exactly).
  """
  q = jax.nn.sigmoid(logits)
  u = jax.random.uniform(key, logits.shape)
  hard = (q > u).astype(q.dtype)
  return hard + (q - jax.lax.stop_gradient(q))


class NoisyCode(nn.Module):
  """z -> z + sigma * eps, eps ~ N(0, I) from the 'sample' stream; sigma
  [bits] = sigmoid(rho), rho a learned parameter starting at 0.
  [batch, bits] -> [batch, bits]."""

  @nn.compact
  def __call__(self, z):
    rho = self.param("rho", nn.initializers.zeros_init(), (z.shape[-1],))
    eps = jax.random.normal(self.make_rng("sample"), z.shape, z.dtype)
    return z + jax.nn.sigmoid(rho) * eps


class NashModel(SpecModule):
  """Encoder, Bernoulli logits, straight-through code, noisy softmax
  decoder, and a classifier on the code (read by nash_s only).

  `noise=False` leaves the decoder noise out (the paper's plain NASH).
  """

  noise: bool = True

  def setup(self):
    # Named `encoder`: the sparse input path and the row-wise optimiser
    # address params["encoder"]["Dense_0"]["kernel"].
    self.encoder = Encoder(self.hidden, self.batch_norm, input_dims=self.dims)
    self.logits_head = Dense(self.bits)
    self.classifier = Dense(self.num_classes)
    if self.noise:
      self.noisy = NoisyCode()
    self.decoder = WideDense(self.dims)

  def code_scores(self, x, train: bool = False):
    """[batch, dims] (or a sparse batch) -> [batch, bits] logits; the code is
    1[logits > 0], i.e. the threshold 1/2 on q."""
    return self.logits_head(self.encoder(x, train))

  def __call__(self, x, temperature, train: bool = True):
    """One stochastic pass. `temperature` is unused (no relaxation).

    Returns [batch, ...]: hidden, logits [batch, bits], sample (the binary z),
    decoder_input (z + noise), class_logits [batch, classes], recon_logits
    [batch, dims].
    """
    del temperature
    h = self.encoder(x, train)
    logits = self.logits_head(h)
    z = straight_through_bernoulli(self.make_rng("sample"), logits)
    z_noisy = self.noisy(z) if self.noise else z
    return dict(hidden=h, logits=logits, sample=z, decoder_input=z_noisy,
                class_logits=self.classifier(z), recon_logits=self.decoder(z_noisy))


def nash_model(spec: ModelSpec):
  return NashModel(**dataclasses.asdict(spec))


def elbo_terms(out, batch, hp, options):
  """(rec + beta KL to the uniform prior, rec, kl), batch means."""
  rec = jnp.mean(blocks.reconstruction(out, batch, options))
  kl = jnp.mean(losses.bernoulli_kl_uniform(out["logits"]))
  return rec + hp["beta"] * kl, rec, kl


@register("nash", weights=dict(beta=1.0 / 64), options=OPTIONS, choices=CHOICES,
          model=nash_model)
def nash(out, batch, hp, options):
  """NASH: Bernoulli codes (straight-through), noisy decoder, uniform prior:
  rec + beta KL."""
  loss, rec, kl = elbo_terms(out, batch, hp, options)
  return loss, dict(loss=loss, reconstruction=rec, kl=kl)


@register("nash_s", weights=dict(alpha=10.0, beta=1.0 / 64), options=OPTIONS,
          choices=CHOICES, model=nash_model)
def nash_s(out, batch, hp, options):
  """Supervised NASH: rec + beta KL + alpha * CE of a classifier on the code
  (observed labels only)."""
  elbo, rec, kl = elbo_terms(out, batch, hp, options)
  ce = blocks.pointwise(out, batch, options)
  loss = elbo + hp["alpha"] * ce
  return loss, dict(loss=loss, reconstruction=rec, kl=kl, pointwise=ce)
