"""Run in a process of its own with 4 simulated CPU devices (see test_sharding)."""

import dataclasses
import json
import sys

import jax
import numpy as np

sys.path.insert(0, sys.argv[1])

from configs import synthetic  # noqa: E402
from hashvae import data  # noqa: E402
from hashvae.core import sharding  # noqa: E402
from hashvae.sweep import specs  # noqa: E402
from hashvae.training import grid as grid_lib  # noqa: E402

config = synthetic.get_config("method=ssb_vae")
with config.unlocked():
  config.seeds = (0, 1, 2)  # x 2 levels = 6 runs: padded to 8 on 4 devices
dataset = data.load(data.spec_from_fields(config.data.to_dict()))
run = specs.make_run(config, dataset)
traces = []


def counted(arrays, state):
  traces.append(1)
  return run.train_epoch(arrays, state)


grid = specs.build_grid(config, "ssb_vae")
counted_run = dataclasses.replace(run, train_epoch=counted)
sharded = grid_lib.train_grid(counted_run, grid, 0,
                              program=grid_lib.grid_program(counted_run, 0, sharding.run_mesh(0)))
single = grid_lib.train_grid(run, grid, 0,
                             program=grid_lib.grid_program(run, 0, sharding.run_mesh(1)))
mesh = sharding.run_mesh(0)
placed = sharding.place(sharding.pad_runs(np.zeros((6, 3)), 8), sharding.split_runs(mesh))
print(json.dumps(dict(
    devices=jax.device_count(), mesh=int(mesh.devices.size), traces=len(traces),
    runs=int(sharded.db_codes.shape[0]),
    codes_equal=bool(np.array_equal(sharded.db_codes, single.db_codes)
                     and np.array_equal(sharded.query_codes, single.query_codes)),
    loss_max_rel_diff=float(np.max(np.abs(sharded.epoch_metrics["loss"]
                                          - single.epoch_metrics["loss"])
                                   / np.abs(single.epoch_metrics["loss"]))),
    runs_per_device=sorted({s.data.shape[0] for s in placed.addressable_shards}))))
