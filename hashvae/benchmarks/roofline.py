"""The roofline's pieces: this machine's matmul FLOP/s and memory bandwidth,
and a training step's model FLOPs and optimiser bytes, counted analytically."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hashvae.benchmarks.common import take_turns

F32 = 4  # bytes


def step_flops(dims, hidden, bits, classes, batch, first_width) -> int:
  """FLOPs (2 x multiply-adds) of one ssb_vae training step's matmuls.

  first_width: the inputs the first layer reads per item (dims when dense;
  the entry slots per item when sparse). Forward: the encoder layers, the
  code and classifier heads, the decoder (bits -> dims) and the B x B pairwise Gram
  matrices of codes and predictions. Backward: twice the forward for every
  layer (weight and input gradients) except the first (weights only).
  Elementwise work (softmax over dims, Adam) is not counted.
  """
  widths = (first_width,) + tuple(hidden)
  first = 2 * batch * widths[0] * widths[1]
  pairs = zip(widths[1:-1], widths[2:], strict=False)  # layer 2 onwards
  rest = sum(2 * batch * a * b for a, b in pairs)
  rest += 2 * batch * hidden[-1] * (bits + classes)  # code head, classifier
  rest += 2 * batch * bits * dims  # decoder
  rest += 2 * batch * batch * (bits + classes)  # pairwise Gram matrices
  return int(2 * first + 3 * rest)


def param_count(dims, hidden, bits, classes) -> tuple[int, int]:
  """(first kernel's weights, every other weight) of the model."""
  widths = (dims,) + tuple(hidden)
  first = dims * hidden[0]
  pairs = zip(widths[1:-1], widths[2:], strict=False)  # layer 2 onwards
  rest = hidden[0] + sum(a * b + b for a, b in pairs)
  rest += 2 * sum(hidden)  # batch-norm scale and bias
  rest += (hidden[-1] + 1) * (bits + classes)  # code head, classifier
  rest += (bits + 1) * dims  # decoder
  return first, rest


def optimizer_bytes(dims, hidden, bits, classes, mode, row_slots) -> int:
  """Bytes Adam moves per step, at the least.

  Dense Adam (optax) reads gradient, weight and both moments and writes the
  weight and moments: 7 float32 per weight. The sparse path's exact mode
  defers the first kernel's moment decay (optim.dense_adam_rows): per
  weight it reads weight and both moments and writes the weight (4), plus
  the moments' row slots read and written and the [row_slots, hidden]
  gradient rows read (5 per row-slot weight); the decay itself, 4 per weight
  once every DECAY_CHUNK steps, is left out. Fast mode moves only the row
  slots of the first kernel (weight and moments, read and written, and the
  gradient rows: 7 per row-slot weight).
  """
  first, rest = param_count(dims, hidden, bits, classes)
  row_grads = row_slots * hidden[0]
  kernel = {"dense": 7 * first, "sparse": 4 * first + 5 * row_grads,
            "fast": 7 * row_grads}[mode]
  return int((kernel + 7 * rest) * F32)


def machine_peaks(rounds: int) -> dict:
  """Measured float32 matmul FLOP/s and copy bandwidth of this machine."""
  n = 2048
  a = jnp.ones((n, n), jnp.float32)
  dot = jax.jit(jnp.dot).lower(a, a).compile()
  jax.block_until_ready(dot(a, a))
  big = jnp.ones((64 * 2**20,), jnp.float32)  # 256 MiB
  scale = jax.jit(lambda x: x * 1.0000001, donate_argnums=0).lower(big).compile()
  state = dict(big=scale(big))
  del big

  def copy():
    state["big"] = scale(state["big"])
    jax.block_until_ready(state["big"])

  times = take_turns(dict(dot=lambda: jax.block_until_ready(dot(a, a)),
                          copy=copy), max(rounds, 3) * 2)
  return dict(matmul_flops_per_s=2 * n**3 / min(times["dot"]),
              copy_bytes_per_s=2 * state["big"].nbytes / min(times["copy"]),
              how="best of the rounds: float32 2048^3 jnp.dot; in-place x * c "
                  "over 256 MiB (bytes read + written)")


# --- figures ------------------------------------------------------------------
