"""The classical baselines: each method's defining property against an
independent computation, on tiny data."""

import numpy as np
import pytest
import scipy.linalg
from sklearn.decomposition import TruncatedSVD

from configs import digits, synthetic
from hashvae import data, methods
from hashvae.data.dataset import Dataset, make_split
from hashvae.methods import classical, projections
from hashvae.methods.classical_supervised import (
  cca,
  pairwise_scatter,
  sequential_directions,
  violation_scatter,
)
from hashvae.sweep import experiment

CLASSICAL = ("lsh", "pca_itq", "spectral", "ssh", "cca_itq")


def tiny(train, test, train_labels, test_labels, num_classes, validation=0):
  """A Dataset whose database is `train` (its last `validation` rows as the
  validation split) and whose queries are `test`; inputs double as targets."""
  train, test = np.asarray(train, np.float32), np.asarray(test, np.float32)
  train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
  cut = len(train) - validation
  return Dataset("tiny", make_split(train[:cut], train[:cut], train_labels[:cut]),
                 make_split(train[cut:], train[cut:], train_labels[cut:]),
                 make_split(test, test, test_labels), num_classes)


def blobs(seed=0, items=60, dims=6, classes=3, queries=12, multilabel=False):
  """Gaussian class clusters; labels [items] or multi-hot [items, classes]."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(scale=3.0, size=(classes, dims))
  y = rng.integers(classes, size=items + queries)
  x = centres[y] + rng.normal(size=(items + queries, dims))
  if multilabel:
    rows = np.eye(classes, dtype=np.uint8)[y]
    extra = rng.random(len(y)) < 0.3  # a second label for some items
    rows[extra, (y[extra] + 1) % classes] = 1
    y = rows
  return tiny(x[:items], x[items:], y[:items], y[items:], classes, validation=items // 5)


def fit(method, dataset, labelled=None, seed=0, bits=4, options=None, **hp):
  m = methods.get(method)
  if labelled is None:
    labelled = np.ones(len(dataset.train) + len(dataset.validation), np.float32)
  options = methods.default_options(method, dataset.multilabel, **(options or {}))
  return m.fit(dataset, labelled, np.random.default_rng(seed), dict(m.weights, **hp),
               options, bits)


def database(dataset):
  return np.concatenate([dataset.train.inputs, dataset.validation.inputs]).astype(np.float64)


@pytest.mark.parametrize("method", CLASSICAL)
def test_codes_are_bits_of_the_right_shape_and_reproducible(method):
  dataset = blobs()
  db, queries = fit(method, dataset)
  assert db.shape == (60, 4) and queries.shape == (12, 4) and db.dtype == np.uint8
  assert set(np.unique(db)) <= {0, 1}
  again = fit(method, dataset)
  np.testing.assert_array_equal(db, again[0])
  np.testing.assert_array_equal(queries, again[1])


@pytest.mark.parametrize("dims", [6, 600])  # dense rows; sparse rows (wide input)
def test_lsh_is_the_sign_of_a_gaussian_projection_from_the_runs_generator(dims):
  rng = np.random.default_rng(3)
  x = rng.normal(size=(20, dims)) * (rng.random((20, dims)) < 0.2)
  dataset = tiny(x[:15], x[15:], np.arange(15) % 2, np.arange(5) % 2, 2, validation=3)
  db, queries = fit("lsh", dataset, seed=7, bits=8)
  w = np.random.default_rng(7).standard_normal((dims, 8))
  np.testing.assert_array_equal(db, (x[:15] @ w > 0).astype(np.uint8))
  np.testing.assert_array_equal(queries, (x[15:] @ w > 0).astype(np.uint8))
  assert not np.array_equal(db, fit("lsh", dataset, seed=8, bits=8)[0])  # another seed


def test_itq_rotation_is_orthogonal_and_its_loss_never_increases():
  v = np.random.default_rng(0).normal(size=(200, 6)) * np.arange(1, 7)
  rotation, losses = projections.itq(v, np.random.default_rng(1), iterations=30)
  np.testing.assert_allclose(rotation @ rotation.T, np.eye(6), atol=1e-10)
  assert np.all(np.diff(losses) <= 1e-9) and losses[-1] < losses[0]
  b = np.where(v @ rotation >= 0, 1.0, -1.0)  # the loss as defined, ||B - V R||^2
  assert losses[-1] == pytest.approx(np.sum((b - v @ rotation) ** 2))


def test_pca_itq_projects_on_the_top_principal_directions():
  dataset = blobs(dims=8)
  x = database(dataset)
  centred = x - x.mean(axis=0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)  # independent PCA
  directions = projections.principal_directions(centred, 4)
  np.testing.assert_allclose(np.abs(directions.T @ vt[:4].T), np.eye(4), atol=1e-8)
  # The codes: ITQ from the run's Generator on the projections on numpy's directions.
  reference = projections.fix_signs(vt[:4].T)
  rotation, _ = projections.itq(centred @ reference, np.random.default_rng(5))
  db, queries = fit("pca_itq", dataset, seed=5)
  np.testing.assert_array_equal(db, (centred @ reference @ rotation > 0).astype(np.uint8))
  q = dataset.test.inputs - x.mean(axis=0)
  np.testing.assert_array_equal(queries, (q @ reference @ rotation > 0).astype(np.uint8))


def test_spectral_modes_are_the_lowest_frequencies_by_hand():
  # Ranges 4 and 1: frequencies k pi / 4 along the first, k pi along the
  # second; the five lowest are k = 1, 2, 3, 4 on the first, then k = 1 on
  # the second (pi ties with 4 pi / 4: the lower direction first).
  direction, omega = classical.spectral_modes(np.array([0.0, 0.0]), np.array([4.0, 1.0]), 5)
  assert direction.tolist() == [0, 0, 0, 0, 1]
  np.testing.assert_allclose(omega, np.pi * np.array([0.25, 0.5, 0.75, 1.0, 1.0]))


def test_spectral_hashing_thresholds_by_hand():
  # A 5 x 2 grid: x in 0..4 (variance 2), y in {0, 1} (variance 1/4), so the
  # principal directions are the axes; centred ranges [-2, 2] and [-0.5, 0.5].
  grid = np.array([(a, b) for a in range(5) for b in (0, 1)], np.float64)
  dataset = tiny(grid, [[1.2, 0.3]], np.arange(10) % 2, [0], 2)
  _, query = fit("spectral", dataset, bits=5)
  # The query sits at 1.2 from the low end along x, 0.3 along y: bits
  # cos(k pi 1.2 / 4) for k = 1..4 (54, 108, 162, 216 degrees), cos(pi 0.3).
  assert query.tolist() == [[1, 0, 0, 0, 1]]


def brute_force_scatter(x, rows):
  similar = np.where(rows @ rows.T > 0, 1.0, -1.0)  # the [l, l] matrix S
  return x.T @ similar @ x


@pytest.mark.parametrize("multilabel", [False, True])
def test_pairwise_scatter_equals_the_explicit_pair_matrix(multilabel):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(30, 5))
  rows = (rng.random((30, 4)) < 0.4).astype(float) if multilabel else np.eye(4)[rng.integers(4, size=30)]
  np.testing.assert_allclose(pairwise_scatter(x, rows), brute_force_scatter(x, rows),
                             atol=1e-9)


ORTHOGONAL_SSH = dict(ssh_directions="orthogonal", ssh_rotation="none")  # the paper's codes


def adjusted_covariance(x, keep, rows, eta):
  """The paper's M with the explicit [l, l] pair matrix (brute force)."""
  n = len(x)
  return brute_force_scatter(x[keep], rows) / n**2 + eta * x.T @ x / n


