"""Flax linen modules: the network only (losses live in losses.py).

Initialisers follow the released Keras code: Glorot-uniform kernels, zero
biases, batch norm with momentum 0.99 and epsilon 1e-3.

The encoder reads either a dense [batch, dims] array or a padded sparse batch
(`SparseRows`); both give the same parameters (names, shapes, initial values)
and, up to float rounding, the same outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from hashvae.core.sparse_rows import SparseEntries, SparseRows, gather_rows


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What every method's network is built from (its own parts come on top).

  A method's model is a linen module with `__call__(x, temperature, train)`
  -> dict of [batch, ...] outputs (the objective's `out`) and
  `code_scores(x, train=False)` -> [batch, bits] scores whose sign is the
  code. `x` is [batch, dims] or a sparse batch (SparseRows, SparseEntries).
  """

  dims: int
  bits: int
  num_classes: int
  hidden: tuple = (500, 500)
  batch_norm: bool = True


Dense = lambda features, name=None: nn.Dense(
    features, kernel_init=nn.initializers.glorot_uniform(), name=name)


class SparseDense(nn.Module):
  """nn.Dense applied to a `SparseRows` or `SparseEntries` batch: a gather,
  not a matmul.

  h = sum_j values[..., j] * kernel[indices[..., j]] + bias, [..., width] ->
  [..., features]; it reads batch * width kernel rows instead of
  multiplying by all `in_features` of them.
  """

  features: int
  in_features: int

  @nn.compact
  def __call__(self, x: SparseRows | SparseEntries):
    # Declared as nn.Dense declares them (kernel, then bias, same shapes and
    # initialisers), so the same key gives the same values on either path.
    kernel = self.param("kernel", nn.initializers.glorot_uniform(),
                        (self.in_features, self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    table = kernel if x.rows is None else x.rows
    picked = gather_rows(table, x.indices)  # [..., width | entries, features]
    if isinstance(x, SparseEntries):
      h = jnp.zeros((x.num_items, self.features), picked.dtype)
      return h.at[x.items].add(x.values[:, None] * picked, mode="drop") + bias
    return jnp.einsum("...j,...jf->...f", x.values, picked) + bias


class WideDense(nn.Module):
  """nn.Dense (same parameters, names and initial values) for a narrow
  input and a wide output, such as the decoder's [batch, bits] ->
  [batch, dims]: the bias rides in the matmul as an extra input row of
  ones, so the wide output is written once (and the bias gradient comes
  out of the kernel's matmul) instead of taking a separate pass each way.
  """

  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.glorot_uniform(),
                        (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return bias_row_matmul(x, kernel, bias)


def bias_row_matmul(x, kernel, bias):
  """x @ kernel + bias as one matmul, the bias an extra kernel row against
  an input column of ones. x [..., n], kernel [n, features], bias
  [features] -> [..., features]."""
  ones = jnp.ones(x.shape[:-1] + (1,), x.dtype)
  # HIGHEST: where float32 matmuls default to a lower precision (TF32 on
  # recent GPUs) the bias would be rounded with them; the matmul is narrow
  # (bits + 1), so full precision costs little.
  return jnp.matmul(jnp.concatenate([x, ones], axis=-1),
                    jnp.concatenate([kernel, bias[None]], axis=0),
                    precision=jax.lax.Precision.HIGHEST)


class Encoder(nn.Module):
  """[batch, dims] (or SparseRows / SparseEntries) -> [batch, hidden[-1]]:
  Dense + ReLU
  (+ batch norm) layers.

  `input_dims` (the input width) is needed only for a sparse input, whose
  shape does not carry it.
  """

  hidden: Sequence[int] = (500, 500)
  batch_norm: bool = True
  input_dims: Optional[int] = None

  @nn.compact
  def __call__(self, x, train: bool):
    sparse = isinstance(x, (SparseRows, SparseEntries))
    if sparse and (not self.hidden or self.input_dims is None):
      raise ValueError("a sparse input needs at least one hidden layer and "
                       "input_dims")
    for i, width in enumerate(self.hidden):
      # Explicit names: the sparse first layer must own the same parameters
      # ("Dense_0") as the dense one.
      if i == 0 and sparse:
        x = SparseDense(width, self.input_dims, name="Dense_0")(x)
      else:
        x = Dense(width, name=f"Dense_{i}")(x)
      x = nn.relu(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99,
                         epsilon=1e-3)(x)
    return x


def binary_concrete(key, logits, temperature):
  """Relaxed Bernoulli sample: sigmoid((logits + log u - log(1-u)) / tau)."""
  u = jax.random.uniform(key, logits.shape, minval=1e-7, maxval=1.0 - 1e-7)
  return nn.sigmoid((logits + jnp.log(u) - jnp.log1p(-u)) / temperature)


class SpecModule(nn.Module):
  """A network with a ModelSpec's fields (a method's model subclasses it and
  adds its own); `factory(spec)` builds it from a spec."""

  dims: int
  bits: int
  num_classes: int
  hidden: Sequence[int] = (500, 500)
  batch_norm: bool = True


class HashModel(SpecModule):
  """Encoder, latent head, classifier and softmax decoder.

  Attributes:
    latent: "gaussian" (VDSH family: mu, logvar, code = 1[mu > 0]) or
      "bernoulli" (PHS-GS / SSB-VAE: logits, code = 1[logits > 0]).
    classifier_on: "hidden" (the encoder's hidden vector) or "sample" (the
      latent sample, as VDSH-S does).
  """

  latent: str = "bernoulli"
  classifier_on: str = "hidden"

  def setup(self):
    self.encoder = Encoder(self.hidden, self.batch_norm, input_dims=self.dims)
    if self.latent == "gaussian":
      self.mu_head, self.logvar_head = Dense(self.bits), Dense(self.bits)
    elif self.latent == "bernoulli":
      self.logits_head = Dense(self.bits)
    else:
      raise ValueError(f"unknown latent {self.latent!r}; known: "
                       "'gaussian', 'bernoulli'")
    self.classifier = Dense(self.num_classes)
    self.decoder = WideDense(self.dims)

  def code_scores(self, x, train: bool = False):
    """[batch, dims] (or a sparse batch) -> [batch, bits] real scores whose sign
    is the code."""
    h = self.encoder(x, train)
    return self.mu_head(h) if self.latent == "gaussian" else self.logits_head(h)

  def __call__(self, x, temperature, train: bool = True):
    """One stochastic forward pass; draws noise from the 'sample' rng stream.

    `x` is [batch, dims] or a sparse batch (SparseRows, SparseEntries).

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
