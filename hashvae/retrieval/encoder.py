"""A trained run's encoder for inference: inputs (or texts) -> codes.

Shared by the notebook API and the search index; it needs the method
registry and the network, none of the training code. `numpy_arrays` exports
the weights the index's numpy encoder (numpy_encoder) computes the same
codes from, so that answering a query needs no jax.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import flax.linen as nn
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

  def _top_level_calls(self, x, replace=None) -> list[tuple]:
    """[(name, input, output)] of the calls `code_scores` makes to the
    network's top-level parts (the encoder, the heads), in order, on inputs
    x [rows, dims]. replace=(name, value): that part returns `value`
    instead, and what the network does with it shows in the calls after."""
    calls = []

    def record(call, args, kwargs, context):
      path = context.module.path
      if context.method_name != "__call__" or len(path) != 1:
        return call(*args, **kwargs)
      out = call(*args, **kwargs)
      if replace is not None and path[0] == replace[0]:
        out = replace[1]
      calls.append((path[0], args[0] if args else None, out))
      return out

    with nn.intercept_methods(record):
      scores = self.model.apply(self.variables, x, method="code_scores")
    return calls + [(None, scores, None)]  # the scores: the input of no part

  def head_chain(self) -> list[dict]:
    """[{"name", "activation"}] of the dense heads `code_scores` applies
    after the encoder MLP, in order, and what follows each (a key of
    numpy_encoder.ACTIVATIONS): found by calling the network and, per head,
    making it return known values and reading what reaches the next head
    (or the scores). NotIndexableError when the network computes anything
    else between its encoder and its scores."""
    refuse = lambda why: NotIndexableError(
        f"method {self.method!r}: its code scores are not the encoder MLP and a chain of "
        f"dense heads, which a search index computes ({why})")
    x = np.zeros((PROBE_ROWS, self.spec.dims), np.float32)
    names = [name for name, _, _ in self._top_level_calls(x)[:-1]]
    if not names or names[0] != "encoder":
      raise refuse(f"it calls {names[:1] or 'nothing'} first, not its encoder")
    if names == ["encoder"] and self._encoder_is_one_dense_layer():
      heads, width = names, self.spec.dims  # the encoder is the lone head (AMMI)
    else:
      heads, width = names[1:], self.spec.hidden[-1] if self.spec.hidden else self.spec.dims
    if not heads:
      raise refuse("it applies no head after its encoder")
    if len(set(heads)) != len(heads):
      raise refuse(f"it calls a head twice: {heads}")
    for name in heads:
      value = self._dense_layer(name)
      kernel = value.get("kernel") if isinstance(value, Mapping) else None
      if set(value or ()) != {"kernel", "bias"} or np.ndim(kernel) != 2 or (
          kernel.shape[0] != width):
        raise refuse(f"{name!r} is not a dense layer reading a {width}-wide input")
      width = kernel.shape[1]
    if width != self.spec.bits:
      raise refuse(f"its last head gives {width} scores, not {self.spec.bits}")
    chain = []
    for name in heads:
      width = self._dense_layer(name)["kernel"].shape[1]
      # Known values over [-3, 3], where tanh and the identity differ.
      known = np.linspace(-3, 3, PROBE_ROWS * width, dtype=np.float32).reshape(-1, width)
      calls = self._top_level_calls(x, replace=(name, jnp.asarray(known)))
      if [called for called, _, _ in calls[:-1]] != names:
        raise refuse(f"the parts it calls depend on what its head {name!r} gives")
      # The next head's input, or the scores.
      after = np.asarray(calls[names.index(name) + 1][1], np.float32)
      found = [a for a, f in numpy_encoder.ACTIVATIONS.items()
               if after.shape == known.shape and np.allclose(after, f(known), rtol=1e-5,
                                                             atol=1e-6)]
      if not found:
        raise refuse(f"what follows its head {name!r} is none of the activations "
                     f"{sorted(numpy_encoder.ACTIVATIONS)}")
      chain.append(dict(name=name, activation=found[0]))
    return chain

  def _encoder_is_one_dense_layer(self) -> bool:
    """Whether the network's encoder is a single dense layer from the inputs
    to the scores (AMMI's posterior), which then serves as the lone head of a
    network with no hidden layer."""
    encoder = self.variables["params"].get("encoder")
    return (isinstance(encoder, Mapping) and set(encoder) == {"Dense_0"}
            and np.shape(encoder["Dense_0"].get("kernel")) == (self.spec.dims, self.spec.bits))

  def _dense_layer(self, name: str):
    """The parameters of the head `name` ("encoder": the encoder's one layer)."""
    params = self.variables["params"]
    return params["encoder"]["Dense_0"] if name == "encoder" else params.get(name)

  def numpy_arrays(self) -> tuple[dict, dict]:
    """(layout, {numpy_encoder.array_names: float32 array}): the weights in
    the order `code_scores` applies them. NotIndexableError when the network
    computes anything else, found by comparing the two on random inputs."""
    spec, params = self.spec, self.variables["params"]
    stats = self.variables.get("batch_stats", {})
    chain = self.head_chain()
    layers = 0 if chain[0]["name"] == "encoder" else len(spec.hidden)
    batch_norm = spec.batch_norm and layers > 0
    flat = {}
    try:
      for i in range(layers):
        dense = params["encoder"][f"Dense_{i}"]
        flat[f"encoder/dense_{i}/kernel"], flat[f"encoder/dense_{i}/bias"] = (
            dense["kernel"], dense["bias"])
        if batch_norm:
          norm, running = params["encoder"][f"BatchNorm_{i}"], stats["encoder"][f"BatchNorm_{i}"]
          values = (running["mean"], running["var"], norm["scale"], norm["bias"])
          for part, value in zip(numpy_encoder.BATCH_NORM, values, strict=True):
            flat[f"encoder/norm_{i}/{part}"] = value
    except KeyError as e:
      raise NotIndexableError(f"method {self.method!r}: its network has no encoder weight "
                              f"{e}: not the encoder MLP a search index computes") from e
    for stored, link in zip(numpy_encoder.head_names(len(chain)), chain, strict=True):
      head = self._dense_layer(link["name"])
      flat[f"{stored}/kernel"], flat[f"{stored}/bias"] = head["kernel"], head["bias"]
    arrays = {name: np.asarray(flat[name], np.float32) for name in
              numpy_encoder.array_names(layers, batch_norm, len(chain))}
    layout = dict(layers=layers, batch_norm=batch_norm,
                  epsilon=BATCH_NORM_EPSILON, head=chain[-1]["name"], chain=chain)
    self._check_numpy_encoder(layout, arrays)
    return layout, arrays

  def _check_numpy_encoder(self, layout: dict, arrays: dict):
    """NotIndexableError unless the numpy encoder's scores agree with the
    network's on sparse non-negative random inputs (up to float rounding)."""
    rng = np.random.default_rng(0)
    dims = self.spec.dims
    x = (rng.random((PROBE_ROWS, dims)) * (rng.random((PROBE_ROWS, dims)) < 0.2)).astype(
        np.float32)
    mine = numpy_encoder.NumpyEncoder.from_layout(arrays, layout).scores(x)
    theirs = np.asarray(self._scores(self.variables, x))
    scale = max(float(np.abs(theirs).max()), 1e-6)
    if not np.allclose(mine, theirs, rtol=1e-4, atol=1e-4 * scale):
      raise NotIndexableError(f"method {self.method!r}: its code scores are not the encoder "
                              "MLP and the chain of dense heads found in it "
                              f"({layout['chain']}), which a search index computes")