def test_orthogonal_ssh_codes_are_the_signs_of_the_top_eigenvectors():
  dataset = blobs(dims=8)
  labelled = (np.arange(60) % 3 == 0).astype(np.float32)
  db, _ = fit("ssh", dataset, labelled, bits=3, options=ORTHOGONAL_SSH, eta=0.5)
  x = database(dataset)
  x -= x.mean(axis=0)
  keep = labelled > 0
  rows = np.eye(3)[np.concatenate([dataset.train.labels, dataset.validation.labels])[keep]]
  values, vectors = np.linalg.eigh(adjusted_covariance(x, keep, rows, 0.5))
  w = vectors[:, ::-1][:, :3]
  codes = (x @ w > 0).astype(np.uint8)
  flips = np.sign(w[np.abs(w).argmax(axis=0), range(3)]) < 0  # eigenvectors' signs
  np.testing.assert_array_equal(db, np.where(flips, 1 - codes, codes))


def test_violation_scatter_by_hand():
  # Items 0, 1 share a label, item 2 has another; projections 1, -1, 2.
  # Pair (0, 1) shares a label but lies on opposite sides: contradicted;
  # (0, 2) shares none but lies on the same side: contradicted; (1, 2) is
  # right. So T = p p^T on (0, 1) and (0, 2), 0 elsewhere, and with x = I
  # the scatter X^T T X is T itself.
  rows = np.eye(2)[[0, 0, 1]]
  t = violation_scatter(np.eye(3), rows, np.array([1.0, -1.0, 2.0]))
  np.testing.assert_array_equal(t, [[0, -1, 2], [-1, 0, 0], [2, 0, 0]])


