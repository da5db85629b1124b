"""The weight search (hashvae.tuning.tune, launch.tune): the candidate draw, the
validation-only data, halving, resume, and weights.csv as a sweep's grid."""

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import base, digits, snippets, synthetic
from hashvae import data
from hashvae.data.dataset import Dataset, Split
from hashvae.store import results
from hashvae.sweep import config_check, specs
from hashvae.sweep.config_check import ConfigError
from hashvae.training import grid as grid_lib
from hashvae.tuning import metric_choice, selection, tune, tune_outputs
from hashvae.tuning import tune_space as space

from conftest import ROOT, with_fields


def tiny(**fields):
  """A search of seconds: ssb_vae, 3 draws + the config's weights, one seed,
  two levels, 4 epochs (2 + 2 with halving)."""
  c = synthetic.get_config("method=ssb_vae")
  defaults = dict(epochs=4, tune__candidates=3, tune__seeds=(0,), tune__metric="p@10",
                  tune__search="alpha,gamma")
  return with_fields(c, **dict(defaults, **fields))


# --- the candidates ------------------------------------------------------------

def test_random_draw_is_reproducible_and_log_uniform_within_its_range():
  box = dict(alpha=(1e-4, 1e2), gamma=(1.0, 1.0))
  a = space.draw(box, 4000, "random", space.method_seed(7, "ssb_vae"))
  assert a == space.draw(box, 4000, "random", space.method_seed(7, "ssb_vae"))
  assert a != space.draw(box, 4000, "random", space.method_seed(7, "phs_gs"))
  alpha = np.log10([c["alpha"] for c in a])
  assert alpha.min() >= -4 and alpha.max() <= 2 and all(c["gamma"] == 1.0 for c in a)
  # log10(alpha) ~ U(-4, 2): each decade holds about a sixth of the draws.
  counts = np.histogram(alpha, bins=6, range=(-4, 2))[0]
  assert np.all(np.abs(counts / 4000 - 1 / 6) < 0.03), counts


def test_latin_draw_puts_one_draw_in_each_stratum_of_every_weight():
  box = dict(alpha=(1e-5, 1e-1), gamma=(1e2, 1e6))
  seed = space.method_seed(0, "ssb_vae")
  # Plain draws with this seed leave alpha's lower half empty (all 8 above
  # 1e-3); the stratified ones cannot.
  plain = [c["alpha"] for c in space.draw(box, 8, "random", seed)]
  assert min(plain) > 1e-3
  latin = space.draw(box, 8, "latin", seed)
  assert latin == space.draw(box, 8, "latin", seed)
  for name, (low, high) in box.items():
    u = (np.log([c[name] for c in latin]) - np.log(low)) / (np.log(high) - np.log(low))
    assert sorted(np.floor(u * 8).astype(int).tolist()) == list(range(8)), (name, u)


def test_grid_draw_is_log_spaced_with_endpoints():
  points = space.draw(dict(alpha=(1e-2, 1e2), beta=(1.0, 100.0)), 9, "grid", 0)
  assert len(points) == 9
  assert sorted({round(p["alpha"], 9) for p in points}) == [0.01, 1.0, 100.0]
  assert sorted({round(p["beta"], 9) for p in points}) == [1.0, 10.0, 100.0]


def test_candidates_put_the_config_first_and_keep_pinned_weights():
  c = tiny(tune__levels=(0.2, 1.0), tune__candidates=5)
  cands = space.candidates(c, "ssb_vae")
  assert [x.source for x in cands] == ["config"] + ["draw"] * 5
  assert cands[0].values == dict(alpha=(0.01, 0.01), beta=(0.1, 0.1), gamma=(10.0, 10.0))
  for x in cands[1:]:
    assert x.values["beta"] == (0.1, 0.1)  # not searched: the config's value
    assert 1e-3 <= x.values["alpha"][0] <= 1e3 and 1e-3 <= x.values["gamma"][0] <= 1e3
    assert x.values["alpha"][0] == x.values["alpha"][1]  # one draw for every level
  narrowed = with_fields(c, tune__ranges__ssb_vae__alpha=(2.0, 3.0))
  assert all(2.0 <= x.values["alpha"][0] <= 3.0
             for x in space.candidates(narrowed, "ssb_vae")[1:])
  grid, cand = space.search_grid(c, "ssb_vae", cands)
  assert len(grid) == 6 * 2 and cand.tolist() == [i for i in range(6) for _ in range(2)]
  assert grid.hparams["alpha"][2] == cands[1].values["alpha"][0]


