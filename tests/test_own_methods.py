"""PL-Hash, IM-Hash and CV-Hash (hashvae/methods/pseudo_label.py, infomax.py,
views.py): their
objectives against the formulas written out in numpy, where their gradients
flow, the cases where they reduce to SSB-VAE, and a few training steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_methods import HP, B, C, D, batch, bernoulli_out, np_softmax, written_out

from configs import synthetic
from hashvae import data, methods
from hashvae.core.models import HashModel, ModelSpec
from hashvae.core.sparse import SparseRows
from hashvae.methods import infomax, pseudo_label, study, views
from hashvae.sweep.specs import make_run

from conftest import with_fields

HP_PL = dict(HP, lam=jnp.float32(0.7))
HP_IM = dict(HP, delta=jnp.float32(0.4))
HP_CV = dict(HP, kappa=jnp.float32(0.6))


def options(name, multilabel_data=False, **given):
  return methods.default_options(name, multilabel_data, **given)


def confident_out(scale=6.0):
  """An output whose first three items' predictions are near one-hot
  (confident) and the last three's flat."""
  out = bernoulli_out()
  logits = np.zeros((B, C), np.float32)
  logits[:3, 0], logits[1, :] = scale, [0, scale, 0]
  logits[3:] = np.random.default_rng(7).normal(size=(3, C)) * 0.1
  return dict(out, class_logits=logits)


def np_entropy(p, axis=-1):
  return -(p * np.log(p)).sum(axis)


# PL-Hash ----------------------------------------------------------------------

def test_pl_hash_matches_its_formula():
  out, b = confident_out(), batch(labelled=(1, 0, 0, 1, 0, 0))
  loss, terms = pseudo_label.pl_hash(out, b, HP_PL, options("pl_hash"))
  p = np_softmax(out["class_logits"])
  labelled = b["labelled"]
  sure = (p.max(-1) >= 0.9) & (labelled == 0)  # items 1 and 2
  assert sure.tolist() == [False, True, True, False, False, False]
  hard = np.eye(C)[p.argmax(-1)]
  q = np.where(labelled[:, None] == 1, b["label_rows"],
               np.where(sure[:, None], hard, p))
  pl = -(sure[:, None] * hard * np.log(p)).sum(-1).mean()
  expected = written_out(out, b, q @ q.T) + 0.7 * pl
  np.testing.assert_allclose(loss, expected, rtol=1e-4)
  np.testing.assert_allclose(terms["pseudo_label"], pl, rtol=1e-4)
  assert float(terms["confident_fraction"]) == pytest.approx(2 / 4)


def test_pl_hash_without_labels_or_confidence_is_ssb_vae():
  out, b = bernoulli_out(), batch(labelled=(0,) * B)
  never = options("pl_hash", confidence=1.01)
  ssb = study.ssb_vae(out, b, HP, methods.default_options("ssb_vae"))[0]
  np.testing.assert_allclose(pseudo_label.pl_hash(out, b, HP_PL, never)[0], ssb, rtol=1e-6)


def test_pl_hash_targets_of_confident_items_carry_no_gradient():
  out, b = confident_out(scale=9.0), batch(labelled=(0,) * B)
  hp = dict(HP_PL, gamma=jnp.float32(0.0), lam=jnp.float32(0.0))  # only S reads P

  def loss(class_logits, confidence):
    o = dict(out, class_logits=class_logits)
    return pseudo_label.pl_hash(o, b, hp, options("pl_hash", confidence=confidence))[0]

  grad = jax.grad(loss)(jnp.asarray(out["class_logits"]), 0.9)
  assert np.all(np.asarray(grad[:3]) == 0)  # confident: hard, stopped targets
  assert np.abs(np.asarray(grad[3:])).max() > 0  # unsure: SSB-VAE's soft targets
  soft = jax.grad(loss)(jnp.asarray(out["class_logits"]), 1.01)
  assert np.abs(np.asarray(soft[:3])).max() > 0


