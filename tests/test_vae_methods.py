"""NASH, NASH-S, BMSH and VDSH-SP (hashvae/methods/nash.py, bmsh.py,
vdsh_sp.py): closed forms of their loss terms against numpy, the
straight-through gradient, supervision from observed labels only, and a few
training steps through make_run on both input paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic
from hashvae import data, methods
from hashvae.core.models import ModelSpec
from hashvae.methods import bmsh, nash
from hashvae.sweep.specs import make_run

from conftest import with_fields

NEW = ("nash", "nash_s", "bmsh", "vdsh_sp")
rng = np.random.default_rng(3)
B, K, C, D = 6, 4, 3, 5
LABELLED = np.array([1, 1, 0, 1, 0, 0], np.float32)


def np_sigmoid(x):
  return 1 / (1 + np.exp(-x))


def np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def make_batch(labelled=LABELLED):
  y = np.eye(C, dtype=np.float32)[rng.integers(0, C, size=B)] * labelled[:, None]
  t = rng.uniform(size=(B, D)).astype(np.float32)
  return dict(targets=t / t.sum(1, keepdims=True), label_rows=y, labelled=labelled)


def normal(*shape, scale=1.0):
  return (scale * rng.normal(size=shape)).astype(np.float32)


def common_out():
  return dict(recon_logits=normal(B, D), class_logits=normal(B, C))


def np_rec_ce(out, b):
  rec = -(b["targets"] * np_log_softmax(out["recon_logits"])).sum(-1).mean()
  ce = -(b["label_rows"] * np_log_softmax(out["class_logits"])).sum(-1).mean()
  return rec, ce


HP = dict(alpha=jnp.float32(0.7), beta=jnp.float32(0.3))


def objective(name, out, b, **options):
  m = methods.get(name)
  return m.objective(out, b, methods.Weights(name, HP),
                     methods.default_options(name, **options))


# Closed forms -----------------------------------------------------------------

def test_nash_and_nash_s_match_their_formulas():
  out, b = dict(common_out(), logits=normal(B, K, scale=2.0)), make_batch()
  rec, ce = np_rec_ce(out, b)
  q = np_sigmoid(out["logits"])
  kl = (K * np.log(2) + (q * np.log(q) + (1 - q) * np.log(1 - q)).sum(-1)).mean()
  loss, terms = objective("nash", out, b)
  np.testing.assert_allclose(loss, rec + 0.3 * kl, rtol=1e-5)
  loss_s, terms_s = objective("nash_s", out, b)
  np.testing.assert_allclose(loss_s, rec + 0.3 * kl + 0.7 * ce, rtol=1e-5)
  np.testing.assert_allclose(terms_s["pointwise"], ce, rtol=1e-5)


def test_bernoulli_kl_between_bernoullis_is_the_closed_form():
  lq, lp = normal(B, K, scale=3.0), normal(C, K, scale=3.0)
  q, p = np_sigmoid(lq)[:, None], np_sigmoid(lp)[None]
  expected = (q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))).sum(-1)
  np.testing.assert_allclose(bmsh.bernoulli_kl(lq, lp), expected, rtol=1e-4, atol=1e-6)
  # Zero against itself; saturated logits stay finite.
  np.testing.assert_allclose(np.diagonal(bmsh.bernoulli_kl(lp, lp)), 0, atol=1e-6)
  assert np.isfinite(bmsh.bernoulli_kl(jnp.full((1, K), 60.0), jnp.full((1, K), -60.0))).all()


def test_mixture_kl_is_the_elbo_term_written_out():
  logits, theta, a = normal(B, K), normal(C, K), normal(C)
  r = np.exp(np_log_softmax(normal(B, C)))
  r[0] = np.eye(C)[1]  # a label row: 0 log 0 = 0
  q, th = np_sigmoid(logits), np_sigmoid(theta)
  pi = np.exp(np_log_softmax(a))
  expected = np.zeros(B)
  for i in range(B):
    for c in range(C):
      kl_z = (q[i] * np.log(q[i] / th[c])
              + (1 - q[i]) * np.log((1 - q[i]) / (1 - th[c]))).sum()
      kl_c = r[i, c] * np.log(r[i, c] / pi[c]) if r[i, c] > 0 else 0.0
      expected[i] += r[i, c] * kl_z + kl_c
  np.testing.assert_allclose(bmsh.mixture_kl(logits, theta, a, r), expected, rtol=1e-4)


def test_bmsh_objective_ties_labelled_items_to_their_class_component():
  out = dict(common_out(), logits=normal(B, K), prior_logits=normal(C, K),
             mixture_logits=normal(C))
  b = make_batch()
  rec, ce = np_rec_ce(out, b)
  q_c = np.exp(np_log_softmax(out["class_logits"]))
  r = np.where(b["labelled"][:, None] > 0, b["label_rows"], q_c)
  kl = np.asarray(bmsh.mixture_kl(out["logits"], out["prior_logits"],
                                  out["mixture_logits"], r)).mean()
  loss, terms = objective("bmsh", out, b)
  np.testing.assert_allclose(loss, rec + 0.3 * kl + 0.7 * ce, rtol=1e-5)
  # Without the tie, every item uses q(c|x).
  kl_free = np.asarray(bmsh.mixture_kl(out["logits"], out["prior_logits"],
                                       out["mixture_logits"], q_c)).mean()
  _, terms = objective("bmsh", out, b, label_components=False)
  np.testing.assert_allclose(terms["kl"], kl_free, rtol=1e-5)


def test_vdsh_sp_matches_its_formula():
  out = dict(common_out(), mu=normal(B, K), logvar=normal(B, K, scale=0.5),
             private_mu=normal(B, K), private_logvar=normal(B, K, scale=0.5))
  b = make_batch()
  rec, ce = np_rec_ce(out, b)
  kl = lambda m, lv: (-0.5 * (1 + lv - m ** 2 - np.exp(lv)).sum(-1)).mean()
  kl_sum = kl(out["mu"], out["logvar"]) + kl(out["private_mu"], out["private_logvar"])
  loss, terms = objective("vdsh_sp", out, b)
  np.testing.assert_allclose(loss, rec + 0.3 * kl_sum + 0.7 * ce, rtol=1e-5)
  np.testing.assert_allclose(terms["kl"], kl_sum, rtol=1e-5)


# The straight-through estimator ------------------------------------------------

def test_straight_through_value_is_binary_and_gradient_is_the_sigmoids():
  logits = normal(64, K, scale=2.0)
  key = jax.random.key(0)
  z = nash.straight_through_bernoulli(key, logits)
  u = jax.random.uniform(key, logits.shape)
  np.testing.assert_array_equal(z, (np_sigmoid(logits) > np.asarray(u)).astype(np.float32))
  w = normal(64, K)
  grad = jax.grad(lambda lg: jnp.sum(w * nash.straight_through_bernoulli(key, lg)))(logits)
  through_sigmoid = jax.grad(lambda lg: jnp.sum(w * jax.nn.sigmoid(lg)))(logits)
  np.testing.assert_allclose(grad, through_sigmoid, rtol=1e-6)
  np.testing.assert_allclose(grad, w * np_sigmoid(logits) * (1 - np_sigmoid(logits)),
                             rtol=1e-5)


def test_stochastic_threshold_is_unbiased_for_q():
  logits = jnp.linspace(-3, 3, K)[None].repeat(20000, 0)
  z = nash.straight_through_bernoulli(jax.random.key(1), logits)
  np.testing.assert_allclose(z.mean(0), jax.nn.sigmoid(logits[0]), atol=0.015)


# Supervision from observed labels only -----------------------------------------

def outputs_for(name):
  out = dict(common_out(), logits=normal(B, K), prior_logits=normal(C, K),
             mixture_logits=normal(C), mu=normal(B, K), logvar=normal(B, K),
             private_mu=normal(B, K), private_logvar=normal(B, K))
  return {k: jnp.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("name", ["nash_s", "bmsh", "vdsh_sp"])
def test_unlabelled_items_contribute_no_supervised_loss(name):
  b = make_batch()
  out = outputs_for(name)

  def supervised(class_logits):
    return objective(name, dict(out, class_logits=class_logits), b)[1]["pointwise"]

  g = jax.grad(supervised)(out["class_logits"])
  unlabelled = b["labelled"] == 0
  np.testing.assert_array_equal(g[unlabelled], 0.0)
  assert np.abs(g[~unlabelled]).sum() > 0
  # With no label observed the term is zero.
  none = make_batch(labelled=np.zeros(B, np.float32))
  assert objective(name, out, none)[1]["pointwise"] == 0.0


def test_bmsh_unlabelled_item_component_posterior_ignores_its_hidden_label():
  b, out = make_batch(), outputs_for("bmsh")
  r = bmsh.component_posterior(out, b, True)
  q_c = jax.nn.softmax(out["class_logits"])
  unlabelled = b["labelled"] == 0
  np.testing.assert_allclose(r[unlabelled], q_c[unlabelled], rtol=1e-6)
  np.testing.assert_array_equal(r[~unlabelled], b["label_rows"][~unlabelled])


# Models: outputs, noise, deterministic codes -----------------------------------

SPEC = ModelSpec(dims=D, bits=K, num_classes=C, hidden=(8,))


def init_apply(name, x):
  model = methods.get(name).build_model(SPEC)
  variables = model.init({"params": jax.random.key(0), "sample": jax.random.key(1)},
                         x, 1.0, train=False)
  return model, variables


@pytest.mark.parametrize("name", NEW)
def test_codes_are_deterministic_and_sampling_is_not(name):
  x = jnp.asarray(rng.uniform(size=(B, D)), jnp.float32)
  model, variables = init_apply(name, x)
  scores = [model.apply(variables, x, method="code_scores") for _ in range(2)]
  np.testing.assert_array_equal(scores[0] > 0, scores[1] > 0)
  assert scores[0].shape == (B, K)
  outs = [model.apply(variables, x, 1.0, train=False, rngs={"sample": jax.random.key(s)})
          for s in (1, 2)]
  assert not np.allclose(outs[0]["recon_logits"], outs[1]["recon_logits"])
  assert outs[0]["recon_logits"].shape == (B, D)
  assert outs[0]["class_logits"].shape == (B, C)
  assert "Dense_0" in variables["params"]["encoder"]  # the sparse path's first kernel


def test_nash_decoder_noise_scale_is_learned():
  x = jnp.asarray(rng.uniform(size=(B, D)), jnp.float32)
  model, variables = init_apply("nash", x)
  np.testing.assert_array_equal(variables["params"]["noisy"]["rho"], 0.0)
  b = make_batch()

  def loss(params):
    out = model.apply(dict(variables, params=params), x, 1.0, train=False,
                      rngs={"sample": jax.random.key(4)})
    return objective("nash", out, b)[0]

  g = jax.grad(loss)(variables["params"])
  assert np.abs(g["noisy"]["rho"]).sum() > 0
  # The binary sample reaches the decoder with noise of scale sigmoid(rho) = 1/2.
  out = model.apply(variables, x, 1.0, train=False, rngs={"sample": jax.random.key(4)})
  assert set(np.unique(out["sample"])) <= {0.0, 1.0}
  noise = np.asarray(out["decoder_input"] - out["sample"])
  assert 0.2 < noise.std() < 0.9


# Training through make_run ------------------------------------------------------

@pytest.fixture(scope="module")
def dataset():
  return data.load(data.spec_from_fields(synthetic.get_config().data.to_dict()))


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
@pytest.mark.parametrize("input_mode", ["dense", "sparse"])
@pytest.mark.parametrize("name", NEW)
def test_trains_a_few_steps_on_either_input_path(dataset, name, input_mode):
  config = with_fields(synthetic.get_config(f"method={name}"), epochs=2,
                       model__sparse_input=input_mode)
  run = make_run(config, dataset)
  hp = dict(methods.get(name).weights, learning_rate=1e-3, temperature=0.67)
  codes, metrics = jax.jit(run.run)(run.arrays, jax.random.key(0), jnp.float32(0.5), hp)
  assert np.isfinite(metrics["loss"]).all(), metrics["loss"]
  assert codes["db_codes"].shape == (len(dataset.database), config.bits)
  assert codes["query_codes"].shape == (len(dataset.test), config.bits)
  assert set(np.unique(codes["db_codes"])) <= {0, 1}