def test_each_levels_config_weights_are_tried_at_every_level_within_the_budget():
  # Three searched levels: 0.1 and 1.0 share alpha and gamma, 0.2 has its own;
  # beta (not searched) differs per level and stays the config's at each.
  c = tiny(tune__levels=(0.1, 0.2, 1.0), tune__candidates=5, tune__kind="random")
  c = with_fields(c, weights__ssb_vae=base.weights(
      levels=(0.1, 0.2, 1.0), alpha=(1e-4, 1e-2, 1e-4), beta=(0.1, 0.2, 0.3),
      gamma=(1e4, 1e5, 1e4)))
  cands = space.candidates(c, "ssb_vae")
  assert [x.source for x in cands] == ["config"] * 2 + ["draw"] * 4  # 1 + 5 in all
  assert [x.own_levels for x in cands[:2]] == [(0.1, 1.0), (0.2,)]
  assert cands[0].values == dict(alpha=(1e-4,) * 3, beta=(0.1, 0.2, 0.3), gamma=(1e4,) * 3)
  assert cands[1].values == dict(alpha=(1e-2,) * 3, beta=(0.1, 0.2, 0.3), gamma=(1e5,) * 3)
  assert all(x.values["beta"] == (0.1, 0.2, 0.3) for x in cands[2:])
  # The draws are the first of the stream a one-setting config would draw.
  single = space.candidates(with_fields(c, tune__levels=(0.2,)), "ssb_vae")
  assert len(single) == 6 and single[0].own_levels == (0.2,)
  assert [x.values["alpha"][0] for x in cands[2:]] == [
      x.values["alpha"][0] for x in single[1:5]]
  # A grid keeps all its points; without include_config only draws remain.
  grid = space.candidates(with_fields(c, tune__kind="grid", tune__candidates=4), "ssb_vae")
  assert [x.source for x in grid] == ["config"] * 2 + ["draw"] * 4
  assert [x.source for x in space.candidates(with_fields(c, tune__include_config=False),
                                             "ssb_vae")] == ["draw"] * 5
  # No weight to search (LSH declares none): the config's candidate alone, not
  # a copy of it as a draw.
  assert [x.source for x in space.candidates(c, "lsh")] == ["config"]


def test_a_search_split_by_level_tries_at_each_level_what_the_whole_search_does():
  lv = (0.1, 0.2, 1.0)
  c = tiny(tune__levels=lv, tune__candidates=5, tune__kind="random")
  c = with_fields(c, weights__ssb_vae=base.weights(
      levels=lv, alpha=(1e-4, 1e-2, 1e-4), beta=(0.1, 0.2, 0.3), gamma=(1e4, 1e5, 1e4)))
  whole = space.candidates(c, "ssb_vae")
  whole_grid, whole_cand = space.search_grid(c, "ssb_vae", whole)
  for i, level in enumerate(lv):
    part_config = with_fields(c, tune__levels=(level,), tune__candidate_levels=lv)
    part = space.candidates(part_config, "ssb_vae")
    assert [(x.source, x.own_levels) for x in part] == [(x.source, x.own_levels) for x in whole]
    assert [x.values for x in part] == [{k: (v[i],) for k, v in x.values.items()} for x in whole]
    grid, cand = space.search_grid(part_config, "ssb_vae", part)
    at = whole_grid.levels == level
    assert cand.tolist() == whole_cand[at].tolist()
    assert grid.seeds.tolist() == whole_grid.seeds[at].tolist()
    for k, v in grid.hparams.items():
      np.testing.assert_array_equal(v, whole_grid.hparams[k][at])
  # Without candidate_levels a part has its own level's config row only, and
  # so other draws: the split would not be the same search.
  alone = space.candidates(with_fields(c, tune__levels=(0.2,)), "ssb_vae")
  assert [x.source for x in alone] == ["config"] + ["draw"] * 5
  # A candidate level the weights do not give is named.
  with pytest.raises(ConfigError, match="0.5"):
    space.candidates(with_fields(c, tune__levels=(0.2,), tune__candidate_levels=(0.2, 0.5)),
                     "ssb_vae")


