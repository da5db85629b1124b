"""Bad configs fail before anything is compiled, naming the field."""

import logging

import pytest

from configs import base, digits, snippets, svmlight, synthetic, table
from hashvae import api, data
from hashvae.sweep import config_check, experiment, specs
from hashvae.sweep.config_check import ConfigError

from conftest import with_fields


def changed(**fields):
  return with_fields(synthetic.get_config(), **fields)


@pytest.mark.parametrize("fields,message", [
    (dict(methods=("nope",)), r"config.methods.*unknown method 'nope'"),
    (dict(methods=()), r"config.methods.*at least one"),
    (dict(data__name="mnist"), r"config.data.name.*unknown dataset"),
    (dict(bits=0), r"config.bits=0.*>= 1"),
    (dict(levels=(0.1, 1.5)), r"config.levels.*\[0, 1\]"),
    (dict(levels=(-0.1,)), r"config.levels.*\[0, 1\]"),
    (dict(seeds=()), r"config.seeds.*at least one"),
    (dict(batch_size=0), r"config.batch_size"),
    (dict(learning_rate=-1.0), r"config.learning_rate.*> 0"),
    (dict(temperature=0.0), r"config.temperature.*> 0"),
    (dict(weights__ssb_vae__alpha=(float("nan"),)), r"weights.ssb_vae.alpha.*finite"),
    (dict(weights__ssb_vae__gamma=(1.0, 2.0, 3.0)), r"weights.ssb_vae.gamma.*one per level"),
    (dict(loss__pair_reduction="max"), r"loss.pair_reduction='max'.*\('sum', 'mean'\)"),
    (dict(weights__ssb_vae__delta=(1.0,)),
     r"weights.ssb_vae: \['delta'\] are not weights of method 'ssb_vae'.*'alpha', 'beta'"),
    (dict(weights__vdsh_s__gamma=(1.0,)), r"\['gamma'\] are not weights of method 'vdsh_s'"),
    (dict(weights__ssb_vea=base.weights(alpha=(1.0,))),
     r"config.weights.ssb_vea: no method 'ssb_vea' is registered"),
    (dict(loss__word_drop=0.1), r"config.loss.word_drop: not an option of the methods.*"
     r"'margin_fraction'"),
    (dict(model__sparse_input="yes"), r"model.sparse_input.*'auto', 'sparse' or 'dense'"),
    (dict(optimizer="lazy"), r"config.optimizer.*\['exact', 'fast'\]"),
    (dict(cpu_runs_per_chunk=-1), r"config.cpu_runs_per_chunk.*>= 0"),
    (dict(optimizer="fast", model__sparse_input="dense"), r"config.optimizer.*sparse input"),
])
def test_bad_fields_are_named(fields, message):
  with pytest.raises(ConfigError, match=message):
    config_check.check(changed(**fields))


def test_shipped_configs_pass():
  for config in (digits.get_config(), snippets.get_config("method=all,bits=32"),
                 synthetic.get_config()):
    config_check.check(config)


def test_config_argument_is_checked():
  with pytest.raises(ValueError, match=r"'bitz=3'.*\['bits', 'grid', 'method'\]"):
    digits.get_config("bitz=3")
  assert digits.get_config("method=ssb_vae,bits=32").bits == 32
  assert digits.get_config("method=ssb_vae+phs_gs").methods == ("ssb_vae", "phs_gs")


def test_overrides_apply_and_misspelt_names_fail_naming_them():
  config = config_check.apply_overrides(
      snippets.get_config(), {"epochs": 5, "loss.pair_reduction": "mean",
                              "shared_mask_seed": 20})
  assert (config.epochs, config.loss.pair_reduction) == (5, "mean")
  assert config.shared_mask_seed == 20
  for typo in ({"epoch": 5}, {"loss.pair_reducton": "mean"}):
    fresh = snippets.get_config()
    with pytest.raises(ConfigError, match=f"unknown config field '{next(iter(typo))}'"):
      config_check.apply_overrides(fresh, typo)
    assert "epoch" not in fresh and fresh.loss.pair_reduction == "sum"
  with pytest.raises(ConfigError, match=r"config.epochs='many'"):
    config_check.apply_overrides(snippets.get_config(), {"epochs": "many"})


def test_notebook_api_rejects_misspelt_overrides(tmp_path):
  with pytest.raises(ConfigError, match="unknown config field 'epoch'"):
    api.load_config("configs/digits.py:method=ssb_vae", epoch=1)
  # `workdir` is not a parameter of api.run (it is workdir_path): an override.
  with pytest.raises(ConfigError, match="unknown config field 'workdir'"):
    api.run("configs/digits.py:method=ssb_vae", workdir=str(tmp_path))
  with pytest.raises(ConfigError, match="unknown config field 'epoch'"):
    api.run(digits.get_config(), epoch=1)


