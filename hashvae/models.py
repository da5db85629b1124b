"""Flax linen modules: the network only (losses live in losses.py).

Initialisers follow the released Keras code: Glorot-uniform kernels, zero
biases, batch norm with momentum 0.99 and epsilon 1e-3.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dense = lambda features, name=None: nn.Dense(
    features, kernel_init=nn.initializers.glorot_uniform(), name=name)


class Encoder(nn.Module):
  """[batch, dims] -> [batch, hidden[-1]]: Dense + ReLU (+ batch norm) layers."""

  hidden: Sequence[int] = (500, 500)
  batch_norm: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    for width in self.hidden:
      x = nn.relu(Dense(width)(x))
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99,
                         epsilon=1e-3)(x)
    return x


def binary_concrete(key, logits, temperature):
  """Relaxed Bernoulli sample: sigmoid((logits + log u - log(1-u)) / tau)."""
  u = jax.random.uniform(key, logits.shape, minval=1e-7, maxval=1.0 - 1e-7)
  return nn.sigmoid((logits + jnp.log(u) - jnp.log1p(-u)) / temperature)


class HashModel(nn.Module):
  """Encoder, latent head, classifier and softmax decoder.

  Attributes:
    latent: "gaussian" (VDSH family: mu, logvar, code = 1[mu > 0]) or
      "bernoulli" (PHS-GS / SSB-VAE: logits, code = 1[logits > 0]).
    classifier_on: "hidden" (the encoder's hidden vector) or "sample" (the
      latent sample, as VDSH-S does).
  """

  dims: int
  bits: int
  num_classes: int
  latent: str = "bernoulli"
  classifier_on: str = "hidden"
  hidden: Sequence[int] = (500, 500)
  batch_norm: bool = True

  def setup(self):
    self.encoder = Encoder(self.hidden, self.batch_norm)
    if self.latent == "gaussian":
      self.mu_head, self.logvar_head = Dense(self.bits), Dense(self.bits)
    elif self.latent == "bernoulli":
      self.logits_head = Dense(self.bits)
    else:
      raise ValueError(f"unknown latent {self.latent!r}; known: "
                       "'gaussian', 'bernoulli'")
    self.classifier = Dense(self.num_classes)
    self.decoder = Dense(self.dims)

  def code_scores(self, x, train: bool = False):
    """[batch, dims] -> [batch, bits] real scores whose sign is the code."""
    h = self.encoder(x, train)
    return self.mu_head(h) if self.latent == "gaussian" else self.logits_head(h)

  def __call__(self, x, temperature, train: bool = True):
    """One stochastic forward pass; draws noise from the 'sample' rng stream.

    Returns a dict of [batch, ...] arrays: hidden, sample (what the decoder
    reads), recon_logits [batch, dims], class_logits [batch, classes], and
    mu/logvar (gaussian) or logits (bernoulli) [batch, bits].
    """
    h = self.encoder(x, train)
    key = self.make_rng("sample")
    if self.latent == "gaussian":
      mu, logvar = self.mu_head(h), self.logvar_head(h)
      sample = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
      out = dict(mu=mu, logvar=logvar)
    else:
      logits = self.logits_head(h)
      sample = binary_concrete(key, logits, temperature)
      out = dict(logits=logits)
    features = h if self.classifier_on == "hidden" else sample
    return dict(out, hidden=h, sample=sample,
                class_logits=self.classifier(features),
                recon_logits=self.decoder(sample))