def test_the_comparison_takes_each_levels_own_config_candidate():
  c = with_fields(tiny(tune__levels=(0.2, 1.0)), weights__ssb_vae=base.weights(
      levels=(0.2, 1.0), alpha=(1e-2, 1.0), beta=(0.1, 0.1), gamma=(10.0, 10.0)))
  cands = {"ssb_vae": space.candidates(c, "ssb_vae")}
  records = [dict(method="ssb_vae", level=level, seed=0, candidate=x.index, epochs=4,
                  status="ok", **{"val_p@10": score})
             for level, scores in ((0.2, (0.5, 0.7, 0.1, 0.1)), (1.0, (0.9, 0.6, 0.1, 0.1)))
             for x, score in zip(cands["ssb_vae"], scores, strict=True)]
  found = tune.Search(records, {"ssb_vae": {0.2: 1, 1.0: 0}}, cands, {})
  rows = {r["level"]: r for r in tune_outputs.comparison(found, "p@10")}
  # At 0.2 the config's own is candidate 0 (0.5); 1.0's own, candidate 1, won there.
  assert (rows[0.2]["config_candidate"], rows[0.2]["config"], rows[0.2]["chosen"]) == (0, 0.5, 0.7)
  assert (rows[1.0]["config_candidate"], rows[1.0]["config"], rows[1.0]["chosen"]) == (1, 0.6, 0.9)


def test_a_search_saved_with_other_candidates_is_refused_not_mixed(tmp_path):
  c = tiny(tune__levels=(0.2, 1.0))
  folder = str(tmp_path / "ssb_vae")
  cands = space.candidates(c, "ssb_vae")
  grid, cand_of = space.search_grid(c, "ssb_vae", cands)
  records = [dict(r, candidate=int(k), epochs=4, status="ok") for r, k in
             zip(grid.rows(), cand_of, strict=True)]
  results.write_json(folder + ".json", dict(records=records, cost={}))
  assert tune.search_method(c, None, "ssb_vae", folder)["records"] == records
  changed = with_fields(c, tune__candidates=2)
  with pytest.raises(tune.workdir.WorkdirError, match="other candidates.*--restart"):
    tune.search_method(changed, None, "ssb_vae", folder)
  os.remove(folder + ".json")  # an unfinished search: its planned runs are checked
  os.makedirs(folder)
  results.write_json(os.path.join(folder, "runs.json"), records)
  with pytest.raises(tune.workdir.WorkdirError, match="runs.json holds a search of other"):
    tune.search_method(with_fields(c, tune__ranges__ssb_vae__alpha=(2.0, 3.0)), None,
                       "ssb_vae", folder)
  os.remove(os.path.join(folder, "runs.json"))  # rounds with no record of their runs
  results.write_json(os.path.join(folder, "rung_0.json"), dict(rows=[], scores=[]))
  with pytest.raises(tune.workdir.WorkdirError, match="without a record of its candidates"):
    tune.search_method(c, None, "ssb_vae", folder)


def test_tune_fields_are_checked():
  with pytest.raises(ConfigError, match=r"tune.metric='p@100'.*config.ks \(10, 50\)"):
    space.check(with_fields(tiny(), tune__metric="p@100"))
  with pytest.raises(ConfigError, match=r"tune.candidates=10.*k\*\*2"):
    space.check(with_fields(tiny(), tune__kind="grid", tune__candidates=10))
  with pytest.raises(ConfigError, match=r"tune.search='delta'"):
    space.check(with_fields(tiny(), tune__search="delta"))
  with pytest.raises(ConfigError, match=r"ranges.ssb_vae.alpha"):
    space.check(with_fields(tiny(), tune__ranges__ssb_vae__alpha=(0.0, 1.0)))
  with pytest.raises(ConfigError, match=r"tune.audit_halving=True: needs tune.halving_rounds"):
    space.check(with_fields(tiny(), tune__audit_halving=True))
  with pytest.raises(ConfigError, match=r"tune.candidate_levels=\(0.1, 1.5\): fractions"):
    space.check(with_fields(tiny(), tune__candidate_levels=(0.1, 1.5)))
  with pytest.raises(ConfigError, match=r"tune.halving_first_fraction=1.5: a fraction"):
    space.check(with_fields(tiny(), tune__halving_first_fraction=1.5))
  with pytest.raises(ConfigError, match=r"tune.metric='p@K': 'auto', or p@K"):
    space.check(with_fields(tiny(), tune__metric="p@K"))
  space.check(tiny())
  space.check(with_fields(tiny(), tune__metric="auto"))  # K is chosen with the data


# --- the metric ----------------------------------------------------------------

def test_adaptive_k_is_half_the_relevant_items_on_a_1_2_5_ladder_at_most_100():
  cases = {0.5: 1, 3.9: 1, 4.0: 2, 19.9: 5, 20: 10, 180: 50, 199.9: 50, 200: 100, 300: 100,
           1e6: 100}
  assert {r: metric_choice.adaptive_k(r) for r in cases} == cases
  assert metric_choice.adaptive_k(1e6, largest=500) == 500