@pytest.mark.parametrize("multilabel", [False, True])
def test_violation_scatter_equals_the_explicit_pair_matrix(multilabel):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(30, 5))
  rows = (rng.random((30, 4)) < 0.4).astype(float) if multilabel else np.eye(4)[rng.integers(4, size=30)]
  p = rng.normal(size=30)
  p[3] = 0.0  # a projection on the hyperplane contradicts nothing
  similar = np.where(rows @ rows.T > 0, 1.0, -1.0)
  products = np.outer(p, p)
  t = np.where(similar * products < 0, products, 0.0)  # the [l, l] matrix T
  np.testing.assert_allclose(violation_scatter(x, rows, p), x.T @ t @ x, atol=1e-9)


def brute_force_splh(x, keep, rows, eta, step, bits):
  """The paper's sequential algorithm as written: explicit [l, l] pair
  matrix S_k, and the data replaced by its residual after each bit."""
  n = len(x)
  s = np.where(rows @ rows.T > 0, 1.0, -1.0)
  residual = x.copy()
  values, directions = [], []
  for _ in range(bits):
    xl = residual[keep]
    m = xl.T @ s @ xl / n**2 + eta * residual.T @ residual / n
    vals, vecs = np.linalg.eigh(m)
    w = vecs[:, -1]
    values.append(vals[-1])
    directions.append(w)
    p = xl @ w
    products = np.outer(p, p) / np.mean(p**2)
    s = s - step * np.where(s * products < 0, products, 0.0)
    residual = residual - np.outer(residual @ w, w)
  return np.array(values), np.stack(directions, axis=1)


def hidden_classes(seed=0, items=80, queries=10, classes=3):
  """Class means in the two lowest-variance of six dimensions: the labels,
  not the variance, point at them."""
  rng = np.random.default_rng(seed)
  y = rng.integers(classes, size=items + queries)
  x = rng.normal(size=(len(y), 6)) * np.array([4.0, 3.5, 3.0, 2.5, 1.0, 1.0])
  x[:, 4:] += 2.0 * rng.normal(size=(classes, 2))[y]
  return tiny(x[:items], x[items:], y[:items], y[items:], classes)


def test_sequential_directions_follow_the_papers_algorithm():
  dataset = hidden_classes()
  x = database(dataset)
  x -= x.mean(axis=0)
  keep = np.flatnonzero(np.arange(80) % 2 == 0)
  rows = np.eye(3)[dataset.train.labels[keep]]
  values, w = sequential_directions(x, keep, rows, eta=0.01, step=0.5, bits=5)
  expected_values, expected = brute_force_splh(x, keep, rows, 0.01, 0.5, 4)
  np.testing.assert_allclose(values[:4], expected_values, rtol=1e-8)
  np.testing.assert_allclose(np.abs(np.sum(w[:, :4] * expected, axis=0)), 1.0, atol=1e-8)
  # The fifth bit's best direction has a negative objective here: the
  # residual data would offer only their null space (the earlier
  # directions); the direction stays orthogonal to them instead.
  assert values[4] < 0
  np.testing.assert_allclose(w.T @ w, np.eye(5), atol=1e-10)
  # The reweighting changes the later bits: without it (step 0) they are the
  # orthogonal solution's eigenvectors.
  _, plain = sequential_directions(x, keep, rows, eta=0.01, step=0.0, bits=4)
  m = adjusted_covariance(x, keep, rows, 0.01)
  top = np.linalg.eigh(m)[1][:, ::-1][:, :4]
  np.testing.assert_allclose(np.abs(np.sum(plain * top, axis=0)), 1.0, atol=1e-8)
  assert np.abs(np.sum(w[:, 1:4] * top[:, 1:], axis=0)).max() < 0.97


