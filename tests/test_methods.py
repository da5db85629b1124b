"""The objectives composed from the terms, against formulas written out here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashvae import methods
from hashvae.core import losses
from hashvae.core.models import ModelSpec
from hashvae.methods import study

rng = np.random.default_rng(1)
B, K, C, D = 6, 4, 3, 5


def LossOptions(multilabel_data=False, **given):
  """The study methods' options (they share them), parity unless given."""
  return methods.default_options("ssb_vae", multilabel_data, **given)


HP = dict(alpha=jnp.float32(0.3), beta=jnp.float32(0.2), gamma=jnp.float32(5.0))


def batch(labelled=(1, 1, 0, 1, 0, 0)):
  labelled = np.array(labelled, np.float32)
  y = np.eye(C, dtype=np.float32)[rng.integers(0, C, size=B)] * labelled[:, None]
  t = rng.uniform(size=(B, D)).astype(np.float32)
  return dict(targets=t / t.sum(1, keepdims=True), label_rows=y, labelled=labelled)


def bernoulli_out():
  logits = rng.normal(size=(B, K)).astype(np.float32)
  return dict(logits=logits, sample=jax.nn.sigmoid(logits + 0.1),
              recon_logits=rng.normal(size=(B, D)).astype(np.float32),
              class_logits=rng.normal(size=(B, C)).astype(np.float32))


def np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def written_out(out, b, s, w=None, reduction="sum"):
  """mean(rec + beta KL) + alpha (gamma mean CE + L_pair), by hand."""
  rec = -(b["targets"] * np.log(np_softmax(out["recon_logits"]))).sum(-1).mean()
  q = 1 / (1 + np.exp(-out["logits"]))
  kl = (K * np.log(2) + (q * np.log(q) + (1 - q) * np.log(1 - q)).sum(-1)).mean()
  ce = -(b["label_rows"] * np.log(np_softmax(out["class_logits"]))).sum(-1).mean()
  codes = np.asarray(out["sample"])
  w = np.ones((B, B)) if w is None else w
  pair, weight = 0.0, 0.0
  for i in range(B):
    for j in range(B):
      d = ((codes[i] - codes[j]) ** 2).sum()
      pair += w[i, j] * (s[i, j] * d + (1 - s[i, j]) * max(K / 3 - d, 0))
      weight += w[i, j]
  pair = (pair / weight if reduction == "mean" else pair) / K
  return rec + 0.2 * kl + 0.3 * (5.0 * ce + pair)


def test_phs_gs_parity_uses_label_products_over_every_pair():
  out, b = bernoulli_out(), batch()
  loss, terms = study.phs_gs(out, b, HP, LossOptions())
  s = b["label_rows"] @ b["label_rows"].T
  np.testing.assert_allclose(loss, written_out(out, b, s), rtol=1e-4)
  assert set(terms) == {"loss", "reconstruction", "kl", "pointwise", "pairwise"}


def test_phs_gs_corrected_counts_only_labelled_pairs_without_diagonal():
  out, b = bernoulli_out(), batch()
  opts = LossOptions(pair_labelled_only=True, pair_diagonal=False,
                     pair_reduction="mean")
  loss, _ = study.phs_gs(out, b, HP, opts)
  s = b["label_rows"] @ b["label_rows"].T
  w = np.outer(b["labelled"], b["labelled"]) * (1 - np.eye(B))
  np.testing.assert_allclose(loss, written_out(out, b, s, w, "mean"), rtol=1e-4)


def test_ssb_vae_uses_predicted_similarity_with_gradient_through_it():
  out, b = bernoulli_out(), batch()
  loss, terms = study.ssb_vae(out, b, HP, LossOptions())
  p = np_softmax(out["class_logits"])
  np.testing.assert_allclose(loss, written_out(out, b, p @ p.T), rtol=1e-4)

  def pair_only(class_logits):
    _, t = study.ssb_vae(dict(out, class_logits=class_logits), b, HP,
                           LossOptions())
    return t["pairwise"]
  grad = jax.grad(pair_only)(jnp.asarray(out["class_logits"]))
  assert float(jnp.abs(grad).max()) > 0  # no stop-gradient on P


def test_vdsh_s_matches_formula():
  mu, logvar = rng.normal(size=(B, K)), rng.normal(size=(B, K)) * 0.3
  out = dict(mu=mu, logvar=logvar, sample=mu,
             recon_logits=rng.normal(size=(B, D)), class_logits=rng.normal(size=(B, C)))
  b = batch()
  loss, _ = study.vdsh_s(out, b, HP, LossOptions())
  rec = -(b["targets"] * np.log(np_softmax(out["recon_logits"]))).sum(-1).mean()
  kl = (-0.5 * (1 + logvar - mu**2 - np.exp(logvar)).sum(-1)).mean()
  ce = -(b["label_rows"] * np.log(np_softmax(out["class_logits"]))).sum(-1).mean()
  np.testing.assert_allclose(loss, rec + 0.2 * kl + 0.3 * ce, rtol=1e-4)