def test_pl_hash_sigmoid_path():
  out, b = bernoulli_out(), batch(labelled=(1, 0, 0, 1, 0, 0))
  logits = np.array([[5, -5, 5], [6, -6, 6], [0.1, 4, -4], [0, 0, 0], [-5, -6, -7],
                     [5, 5, 5]], np.float32)
  out = dict(out, class_logits=logits)
  b["label_rows"][0] = [1, 0, 1]
  loss, terms = pseudo_label.pl_hash(out, b, HP_PL, options(
      "pl_hash", multilabel_data=True, multilabel="sigmoid"))
  p = 1 / (1 + np.exp(-logits))
  sure = (np.maximum(p, 1 - p).min(-1) >= 0.9) & (b["labelled"] == 0)
  assert sure.tolist() == [False, True, False, False, True, True]
  hard = (p > 0.5).astype(np.float32)
  q = np.where(b["labelled"][:, None] == 1, b["label_rows"], np.where(sure[:, None], hard, p))
  q = q / np.maximum(q.sum(-1, keepdims=True), 1e-12)
  bce = lambda t: -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum(-1)
  pl = (sure * bce(hard)).mean()
  np.testing.assert_allclose(terms["pseudo_label"], pl, rtol=1e-4)
  _, ssb_terms = study.ssb_vae(out, b, HP, methods.default_options(
      "ssb_vae", True, multilabel="sigmoid"))
  expected = (terms["reconstruction"] + 0.2 * terms["kl"]
              + 0.3 * (5.0 * ssb_terms["pointwise"] + terms["pairwise"]) + 0.7 * pl)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  codes = np.asarray(out["sample"])
  d = ((codes[:, None] - codes[None]) ** 2).sum(-1)
  s = q @ q.T
  k = codes.shape[1]
  pair = (s * d + (1 - s) * np.maximum(k / 3 - d, 0)).sum() / k
  np.testing.assert_allclose(terms["pairwise"], pair, rtol=1e-4)


# IM-Hash ----------------------------------------------------------------------

def test_im_hash_matches_its_formula():
  out, b = bernoulli_out(), batch()
  loss, terms = infomax.im_hash(out, b, HP_IM, options("im_hash"))
  p = np_softmax(out["class_logits"])
  info = np_entropy(p.mean(0)) - np_entropy(p).mean()
  np.testing.assert_allclose(terms["class_information"], info, rtol=1e-4)
  np.testing.assert_allclose(loss, written_out(out, b, p @ p.T) - 0.4 * info, rtol=1e-4)
  zero = dict(HP_IM, delta=jnp.float32(0.0))
  ssb = study.ssb_vae(out, b, HP, methods.default_options("ssb_vae"))[0]
  np.testing.assert_allclose(infomax.im_hash(out, b, zero, options("im_hash"))[0], ssb,
                             rtol=1e-6)


def test_class_information_bounds_and_sigmoid_form():
  flat = jnp.full((4, C), 1.0 / C)
  assert float(infomax.class_information(flat, False)) == pytest.approx(0.0, abs=1e-6)
  balanced = jnp.eye(C)[jnp.array([0, 1, 2, 0, 1, 2])]
  assert float(infomax.class_information(balanced, False)) == pytest.approx(np.log(C), abs=1e-5)
  collapsed = jnp.eye(C)[jnp.zeros(6, int)]
  assert float(infomax.class_information(collapsed, False)) == pytest.approx(0.0, abs=1e-5)
  p = np.random.default_rng(2).uniform(0.05, 0.95, size=(5, C))
  bern = lambda q: -(q * np.log(q) + (1 - q) * np.log(1 - q)).sum(-1)
  np.testing.assert_allclose(infomax.class_information(jnp.asarray(p), True),
                             bern(p.mean(0)) - bern(p).mean(), rtol=1e-5)


def test_im_hash_sigmoid_path_stays_finite_when_predictions_saturate():
  # Jitted, as in training: a logit above about 16.6 makes the sigmoid 1.0
  # in float32, and an epsilon added after `1 - p` is folded away by XLA.
  out = dict(bernoulli_out(), class_logits=np.tile(
      np.array([[40.0, -40.0, 17.0]], np.float32), (B, 1)))
  b = batch(labelled=(1, 0, 0, 1, 0, 0))
  opts = options("im_hash", multilabel_data=True, multilabel="sigmoid")

  def loss(logits):
    return infomax.im_hash(dict(out, class_logits=logits), b, HP_IM, opts)[0]
  value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(out["class_logits"]))
  assert np.isfinite(float(value))
  assert np.all(np.isfinite(np.asarray(grad)))
  saturated = jax.jit(lambda z: infomax.class_information(jax.nn.sigmoid(z), True))(
      jnp.asarray(out["class_logits"]))
  assert float(saturated) == pytest.approx(0.0, abs=1e-5)  # every item agrees


# CV-Hash ----------------------------------------------------------------------

def views_out():
  out = bernoulli_out()
  r = np.random.default_rng(11)
  return dict(out, view_class_logits=r.normal(size=(B, C)).astype(np.float32))


def np_sigmoid(x):
  return 1 / (1 + np.exp(-x))


def np_bce(target, logits):
  p = np_sigmoid(logits)
  return -(target * np.log(p) + (1 - target) * np.log(1 - p)).sum(-1)


