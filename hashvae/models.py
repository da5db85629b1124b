"""Flax linen modules: the network only (losses live in losses.py).

Initialisers follow the released Keras code: Glorot-uniform kernels, zero
biases, batch norm with momentum 0.99 and epsilon 1e-3.

The encoder reads either a dense [batch, dims] array or a padded sparse batch
(`SparseRows`); both give the same parameters (names, shapes, initial values)
and, up to float rounding, the same outputs.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dense = lambda features, name=None: nn.Dense(
    features, kernel_init=nn.initializers.glorot_uniform(), name=name)


class SparseRows(NamedTuple):
  """A padded bag of words: item i holds values[i, j] at column indices[i, j].

  Padding entries have index = the table's row count (out of range: read as
  a zero row, their gradient dropped) and value 0.

  Attributes:
    indices: [items, width] int32, a row's nonzero columns, then padding.
    values: [items, width] float32, their values, then zeros.
    rows: None (the indices are columns of the input, i.e. rows of the first
      kernel) or [rows, features] kernel rows the indices point into instead;
      the training step passes the rows a batch reads, so that the gradient
      is taken with respect to those rows only.
  """

  indices: jax.Array
  values: jax.Array
  rows: Optional[jax.Array] = None


class SparseEntries(NamedTuple):
  """A sparse batch as a flat list of its nonzero entries: entry k adds
  values[k] * rows[indices[k]] to item items[k].

  Shorter than a SparseRows batch's [items, width] when the widths vary
  (a batch of 100 Snippets items: ~1,400 entries against 100 x 59 slots).
  Padding entries have item = num_items (dropped) and value 0.

  Attributes:
    indices: [entries] int32, rows of `rows` (out of range: a zero row).
    values: [entries] float32.
    items: [entries] int32, the item each entry belongs to.
    rows: [rows, features], the kernel rows the batch reads.
    num_items: the batch size, a Python int (the output's shape): build a
      SparseEntries inside the traced function, not as a jit argument.
  """

  indices: jax.Array
  values: jax.Array
  items: jax.Array
  rows: jax.Array
  num_items: int


def gather_rows(table, indices):
  """table[indices] with out-of-range indices read as zero rows.

  [rows, features], [...] int -> [..., features]. The gradient with respect
  to `table` drops the out-of-range (padding) entries.
  """
  return jnp.take(table, indices, axis=0, mode="fill", fill_value=0)


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
    ones = jnp.ones(x.shape[:-1] + (1,), x.dtype)
    # HIGHEST: where float32 matmuls default to a lower precision (TF32 on
    # recent GPUs) the bias would be rounded with them; the matmul is
    # narrow (bits + 1), so full precision costs little.
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
