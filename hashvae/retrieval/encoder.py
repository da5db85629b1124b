"""A trained run's encoder for inference: inputs (or texts) -> codes.

Shared by the notebook API and the search index; it needs the method
registry and the network, none of the training code.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import scipy.sparse

from hashvae import methods
from hashvae.core.models import ModelSpec


def build_model(method: str, spec: ModelSpec):
  """The network of a registered method for this spec."""
  return methods.get(method).build_model(spec)


class Encoder:
  """Codes of a trained network in inference mode (batch norm's averages)."""

  def __init__(self, method: str, spec: ModelSpec, variables: dict, vectoriser=None):
    self.method, self.spec = method, spec
    self.model = build_model(method, spec)
    self.variables, self.vectoriser = variables, vectoriser
    self._scores = jax.jit(lambda v, x: self.model.apply(v, x, method="code_scores"))

  @property
  def bits(self) -> int:
    return self.spec.bits

  def describe(self) -> dict:
    """What rebuilds the network: the method and its ModelSpec (JSON-able)."""
    return dict(method=self.method, spec=dataclasses.asdict(self.spec))

  def encode(self, inputs, batch_size: int = 1000) -> np.ndarray:
    """[items, dims] (dense, or scipy.sparse rows, densified a block at a
    time) -> [items, bits] uint8 in {0, 1}."""
    sparse = scipy.sparse.issparse(inputs)
    if not sparse:
      inputs = np.asarray(inputs, np.float32)
    if inputs.ndim != 2 or inputs.shape[1] != self.spec.dims:
      raise ValueError(f"inputs must be [items, {self.spec.dims}], got {inputs.shape}")
    block = lambda i: inputs[i:i + batch_size]
    dense = (lambda i: block(i).toarray().astype(np.float32)) if sparse else block
    parts = [np.asarray(self._scores(self.variables, dense(i))) > 0
             for i in range(0, inputs.shape[0], batch_size)]
    return np.concatenate(parts).astype(np.uint8) if parts else np.zeros(
        (0, self.bits), np.uint8)

  def encode_texts(self, texts) -> np.ndarray:
    """Documents -> codes, vectorised as the training data was."""
    if self.vectoriser is None:
      raise ValueError("this run was not trained on text: use encode(inputs)")
    inputs, _ = self.vectoriser.rows(self.vectoriser.counts(list(texts)))
    return self.encode(inputs)