def test_mean_relevant_counts_database_items_sharing_a_label():
  rng = np.random.default_rng(0)
  q, db = rng.integers(0, 5, 30), rng.integers(0, 5, 70)
  brute = np.mean([(db == x).sum() for x in q])
  assert metric_choice.mean_relevant(q, db) == pytest.approx(brute)
  qm, dbm = (rng.random((30, 4)) < 0.3).astype(np.uint8), (rng.random((70, 4)) < 0.3)
  brute = np.mean([sum(bool((a & b).any()) for b in dbm.astype(np.uint8)) for a in qm])
  assert metric_choice.mean_relevant(qm, dbm.astype(np.uint8)) == pytest.approx(brute)
  assert metric_choice.mean_relevant(q, db, most=1) == (db == q[0]).sum()


def search_view(num_classes: int, train_size: int) -> Dataset:
  """A synthetic corpus as a search sees it (training split as database)."""
  c = with_fields(synthetic.get_config(), data__num_classes=num_classes,
                  data__train_size=train_size)
  return space.search_dataset(data.load(data.spec_from_fields(c.data.to_dict())), c.tune)


def test_auto_metric_fits_k_to_the_corpus_and_a_named_metric_wins():
  auto = with_fields(tiny(), tune__metric="auto")
  # 240 training items in 4 classes: 59 relevant a query, so p@20, not
  # p@100 (40% of the database).
  small = search_view(4, 240)
  assert metric_choice.choose_metric(auto, small) == "p@20"
  large = search_view(4, 2000)  # 502 relevant: the study's p@100
  assert metric_choice.choose_metric(auto, large) == "p@100"
  assert metric_choice.choose_metric(auto, search_view(20, 2400)) == "p@50"  # 120 relevant
  named = tiny(tune__metric="map@50")
  assert metric_choice.choose_metric(named, small) == "map@50"
  assert metric_choice.choose_metric(named, large) == "map@50"
  with pytest.raises(ConfigError, match=r"tune.metric='p@300': K=300 is more than the "
                     r"search's database \(the training split, 240 items\)"):
    metric_choice.choose_metric(with_fields(auto, tune__metric="p@300", ks=(300,)), small)


def test_the_searched_k_joins_ks_and_cutoffs_beyond_the_database_leave():
  c = with_fields(tiny(), ks=(10, 50, 5000))
  searched = metric_choice.with_metric(c, "p@20", database_size=160)
  assert (searched.tune.metric, tuple(searched.ks)) == ("p@20", (10, 20, 50))
  final = metric_choice.with_metric(c, "p@20")  # the final sweep keeps its cut-offs
  assert tuple(final.ks) == (10, 20, 50, 5000) and tuple(c.ks) == (10, 50, 5000)


# --- selection and halving -----------------------------------------------------

def test_keep_top_keeps_the_best_fraction_per_level_and_never_a_diverged_one():
  means = {(0.1, c): v for c, v in enumerate([0.5, 0.9, -math.inf, 0.7, 0.9, 0.1, 0.3])}
  means.update({(1.0, 0): 0.2, (1.0, 1): 0.1})
  kept = selection.keep_top(means, 3)
  assert kept == {0.1: {1, 4, 3}, 1.0: {0}}
  # The config's candidates pass the cut, unless diverged (candidate 2 at 0.1).
  assert selection.keep_top(means, 3, always={1, 2, 5}) == {0.1: {1, 4, 3, 5}, 1.0: {0, 1}}
  assert selection.select(means) == {0.1: 1, 1.0: 0}  # a tie goes to the lower index
  records = [dict(level=0.1, candidate=0, seed=s, status=st, m=v)
             for s, (st, v) in enumerate([("ok", 0.9), ("diverged", 0.0)])]
  assert selection.seed_means(records, "m") == {(0.1, 0): -math.inf}
  assert selection.rung_epochs(60, 2, 3) == (7, 20, 60)
  assert selection.rung_epochs(4, 0, 3) == (4,)


