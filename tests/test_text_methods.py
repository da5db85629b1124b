"""Doc2Hash, WISH and CorrSH (hashvae/methods/doc2hash.py, wish.py,
corrsh.py): their relaxation, schedule, penalty and bound against numpy,
their objectives against closed forms, their networks on dense and sparse
input, and a tiny sweep on the digits data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_vae_methods import B, C, D, K, init_apply, make_batch, normal, np_log_softmax, np_sigmoid

from configs import digits
from hashvae import data, methods
from hashvae.core.sparse_rows import SparseRows, padded_rows
from hashvae.methods import corrsh, doc2hash, wish
from hashvae.sweep import experiment

from conftest import with_fields

NEW = ("doc2hash", "doc2hash_s", "wish", "wish_s", "corrsh")
rng = np.random.default_rng(5)
HP = dict(alpha=jnp.float32(0.7), beta=jnp.float32(0.3), orthogonality=jnp.float32(0.2))


def np_rec_kl_ce(out, b):
  """Batch means of the reconstruction, the KL of sigmoid(logits) to
  Bern(1/2) and the masked cross-entropy, written out."""
  rec = -(b["targets"] * np_log_softmax(out["recon_logits"])).sum(-1).mean()
  q = np_sigmoid(out["logits"])
  kl = (K * np.log(2) + (q * np.log(q) + (1 - q) * np.log(1 - q)).sum(-1)).mean()
  ce = -(b["label_rows"] * np_log_softmax(out["class_logits"])).sum(-1).mean()
  return rec, kl, ce


def objective(name, out, b):
  return methods.get(name).objective(out, b, methods.Weights(name, HP),
                                     methods.default_options(name))


# Doc2Hash ----------------------------------------------------------------------

def test_two_way_gumbel_softmax_is_the_softmax_of_the_perturbed_pair():
  logits, g = normal(B, K, scale=2.0), normal(B, K, 2)
  for tau in (0.1, 0.67, 3.0):
    pair = np.stack([logits, np.zeros_like(logits)], -1) + g
    expected = np.exp(np_log_softmax(pair / tau))[..., 0]
    got = doc2hash.two_way_gumbel_softmax(logits, g, tau)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
  # A cold relaxation is the argmax of the perturbed pair; the noise-free
  # relaxation at tau = 1 is q = sigmoid(l).
  cold = doc2hash.two_way_gumbel_softmax(logits, g, 1e-3)
  np.testing.assert_array_equal(np.round(cold), logits + g[..., 0] > g[..., 1])
  np.testing.assert_allclose(doc2hash.two_way_gumbel_softmax(logits, 0 * g, 1.0),
                             np_sigmoid(logits), rtol=1e-5)


def test_the_relaxed_bit_has_the_posterior_as_its_rate():
  # P(argmax = 1) = sigmoid(l) for Gumbel noise: the relaxation's hard value
  # is a draw from q(z | x).
  logits = jnp.linspace(-2, 2, K)[None].repeat(20000, 0)
  g = jax.random.gumbel(jax.random.key(0), logits.shape + (2,))
  cold = doc2hash.two_way_gumbel_softmax(logits, g, 1e-3)
  np.testing.assert_allclose(np.round(cold).mean(0), np_sigmoid(np.linspace(-2, 2, K)),
                             atol=0.015)


def test_annealed_temperature_is_the_public_per_step_decay():
  tau, expected = 1.0, []
  for _ in range(80):  # as the public loop: use tau, then tau = max(0.96 tau, 0.1)
    expected.append(tau)
    tau = max(tau * 0.96, 0.1)
  got = doc2hash.annealed_temperature(1.0, jnp.arange(80.0), doc2hash.ANNEAL_RATE,
                                      doc2hash.MIN_TEMPERATURE)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_doc2hash_counts_training_steps_and_anneals_from_the_run_temperature():
  x = jnp.asarray(rng.uniform(size=(B, D)), jnp.float32)
  model, variables = init_apply("doc2hash", x)
  apply = lambda stats, key, train: model.apply(
      dict(variables, batch_stats=stats), x, 0.5, train=train, rngs={"sample": key},
      mutable=["batch_stats"])
  stats, taus = variables["batch_stats"], []
  for step in range(3):
    out, updated = apply(stats, jax.random.key(step), True)
    stats = updated["batch_stats"]
    taus.append(float(out["temperature"]))
  np.testing.assert_allclose(taus, [0.5, 0.48, 0.4608], rtol=1e-5)
  assert float(stats["anneal"]["steps"]) == 3.0
  # Evaluation passes leave the count alone.
  _, updated = apply(stats, jax.random.key(9), False)
  assert float(updated["batch_stats"]["anneal"]["steps"]) == 3.0


def test_doc2hash_objectives_are_the_elbo_and_the_masked_label_term():
  out = dict(logits=normal(B, K, scale=2.0), recon_logits=normal(B, D),
             class_logits=normal(B, C))
  b = make_batch()
  rec, kl, ce = np_rec_kl_ce(out, b)
  loss, terms = objective("doc2hash", out, b)
  np.testing.assert_allclose(loss, rec + 0.3 * kl, rtol=1e-5)
  assert set(terms) == {"loss", "reconstruction", "kl"}
  loss_s, terms_s = objective("doc2hash_s", out, b)
  np.testing.assert_allclose(loss_s, rec + 0.3 * kl + 0.7 * ce, rtol=1e-5)
  np.testing.assert_allclose(terms_s["pointwise"], ce, rtol=1e-5)


# WISH --------------------------------------------------------------------------

def test_orthogonality_penalty_is_the_squared_frobenius_distance():
  topics = normal(K, 7)
  gram = topics.astype(np.float64) @ topics.T
  expected = sum((gram[i, j] - (i == j)) ** 2 for i in range(K) for j in range(K))
  np.testing.assert_allclose(wish.orthogonality_penalty(topics), expected, rtol=1e-5)
  orthonormal = np.linalg.qr(normal(7, K))[0].T  # [K, 7] with orthonormal rows
  np.testing.assert_allclose(wish.orthogonality_penalty(orthonormal), 0.0, atol=1e-5)


def test_wish_objectives_add_the_weighted_penalty():
  out = dict(logits=normal(B, K, scale=2.0), recon_logits=normal(B, D),
             class_logits=normal(B, C), topics=normal(K, 7))
  b = make_batch()
  rec, kl, ce = np_rec_kl_ce(out, b)
  gram = out["topics"].astype(np.float64) @ out["topics"].T
  penalty = ((gram - np.eye(K)) ** 2).sum()
  loss, terms = objective("wish", out, b)
  np.testing.assert_allclose(loss, rec + 0.3 * kl + 0.2 * penalty, rtol=1e-5)
  np.testing.assert_allclose(terms["orthogonality"], penalty, rtol=1e-5)
  loss_s, terms_s = objective("wish_s", out, b)
  np.testing.assert_allclose(loss_s, rec + 0.3 * kl + 0.2 * penalty + 0.7 * ce, rtol=1e-5)
  np.testing.assert_allclose(terms_s["pointwise"], ce, rtol=1e-5)


def test_wish_decoder_reads_the_codes_topic_mixture():
  x = jnp.asarray(rng.uniform(size=(B, D)), jnp.float32)
  model, variables = init_apply("wish", x)
  out = model.apply(variables, x, 1.0, train=False, rngs={"sample": jax.random.key(2)})
  params = variables["params"]
  topics = np.asarray(params["topics"])
  assert topics.shape == (K, wish.TOPIC_DIM) and 0 <= topics.min() and topics.max() < 1
  mixed = np.asarray(out["sample"]) @ topics
  expected = mixed @ np.asarray(params["decoder"]["kernel"]) + params["decoder"]["bias"]
  np.testing.assert_allclose(out["recon_logits"], expected, rtol=1e-4, atol=1e-4)


# CorrSH ------------------------------------------------------------------------

def np_kl_bound(z, r):
  """K log 2 + log mean_j prod_k Bern(z_k; sigmoid(r_jk)), item by item."""
  out = []
  for i in range(z.shape[0]):
    q = [np.prod(np.where(z[i] > 0, np_sigmoid(rj), 1 - np_sigmoid(rj))) for rj in r[i]]
    out.append(z.shape[1] * np.log(2) + np.log(np.mean(q)))
  return np.array(out)


def test_kl_bound_is_the_log_mean_of_the_draws_likelihoods():
  r = normal(B, 5, K, scale=2.0)
  z = (rng.uniform(size=(B, K)) < 0.5).astype(np.float32)
  np.testing.assert_allclose(corrsh.kl_bound(z, r), np_kl_bound(z, r), rtol=1e-4)


def test_kl_bound_with_a_point_mass_gaussian_is_the_bernoulli_kl_in_expectation():
  # With no Gaussian noise every r_j = mu: E_z[KL_m] is the closed form.
  mu = normal(2, 3, scale=1.5)
  expected = (3 * np.log(2) + (np_sigmoid(mu) * np.log(np_sigmoid(mu))
                               + (1 - np_sigmoid(mu)) * np.log(1 - np_sigmoid(mu))).sum(-1))
  codes = np.array([[(c >> k) & 1 for k in range(3)] for c in range(8)], np.float32)
  for i in range(2):
    p = np.prod(np.where(codes > 0, np_sigmoid(mu[i]), 1 - np_sigmoid(mu[i])), -1)
    r = np.repeat(mu[i][None, None], 8, 0).repeat(4, 1)  # [codes, m = 4, bits]
    np.testing.assert_allclose((p * corrsh.kl_bound(codes, r)).sum(), expected[i],
                               rtol=1e-5)


def test_kl_bound_is_above_the_true_kl_and_tightens_with_more_draws():
  # Two correlated bits; q(z | x) by numpy Monte Carlo, the bound's
  # expectation with the generating draw among the m.
  rs = np.random.default_rng(0)
  mu, scale, u = np.array([0.3, -0.2]), np.array([0.3, 0.3]), np.array([[2.0], [2.0]])
  draw = lambda *n: mu + scale * rs.normal(size=n + (2,)) + rs.normal(size=n + (1,)) @ u.T
  r = draw(200000)
  z = (rs.uniform(size=r.shape) < np_sigmoid(r)).astype(np.float32)
  q = np.array([np.mean((z == c).all(-1)) for c in ([0, 0], [0, 1], [1, 0], [1, 1])])
  true_kl = 2 * np.log(2) + (q * np.log(q)).sum()
  bounds = []
  for m in (1, 10):
    n = 20000
    rm = draw(n, m)
    zm = (rs.uniform(size=(n, 2)) < np_sigmoid(rm[:, 0])).astype(np.float32)
    bounds.append(float(np.mean(corrsh.kl_bound(zm, rm))))
  assert bounds[0] > bounds[1] > true_kl - 0.01, (bounds, true_kl)
  assert bounds[1] - true_kl < 0.5 * (bounds[0] - true_kl)


def test_low_rank_gaussian_draws_have_the_low_rank_covariance():
  mu, scale, u = normal(1, K), np.abs(normal(1, K)) + 0.1, normal(1, K, 2)
  n = 100000
  keys = jax.random.split(jax.random.key(0))
  r = corrsh.low_rank_gaussian(mu, scale, u, jax.random.normal(keys[0], (1, n, K)),
                               jax.random.normal(keys[1], (1, n, 2)))[0]
  np.testing.assert_allclose(r.mean(0), mu[0], atol=0.03)
  np.testing.assert_allclose(np.cov(np.asarray(r).T), np.diag(scale[0] ** 2) + u[0] @ u[0].T,
                             atol=0.05)


def test_corrsh_objective_is_rec_plus_beta_bound():
  r = normal(B, 3, K)
  z = (rng.uniform(size=(B, K)) < 0.5).astype(np.float32)
  out = dict(recon_logits=normal(B, D), sample=z, draws=r)
  b = make_batch()
  rec = -(b["targets"] * np_log_softmax(out["recon_logits"])).sum(-1).mean()
  loss, terms = objective("corrsh", out, b)
  np.testing.assert_allclose(loss, rec + 0.3 * np_kl_bound(z, r).mean(), rtol=1e-5)
  assert set(terms) == {"loss", "reconstruction", "kl"}


# Networks: shapes, codes, gradients, dense and sparse input -------------------------

@pytest.mark.parametrize("name", NEW)
def test_network_outputs_codes_and_finite_gradients(name):
  x = np.asarray(rng.uniform(size=(B, D)) * (rng.uniform(size=(B, D)) < 0.6), np.float32)
  model, variables = init_apply(name, jnp.asarray(x))
  sparse_x = SparseRows(*map(jnp.asarray, padded_rows(x)))
  scores = [model.apply(variables, v, method="code_scores") for v in (x, sparse_x)]
  assert scores[0].shape == (B, K)
  np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-6)
  b = make_batch()

  def loss(params, inputs):
    out, _ = model.apply(dict(variables, params=params), inputs, 0.67, train=True,
                         rngs={"sample": jax.random.key(3)}, mutable=["batch_stats"])
    return objective(name, out, b)[0]

  # Gradients on the dense path (the sparse path's first-layer gradient is
  # the shared Encoder's, tested with the study's network); the loss on both.
  value, grads = jax.jit(jax.value_and_grad(loss))(variables["params"], x)
  np.testing.assert_allclose(loss(variables["params"], sparse_x), value, rtol=1e-5)
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(grads))
  assert np.abs(grads["encoder"]["Dense_0"]["kernel"]).sum() > 0
  assert np.abs(grads["logits_head" if "logits_head" in grads else "mu_head"]["kernel"]).sum() > 0


@pytest.mark.parametrize("name", ["doc2hash_s", "wish_s"])
def test_unlabelled_items_contribute_no_supervised_loss(name):
  out = dict(logits=normal(B, K), recon_logits=normal(B, D), class_logits=normal(B, C),
             topics=normal(K, 7))
  b = make_batch()
  g = jax.grad(lambda c: objective(name, dict(out, class_logits=c), b)[1]["pointwise"])(
      out["class_logits"])
  unlabelled = b["labelled"] == 0
  np.testing.assert_array_equal(g[unlabelled], 0.0)
  assert np.abs(g[~unlabelled]).sum() > 0


# The sweep on the digits data -----------------------------------------------------

@pytest.fixture(scope="module")
def digits_data():
  return data.load(data.spec_from_fields(digits.get_config().data.to_dict()))


@pytest.mark.slow  # compiling a sweep takes several seconds per method on 2 cores
@pytest.mark.parametrize("name", NEW)
def test_trains_through_the_sweep_on_digits(digits_data, name):
  config = with_fields(digits.get_config(f"method={name}"), epochs=1, seeds=(0,),
                       levels=(0.5,), bits=8, ks=(10,), model__hidden=(32,))
  result = experiment.train_method(config, digits_data, name)
  assert result.db_codes.shape == (1, len(digits_data.database), 8)
  assert result.query_codes.shape == (1, len(digits_data.test), 8)
  assert len(np.unique(result.db_codes[0], axis=0)) > 1
  assert np.isfinite(result.epoch_metrics["loss"]).all()
  assert result.rows[0]["status"] == "ok" and 0 <= result.rows[0]["p@10"] <= 1
