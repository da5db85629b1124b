"""Methods fitted on the host: same grid, label masks and outputs as trained ones."""


import numpy as np
import pytest

from configs import synthetic
from hashvae import data, methods
from hashvae.sweep import experiment, specs
from hashvae.sweep.specs import make_run
from hashvae.training import grid as grid_lib

SEEN = []


@pytest.fixture(scope="module", autouse=True)
def random_signs():
  @methods.register_fitted("test_random_signs", weights=dict(scale=1.0))
  def fit(dataset, labelled, rng, hp, options, bits):
    """Codes: signs of a random projection of the inputs (scaled by `scale`)."""
    SEEN.append((labelled, hp))
    w = rng.normal(size=(dataset.dims, bits)) * hp["scale"]
    code = lambda x: (x @ w > np.median(x @ w, axis=0)).astype(np.uint8)
    return code(dataset.database.inputs), code(dataset.test.inputs)
  yield
  del methods.METHODS["test_random_signs"]


def test_fitted_runs_see_the_masks_trained_runs_draw_and_reproduce():
  config = synthetic.get_config("method=test_random_signs")
  dataset = data.load(data.spec_from_fields(config.data.to_dict()))
  SEEN.clear()
  first = experiment.train_method(config, dataset, "test_random_signs")
  again = experiment.train_method(config, dataset, "test_random_signs")
  np.testing.assert_array_equal(first.db_codes, again.db_codes)  # from the seed alone
  grid = specs.build_grid(config, "test_random_signs")
  assert len(first.rows) == len(grid) == 4 and first.db_codes.shape[0] == 4
  assert [r["scale"] for r in first.rows] == [1.0] * 4 and "alpha" not in first.rows[0]
  assert all(r["status"] == "ok" and 0 <= r["p@10"] <= 1 for r in first.rows)
  assert first.db_codes[0].tolist() != first.db_codes[1].tolist()  # seeds differ
  run = make_run(config, dataset, "ssb_vae")
  hp = {k: 1.0 for k in run.weights}
  for (labelled, _), row in zip(SEEN, grid.rows(), strict=False):
    state = run.init(run.arrays, grid_lib.run_key(config.base_seed, row["seed"]),
                     np.float32(row["level"]), hp)
    np.testing.assert_array_equal(labelled, np.asarray(state.labelled))
  assert {int(s[0].sum()) for s in SEEN} == {40, 200}  # levels (0.2, 1.0) of 200 items


def test_a_fitted_method_is_not_trained():
  config = synthetic.get_config("method=test_random_signs")
  with pytest.raises(methods.MethodError, match="fitted, not trained"):
    make_run(config, data.load(data.spec_from_fields(config.data.to_dict())))

