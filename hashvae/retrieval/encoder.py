"""A trained run's encoder for inference: inputs (or texts) -> codes.

Shared by the notebook API and the search index; it needs the method
registry and the network, none of the training code. `numpy_arrays` exports
the weights the index's numpy encoder (numpy_encoder) computes the same
codes from, so that answering a query needs no jax.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from hashvae import methods
from hashvae.core.models import ModelSpec
from hashvae.retrieval import numpy_encoder
from hashvae.retrieval.numpy_encoder import NotIndexableError

BATCH_NORM_EPSILON = 1e-3  # hashvae.core.models.Encoder's batch norm
PROBE_ROWS = 16  # random inputs on which the numpy encoder must agree


def build_model(method: str, spec: ModelSpec):
  """The network of a registered method for this spec."""
  return methods.get(method).build_model(spec)


class Encoder:
  """Codes of a trained network in inference mode (batch norm's averages)."""

  def __init__(self, method: str, spec: ModelSpec, variables: dict, vectoriser=None):
    self.method, self.spec = method, spec
    self.model = build_model(method, spec)
    self.variables, self.vectoriser = variables, vectoriser
    self._scores = jax.jit(self._full_precision_scores)

  def _full_precision_scores(self, variables, x):
    # Full float32 as training computes by default (config.precision): an
    # accelerator's faster default would give other codes than the sweep's.
    with jax.default_matmul_precision("float32"):
      return self.model.apply(variables, x, method="code_scores")

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

  def _code_head(self) -> str:
    """The one dense layer outside the encoder MLP that `code_scores`
    creates (logits_head, mu_head, ...), mapping its width to the bits."""
    x = jnp.zeros((1, self.spec.dims), jnp.float32)
    made = jax.eval_shape(lambda: self.model.init(jax.random.key(0), x,
                                                  method="code_scores"))
    params = dict(made).get("params", {})
    width = self.spec.hidden[-1] if self.spec.hidden else self.spec.dims
    heads = [name for name, value in params.items() if name != "encoder"
             and isinstance(value, Mapping) and set(value) == {"kernel", "bias"}
             and value["kernel"].shape == (width, self.spec.bits)]
    if len(heads) != 1:
      raise NotIndexableError(f"method {self.method!r}: its code scores are not the encoder "
                              "MLP and one dense head, which a search index computes")
    return heads[0]

  def numpy_arrays(self) -> tuple[dict, dict]:
    """(layout, {numpy_encoder.array_names: float32 array}): the weights in
    the order `code_scores` applies them. NotIndexableError when the network
    computes anything else, found by comparing the two on random inputs."""
    spec, params = self.spec, self.variables["params"]
    stats = self.variables.get("batch_stats", {})
    head = self._code_head()
    flat = {}
    try:
      for i in range(len(spec.hidden)):
        dense = params["encoder"][f"Dense_{i}"]
        flat[f"encoder/dense_{i}/kernel"], flat[f"encoder/dense_{i}/bias"] = (
            dense["kernel"], dense["bias"])
        if spec.batch_norm:
          norm, running = params["encoder"][f"BatchNorm_{i}"], stats["encoder"][f"BatchNorm_{i}"]
          values = (running["mean"], running["var"], norm["scale"], norm["bias"])
          for part, value in zip(numpy_encoder.BATCH_NORM, values, strict=True):
            flat[f"encoder/norm_{i}/{part}"] = value
    except KeyError as e:
      raise NotIndexableError(f"method {self.method!r}: its network has no encoder weight "
                              f"{e}: not the encoder MLP a search index computes") from e
    flat["encoder/head/kernel"], flat["encoder/head/bias"] = (params[head]["kernel"],
                                                              params[head]["bias"])
    arrays = {name: np.asarray(flat[name], np.float32) for name in
              numpy_encoder.array_names(len(spec.hidden), spec.batch_norm)}
    layout = dict(layers=len(spec.hidden), batch_norm=spec.batch_norm,
                  epsilon=BATCH_NORM_EPSILON, head=head)
    self._check_numpy_encoder(layout, arrays)
    return layout, arrays

  def _check_numpy_encoder(self, layout: dict, arrays: dict):
    """NotIndexableError unless the numpy encoder's scores agree with the
    network's on sparse non-negative random inputs (up to float rounding)."""
    rng = np.random.default_rng(0)
    dims = self.spec.dims
    x = (rng.random((PROBE_ROWS, dims)) * (rng.random((PROBE_ROWS, dims)) < 0.2)).astype(
        np.float32)
    mine = numpy_encoder.NumpyEncoder(arrays, layout["layers"], layout["batch_norm"],
                                      layout["epsilon"]).scores(x)
    theirs = np.asarray(self._scores(self.variables, x))
    scale = max(float(np.abs(theirs).max()), 1e-6)
    if not np.allclose(mine, theirs, rtol=1e-4, atol=1e-4 * scale):
      raise NotIndexableError(f"method {self.method!r}: its code scores are not the encoder "
                              "MLP and one dense head, which a search index computes")
