r"""Trains a sweep and writes config.json, results.csv and codes.npz.

    python -m launch.main --config=configs/digits.py --workdir=runs/digits
    python -m launch.main --config=configs/snippets.py:method=ssb_vae,bits=32 \
        --config.data.path=../shared/data/snippets --workdir=runs/snip32
    python -m launch.main --config=configs/table.py --show_config

Re-running the same command with the same workdir resumes the sweep from its
checkpoints (finished methods are not trained again). The run axis is split
over every visible device (on a CPU, one device per core: --cpu_devices);
with --num_processes > 1 (or --distributed for auto-detection on Slurm /
TPU / GPU clusters), several processes join one program through
jax.distributed and process 0 writes the files.

--show_config prints the resolved config, each field marked `default`
(configs/base.py), `config file` or `override` (a --config.<field> flag),
and exits without training; docs/config.md says what every field does.

One sweep at a time per workdir: a second process stops at once, naming the
first (hashvae.store.lock). Mistakes end in one line (launch.errors); Ctrl-C too,
and the same command then resumes.
"""

import contextlib
import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from hashvae.core import sharding
from hashvae.store import lock, results, workdir
from hashvae.sweep import config_check, experiment
from launch import config_fields, cpu_devices, errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the outputs.")
_RESTART = flags.DEFINE_bool("restart", False, "Discard a previous sweep in the "
                             "workdir instead of resuming it.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Join a multi-process "
                                 "run, detecting the cluster (Slurm, TPU, ...).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for several processes.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_CPU_COLLECTIVES = flags.DEFINE_string("cpu_collectives", "gloo", "Collectives "
                                       "between CPU processes (gloo or mpi).")
_SHOW_CONFIG = flags.DEFINE_bool("show_config", False, "Print the resolved config, each "
                                 "field marked default, config file or override, and "
                                 "exit without training (no --workdir needed).")
flags.mark_flag_as_required("config")
flags.register_multi_flags_validator(
    ["workdir", "show_config"], lambda f: f["workdir"] is not None or f["show_config"],
    message="--workdir must have a value (the folder for the outputs), unless "
    "--show_config")


def several_processes() -> bool:
  """Whether this process joins others (--num_processes > 1, --distributed)."""
  explicit = _NUM_PROCESSES.value is not None and _NUM_PROCESSES.value > 1
  return explicit or _DISTRIBUTED.value


def initialize_processes():
  """jax.distributed.initialize, before any computation, only when asked."""
  if not several_processes():
    return
  jax.config.update("jax_cpu_collectives_implementation", _CPU_COLLECTIVES.value)
  jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                             num_processes=_NUM_PROCESSES.value,
                             process_id=_PROCESS_ID.value)
  logging.info("process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())


def held(folder: str):
  """The workdir's lock, taken by process 0 for the whole run (the other
  processes of a multi-process run are the same holder)."""
  if not sharding.is_primary():
    return contextlib.nullcontext()
  return lock.hold(folder, processes=jax.process_count())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _SHOW_CONFIG.value:
    flag = flags.FLAGS["config"]
    print(config_fields.resolved_text(flag.config_filename, _CONFIG.value,
                                      flag.override_values))
    return
  # orbax logs every save at INFO; keep the log to the sweep's own progress.
  logging.get_absl_handler().addFilter(lambda r: "/orbax/" not in r.pathname)
  # Before jax.distributed and any computation.
  cpu_devices.apply(several_processes=several_processes())
  initialize_processes()
  config, folder = _CONFIG.value, _WORKDIR.value
  if sharding.is_primary():
    lock.check_free(folder)  # a second process stops before loading anything
  dataset = experiment.checked_dataset(config)  # before touching the workdir
  with held(folder):
    if sharding.is_primary():
      workdir.prepare(folder, config.to_dict(), restart=_RESTART.value,
                      runtime=experiment.runtime(config))
    sharding.barrier("workdir prepared")
    sweep = experiment.run_sweep(config, dataset, workdir=folder)
    if not sharding.is_primary():
      logging.info("process %d: done; process 0 writes the results",
                   jax.process_index())
      return
    written = experiment.write_outputs(folder, sweep)
  logging.info("process 0 wrote config.json, %s in %s",
               ", ".join(os.path.basename(p) for p in written), folder)
  first_k = config_check.usable_ks(config, dataset.database_size)[0]
  print(results.summary_text(sweep.rows, metric=f"p@{first_k}"))


def cli(argv=None):
  """Console entry point (see pyproject.toml); `argv` defaults to sys.argv."""
  errors.run(main, argv, on_interrupt="rerun the same command to resume the sweep "
             "from its last checkpoint (finished methods are kept)")


if __name__ == "__main__":
  cli()
