"""SMASH and its supervised variant (He, Huang, Chen, Liu, Tong, Wang, Lian,
Wang, "An Efficient and Robust Semantic Hashing Framework for Similar Text
Search", TOIS 2023).

The network (h = the shared encoder's hidden vector; L = LONG_BITS = 128):

    u = tanh(Dense(L)(h))                  the long code   [batch, L]
    l = Dense(K)(u),  z = tanh(l)           the short code  [batch, K]
    b = 1[l > 0]                            (test: the hash code, sign of z)
    p(x | z) = softmax(W z + c)             (the study's decoder, on tanh z)

Each step also encodes S = NOISY_COPIES noisy copies of every document:
copy s keeps each word of x_i with probability r = min(|n|, 1),
n ~ N(0, (1 - sigma)^2) drawn per word and copy (sigma = NOISE_SIGMA), and
gives (u_si, z_si). The clean batch and its copies go through the encoder
as one stack of (1 + S) B rows, so batch norm's statistics are those of all
of them. The objective (z and Z the clean batch's short codes [B, K], E the
memory's valid codes [M', K]):

    eps_is = softmax_s(u_i . u_si)                      attention over the copies
    rec    = mean_i rec(x_i | z_i)
           + 1/(S B) sum_{s,i} eps_is rec(x_i | z_si)   (the noisy copies
                                                          reconstruct x_i)
    sim(z, u) = 1/(n (n - 1)) sum_{i != j} |z_i.z_j / K - u_i.u_j / L|
    similarity    = sim(z, u) + sim(z~, u~)   (z~, u~: all S B noisy rows)
    balance       = sum_k w_k |sum_i Z_ik| / K,  w = softmax_k(|sum_m E_mk|)
    decorrelation = ||(Z^T Z / B - I) * W||_F^2 / K^2,
                    W = softmax over each row of |E^T E / M' - I|

    smash:   L = rec + similarity * sim + balance * bal + decorrelation * dec
    smash_s: L = smash + alpha * min(t / 1000, 150) * mean_i CE(y_i, softmax(V z_i + d))

rec(x | z) = -sum_d t_d log softmax(W z + c)_d (blocks.reconstruction); CE
the masked cross-entropy of a classifier on the clean short code z (0 for
an unlabelled item; the mean divides by B); t the optimiser steps taken.
The balance weights w and W come from the memory and carry no gradient:
bits that are unbalanced (or pairs correlated) over the remembered codes
weigh more in the batch's term.

The memory. The network keeps the sign codes sign(l) of the last M =
MEMORY_SIZE clean training items in a queue: `CodeMemory`, a [M, K]
variable and a count of the codes written, in the `batch_stats`
collection, which the trainer carries between steps and checkpoints with
the batch-norm statistics (as doc2hash.StepCount keeps its step count).
A training call writes the batch's codes (under stop_gradient) at the
queue's write position, count mod M, oldest first, and the objective
reads the queue after that write as out["memory"] [M, K] with
out["memory_valid"] [M] (1 for a slot written, 0 otherwise): the queue
starts empty (zeros, all slots invalid) and its empty slots count in no
sum and no divisor (with no valid slot, E^T E / M' = 0). An init or a call
with train=False, and `code_scores` (the encoding the trainer evaluates),
do not change it. smash_s's step count t is a doc2hash.StepCount in the
same collection.

Checked against the public code (hly1998/SMASH: model/SMASH.py, train.py,
utils/loss.py; and the collection hly1998/DeepTextHashing:
models/SMASH/SMASH.py, SMASH_S.py, run.sh). The paper's text could not be
read here beyond its abstract and a summary; the equations above are the
public code's. Where this implementation and the public code differ:
- The memory: public, one slot per training item holding its last sign
  code, and a per-item age; the objective reads the items seen in the last
  (1 - (1 - c)(1 - em_alpha)) of an epoch (em_alpha = 0.1 in run.sh, c the
  loss's relative fall since its largest epoch mean), so between a tenth of
  an epoch and a whole one, widening as the loss falls; in the first 10
  epochs the batch's codes are written before the read, afterwards after
  it. Here a fixed queue of the last M = 2048 codes (about a fifth of a
  Snippets epoch of 10,060 items; a constant of the network, which sees
  only the ModelSpec), always read after this batch's write. The public
  slots start as zero codes that count in the divisor; here empty slots
  are masked.
- When the balance terms start: the collection's scripts use them from the
  first step (as here); hly1998/SMASH's train.py switches them on only
  after the test precision has fallen for 5 epochs in a row, which chooses
  on the test split and is not reproduced.
- The attention: the public code reshapes the copies' long codes
  [S B, L] to [B, L, S] (which pairs document i with rows and dimensions
  of other documents' copies) before the product; here each document is
  paired with its own copies, as the attention is meant. eps is not
  detached, as public.
- Weights: similarity = 1, balance = 0.005, decorrelation = 0.001 (the
  collection's run.sh for every dataset and length, both variants);
  hly1998/SMASH's argparse defaults are 0.5, 1 and 0.01. sigma = 0.3 and
  S = 3 copies (run.sh; NOISE_SIGMA, NOISY_COPIES: constants of the network).
- smash_s: the public label weight rises by 1/1000 per step from 0 up to
  150; here alpha (default 1) scales that ramp, computed from the step
  count, and only observed labels count (the semi-supervised setting).
- The code: public, each bit of tanh(l) thresholded at its median over the
  training codes; here 1[l > 0] (the sign of z), as every method here
  thresholds its code scores at 0. A search index cannot compute these
  scores (two heads after the encoder, not one).
- Reconstruction targets: public, the tf-idf input vector itself; here the
  study's targets (blocks.reconstruction).
- Encoder: the study's (2 x 500 ReLU + batch norm, its statistics over the
  batch and its copies) instead of the public 2 x 1000 ReLU with dropout
  0.1; Adam at the config's learning rate (public 1e-3, decayed by 0.96
  every 5,000 steps); the config's epochs and batch (public 300 epochs of
  64, stopped 50 epochs after the best test p@100, which is the figure
  reported); here the last epoch's codes are evaluated and nothing is
  chosen on the test split.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from hashvae.core.models import Dense, Encoder, ModelSpec, SpecModule, WideDense
from hashvae.core.sparse_rows import SparseEntries, SparseRows
from hashvae.methods import blocks
from hashvae.methods.doc2hash import StepCount
from hashvae.methods.nash import CHOICES, OPTIONS
from hashvae.methods.registry import register

LONG_BITS = 128  # the long code's width (public)
NOISY_COPIES = 3  # noisy copies of each document per step (public n_sample)
NOISE_SIGMA = 0.3  # a word's keep rate is min(|N(0, (1 - sigma)^2)|, 1) (public)
MEMORY_SIZE = 2048  # codes the memory queue holds
LABEL_RAMP_STEPS = 1000.0  # smash_s's label weight rises by 1 per this many steps
LABEL_RAMP_CAP = 150.0  # ... up to this (public)


def keep_mask(key, shape, sigma):
  """Which words a noisy copy keeps: 1 with probability min(|n|, 1),
  n ~ N(0, (1 - sigma)^2), drawn per entry. -> float32 [shape] in {0, 1}."""
  rate_key, keep_key = jax.random.split(key)
  rate = jnp.minimum(jnp.abs(jax.random.normal(rate_key, shape)) * (1.0 - sigma), 1.0)
  return (jax.random.uniform(keep_key, shape) < rate).astype(jnp.float32)


def items_in(x) -> int:
  """The batch size of a dense [batch, dims] or sparse batch."""
  if isinstance(x, SparseEntries):
    return x.num_items
  return (x.indices if isinstance(x, SparseRows) else x).shape[0]


def with_noisy_copies(x, key, copies: int, sigma: float):
  """The batch x, then `copies` noisy copies of it (keep_mask on its words),
  stacked: [batch, dims] -> [(1 + copies) batch, dims], copy-major; a
  SparseRows [batch, width] or SparseEntries batch stacks the same way
  (reading the same kernel rows)."""
  if isinstance(x, SparseEntries):
    n = x.num_items
    noisy = x.values * keep_mask(key, (copies,) + x.values.shape, sigma)
    # Padding entries (item n) must stay out of range in every copy.
    offsets = n * jnp.arange(1, copies + 1)[:, None]
    items = jnp.where(x.items < n, x.items + offsets, (1 + copies) * n)
    return SparseEntries(jnp.tile(x.indices, 1 + copies),
                         jnp.concatenate([x.values, noisy.reshape(-1)]),
                         jnp.concatenate([x.items, items.reshape(-1)]),
                         x.rows, (1 + copies) * n)
  if isinstance(x, SparseRows):
    noisy = x.values * keep_mask(key, (copies,) + x.values.shape, sigma)
    return SparseRows(jnp.tile(x.indices, (1 + copies, 1)),
                      jnp.concatenate([x.values, noisy.reshape(-1, x.values.shape[-1])]),
                      x.rows)
  noisy = x * keep_mask(key, (copies,) + x.shape, sigma)
  return jnp.concatenate([x, noisy.reshape(-1, x.shape[-1])])


class CodeMemory(nn.Module):
  """A queue of the last `size` codes written, in the 'batch_stats'
  collection (carried between steps and checkpointed by the trainer):
  `codes` [size, bits] and `written` (int32, the codes written so far; the
  next write starts at slot written mod size). A training call (not an
  init) writes the batch's codes, stop_gradient, oldest first; every call
  returns the queue after it: ([size, bits], valid [size] float32, 1 for a
  written slot)."""

  size: int

  @nn.compact
  def __call__(self, codes, train: bool):
    memory = self.variable("batch_stats", "codes",
                           lambda: jnp.zeros((self.size, codes.shape[-1]), jnp.float32))
    written = self.variable("batch_stats", "written", lambda: jnp.zeros((), jnp.int32))
    if train and not self.is_initializing():
      batch = codes.shape[0]
      new = jax.lax.stop_gradient(codes[-self.size:]).astype(jnp.float32)
      # A batch longer than the queue leaves only its last `size` codes.
      slots = (written.value + batch - new.shape[0] + jnp.arange(new.shape[0])) % self.size
      memory.value = memory.value.at[slots].set(new)
      written.value = written.value + batch
    valid = jnp.arange(self.size) < jnp.minimum(written.value, self.size)
    return memory.value, valid.astype(jnp.float32)


class SmashModel(SpecModule):
  """Encoder, long code, short code on it, the study's decoder on the short
  code, a classifier on it (read by smash_s), the noisy copies and the
  memory queue of past codes."""

  memory_size: int = MEMORY_SIZE
  copies: int = NOISY_COPIES

  def setup(self):
    # Named `encoder`: the sparse input path and the row-wise optimiser
    # address params["encoder"]["Dense_0"]["kernel"].
    self.encoder = Encoder(self.hidden, self.batch_norm, input_dims=self.dims)
    self.long_head = Dense(LONG_BITS)
    self.logits_head = Dense(self.bits)
    self.classifier = Dense(self.num_classes)
    self.decoder = WideDense(self.dims)
    self.memory = CodeMemory(self.memory_size)
    self.step_count = StepCount()

  def code_scores(self, x, train: bool = False):
    """[batch, dims] (or a sparse batch) -> [batch, bits] logits l of the short
    code; the code is 1[l > 0]. Reads and writes no memory."""
    return self.logits_head(jnp.tanh(self.long_head(self.encoder(x, train))))

  def __call__(self, x, temperature, train: bool = True):
    """One pass over the batch and its noisy copies (drawn from the 'sample'
    stream). `temperature` is unused.

    Returns, for the clean batch: hidden, long_code [batch, LONG_BITS],
    logits and code (tanh of them) [batch, bits], recon_logits [batch,
    dims], class_logits [batch, classes]; for the copies: noisy_long_code
    [copies, batch, LONG_BITS], noisy_code [copies, batch, bits],
    noisy_recon_logits [copies, batch, dims]; and memory [memory_size,
    bits], memory_valid [memory_size] (the queue after this call's write)
    and steps (training steps taken before this one, a scalar).
    """
    del temperature
    batch = items_in(x)
    stacked = with_noisy_copies(x, self.make_rng("sample"), self.copies, NOISE_SIGMA)
    h = self.encoder(stacked, train)
    long_code = jnp.tanh(self.long_head(h))
    logits = self.logits_head(long_code)
    code = jnp.tanh(logits)
    recon = self.decoder(code)
    memory, valid = self.memory(jnp.sign(logits[:batch]), train)
    copies = lambda a: a[batch:].reshape((self.copies, batch) + a.shape[1:])
    return dict(hidden=h[:batch], long_code=long_code[:batch], logits=logits[:batch],
                code=code[:batch], recon_logits=recon[:batch],
                class_logits=self.classifier(code[:batch]),
                noisy_long_code=copies(long_code), noisy_code=copies(code),
                noisy_recon_logits=copies(recon), memory=memory, memory_valid=valid,
                steps=self.step_count(train))


def smash_model(spec: ModelSpec):
  return SmashModel(**dataclasses.asdict(spec))


def copy_attention(long_code, noisy_long_code):
  """eps [batch, copies] = softmax over the copies of u_i . u_si, for
  long_code [batch, L] and noisy_long_code [copies, batch, L]."""
  return jax.nn.softmax(jnp.einsum("bl,sbl->bs", long_code, noisy_long_code), axis=-1)


def similarity_gap(code, long_code):
  """Mean over the pairs i != j of |z_i.z_j / K - u_i.u_j / L|, for
  code [n, K] and long_code [n, L] -> scalar (0 for n = 1)."""
  n = code.shape[0]
  short = code @ code.T / code.shape[-1]
  long = long_code @ long_code.T / long_code.shape[-1]
  off_diagonal = 1.0 - jnp.eye(n, dtype=code.dtype)
  return jnp.sum(jnp.abs(short - long) * off_diagonal) / max(n * (n - 1), 1)


def bit_balance(code, memory, valid):
  """sum_k w_k |sum_i z_ik| / K, w = softmax_k(|sum_m E_mk|) over the valid
  memory rows: code [batch, K], memory [M, K], valid [M] -> scalar."""
  w = jax.nn.softmax(jnp.abs(valid @ memory))
  return jnp.sum(jnp.abs(jnp.sum(code, 0)) * w) / code.shape[-1]


def bit_decorrelation(code, memory, valid):
  """||(Z^T Z / B - I) * W||_F^2 / K^2, W the row-wise softmax of
  |E^T E / M' - I| over the M' valid memory rows (E^T E / M' = 0 when
  none is): code [batch, K], memory [M, K], valid [M] -> scalar."""
  bits = code.shape[-1]
  eye = jnp.eye(bits, dtype=code.dtype)
  remembered = (memory * valid[:, None]).T @ memory / jnp.maximum(jnp.sum(valid), 1.0)
  w = jax.nn.softmax(jnp.abs(remembered - eye), axis=-1)
  return jnp.sum(jnp.square((code.T @ code / code.shape[0] - eye) * w)) / bits**2


def smash_terms(out, batch, hp, options):
  """(loss, terms) of smash: rec (clean + attended copies), the similarity
  gap, and the memory-weighted balance and decorrelation."""
  rec = jnp.mean(blocks.reconstruction(out, batch, options))
  per_copy = jax.vmap(lambda logits: blocks.reconstruction(
      dict(recon_logits=logits), batch, options))(out["noisy_recon_logits"])  # [copies, batch]
  eps = copy_attention(out["long_code"], out["noisy_long_code"])
  noisy_rec = jnp.mean(eps.T * per_copy)
  flat = lambda a: a.reshape(-1, a.shape[-1])
  sim = (similarity_gap(out["code"], out["long_code"])
         + similarity_gap(flat(out["noisy_code"]), flat(out["noisy_long_code"])))
  memory = jax.lax.stop_gradient(out["memory"])
  valid = jax.lax.stop_gradient(out["memory_valid"])
  bal = bit_balance(out["code"], memory, valid)
  dec = bit_decorrelation(out["code"], memory, valid)
  loss = (rec + noisy_rec + hp["similarity"] * sim + hp["balance"] * bal
          + hp["decorrelation"] * dec)
  return loss, dict(loss=loss, reconstruction=rec, noisy_reconstruction=noisy_rec,
                    similarity=sim, balance=bal, decorrelation=dec)


WEIGHTS = dict(similarity=1.0, balance=0.005, decorrelation=0.001)


@register("smash", weights=WEIGHTS, options=OPTIONS, choices=CHOICES, model=smash_model)
def smash(out, batch, hp, options):
  """SMASH: attended noisy copies, long-short code similarity, and bit
  balance and decorrelation weighted by a memory of past codes."""
  return smash_terms(out, batch, hp, options)


@register("smash_s", weights=dict(WEIGHTS, alpha=1.0), options=OPTIONS, choices=CHOICES,
          model=smash_model)
def smash_s(out, batch, hp, options):
  """Supervised SMASH: smash + alpha * min(t / 1000, 150) * CE of a classifier
  on the short code (observed labels only; t the steps taken)."""
  loss, terms = smash_terms(out, batch, hp, options)
  ce = blocks.pointwise(out, batch, options)
  ramp = jnp.minimum(out["steps"] / LABEL_RAMP_STEPS, LABEL_RAMP_CAP)
  loss = loss + hp["alpha"] * ramp * ce
  return loss, dict(terms, loss=loss, pointwise=ce)