@pytest.mark.parametrize("epochs, rounds, eta, first, rungs", [
    (30, 2, 3, 0.0, (3, 10, 30)),  # no floor: epochs / eta**k
    (30, 1, 3, 0.0, (10, 30)),
    (30, 2, 3, 0.5, (15, 30)),  # both early rounds merge at the floor
    (30, 1, 3, 0.5, (15, 30)),
    (30, 2, 3, 0.3, (9, 10, 30)),
    (30, 5, 2, 0.25, (8, 15, 30)),  # 1, 2, 4 merge into 8 (ceil 7.5); 8 stays
    (60, 2, 3, 0.5, (30, 60)),
    (4, 1, 2, 0.5, (2, 4)),
    (3, 1, 3, 0.5, (2, 3)),  # ceil(1.5)
    (30, 2, 3, 1.0, (30,)),  # a floor at the end: no cut at all
    (30, 0, 3, 0.5, (30,)),
    (1, 3, 3, 0.5, (1,)),
])
def test_rung_epochs_puts_no_cut_before_the_floor(epochs, rounds, eta, first, rungs):
  assert selection.rung_epochs(epochs, rounds, eta, first) == rungs


def test_the_halving_replay_cuts_a_slow_starter_only_when_its_first_round_is_early():
  # Validation p@100 at epochs 1, 3 and 9 per candidate; candidate 3 starts
  # last and ends first. Two levels, two seeds (the same scores).
  curves = {0: (0.5, 0.6, 0.65), 1: (0.4, 0.5, 0.55), 2: (0.3, 0.4, 0.45), 3: (0.1, 0.55, 0.8)}
  records = [dict(level=level, candidate=c, seed=s, status="ok", epochs=9, **{
      "val_m_epoch1": v[0], "val_m_epoch3": v[1], "val_m": v[2]})
      for level in (0.1, 1.0) for c, v in curves.items() for s in (0, 1)]
  audit = {(r["rounds"], r["level"]): r for r in selection.halving_audit(records, "m", 9, 2, 3)}
  assert set(audit) == {(n, level) for n in (1, 2) for level in (0.1, 1.0)}
  # One round (epochs 3, 9): candidates 0 and 3 are the kept third at epoch 3.
  one = audit[1, 0.1]
  assert (one["rungs"], one["full"], one["halving"], one["agree"]) == ("3/9", 3, 3, 1)
  assert one["run_epochs"] == 16 * 3 + 8 * 6 and one["full_run_epochs"] == 16 * 9
  # Two rounds (epochs 1, 3, 9): candidate 3 is cut at epoch 1, then 1 at epoch 3.
  two = audit[2, 1.0]
  assert (two["rungs"], two["full"], two["halving"], two["agree"]) == ("1/3/9", 3, 0, 0)
  assert (two["full_val"], two["halving_val"]) == (0.8, 0.65)
  assert two["run_epochs"] == 16 * 1 + 8 * 2 + 4 * 6
  # The slow starter as the config's own weights: it passes both cuts.
  mine = [dict(r, source="config" if r["candidate"] == 3 else "draw") for r in records]
  kept = {(r["rounds"], r["level"]): r for r in selection.halving_audit(
      mine, "m", 9, 2, 3, keep_config=True)}
  assert (kept[2, 1.0]["halving"], kept[2, 1.0]["agree"]) == (3, 1)
  # Kept: 2 + the config of 4 a level at epoch 1, 1 + the config of 3 at epoch 3.
  assert kept[2, 1.0]["run_epochs"] == 16 * 1 + 12 * 2 + 8 * 6
  # A floor at a third of the epochs: two rounds are one cut at epoch 3.
  floor = selection.halving_audit(records, "m", 9, 2, 3, first_fraction=1 / 3)
  assert {r["rungs"] for r in floor} == {"3/9"} and all(r["agree"] for r in floor)


def test_cut_spread_says_how_well_each_epochs_ranking_foretells_the_final_one():
  # The curves above; seed 1 of candidate 0 scores 0.02 more at every epoch.
  curves = {0: (0.5, 0.6, 0.65), 1: (0.4, 0.5, 0.55), 2: (0.3, 0.4, 0.45), 3: (0.1, 0.55, 0.8)}
  records = [dict(level=0.1, candidate=c, seed=s, status="ok", epochs=9, **{
      "val_m_epoch1": v[0] + bump, "val_m_epoch3": v[1] + bump, "val_m": v[2] + bump})
      for c, v in curves.items() for s in (0, 1)
      for bump in [0.02 if (c, s) == (0, 1) else 0.0]]
  rows = {r["epoch"]: r for r in selection.cut_spread(records, "m", 3)}
  assert sorted(rows) == [1, 3, 9]
  # Epoch 1 ranks 0 > 1 > 2 > 3, full training 3 > 0 > 1 > 2: rank
  # differences (1, 1, 1, -3), rho = 1 - 6 * 12 / (4 * 15).
  assert rows[1]["rho"] == pytest.approx(-0.2)
  assert rows[3]["rho"] == pytest.approx(0.8) and rows[9]["rho"] == pytest.approx(1.0)
  # A third kept (2 of 4): at epoch 1 candidates 0 and 1, so the final best
  # (3, 0.8) is lost for candidate 0's 0.66.
  assert (rows[1]["kept"], rows[1]["gap"]) == (0, pytest.approx(0.8 - 0.66))
  assert (rows[3]["kept"], rows[3]["gap"]) == (1, 0.0)
  assert rows[1]["spread"] == pytest.approx(np.std([0.51, 0.4, 0.3, 0.1]))
  assert rows[1]["noise"] == pytest.approx(0.01 / 4) and rows[1]["candidates"] == 4
  assert selection.spearman(np.array([1.0, -math.inf, 2.0]), np.array([3.0, 1.0, 5.0])) == 1.0
  assert math.isnan(selection.spearman(np.ones(3), np.arange(3.0)))


