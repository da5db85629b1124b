"""What a run on an accelerator gets, checked on the CPU: the state budget
derived from a reported memory size, and the matmul precision reaching the
compiled step."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic
from hashvae import data
from hashvae.sweep import config_check, specs
from hashvae.sweep.config_check import ConfigError
from hashvae.training import chunking
from hashvae.training.specs import PRECISIONS
from hashvae.training.train import make_run

from conftest import with_fields

GB = 2**30


def test_an_explicit_budget_wins_over_the_device():
  budget, why = chunking.state_budget(512.0, 80 * GB)
  assert budget == 512 * 2**20 and "as set" in why


def test_a_reporting_device_gets_its_documented_fraction():
  budget, why = chunking.state_budget(0.0, 80 * GB)
  assert budget == int(80 * GB * chunking.DEVICE_MEMORY_FRACTION)
  assert "80.0 GB" in why and f"{chunking.DEVICE_MEMORY_FRACTION:.0%}" in why


def test_a_device_that_reports_nothing_keeps_the_cpu_budget():
  budget, why = chunking.state_budget(0.0, None)
  assert budget == chunking.CPU_BUDGET_MB * 2**20 and "no memory size" in why


def test_the_150_run_sweep_fits_one_chunk_on_an_80_gb_card():
  """The case a fixed 2 GB budget got wrong: 150 Snippets runs of ~64 MB."""
  budget, _ = chunking.state_budget(0.0, 80 * GB)
  assert chunking.runs_per_chunk(150, 64 * 2**20, budget - 2**30, 1) == 150
  cpu, _ = chunking.state_budget(0.0, None)
  assert chunking.runs_per_chunk(150, 64 * 2**20, cpu, 1) < 150


class FakeDevice:
  def __init__(self, stats):
    self.stats = stats

  def memory_stats(self):
    return self.stats


def test_device_memory_reads_bytes_limit_and_tolerates_none():
  assert chunking.device_memory_bytes(FakeDevice({"bytes_limit": 123})) == 123
  assert chunking.device_memory_bytes(FakeDevice(None)) is None
  assert chunking.device_memory_bytes(FakeDevice({})) is None
  assert chunking.device_memory_bytes(object()) is None


@pytest.fixture(scope="module")
def tiny():
  config = with_fields(synthetic.get_config("method=ssb_vae"), epochs=1,
                       model__hidden=(8,))
  return config, data.load(specs.data_spec(config))


def lowered_epoch(config, dataset) -> str:
  run = specs.make_run(config, dataset)
  state = run.init(run.arrays, jax.random.key(0), jnp.float32(0.5),
                   {k: jnp.float32(1.0) for k in run.weights})
  return jax.jit(run.train_epoch).lower(run.arrays, state).as_text()


def test_precision_reaches_the_compiled_step(tiny):
  config, dataset = tiny
  full = lowered_epoch(with_fields(config, precision="float32"), dataset)
  fast = lowered_epoch(with_fields(config, precision="bfloat16"), dataset)
  # Every product of the full program is float32; the fast one computes its
  # products in bfloat16 except the decoder's fused bias layer, which asks
  # for HIGHEST itself (core/models.py).
  assert "precision = [DEFAULT, DEFAULT]" not in full
  assert full.count("precision = [HIGHEST, HIGHEST]") > fast.count("[HIGHEST, HIGHEST]")
  assert fast.count("precision = [DEFAULT, DEFAULT]") >= 2


def test_precision_reaches_the_encoder_too(tiny):
  config, dataset = tiny
  run = specs.make_run(with_fields(config, precision="tensorfloat32"), dataset)
  state = run.init(run.arrays, jax.random.key(0), jnp.float32(0.5),
                   {k: jnp.float32(1.0) for k in run.weights})
  text = jax.jit(run.encode).lower(run.arrays, state).as_text()
  assert "precision = [HIGH, HIGH]" in text


def test_full_float32_is_the_default_and_computes_what_the_cpu_computes(tiny):
  """On a CPU every mode computes in float32: the default's codes equal
  those of jax's own default, so existing results do not move."""
  config, dataset = tiny
  assert config.precision == "float32"
  codes = []
  for precision in ("float32", "default"):
    run = specs.make_run(with_fields(config, precision=precision), dataset)
    out, _ = jax.jit(run.run)(run.arrays, jax.random.key(0), jnp.float32(0.5),
                              {k: jnp.float32(1.0) for k in run.weights})
    codes.append(np.asarray(out["db_codes"]))
  np.testing.assert_array_equal(codes[0], codes[1])


def test_a_trainer_spec_without_a_config_carries_its_precision(tiny):
  config, dataset = tiny
  spec = dataclasses.replace(specs.trainer_spec(config), precision="bfloat16")
  run = make_run(spec, dataset, "ssb_vae", specs.options(config, "ssb_vae", False))
  state = run.init(run.arrays, jax.random.key(0), jnp.float32(0.5),
                   {k: jnp.float32(1.0) for k in run.weights})
  text = jax.jit(run.train_epoch).lower(run.arrays, state).as_text()
  assert "precision = [DEFAULT, DEFAULT]" in text


def test_an_unknown_precision_is_one_config_error():
  config = with_fields(synthetic.get_config("method=ssb_vae"), precision="fp8")
  with pytest.raises(ConfigError, match=r"config.precision='fp8': one of"):
    config_check.check(config)
  assert set(PRECISIONS) == {"float32", "tensorfloat32", "bfloat16", "default"}


def test_a_sweep_written_before_the_new_fields_still_resumes():
  """Older config.json files lack precision and hold the old fixed budget:
  neither makes the workdir 'a different config'; a changed weight does."""
  from hashvae.store import workdir
  old = {"bits": 16, "state_memory_budget_mb": 2048.0, "data": {"name": "snippets"}}
  new = {"bits": 16, "state_memory_budget_mb": 0.0, "precision": "float32",
         "data": {"name": "snippets", "id_column": "id"}}
  assert workdir.differing_fields(old, new) == []
  assert workdir.differing_fields(old, dict(new, bits=32)) == ["bits"]
  assert workdir.differing_fields(dict(old, precision="bfloat16"), new) == ["precision"]


def test_records_built_by_hand_are_checked():
  from hashvae.training.specs import Placement, TrainerSpec
  with pytest.raises(ValueError, match=r"TrainerSpec.precision='fp8'"):
    TrainerSpec(bits=16, precision="fp8")
  with pytest.raises(ValueError, match=r"TrainerSpec.bits=0"):
    TrainerSpec(bits=0)
  with pytest.raises(ValueError, match=r"Placement.state_memory_budget_mb=-1"):
    Placement(state_memory_budget_mb=-1)
