"""A trained encoder's code scores in numpy alone, so that answering a query
imports no jax, flax or optax.

Every method whose network can be indexed computes its code scores as the
study's encoder MLP followed by a short chain of dense heads, each followed
by one of ACTIVATIONS (hashvae.core.models: `Encoder` then `logits_head` or
`mu_head` for most methods; SMASH's `long_head`, tanh, `logits_head`), in
inference mode:

    for each hidden layer i:  h = relu(h @ kernel_i + bias_i)
                              h = (h - mean_i) * scale_i / sqrt(var_i + eps) + shift_i
                                  (batch norm's running averages; when built with it)
    for each head j:          h = activation_j(h @ head_kernel_j + head_bias_j)
    scores = h;  code = 1[scores > 0]

hashvae.retrieval.encoder.Encoder.numpy_arrays exports these arrays and the
layout from a trained run (and refuses a network that computes anything
else); the first layer reads sparse rows as a gather of the kernel's rows of
the present terms. With no hidden layer the first head reads the inputs:
AMMI's encoder, one dense layer from the inputs to the scores, is stored as
`layers` 0 and a lone head.

The layout (a JSON dict in the index file) holds `layers`, `batch_norm`,
`epsilon`, `head` (the network's name of its last head) and `chain` (one
{"name", "activation"} per head, in order). A layout written before chains
existed has no `chain`: it is one head with "identity". A lone head is
stored as `encoder/head/*`, the arrays it always had; the heads of a longer
chain as `encoder/head_0/*`, `encoder/head_1/*`, ..., which a hashvae that
predates chains finds missing and so refuses instead of misreading.
"""

from __future__ import annotations

import numpy as np

BATCH_NORM = ("mean", "var", "scale", "shift")
# What may follow a head: name -> float32 [rows, width] -> [rows, width].
ACTIVATIONS = {"identity": lambda h: h, "tanh": np.tanh}
UNCHAINED = ("identity",)  # the activations of a layout without `chain`


class NotIndexableError(ValueError):
  """A run whose code scores this module cannot compute (a fitted method, or
  a network other than the encoder MLP and a chain of dense heads)."""


def layout_activations(layout: dict) -> tuple[str, ...]:
  """The activation after each head of a stored layout, in order."""
  if "chain" not in layout:
    return UNCHAINED
  return tuple(link["activation"] for link in layout["chain"])


def activations_problem(activations) -> str:
  """Why a chain's activations cannot be computed here, or "" when they can."""
  if not activations or any(a not in ACTIVATIONS for a in activations):
    return (f"encoder head activations {list(activations)}: each must be one of "
            f"{sorted(ACTIVATIONS)}, and there must be at least one")
  return ""


def head_names(heads: int) -> list[str]:
  """The array prefix of each of a chain's `heads` heads, in order."""
  return ["encoder/head"] if heads == 1 else [f"encoder/head_{j}" for j in range(heads)]


def array_names(layers: int, batch_norm: bool, heads: int = 1) -> list[str]:
  """The arrays an encoder of `layers` hidden layers and `heads` heads is
  stored as, in order."""
  names = []
  for i in range(layers):
    names += [f"encoder/dense_{i}/kernel", f"encoder/dense_{i}/bias"]
    if batch_norm:
      names += [f"encoder/norm_{i}/{part}" for part in BATCH_NORM]
  for head in head_names(heads):
    names += [f"{head}/kernel", f"{head}/bias"]
  return names


class NumpyEncoder:
  """Code scores of stored weights: `arrays` maps `array_names` to float32
  arrays (memory-mapped ones are read a row at a time where possible);
  `activations` names what follows each head (keys of ACTIVATIONS)."""

  def __init__(self, arrays: dict, layers: int, batch_norm: bool, epsilon: float,
               activations=UNCHAINED):
    problem = activations_problem(activations)
    if problem:
      raise ValueError(problem)
    self.arrays, self.layers = arrays, layers
    self.batch_norm, self.epsilon = batch_norm, float(epsilon)
    self.activations = tuple(activations)
    self.heads = head_names(len(self.activations))

  @classmethod
  def from_layout(cls, arrays: dict, layout: dict) -> NumpyEncoder:
    """The encoder a stored layout (see the module docstring) describes."""
    return cls(arrays, layout["layers"], layout["batch_norm"], layout["epsilon"],
               layout_activations(layout))

  @property
  def _first(self) -> str:
    """The array prefix of the dense layer that reads the inputs: the first
    hidden layer, or with none, the first head."""
    return "encoder/dense_0" if self.layers else self.heads[0]

  @property
  def dims(self) -> int:
    return self.arrays[f"{self._first}/kernel"].shape[0]

  @property
  def bits(self) -> int:
    return self.arrays[f"{self.heads[-1]}/bias"].shape[0]

  def _after_first(self, h: np.ndarray) -> np.ndarray:
    """[rows, width] float32 product of the first dense layer (x @ kernel +
    bias) -> [rows, bits] scores: the rest of the hidden layers, then the
    chain of heads."""
    a = self.arrays
    for i in range(self.layers):
      if i:
        h = h @ a[f"encoder/dense_{i}/kernel"] + a[f"encoder/dense_{i}/bias"]
      h = np.maximum(h, np.float32(0))
      if self.batch_norm:
        mean, var, scale, shift = (np.asarray(a[f"encoder/norm_{i}/{part}"])
                                   for part in BATCH_NORM)
        # flax's order: (h - mean) * (rsqrt(var + eps) * scale) + shift
        inverse = np.float32(1) / np.sqrt(var + np.float32(self.epsilon))
        h = (h - mean) * (inverse * scale) + shift
    for j, (head, activation) in enumerate(zip(self.heads, self.activations, strict=True)):
      if j or self.layers:
        h = h @ a[f"{head}/kernel"] + a[f"{head}/bias"]
      h = ACTIVATIONS[activation](h)
    return h.astype(np.float32)

  def scores(self, inputs) -> np.ndarray:
    """[rows, dims] dense float32 -> [rows, bits] code scores."""
    first = self.arrays[f"{self._first}/kernel"], self.arrays[f"{self._first}/bias"]
    h = np.asarray(inputs, np.float32) @ first[0] + first[1]
    return self._after_first(h.astype(np.float32))

  def sparse_scores(self, indptr, indices, values) -> np.ndarray:
    """CSR rows (indptr [rows + 1], column indices, values) -> [rows, bits]:
    per row, the first layer reads only the kernel's rows of its columns."""
    kernel = self.arrays[f"{self._first}/kernel"]
    h = np.empty((len(indptr) - 1, kernel.shape[1]), np.float32)
    for row in range(len(indptr) - 1):
      a, b = indptr[row], indptr[row + 1]
      h[row] = values[a:b].astype(np.float32) @ kernel[indices[a:b]]
    return self._after_first(h + self.arrays[f"{self._first}/bias"])

  def codes(self, scores: np.ndarray) -> np.ndarray:
    """[rows, bits] scores -> [rows, bits] uint8 in {0, 1} (the sign)."""
    return (scores > 0).astype(np.uint8)