def test_search_data_is_train_and_validation_only():
  d = data.load(data.spec_from_fields(synthetic.get_config().data.to_dict()))
  s = space.search_dataset(d, tiny().tune)
  assert np.array_equal(s.database.inputs.toarray(), d.train.inputs.toarray())
  assert np.array_equal(s.test.inputs.toarray(), d.validation.inputs.toarray())
  assert len(s.validation) == 0
  no_val = dataclasses.replace(d, validation=s.validation)  # as digits: none
  held = space.search_dataset(no_val, tiny().tune)
  assert len(held.test) == round(0.2 * len(d.train))
  assert len(held.database) + len(held.test) == len(d.train)
  rows = lambda x: {r.tobytes() for r in x.toarray()}
  assert not rows(held.test.inputs) & rows(held.database.inputs)


# --- weights.csv as a sweep's grid ---------------------------------------------

def write_weights(path, dataset="snippets", bits=16):
  rows = (space.weight_rows(dataset, bits, "ssb_vae", {0.1: dict(alpha=2.0, beta=0.5, gamma=30.0),
                                                       1.0: dict(alpha=4.0, beta=0.25, gamma=60.0)})
          + space.weight_rows(dataset, bits, "vdsh_s", {0.1: dict(alpha=5.0, beta=0.125),
                                                        1.0: dict(alpha=6.0, beta=0.125)}))
  results.write_csv(str(path), rows)


def test_a_weights_file_is_a_grid_for_the_study_configs(tmp_path):
  path = tmp_path / "weights.csv"
  write_weights(path)
  assert open(path).readline().strip() == "dataset,bits,method,p,alpha,beta,gamma"
  config = snippets.get_config(f"method=ssb_vae+vdsh_s,grid={path}")
  assert config.levels == (0.1, 1.0)
  config_check.check(config)
  g = specs.build_grid(with_fields(config, seeds=(0,)), "ssb_vae")
  assert g.hparams["alpha"].tolist() == [2.0, 4.0] and g.hparams["gamma"].tolist() == [30.0, 60.0]
  g = specs.build_grid(with_fields(config, seeds=(0,), levels=(1.0,)), "vdsh_s")
  assert g.hparams["alpha"].tolist() == [6.0]
  with pytest.raises(ConfigError, match="no weight for level 0.5"):
    config_check.check(with_fields(config, levels=(0.5,)))
  with pytest.raises(ValueError, match=r"methods \['phs_gs'\]"):
    snippets.get_config(f"method=all,grid={path}")
  with pytest.raises(ValueError, match=r"bits=32.*\('snippets', 16\)"):
    snippets.get_config(f"method=ssb_vae,bits=32,grid={path}")
  with pytest.raises(ValueError, match="grid='nope.csv': no such weights file"):
    snippets.get_config("grid=nope.csv")
  with open(path) as f:  # a declared weight without a value
    text = f.read().replace("0.1,2.0,0.5,30.0", "0.1,2.0,,30.0")
  (tmp_path / "holes.csv").write_text(text)
  with pytest.raises(ValueError, match=r"'beta', which has no value at level\(s\) \[0.1\]"):
    snippets.get_config(f"method=ssb_vae,grid={tmp_path / 'holes.csv'}")


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_a_weights_file_is_a_grid_for_the_configs_without_released_weights(tmp_path, name):
  module = {"digits": digits, "synthetic": synthetic}[name]
  bits = module.get_config().bits
  write_weights(tmp_path / "weights.csv", dataset=name, bits=bits)
  own = module.get_config("method=ssb_vae")
  config = module.get_config(f"method=ssb_vae,grid={tmp_path / 'weights.csv'}")
  assert own.weights.ssb_vae.alpha != config.weights.ssb_vae.alpha  # taken from the file
  assert config.levels == (0.1, 1.0) and config.tune.dataset_name == name
  g = specs.build_grid(with_fields(config, seeds=(0,)), "ssb_vae")
  assert g.hparams["alpha"].tolist() == [2.0, 4.0]
  with pytest.raises(ValueError, match=rf"no weights for dataset='{name}'"):
    write_weights(tmp_path / "other.csv", dataset="snippets", bits=bits)
    module.get_config(f"method=ssb_vae,grid={tmp_path / 'other.csv'}")
  with pytest.raises(ValueError, match="no such weights file"):
    module.get_config("grid=nope.csv")


