"""SMASH and SMASH-S (hashvae/methods/smash.py): each term of the objective
against numpy on a fixed `out` and batch, the noisy copies on every input
form, the memory queue of past codes (order, masking, encode calls leave it
alone, no gradient into it), and a tiny sweep on the digits data."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_vae_methods import B, C, D, K, make_batch, normal, np_log_softmax

from configs import digits
from hashvae import data, methods
from hashvae.core import sparse
from hashvae.core.sparse_rows import SparseEntries, SparseRows, padded_rows
from hashvae.methods import smash
from hashvae.sweep import experiment

from conftest import with_fields

rng = np.random.default_rng(11)
S, L, M = 3, 6, 7  # copies, long-code width, memory slots
VALID = np.array([1, 1, 0, 1, 0, 1, 0], np.float32)
HP = dict(similarity=jnp.float32(0.7), balance=jnp.float32(0.3),
          decorrelation=jnp.float32(0.2), alpha=jnp.float32(0.5))


def np_softmax(x, axis=-1):
  e = np.exp(x - x.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)


def np_rec(logits, targets):
  return -(targets * np_log_softmax(logits)).sum(-1)


def np_similarity_gap(z, u):
  n, total = len(z), 0.0
  for i in range(n):
    for j in range(n):
      if i != j:
        total += abs(z[i] @ z[j] / z.shape[1] - u[i] @ u[j] / u.shape[1])
  return total / (n * (n - 1))


def np_balance(z, memory, valid):
  e = memory[valid > 0]
  w = np_softmax(np.abs(e.sum(0)))
  return (np.abs(z.sum(0)) * w).sum() / z.shape[1]


def np_decorrelation(z, memory, valid):
  e, k = memory[valid > 0], z.shape[1]
  remembered = e.T @ e / len(e) if len(e) else np.zeros((k, k))
  w = np_softmax(np.abs(remembered - np.eye(k)), axis=1)
  return (((z.T @ z / len(z) - np.eye(k)) * w) ** 2).sum() / k**2


def fixed_out(valid=VALID):
  memory = np.sign(normal(M, K))
  memory[valid == 0] = 5.0  # unwritten slots hold values that must not count
  return dict(code=np.tanh(normal(B, K, scale=2.0)), long_code=np.tanh(normal(B, L)),
              noisy_code=np.tanh(normal(S, B, K, scale=2.0)),
              noisy_long_code=np.tanh(normal(S, B, L)), recon_logits=normal(B, D),
              noisy_recon_logits=normal(S, B, D), class_logits=normal(B, C),
              memory=memory, memory_valid=valid, steps=np.float32(2500.0))


@functools.partial(jax.jit, static_argnums=0)  # one compile per method, not per op
def objective(name, out, b):
  return methods.get(name).objective(out, b, methods.Weights(name, HP),
                                     methods.default_options(name))


# The objective against numpy ----------------------------------------------------------

def test_each_term_is_its_numpy_computation():
  out, b = fixed_out(), make_batch()
  t = b["targets"]
  rec = np_rec(out["recon_logits"], t).mean()
  eps = np_softmax(np.einsum("bl,sbl->bs", out["long_code"], out["noisy_long_code"]))
  per_copy = np.stack([np_rec(out["noisy_recon_logits"][s], t) for s in range(S)])
  noisy_rec = (eps.T * per_copy).sum() / (S * B)
  sim = (np_similarity_gap(out["code"], out["long_code"])
         + np_similarity_gap(out["noisy_code"].reshape(S * B, K),
                             out["noisy_long_code"].reshape(S * B, L)))
  bal = np_balance(out["code"], out["memory"], VALID)
  dec = np_decorrelation(out["code"], out["memory"], VALID)
  loss, terms = objective("smash", out, b)
  expected = dict(reconstruction=rec, noisy_reconstruction=noisy_rec, similarity=sim,
                  balance=bal, decorrelation=dec)
  for name, value in expected.items():
    np.testing.assert_allclose(terms[name], value, rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(loss, rec + noisy_rec + 0.7 * sim + 0.3 * bal + 0.2 * dec,
                             rtol=1e-5)
  # smash_s: the label term on the ramp, min(2500 / 1000, 150) = 2.5.
  ce = -(b["label_rows"] * np_log_softmax(out["class_logits"])).sum(-1).mean()
  loss_s, terms_s = objective("smash_s", out, b)
  np.testing.assert_allclose(terms_s["pointwise"], ce, rtol=1e-5)
  np.testing.assert_allclose(loss_s, loss + 0.5 * 2.5 * ce, rtol=1e-5)


def test_attention_weights_each_document_by_its_own_copies():
  u = normal(B, L)
  copies = np.stack([0.1 * normal(B, L), u, -u])  # copy 1 agrees with its document
  eps = np.asarray(smash.copy_attention(u, copies))
  np.testing.assert_allclose(eps.sum(1), 1.0, rtol=1e-6)
  assert (eps.argmax(1) == 1).all()


def test_unwritten_memory_slots_count_in_no_sum_and_no_divisor():
  code = np.tanh(normal(B, K, scale=2.0))
  memory = np.sign(normal(M, K))
  other = np.where(VALID[:, None] > 0, memory, normal(M, K, scale=9.0))
  for f in (smash.bit_balance, smash.bit_decorrelation):
    np.testing.assert_allclose(f(code, memory, VALID), f(code, other, VALID), rtol=1e-6)
  # An empty queue: uniform balance weights, and E^T E / M' taken as 0.
  empty = np.zeros(M, np.float32)
  np.testing.assert_allclose(smash.bit_balance(code, memory, empty),
                             np.abs(code.sum(0)).mean() / K, rtol=1e-5)
  np.testing.assert_allclose(smash.bit_decorrelation(code, other, empty),
                             np_decorrelation(code, memory, empty), rtol=1e-5)


def test_memory_weights_the_remembered_unbalanced_bit_more():
  code = np.zeros((B, K), np.float32)
  code[:, 0] = 1.0  # the batch leans on bits 0 and 1 equally
  code[:, 1] = 1.0
  memory = np.ones((M, K), np.float32) * np.array([1, -1, 1, -1], np.float32)
  memory[:, 0] = 1.0  # ... but the memory remembers bit 0 unbalanced, bit 1 not
  memory[::2, 1] = -memory[::2, 1]
  valid = np.ones(M, np.float32)
  grad = jax.jit(jax.grad(lambda z: smash.bit_balance(z, memory, valid)))(code)
  assert (np.abs(grad[:, 0]) > np.abs(grad[:, 1])).all()


def test_unlabelled_items_contribute_no_supervised_loss_and_the_ramp_starts_at_zero():
  out, b = fixed_out(), make_batch()
  g = jax.jit(jax.grad(lambda c: objective("smash_s", dict(out, class_logits=c), b)[0]))(
      out["class_logits"])
  np.testing.assert_array_equal(g[b["labelled"] == 0], 0.0)
  assert np.abs(g[b["labelled"] > 0]).sum() > 0
  at_start = dict(out, steps=np.float32(0.0))
  np.testing.assert_allclose(objective("smash_s", at_start, b)[0],
                             objective("smash", at_start, b)[0], rtol=1e-6)


# Noisy copies -----------------------------------------------------------------------

def test_keep_rate_is_the_clipped_half_normal_mean():
  sigma = 0.3
  s = 1.0 - sigma
  # E[min(|n|, 1)], n ~ N(0, s^2): s sqrt(2/pi) (1 - exp(-1/(2 s^2))) + P(|n| > 1).
  from math import erf, exp, pi, sqrt
  expected = s * sqrt(2 / pi) * (1 - exp(-1 / (2 * s * s))) + (1 - erf(1 / (s * sqrt(2))))
  mask = jax.jit(smash.keep_mask, static_argnums=(1, 2))(jax.random.key(0), (200_000,), sigma)
  rate = np.asarray(mask).mean()
  assert abs(rate - expected) < 0.005


def dense_of_entries(x: SparseEntries, dims):
  """[num_items, dims] from a SparseEntries batch whose rows are the identity."""
  picked = np.asarray(x.rows)[np.minimum(np.asarray(x.indices), dims - 1)]
  picked[np.asarray(x.indices) >= dims] = 0
  out = np.zeros((x.num_items + 1, dims), np.float32)
  np.add.at(out, np.minimum(np.asarray(x.items), x.num_items), np.asarray(x.values)[:, None] * picked)
  return out[:x.num_items]


def test_noisy_copies_follow_the_batch_and_drop_only_its_words():
  x = np.asarray(rng.uniform(0.5, 1.0, size=(B, D)) * (rng.uniform(size=(B, D)) < 0.6),
                 np.float32)
  indices, values = map(jnp.asarray, padded_rows(x))

  @jax.jit
  def stacked_forms(key):
    cols, vals, items = sparse.batch_entries(indices, values, D, B * D)
    entries = smash.with_noisy_copies(SparseEntries(cols, vals, items, jnp.eye(D), B), key,
                                      S, 0.3)
    rows = smash.with_noisy_copies(SparseRows(indices, values), key, S, 0.3)
    return (smash.with_noisy_copies(x, key, S, 0.3), sparse.to_dense(rows, D),
            (entries.indices, entries.values, entries.items, entries.rows))

  dense, rows, entries = stacked_forms(jax.random.key(4))
  forms = dict(dense=np.asarray(dense), rows=np.asarray(rows),
               entries=dense_of_entries(SparseEntries(*entries, (1 + S) * B), D))
  for name, stacked in forms.items():
    assert stacked.shape == ((1 + S) * B, D), name
    np.testing.assert_array_equal(stacked[:B], x, err_msg=name)
    copies = stacked[B:].reshape(S, B, D)
    # Each entry of a copy is the document's word or 0, and some words go.
    assert np.all((copies == x) | (copies == 0)), name
    assert 0 < (copies != 0).sum() < S * (x != 0).sum(), name
  assert smash.items_in(SparseEntries(*entries, (1 + S) * B)) == (1 + S) * B


# The memory queue ---------------------------------------------------------------------

def memory_calls(batch, calls, size=5):
  """`calls` training calls of a CodeMemory of `size` slots on random sign
  codes [batch, K] -> (codes written, in order, [(memory, valid) after each])."""
  memory = smash.CodeMemory(size)
  codes = [np.sign(normal(batch, K)) for _ in range(calls)]
  variables = memory.init(jax.random.key(0), codes[0], train=False)
  assert np.asarray(variables["batch_stats"]["written"]) == 0  # init writes nothing
  write = jax.jit(functools.partial(memory.apply, train=True, mutable=["batch_stats"]))
  seen = []
  for c in codes:
    (queue, valid), updated = write(variables, c)
    variables = dict(variables, **updated)
    seen.append((np.asarray(queue), np.asarray(valid)))
  return np.concatenate(codes), seen, variables


@pytest.mark.parametrize("batch", [2, 7])  # wraps around the 5 slots; longer than them
def test_memory_holds_the_last_codes_written_in_order(batch):
  every, seen, variables = memory_calls(batch, 4)
  for n, (queue, valid) in enumerate(seen):
    written = every[:(n + 1) * batch]
    expected = np.zeros((5, K), np.float32)
    for position, code in enumerate(written):  # slot = position mod 5, later overwrites
      expected[position % 5] = code
    np.testing.assert_array_equal(queue, expected)
    np.testing.assert_array_equal(valid, np.arange(5) < min(len(written), 5))
  np.testing.assert_array_equal(variables["batch_stats"]["codes"], seen[-1][0])
  assert np.asarray(variables["batch_stats"]["written"]) == len(every)
  # Oldest first from the write position: the last 5 codes, in order.
  np.testing.assert_array_equal(np.roll(seen[-1][0], -(len(every) % 5), axis=0), every[-5:])


# The network -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def network():
  """A small SmashModel, its initial variables, and those after two training
  calls with their outputs."""
  model = smash.SmashModel(dims=D, bits=K, num_classes=C, hidden=(8,), memory_size=5)
  x = np.asarray(rng.uniform(size=(B, D)) * (rng.uniform(size=(B, D)) < 0.6), np.float32)
  variables = jax.jit(lambda keys: model.init(keys, x, 1.0, train=False))(
      {"params": jax.random.key(0), "sample": jax.random.key(1)})

  @jax.jit
  def train_call(variables, seed):
    out, updated = model.apply(variables, x, 1.0, train=True,
                               rngs={"sample": jax.random.key(seed)}, mutable=["batch_stats"])
    return out, dict(variables, batch_stats=updated["batch_stats"])

  first, trained = train_call(variables, 0)
  second, trained = train_call(trained, 1)
  return model, x, variables, trained, (first, second)


def test_training_calls_write_the_clean_codes_and_count_steps(network):
  model, x, _, trained, (first, second) = network
  codes = [np.sign(np.asarray(o["logits"])) for o in (first, second)]  # B = 6 rows each
  expected = np.concatenate(codes)[-5:][np.argsort((np.arange(7, 12)) % 5)]
  np.testing.assert_array_equal(second["memory"], expected)
  np.testing.assert_array_equal(first["memory_valid"], np.ones(5))
  assert int(trained["batch_stats"]["memory"]["written"]) == 2 * B
  assert [float(o["steps"]) for o in (first, second)] == [0.0, 1.0]


def test_encoding_and_evaluation_calls_leave_the_memory_alone(network):
  model, x, _, trained, _ = network
  before = trained["batch_stats"]

  @jax.jit
  def encode_and_evaluate(variables):
    _, after = model.apply(variables, x, method="code_scores", mutable=["batch_stats"])
    out, after_eval = model.apply(variables, x, 1.0, train=False,
                                  rngs={"sample": jax.random.key(2)}, mutable=["batch_stats"])
    return after, out, after_eval

  after, out, after_eval = encode_and_evaluate(trained)
  for state in (after.get("batch_stats", before), after_eval["batch_stats"]):
    for leaf_before, leaf_after in zip(jax.tree.leaves(before), jax.tree.leaves(state), strict=True):
      np.testing.assert_array_equal(leaf_before, leaf_after)
  np.testing.assert_array_equal(out["memory"], before["memory"]["codes"])


def test_dense_and_sparse_input_finite_gradients_and_none_into_the_memory(network):
  model, x, variables, _, _ = network
  sparse_x = SparseRows(*map(jnp.asarray, padded_rows(x)))
  scores = [model.apply(variables, v, method="code_scores") for v in (x, sparse_x)]
  assert scores[0].shape == (B, K)
  np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-6)
  b, probe = make_batch(), normal(5, K)

  def outputs(params, inputs):
    return model.apply(dict(variables, params=params), inputs, 1.0, train=True,
                       rngs={"sample": jax.random.key(3)}, mutable=["batch_stats"])[0]

  def loss(params, inputs):  # smash_s: every term of smash, and the label term
    return objective("smash_s", dict(outputs(params, inputs), steps=2000.0), b)[0]

  @jax.jit
  def check(params):
    # What is written is a constant: no parameter gets a gradient through it.
    through_memory = jax.grad(lambda p: jnp.sum(outputs(p, x)["memory"] * probe))(params)
    return jax.grad(loss)(params, x), through_memory, loss(params, sparse_x)

  grads, through_memory, sparse_loss = check(variables["params"])
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(grads))
  for layer in (grads["encoder"]["Dense_0"], grads["long_head"], grads["logits_head"],
                grads["classifier"]):
    assert np.abs(layer["kernel"]).sum() > 0
  assert all((np.asarray(leaf) == 0).all() for leaf in jax.tree.leaves(through_memory))
  assert np.isfinite(sparse_loss)
  # ... and the objective passes none back into the queue it reads.
  out = fixed_out()
  g = jax.jit(jax.grad(lambda m: objective("smash", dict(out, memory=m), b)[0]))(
      out["memory"])
  np.testing.assert_array_equal(g, 0.0)


# The sweep on the digits data -----------------------------------------------------

@pytest.fixture(scope="module")
def digits_data():
  return data.load(data.spec_from_fields(digits.get_config().data.to_dict()))


@pytest.mark.slow  # compiling a sweep takes several seconds per method on 2 cores
@pytest.mark.parametrize("name", ["smash", "smash_s"])
def test_trains_through_the_sweep_on_digits(digits_data, name):
  config = with_fields(digits.get_config(f"method={name}"), epochs=2, seeds=(0,),
                       levels=(0.5,), bits=8, ks=(10,), model__hidden=(32,))
  result = experiment.train_method(config, digits_data, name)
  assert result.db_codes.shape == (1, len(digits_data.database), 8)
  assert len(np.unique(result.db_codes[0], axis=0)) > 1
  assert np.isfinite(result.epoch_metrics["loss"]).all()
  assert result.rows[0]["status"] == "ok" and 0 <= result.rows[0]["p@10"] <= 1
  # The queue came back with the trained variables, full and of signs.
  memory = result.variables["batch_stats"]["memory"]
  assert np.asarray(memory["written"]).item() == 2 * (1437 // 100) * 100
  assert set(np.unique(memory["codes"])) <= {-1.0, 0.0, 1.0}