@pytest.mark.parametrize("directions", ["sequential", "orthogonal"])
def test_ssh_codes_are_the_itq_rotation_of_the_directions_scaled_by_root_eigenvalues(
    directions):
  dataset = hidden_classes()
  labelled = (np.arange(80) % 4 == 0).astype(np.float32)
  db, queries = fit("ssh", dataset, labelled, seed=3, bits=4,
                    options=dict(ssh_directions=directions), eta=0.01, step=0.5)
  x = database(dataset)
  mean = x.mean(axis=0)
  x -= mean
  keep = np.flatnonzero(labelled)
  rows = np.eye(3)[dataset.train.labels[keep]]
  if directions == "sequential":
    values, w = brute_force_splh(x, keep, rows, 0.01, 0.5, 4)
  else:
    values, w = np.linalg.eigh(adjusted_covariance(x, keep, rows, 0.01))
    values, w = values[::-1][:4], w[:, ::-1][:, :4]
  projection = projections.fix_signs(w) * np.sqrt(values)
  rotation, _ = projections.itq(x @ projection, np.random.default_rng(3))
  np.testing.assert_array_equal(db, (x @ projection @ rotation > 0).astype(np.uint8))
  q = dataset.test.inputs - mean
  np.testing.assert_array_equal(queries, (q @ projection @ rotation > 0).astype(np.uint8))


def precision_at(db, queries, db_labels, query_labels, k):
  """Mean over queries of the share of the k nearest (Hamming distance, ties
  by database order) that share the query's label."""
  distance = (queries[:, None, :] != db[None]).sum(-1)
  nearest = np.argsort(distance, axis=1, kind="stable")[:, :k]
  return float(np.mean(db_labels[nearest] == query_labels[:, None]))


def test_ssh_improves_with_the_level_on_digits_at_16_bits():
  # The regression this guards against (issue #19): digits' 10 classes give
  # the label term 9 directions, near the top principal ones, and the
  # orthogonal codes' 7 other bits come from the variance alone, so their
  # p@100 stayed at 0.38 - 0.40 from 2% of the labels to all of them.
  dataset = data.load(data.spec_from_fields(digits.get_config().data.to_dict()))
  n = len(dataset.train)
  p = {}
  for level in (0.02, 1.0):
    labelled = (np.random.default_rng(0).permutation(n) < int(level * n)).astype(np.float32)
    db, queries = fit("ssh", dataset, labelled, bits=16)
    p[level] = precision_at(db, queries, dataset.train.labels, dataset.test.labels, 100)
  assert p[1.0] > p[0.02] + 0.04, p


@pytest.mark.parametrize("method", ["ssh", "cca_itq"])
@pytest.mark.parametrize("multilabel", [False, True])
def test_supervised_methods_read_only_the_labelled_items(method, multilabel):
  dataset = blobs(multilabel=multilabel)
  labelled = (np.arange(60) % 2 == 0).astype(np.float32)
  before = fit(method, dataset, labelled, bits=3)

  def relabelled(items):
    train = dataset.train.labels.copy()
    validation = dataset.validation.labels.copy()
    for i in items:
      split, j = (train, i) if i < len(train) else (validation, i - len(train))
      split[j] = (1 - split[j]) if multilabel else (split[j] + 1) % 3
    return Dataset("tiny", make_split(dataset.train.inputs, dataset.train.targets, train),
                   make_split(dataset.validation.inputs, dataset.validation.targets,
                              validation), dataset.test, 3)

  unlabelled = np.flatnonzero(labelled == 0)
  after = fit(method, relabelled(unlabelled), labelled, bits=3)
  np.testing.assert_array_equal(before[0], after[0])
  np.testing.assert_array_equal(before[1], after[1])
  changed = fit(method, relabelled(np.flatnonzero(labelled)[:10]), labelled, bits=3)
  assert not np.array_equal(before[0], changed[0])