def test_cv_hash_matches_its_formula_and_reduces_to_ssb_vae():
  out, b = views_out(), batch()
  loss, terms = views.cv_hash(out, b, HP_CV, options("cv_hash"))
  p, p_view = np_softmax(out["class_logits"]), np_softmax(out["view_class_logits"])
  classes = -(p * np.log(p_view)).sum(-1).mean()
  np.testing.assert_allclose(terms["class_consistency"], classes, rtol=1e-5)
  np.testing.assert_allclose(loss, written_out(out, b, p @ p.T) + 0.6 * classes, rtol=1e-4)
  zero = dict(HP_CV, kappa=jnp.float32(0.0))
  ssb = study.ssb_vae(out, b, HP, methods.default_options("ssb_vae"))[0]
  np.testing.assert_allclose(views.cv_hash(out, b, zero, options("cv_hash"))[0], ssb, rtol=1e-6)


def test_cv_hash_sigmoid_path_uses_binary_consistency():
  out, b = views_out(), batch()
  _, terms = views.cv_hash(out, b, HP_CV, options("cv_hash", multilabel_data=True,
                                                  multilabel="sigmoid"))
  expected = np_bce(np_sigmoid(out["class_logits"]), out["view_class_logits"]).mean()
  np.testing.assert_allclose(terms["class_consistency"], expected, rtol=1e-5)


@pytest.mark.parametrize("sigmoid", [False, True])
def test_cv_hash_target_is_the_clean_view_without_gradient(sigmoid):
  out = views_out()
  probs = jax.nn.sigmoid if sigmoid else jax.nn.softmax
  g_clean, g_view = jax.grad(
      lambda c, v: views.class_consistency(probs(c), v, sigmoid), argnums=(0, 1))(
      jnp.asarray(out["class_logits"]), jnp.asarray(out["view_class_logits"]))
  assert not np.any(np.asarray(g_clean))
  assert np.abs(np.asarray(g_view)).sum() > 0


def test_drop_words_zeroes_at_the_rate_and_keeps_the_expectation():
  x = jnp.asarray(np.random.default_rng(3).uniform(0.5, 1.5, size=(200, 50)), jnp.float32)
  dropped = np.asarray(views.drop_words(jax.random.key(0), x, 0.25))
  kept = dropped != 0
  assert abs(1 - kept.mean() - 0.25) < 0.02
  np.testing.assert_allclose(dropped[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)
  rows = SparseRows(indices=jnp.zeros((200, 50), jnp.int32), values=x)
  sparse = views.drop_words(jax.random.key(0), rows, 0.25)
  np.testing.assert_array_equal(np.asarray(sparse.values), dropped)  # same key, same words
  assert sparse.indices is rows.indices


def test_views_model_is_the_study_network_plus_an_inference_view():
  spec = ModelSpec(dims=D, bits=4, num_classes=C, hidden=(8,))
  x = jnp.asarray(np.random.default_rng(4).uniform(size=(B, D)), jnp.float32)
  keys = {"params": jax.random.key(0), "sample": jax.random.key(1)}
  study = HashModel(**vars(spec))
  variables = study.init(keys, x, 0.5)
  model = views.views_model(spec, rate=0.0)
  assert (jax.tree.map(np.shape, model.init(keys, x, 0.5))
          == jax.tree.map(np.shape, variables))
  noise = {"sample": jax.random.key(2)}
  out, state = model.apply(variables, x, 0.5, rngs=noise, mutable=["batch_stats"])
  study_out, study_state = study.apply(variables, x, 0.5, rngs=noise, mutable=["batch_stats"])
  # The clean pass is the study's, and the view leaves batch norm's averages alone.
  for name in ("logits", "sample", "class_logits"):
    np.testing.assert_array_equal(out[name], study_out[name])
  jax.tree.map(np.testing.assert_array_equal, state, study_state)
  # With no word dropped, the view is the item encoded as at inference.
  h = study.apply(dict(variables, **state), x, False, method=lambda m, x, t: m.encoder(x, t))
  view = study.apply(variables, h, method=lambda m, h: m.classifier(h))
  np.testing.assert_allclose(out["view_class_logits"], view, rtol=1e-5, atol=1e-6)
  assert np.abs(np.asarray(out["view_class_logits"] - out["class_logits"])).max() > 1e-3


# All three, trained ----------------------------------------------------------------

@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
@pytest.mark.parametrize("name", ["pl_hash", "im_hash", "cv_hash"])
def test_own_methods_train_and_lower_their_loss(name):
  config = with_fields(synthetic.get_config(f"method={name}"), epochs=4)
  dataset = data.load(data.spec_from_fields(config.data.to_dict()))
  run = make_run(config, dataset)
  hp = dict(methods.get(name).weights, learning_rate=1e-3, temperature=0.67)
  codes, metrics = jax.jit(run.run)(run.arrays, jax.random.key(0), jnp.float32(0.2), hp)
  loss = np.asarray(metrics["loss"])
  assert np.isfinite(loss).all() and loss[-1] < loss[0], loss
  assert set(np.unique(codes["db_codes"])) <= {0, 1}