def test_the_released_grid_reads_as_a_weights_file():
  blocks = base.file_weights(base.RELEASED_CSV, "snippets", 16, ("ssb_vae",))
  assert blocks["ssb_vae"] == base.released_weights("snippets", 16, "ssb_vae")


# --- whole searches ------------------------------------------------------------

def poisoned(d: Dataset) -> Dataset:
  """The same data with every test label replaced by class 0."""
  t = d.test
  return dataclasses.replace(d, test=Split(t.inputs, t.targets, np.zeros_like(t.labels)))


@pytest.fixture(scope="module")
def full_search(tmp_path_factory):
  config = tiny()
  folder = tmp_path_factory.mktemp("full")
  found = tune.search(config, data.load(data.spec_from_fields(config.data.to_dict())),
                      str(folder / "search"))
  tune.write_search(config, found, str(folder))
  return config, found, folder


@pytest.mark.slow  # two searches; the default run stays under 10 minutes on 2 cores
def test_poisoned_test_labels_change_nothing_in_the_search(full_search, tmp_path):
  config, found, folder = full_search
  clean = data.load(data.spec_from_fields(config.data.to_dict()))
  again = tune.search(config, poisoned(clean), str(tmp_path / "search"))
  tune.write_search(config, again, str(tmp_path))
  assert again.chosen == found.chosen and again.records == found.records
  assert (tmp_path / "weights.csv").read_bytes() == (folder / "weights.csv").read_bytes()
  assert os.path.exists(folder / "tune_p_at_10.png")


@pytest.mark.slow  # one search a level
def test_a_search_split_by_level_gives_the_whole_searchs_scores_and_choices(
    full_search, tmp_path):
  config, whole, _ = full_search
  d, lv = data.load(data.spec_from_fields(config.data.to_dict())), tuple(config.levels)
  assert len(lv) > 1
  key = lambda r: (r["candidate"], r["level"], r["seed"])
  for level in lv:
    part_config = with_fields(config, tune__levels=(level,), tune__candidate_levels=lv)
    part = tune.search(part_config, d, str(tmp_path / f"search_{level}"))
    assert part.chosen["ssb_vae"] == {level: whole.chosen["ssb_vae"][level]}
    mine = {key(r): r for r in part.records}
    ref = {key(r): r for r in whole.records if r["level"] == level}
    assert mine.keys() == ref.keys()
    for k, r in mine.items():
      assert r["val_p@10"] == pytest.approx(ref[k]["val_p@10"], abs=1e-6)