def test_unsupervised_variants_are_the_alpha_zero_cases():
  out, b = bernoulli_out(), batch()
  zero = dict(HP, alpha=jnp.float32(0.0))
  assert float(methods.get("bernoulli_vae").objective(out, b, HP, LossOptions())[0]) \
      == pytest.approx(float(study.phs_gs(out, b, zero, LossOptions())[0]))
  spec = ModelSpec(dims=D, bits=K, num_classes=C)
  assert methods.get("vdsh").build_model(spec).latent == "gaussian"
  assert set(methods.get("vdsh").weights) == {"beta"}


def test_multilabel_sigmoid_path_keeps_similarity_in_unit_interval():
  out, b = bernoulli_out(), batch()
  b["label_rows"] = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 0], [0, 1, 1],
                              [0, 0, 0], [0, 0, 0]], np.float32)
  opts = LossOptions(multilabel="sigmoid", multilabel_data=True)
  _, parity = study.phs_gs(out, b, HP, LossOptions(multilabel_data=True))
  _, fixed = study.phs_gs(out, b, HP, opts)
  # Parity S counts shared labels (up to 3 here); the fix caps it at 1.
  s = np.minimum(b["label_rows"] @ b["label_rows"].T, 1)
  codes = np.asarray(out["sample"])
  d = ((codes[:, None] - codes[None]) ** 2).sum(-1)
  expected = (s * d + (1 - s) * np.maximum(K / 3 - d, 0)).sum() / K
  np.testing.assert_allclose(fixed["pairwise"], expected, rtol=1e-5)
  assert not np.isclose(float(parity["pairwise"]), expected)
  p = 1 / (1 + np.exp(-out["class_logits"]))
  bce = -(b["label_rows"] * np.log(p) + (1 - b["label_rows"]) * np.log(1 - p)).sum(-1)
  np.testing.assert_allclose(fixed["pointwise"], (bce * b["labelled"]).mean(),
                             rtol=1e-5)


def test_ssb_vae_similarity_power_on_the_sigmoid_path_only():
  out, b = bernoulli_out(), batch()
  codes = np.asarray(out["sample"])
  d = ((codes[:, None] - codes[None]) ** 2).sum(-1)
  p = 1 / (1 + np.exp(-np.asarray(out["class_logits"])))
  q = p ** 3 / (p ** 3).sum(-1, keepdims=True)
  s = q @ q.T
  sharp = methods.default_options("ssb_vae", True, multilabel="sigmoid", similarity_power=3.0)
  _, terms = study.ssb_vae(out, b, HP, sharp)
  expected = (s * d + (1 - s) * np.maximum(K / 3 - d, 0)).sum() / K
  np.testing.assert_allclose(terms["pairwise"], expected, rtol=1e-5)
  # The softmax path's S is a distribution's P P^T already: the power is ignored.
  softmax = [study.ssb_vae(out, b, HP, LossOptions(True, **given))[0]
             for given in ({}, dict(similarity_power=3.0))]
  np.testing.assert_allclose(softmax[0], softmax[1], rtol=1e-7)


def test_unknown_method_lists_known_ones():
  with pytest.raises(ValueError, match=r"unknown method 'nope'.*ssb_vae"):
    methods.get("nope")


def test_registering_a_new_method():
  @methods.register("test_only_rec", weights=dict(beta=0.5), latent="bernoulli")
  def rec_only(out, b, hp, options):
    rec = jnp.mean(losses.softmax_reconstruction(out["recon_logits"], b["targets"]))
    return rec, dict(loss=rec)
  try:
    assert methods.get("test_only_rec").objective is rec_only
  finally:
    del methods.METHODS["test_only_rec"]
  with pytest.raises(ValueError, match="latent"):
    methods.register("bad", weights={}, latent="poisson")
  with pytest.raises(ValueError, match="reserved"):
    methods.register("bad", weights=dict(learning_rate=1.0))


def test_reading_an_undeclared_weight_or_option_names_the_method():
  hp = methods.Weights("phs_gs", dict(HP, learning_rate=1e-3, temperature=0.67))
  with pytest.raises(methods.MethodError, match=r"'phs_gs' reads weight 'delta'.*"
                     r"\['alpha', 'beta', 'gamma'\]"):
    hp["delta"]
  with pytest.raises(methods.MethodError, match=r"'ssb_vae' reads option 'nope'"):
    _ = LossOptions().nope
  with pytest.raises(methods.MethodError, match=r"no options \['nope'\]"):
    LossOptions(nope=1)