def test_cca_directions_solve_the_generalised_eigenproblem():
  rng = np.random.default_rng(0)
  y = np.eye(3)[rng.integers(3, size=80)]
  x = rng.normal(size=(80, 5)) + y @ rng.normal(size=(3, 5))
  x, y = x - x.mean(axis=0), y - y.mean(axis=0)
  rho, w = cca(x, y, 2, ridge=1e-3)
  cxx, cyy, cxy = x.T @ x / 80, y.T @ y / 80, x.T @ y / 80
  cxx_r = cxx + 1e-3 * np.trace(cxx) / 5 * np.eye(5)
  cyy_r = cyy + 1e-3 * np.trace(cyy) / 3 * np.eye(3)
  lhs = cxy @ np.linalg.solve(cyy_r, cxy.T) @ w
  np.testing.assert_allclose(lhs, cxx_r @ w * rho**2, atol=1e-10)
  np.testing.assert_allclose(w.T @ cxx_r @ w, np.eye(2), atol=1e-10)
  # Independently: the canonical correlations are the singular values of
  # the whitened cross-covariance Cxx^-1/2 Cxy Cyy^-1/2.
  whiten = lambda c: np.real(scipy.linalg.inv(scipy.linalg.sqrtm(c)))
  singular = np.linalg.svd(whiten(cxx_r) @ cxy @ whiten(cyy_r), compute_uv=False)
  np.testing.assert_allclose(rho, singular[:2], atol=1e-8)


def test_cca_itq_codes_improve_with_labels_on_separable_data():
  dataset = blobs(items=120, dims=10, classes=4, queries=40, seed=1)
  db, queries = fit("cca_itq", dataset, bits=4)
  same = dataset.test.labels[:, None] == np.concatenate(
      [dataset.train.labels, dataset.validation.labels])[None]
  distance = (queries[:, None, :] != db[None]).sum(-1)
  assert distance[same].mean() + 1 < distance[~same].mean()


def test_wide_inputs_go_through_a_seeded_truncated_svd_once_per_seed(monkeypatch):
  rng = np.random.default_rng(0)
  x = rng.poisson(0.05, size=(50, 700)).astype(np.float64)  # sparse counts
  dataset = tiny(x[:40], x[40:], np.arange(40) % 2, np.arange(10) % 2, 2, validation=5)
  assert projections.reduced_dims(700, 4) == 256
  db, queries = projections.features(dataset, np.random.default_rng(4), 4)
  seed = int(np.random.default_rng(4).integers(2**31))
  svd = TruncatedSVD(256, algorithm="randomized", random_state=seed)
  expected = svd.fit_transform(x[:40])
  np.testing.assert_allclose(db, expected - expected.mean(axis=0), atol=1e-10)
  np.testing.assert_allclose(queries, svd.transform(x[40:]) - expected.mean(axis=0),
                             atol=1e-10)
  calls = []
  monkeypatch.setattr(projections, "TruncatedSVD",
                      lambda *a, **k: calls.append(k) or TruncatedSVD(*a, **k))
  again, _ = projections.features(dataset, np.random.default_rng(4), 4)  # cached
  np.testing.assert_array_equal(again, db)
  projections.features(dataset, np.random.default_rng(5), 4)  # another seed: computed
  assert len(calls) == 1


def test_end_to_end_in_the_sweep():
  # One method that reads no labels and one that does (each call compiles
  # the sweep's label mask, so the rest are left to the tests above).
  config = synthetic.get_config("method=lsh+ssh")
  dataset = data.load(data.spec_from_fields(config.data.to_dict()))
  for method in ("lsh", "ssh"):
    result = experiment.train_method(config, dataset, method)
    rows = result.rows
    assert len(rows) == 4 and result.db_codes.shape == (4, 200, 8)
    assert result.query_codes.shape == (4, 40, 8)
    assert all(r["status"] == "ok" and r["method"] == method and 0 <= r["p@10"] <= 1
               for r in rows)
    codes = {(r["seed"], r["level"]): result.db_codes[i] for i, r in enumerate(rows)}
    assert sorted(codes) == [(0, 0.2), (0, 1.0), (1, 0.2), (1, 1.0)]
    # The level reaches only the method that reads labels; seeds differ.
    assert np.array_equal(codes[0, 0.2], codes[0, 1.0]) == (method == "lsh")
    assert not np.array_equal(codes[0, 0.2], codes[1, 0.2])
    if method == "ssh":
      assert rows[0]["eta"] == 1e-4 and rows[0]["step"] == 0.5
