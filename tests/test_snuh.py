"""SNUH: the edge term against the 2-d Gaussian KL in numpy, its reduction
to VDSH where the pair is independent, the objective against numpy,
finite gradients, the network on dense and sparse input, and training
through the sweep (slow)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import digits, synthetic
from hashvae import data, methods
from hashvae.core.models import ModelSpec
from hashvae.core.sparse_rows import SparseRows, padded_rows
from hashvae.methods import snuh
from hashvae.sweep import experiment, specs
from hashvae.training import train as train_lib
from tests.conftest import with_fields

rng = np.random.default_rng(7)
B, K, D = 6, 5, 9


def np_gaussian_kl(mean, cov, prior_cov):
  """KL(N(mean, cov) || N(0, prior_cov)) by the matrix formula, float64."""
  inverse = np.linalg.inv(prior_cov)
  return 0.5 * (np.trace(inverse @ cov) + mean @ inverse @ mean - len(mean)
                + np.linalg.slogdet(prior_cov)[1] - np.linalg.slogdet(cov)[1])


def np_edge_kl(mu_i, s_i, mu_j, s_j, a, tau):
  """Per pair: sum over bits of KL(2-d posterior || 2-d prior) - KL_i - KL_j,
  each KL from np_gaussian_kl. Arrays [pairs, bits] -> [pairs]."""
  gamma = 2.0 / (1.0 + np.exp(-a.astype(np.float64))) - 1.0
  prior = np.array([[1.0, tau], [tau, 1.0]])
  out = np.zeros(mu_i.shape[0])
  for p in range(mu_i.shape[0]):
    for k in range(mu_i.shape[1]):
      si, sj, g = float(s_i[p, k]), float(s_j[p, k]), gamma[p, k]
      mean = np.array([mu_i[p, k], mu_j[p, k]], np.float64)
      joint = np_gaussian_kl(mean, np.array([[si * si, g * si * sj],
                                             [g * si * sj, sj * sj]]), prior)
      one = np_gaussian_kl(mean[:1], np.array([[si * si]]), np.eye(1))
      two = np_gaussian_kl(mean[1:], np.array([[sj * sj]]), np.eye(1))
      out[p] += joint - one - two
  return out


def head(dims=D):
  mu = rng.uniform(0.05, 0.95, size=(B, K)).astype(np.float32)
  scale = rng.uniform(0.2, 1.5, size=(B, K)).astype(np.float32)
  return dict(mu=mu, scale=scale, logvar=2.0 * np.log(scale),
              correlation=rng.normal(size=(B, K)).astype(np.float32),
              recon_logits=rng.normal(size=(B, dims)).astype(np.float32),
              class_logits=rng.normal(size=(B, 3)).astype(np.float32))


def targets():
  t = rng.uniform(size=(B, D)).astype(np.float32)
  return t / t.sum(1, keepdims=True)


def np_rec(logits, t):
  x = logits.astype(np.float64)
  log_softmax = x - x.max(-1, keepdims=True)
  log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
  return -(t * log_softmax).sum(-1)


@pytest.mark.parametrize("tau", [0.0, 0.5, snuh.PRIOR_CORRELATION])
def test_edge_term_against_the_2d_gaussian_kl(tau):
  a, b = head(), head()
  logits = rng.normal(scale=2.0, size=(B, K)).astype(np.float32)
  got = snuh.edge_kl(a["mu"], a["scale"], b["mu"], b["scale"], logits, tau)
  want = np_edge_kl(a["mu"], a["scale"], b["mu"], b["scale"], logits, tau)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


def test_edge_term_vanishes_for_an_independent_pair_under_an_independent_prior():
  a, b = head(), head()
  zero = np.zeros((B, K), np.float32)
  np.testing.assert_allclose(snuh.edge_kl(a["mu"], a["scale"], b["mu"], b["scale"],
                                          zero, 0.0), 0.0, atol=1e-6)
  # tau = 0 leaves the pair's mutual information -log(1 - gamma^2) / 2.
  logits = rng.normal(size=(B, K)).astype(np.float32)
  gamma = np.tanh(logits.astype(np.float64) / 2)
  np.testing.assert_allclose(
      snuh.edge_kl(a["mu"], a["scale"], b["mu"], b["scale"], logits, 0.0),
      (-0.5 * np.log1p(-gamma ** 2)).sum(-1), rtol=1e-5)


def test_correlation_log_term_stays_finite_where_gamma_rounds_to_one():
  a = jnp.array([-200.0, -30.0, 0.0, 30.0, 200.0])
  got = snuh.log_one_minus_squared_correlation(a)
  assert np.isfinite(got).all()
  np.testing.assert_allclose(got[2], 0.0, atol=1e-7)
  np.testing.assert_allclose(got[3], np.log(4.0) - 30.0 - np.log1p(np.exp(-30.0)), rtol=1e-6)


def test_log_scale_stays_finite_where_the_scale_underflows():
  x = jnp.array([-200.0, -120.0, -21.0, -19.0, 0.0, 30.0])
  got = snuh.log_softplus(x)
  want = np.log(np.log1p(np.exp(np.asarray(x, np.float64))))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert np.isfinite(jax.grad(lambda v: jnp.sum(snuh.log_softplus(v)))(x)).all()


def test_objective_against_numpy():
  out = dict(head(), neighbour=head())
  batch = dict(targets=targets())
  hp = dict(beta=jnp.float32(0.3), edge=jnp.float32(0.8))
  loss, terms = snuh.snuh(out, batch, hp, methods.default_options("snuh"))
  nbr = out["neighbour"]
  rec = np_rec(out["recon_logits"], batch["targets"])
  mu, var = out["mu"].astype(np.float64), np.square(out["scale"].astype(np.float64))
  kl = 0.5 * (mu ** 2 + var - 1 - np.log(var)).sum(-1)
  edge = np_edge_kl(out["mu"], out["scale"], nbr["mu"], nbr["scale"],
                    out["correlation"] + nbr["correlation"], snuh.PRIOR_CORRELATION)
  np.testing.assert_allclose(loss, np.mean(rec + 0.3 * (kl + 0.8 * edge)), rtol=1e-4)
  np.testing.assert_allclose(terms["edge_kl"], edge.mean(), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(terms["kl"], kl.mean(), rtol=1e-5)


def test_reduces_to_vdsh_where_the_pair_is_independent():
  """tau = 0 and gamma = 0 (correlation logits summing to 0): SNUH's
  objective is VDSH's (the Gaussian VAE) on the same outputs, for any edge
  weight."""
  out = dict(head(), neighbour=head())
  out["neighbour"]["correlation"] = -out["correlation"]
  batch = dict(targets=targets(), label_rows=np.zeros((B, 3), np.float32))
  options = methods.default_options("snuh")
  rec, kl, edge = snuh.snuh_terms(out, batch, options, tau=0.0)
  np.testing.assert_allclose(edge, 0.0, atol=1e-6)
  vdsh_loss, vdsh_terms = methods.get("vdsh").objective(
      out, batch, dict(beta=jnp.float32(0.3)), methods.default_options("vdsh"))
  np.testing.assert_allclose(rec + 0.3 * (kl + 5.0 * edge), vdsh_loss, rtol=1e-6)
  np.testing.assert_allclose(kl, vdsh_terms["kl"], rtol=1e-6)


def test_network_on_dense_and_sparse_input_and_finite_gradients():
  model = snuh.snuh_model(ModelSpec(dims=D, bits=K, num_classes=3, hidden=(8,)))
  dense = np.where(rng.uniform(size=(B, D)) < 0.4, rng.uniform(size=(B, D)), 0.0)
  dense[:, 0] = 1.0  # no empty row
  dense = dense.astype(np.float32)
  x = jnp.asarray(dense)
  targets = jnp.asarray(dense / dense.sum(1, keepdims=True))
  keys = {"params": jax.random.key(0), "sample": jax.random.key(1)}
  variables = jax.jit(model.init, static_argnames="train")(keys, x, 0.7, train=False)

  def apply(params, inputs):
    return model.apply(dict(variables, params=params), inputs, 0.7, train=False,
                       rngs={"sample": jax.random.key(2)})

  def loss(params):
    out = dict(apply(params, x), neighbour=apply(params, x[::-1]))
    return snuh.snuh(out, dict(targets=targets),
                     dict(beta=jnp.float32(0.125), edge=jnp.float32(1.0)),
                     methods.default_options("snuh"))[0]

  @jax.jit  # one program: op-by-op dispatch would compile each small op
  def everything(params, sparse):
    return (apply(params, x), apply(params, sparse),
            model.apply(dict(variables, params=params), x, method="code_scores"),
            jax.grad(loss)(params))

  sparse = SparseRows(*map(jnp.asarray, padded_rows(dense)))
  out, out_sparse, scores, grads = everything(variables["params"], sparse)
  for name in ("recon_logits", "correlation", "mu"):
    np.testing.assert_allclose(out[name], out_sparse[name], rtol=1e-5, atol=1e-5)
  assert set(out) >= {"mu", "scale", "logvar", "correlation", "sample", "recon_logits"}
  assert out["mu"].shape == out["correlation"].shape == (B, K)
  assert (out["mu"] > 0).all() and (out["mu"] < 1).all() and (out["scale"] > 0).all()
  # The code is the logits' sign, which is mu's threshold 1/2 at any temperature.
  np.testing.assert_array_equal(np.asarray(scores) > 0, np.asarray(out["mu"]) > 0.5)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  assert np.abs(grads["correlation_head"]["kernel"]).sum() > 0  # the edge term reaches it


def test_declares_neighbours_that_it_encodes():
  need = methods.get("snuh").neighbours
  assert need.encode and need.k == 10 and need.similarity == "tfidf"


def abstract_state(run):
  hp = {k: jnp.float32(1.0) for k in run.weights}
  return jax.eval_shape(run.init, run.arrays, train_lib.run_key(0, 0), jnp.float32(1.0), hp)


@pytest.mark.parametrize("sparse_input", ["dense", "sparse"])
def test_program_traces_on_dense_and_sparse_input(sparse_input):
  config = with_fields(synthetic.get_config("method=snuh"), epochs=1, seeds=(0,),
                       levels=(1.0,), model__sparse_input=sparse_input)
  corpus = data.load(data.spec_from_fields(config.data.to_dict()))
  run = specs.make_run(config, corpus)
  assert run.arrays["neighbours"].shape == (corpus.database_size, 10)
  _, terms = jax.eval_shape(run.train_epoch, run.arrays, abstract_state(run))
  assert set(terms) == {"loss", "reconstruction", "kl", "edge_kl"}


@pytest.mark.slow
def test_trains_through_the_sweep_on_digits_beside_ssb_vae(tmp_path):
  config = with_fields(digits.get_config("method=ssb_vae+snuh"), epochs=3, seeds=(0,),
                       levels=(1.0,))
  sweep = experiment.run_sweep(config, workdir=str(tmp_path))
  assert [r["method"] for r in sweep.rows] == ["ssb_vae", "snuh"]
  assert all(r["status"] == "ok" for r in sweep.rows)
  codes = sweep.db_codes[1]  # snuh's run
  assert len(np.unique(codes.reshape(codes.shape[0], -1), axis=0)) > 1
  assert np.isfinite(sweep.epoch_metrics["snuh"]["edge_kl"]).all()