@pytest.mark.slow  # two more searches (about a minute on 2 quiet cores)
def test_halving_resumes_and_continues_survivors_exactly(full_search, tmp_path, monkeypatch):
  config, full, _ = full_search
  halving = with_fields(config, tune__halving_rounds=1, tune__halving_eta=2)
  folder, d = str(tmp_path / "search"), data.load(data.spec_from_fields(config.data.to_dict()))
  real, calls = grid_lib.log_epoch, []

  def interrupting(name, runs):
    report = real(name, runs)

    def on_epoch(epoch, epochs, terms, elapsed):
      calls.append(epoch)
      if epoch == 2:  # the first epoch of the second round
        raise KeyboardInterrupt
      report(epoch, epochs, terms, elapsed)
    return on_epoch

  monkeypatch.setattr(grid_lib, "log_epoch", interrupting)
  widths, real_round = [], tune.train_round  # each round's chunk width
  monkeypatch.setattr(tune, "train_round",
                      lambda *a, **k: widths.append(a[2].runs) or real_round(*a, **k))
  with pytest.raises(KeyboardInterrupt):
    tune.search(halving, d, folder)
  assert os.path.exists(os.path.join(folder, "ssb_vae", "rung_0.json"))
  monkeypatch.setattr(grid_lib, "log_epoch", real)
  found = tune.search(halving, d, folder)  # resumes in round 2
  by_run = lambda recs: {(r["candidate"], r["level"], r["seed"]): r for r in recs}
  mine, ref = by_run(found.records), by_run(full.records)
  survivors = [k for k, r in mine.items() if r["epochs"] == 4]
  # 4 candidates a level, the better half kept and the config's (candidate
  # 0, tune.halving_keep_config); a survivor's scores are those it has
  # after 4 uninterrupted epochs.
  for level in (0.2, 1.0):
    at2 = {c: r.get("val_p@10_epoch2", r["val_p@10"]) for (c, lv, _), r in mine.items()
           if lv == level}
    top = set(sorted(at2, key=lambda c: (-at2[c], c))[:2])
    assert {c for c, lv, _ in survivors if lv == level} == top | {0}
  # Round 2 (interrupted, then resumed) ran its survivors in a narrower
  # program than round 1's, and they still score as after 4 uninterrupted
  # epochs in the full search's.
  assert widths[0] > widths[1] == widths[2] and len(widths) == 3, widths
  for k in survivors:
    assert mine[k]["val_p@10"] == pytest.approx(ref[k]["val_p@10"], abs=1e-6)
    assert "val_p@10_epoch2" in mine[k]
  cost = found.cost["ssb_vae"]
  assert (cost["run_epochs"], cost["full_run_epochs"]) == (8 * 2 + len(survivors) * 2, 8 * 4)
  for level, cand in found.chosen["ssb_vae"].items():  # chosen among the survivors
    assert (cand, level, 0) in survivors
  assert not os.path.exists(os.path.join(folder, "ssb_vae"))  # checkpoints removed
  with open(os.path.join(folder, "ssb_vae.json")) as f:
    assert json.load(f)["cost"]["rungs"] == [2, 4]
  # The audit trains every run to the end and replays the cut: its replay
  # keeps what the real halving above kept, at the same cost.
  audit_config = with_fields(halving, tune__audit_halving=True)
  audited = tune.search(audit_config, d, str(tmp_path / "audit"))
  assert {r["epochs"] for r in audited.records} == {4}
  assert audited.chosen == full.chosen
  rows = tune_outputs.halving_audit(audit_config, audited)
  assert {r["level"]: r["halving"] for r in rows} == found.chosen["ssb_vae"]
  assert {r["run_epochs"] for r in rows} == {cost["run_epochs"]}
  assert all(r["agree"] == int(r["halving"] == full.chosen["ssb_vae"][r["level"]])
             for r in rows)


@pytest.mark.slow
def test_launch_tune_end_to_end_and_its_weights_in_the_final_sweep(tmp_path):
  workdir = tmp_path / "tune"
  args = [sys.executable, "-m", "launch.tune", "--config=configs/synthetic.py:method=ssb_vae",
          f"--workdir={workdir}", "--config.tune.candidates=3", "--config.tune.seeds=(0,)",
          "--config.tune.metric=p@10", "--config.epochs=3", "--cpu_devices=1"]
  proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(workdir / "weights.csv") as f:
    chosen = {float(r["p"]): r for r in csv.DictReader(f)}
  with open(workdir / "final" / "results.csv") as f:
    final = list(csv.DictReader(f))
  assert {float(r["level"]) for r in final} == set(chosen)
  for r in final:
    for k in ("alpha", "beta", "gamma"):
      assert float(r[k]) == pytest.approx(float(chosen[float(r["level"])][k]))
  with open(workdir / "candidates.csv") as f:
    rows = list(csv.DictReader(f))
  assert all(bool(r["test_p@10"]) == (r["selected"] == "1") for r in rows)
  again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert again.returncode == 0 and "search already finished" in again.stderr
  # A finished search carried to another machine is config.json and
  # search/<method>.json alone: the tune there trains only the final sweep.
  carried = tmp_path / "carried"
  (carried / "search").mkdir(parents=True)
  for name in ("config.json", "search/ssb_vae.json"):
    (carried / name).write_bytes((workdir / name).read_bytes())
  moved = [a if not a.startswith("--workdir=") else f"--workdir={carried}" for a in args]
  there = subprocess.run(moved, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert there.returncode == 0 and "search already finished" in there.stderr
  assert "tune ssb_vae to epoch" not in there.stderr
  assert (carried / "weights.csv").read_bytes() == (workdir / "weights.csv").read_bytes()
  with open(carried / "final" / "results.csv") as f:
    assert list(csv.DictReader(f)) == final
