"""A trained encoder's code scores in numpy alone, so that answering a query
imports no jax, flax or optax.

Every method whose network can be indexed computes its code scores as the
study's encoder MLP followed by one dense head (hashvae.core.models:
`Encoder` then `mu_head` or `logits_head`), in inference mode:

    for each hidden layer i:  h = relu(h @ kernel_i + bias_i)
                              h = (h - mean_i) * scale_i / sqrt(var_i + eps) + shift_i
                                  (batch norm's running averages; when built with it)
    scores = h @ head_kernel + head_bias;  code = 1[scores > 0]

hashvae.retrieval.encoder.Encoder.numpy_arrays exports these arrays from a
trained run (and refuses a network that computes anything else); the first
layer reads sparse rows as a gather of the kernel's rows of the present terms.
"""

from __future__ import annotations

import numpy as np

BATCH_NORM = ("mean", "var", "scale", "shift")


class NotIndexableError(ValueError):
  """A run whose code scores this module cannot compute (a fitted method, or
  a network other than the encoder MLP and one dense head)."""


def array_names(layers: int, batch_norm: bool) -> list[str]:
  """The arrays an encoder of `layers` hidden layers is stored as, in order."""
  names = []
  for i in range(layers):
    names += [f"encoder/dense_{i}/kernel", f"encoder/dense_{i}/bias"]
    if batch_norm:
      names += [f"encoder/norm_{i}/{part}" for part in BATCH_NORM]
  return names + ["encoder/head/kernel", "encoder/head/bias"]


class NumpyEncoder:
  """Code scores of stored weights: `arrays` maps `array_names` to float32
  arrays (memory-mapped ones are read a row at a time where possible)."""

  def __init__(self, arrays: dict, layers: int, batch_norm: bool, epsilon: float):
    self.arrays, self.layers = arrays, layers
    self.batch_norm, self.epsilon = batch_norm, float(epsilon)

  @property
  def dims(self) -> int:
    kernel = "encoder/dense_0/kernel" if self.layers else "encoder/head/kernel"
    return self.arrays[kernel].shape[0]

  @property
  def bits(self) -> int:
    return self.arrays["encoder/head/bias"].shape[0]

  def _first_layer(self, indptr, indices, values) -> np.ndarray:
    """[rows, hidden_0] pre-activations of CSR rows: per row, its values
    times the kernel's rows of its columns (the rows a query reads)."""
    kernel = self.arrays["encoder/dense_0/kernel"]
    out = np.empty((len(indptr) - 1, kernel.shape[1]), np.float32)
    for row in range(len(indptr) - 1):
      a, b = indptr[row], indptr[row + 1]
      out[row] = values[a:b].astype(np.float32) @ kernel[indices[a:b]]
    return out + self.arrays["encoder/dense_0/bias"]

  def _rest(self, h: np.ndarray, start: int) -> np.ndarray:
    """Layers `start`.. of pre-activations h of layer `start` (when it
    exists), then the head."""
    a = self.arrays
    for i in range(start, self.layers):
      if i > start:
        h = h @ a[f"encoder/dense_{i}/kernel"] + a[f"encoder/dense_{i}/bias"]
      h = np.maximum(h, np.float32(0))
      if self.batch_norm:
        mean, var, scale, shift = (np.asarray(a[f"encoder/norm_{i}/{part}"])
                                   for part in BATCH_NORM)
        # flax's order: (h - mean) * (rsqrt(var + eps) * scale) + shift
        inverse = np.float32(1) / np.sqrt(var + np.float32(self.epsilon))
        h = (h - mean) * (inverse * scale) + shift
    return (h @ a["encoder/head/kernel"] + a["encoder/head/bias"]).astype(np.float32)

  def scores(self, inputs) -> np.ndarray:
    """[rows, dims] dense float32 -> [rows, bits] code scores."""
    h = np.asarray(inputs, np.float32)
    if self.layers == 0:
      return self._rest(h, 0)
    first = h @ self.arrays["encoder/dense_0/kernel"] + self.arrays["encoder/dense_0/bias"]
    return self._rest(first.astype(np.float32), 0)

  def sparse_scores(self, indptr, indices, values) -> np.ndarray:
    """CSR rows (indptr [rows + 1], column indices, values) -> [rows, bits]."""
    if self.layers == 0:  # no hidden layer: the head reads the input itself
      dense = np.zeros((len(indptr) - 1, self.dims), np.float32)
      for row in range(len(indptr) - 1):
        dense[row, indices[indptr[row]:indptr[row + 1]]] = values[indptr[row]:indptr[row + 1]]
      return self.scores(dense)
    return self._rest(self._first_layer(indptr, indices, values), 0)

  def codes(self, scores: np.ndarray) -> np.ndarray:
    """[rows, bits] scores -> [rows, bits] uint8 in {0, 1} (the sign)."""
    return (scores > 0).astype(np.uint8)