def test_fast_optimiser_on_data_that_resolves_to_dense_is_a_config_error():
  config = config_check.apply_overrides(digits.get_config(), {"optimizer": "fast"})
  config_check.check(config)  # sparse_input 'auto': only the data can tell
  with pytest.raises(ConfigError, match=r"optimizer='fast'.*resolves to dense for digits"):
    config_check.check_against_data(config, data.load(data.spec_from_fields(config.data.to_dict())))


def test_released_weights_table():
  w = base.released_weights("snippets", 16, "ssb_vae")
  assert w.alpha[0] == 1e-4 and w.gamma[0] == 1e4 and w.beta[0] == 0.015625
  assert w.alpha[-1] == 1e4 and w.gamma[-1] == 1e3
  with pytest.raises(ValueError, match="no released grid"):
    base.released_weights("mnist", 16, "ssb_vae")


def test_a_subset_of_released_levels_finds_its_own_weights():
  config = snippets.get_config("method=ssb_vae,bits=16,grid=released")
  with config.unlocked():
    config.levels = (1.0, 0.1)
    config.seeds = (0,)
  config_check.check(config)
  grid = specs.build_grid(config, "ssb_vae")
  assert grid.hparams["alpha"].tolist() == [1e4, 1e-4]  # released: 1.0 -> 1e4, 0.1 -> 1e-4
  assert grid.hparams["gamma"].tolist() == [1e3, 1e4]
  with config.unlocked():
    config.levels = (0.15,)
  with pytest.raises(ConfigError, match=r"no weight for level 0.15"):
    config_check.check(config)
  with pytest.raises(ValueError, match="grid='mine'"):
    snippets.get_config("grid=mine")


def test_cut_offs_beyond_the_database_are_dropped_with_one_warning(caplog):
  config = with_fields(synthetic.get_config("method=lsh"), ks=(10, 5000, 50))
  with caplog.at_level(logging.INFO, logger="hashvae"):
    dataset = experiment.checked_dataset(config)
    experiment.checked_dataset(config, dataset)  # data given: no second warning
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert warnings == ["config.ks=(10, 5000, 50): dropped 5000, beyond the database size "
                      "(200 items); scoring at K in (10, 50)"]
  assert tuple(config.ks) == (10, 5000, 50)  # the config is left as it is
  assert config_check.usable_ks(config, 200) == (10, 50)
  assert config_check.usable_ks(config, 5000) == (10, 5000, 50)
  row = experiment.train_method(config, dataset, "lsh").rows[0]
  assert {"p@10", "p@50"} <= set(row) and not any("5000" in k for k in row)
  with pytest.raises(ConfigError, match=r"config.ks=\(500, 5000\): no cut-off is at most "
                     r"the database size \(200 items\)"):
    experiment.checked_dataset(with_fields(config, ks=(500, 5000)))


def test_the_data_line_says_what_runs_on_single_label_data(caplog):
  with caplog.at_level(logging.INFO, logger="hashvae"):
    experiment.checked_dataset(synthetic.get_config())
  lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data ")]
  assert len(lines) == 1
  assert lines[0].startswith("data synthetic: 160 train + 40 validation items (the "
                             "database), 40 test queries, 50 dims, 4 classes, single-label; "
                             "validation 40 items, the data's own split; loaded in ")
  with caplog.at_level(logging.INFO, logger="hashvae"):
    experiment.checked_dataset(digits.get_config())
  assert ("no validation split (launch.tune holds out tune.validation_fraction=0.2 of the "
          "training items)") in caplog.text


def test_a_misspelt_method_in_the_argument_names_the_nearest():
  with pytest.raises(ValueError, match=r"method=ssb_vea: unknown method 'ssb_vea' "
                     r"\(did you mean 'ssb_vae'\?\)"):
    synthetic.get_config("method=ssb_vea")
  with pytest.raises(ValueError, match=r"unknown method 'phs_gz' \(did you mean 'phs_gs'"):
    snippets.get_config("method=ssb_vae+phs_gz")
  with pytest.raises(ConfigError, match=r"unknown method 'vdsh_z' \(did you mean 'vdsh_s'"):
    config_check.check(changed(methods=("vdsh_z",)))


def test_a_tune_of_a_users_corpus_is_keyed_by_its_name(tmp_path):
  """The table and svmlight configs start from Snippets' and TMC's released
  weights, but their tune's weights.csv, read back by grid=, has their name."""
  released = table.get_config("method=ssb_vae")
  assert released.tune.dataset_name == "text_table"
  assert released.weights.ssb_vae.alpha == base.released_weights("snippets", 16,
                                                                  "ssb_vae").alpha
  assert svmlight.get_config().tune.dataset_name == "svmlight"
  path = tmp_path / "weights.csv"
  path.write_text("dataset,bits,method,p,alpha,beta,gamma\n"
                  "text_table,16,ssb_vae,0.5,2.0,0.25,30.0\n"
                  "snippets,16,ssb_vae,0.5,9.0,9.0,9.0\n")
  tuned = table.get_config(f"method=ssb_vae,grid={path}")
  assert tuned.levels == (0.5,) and tuned.weights.ssb_vae.alpha == (2.0,)
  assert tuned.tune.dataset_name == "text_table"
