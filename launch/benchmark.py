"""Benchmarks, printed as one JSON line per figure (ratios measured side by side).

    python -m launch.benchmark --sections=eval,train --data_path=../shared/data/snippets

The sections live in hashvae/benchmarks/ (train, devices, search, scale;
eval and retrieval in launch/bench_eval.py); each yields dicts, and every dict is printed
as a JSON line with its section's name. scale (RCV1-shaped corpora of 100k
to 800k documents, each size in fresh processes) runs only when named:

    python -m launch.benchmark --sections=scale --scale_cache=/tmp/hashvae_scale

retrieval prints every retrieval ratio side by side: top-100 against faiss
IndexBinaryFlat at Snippets' size and at 880,000 items (16, 32, 64 bits),
evaluate against faiss's top-100 at 32 and 64 bits, and evaluate at
80,000 x 880,000 and 16 bits against the pairwise path (minutes):

    python -m launch.benchmark --sections=retrieval

accelerator (hashvae/benchmarks/accelerator.py: evaluate at 80k x 880k, the
Snippets 16-bit grid as the sweep runs it, one chunk on the 800k corpus, on
jax's default backend) also runs only when named, and alone:

    python -m launch.benchmark --sections=accelerator --data_path=../shared/data/snippets
"""

import json
import platform

import jax
from absl import app, flags

from launch import cpu_devices, errors


def eval_section(flags_):
  from launch import bench_eval
  return bench_eval.run(flags_)


def retrieval_section(flags_):
  from launch import bench_eval
  return bench_eval.run_retrieval(flags_)


def train_section(flags_):
  from hashvae.benchmarks import train
  return train.run(flags_.data_path, quick=flags_.quick, full=flags_.full)


def devices_section(flags_):
  from hashvae.benchmarks import devices
  return devices.run(quick=flags_.quick)


def search_section(flags_):
  from hashvae.benchmarks import search
  return search.run(flags_.sweep)


def scale_section(flags_):
  from hashvae.benchmarks import scale
  explicit = flags_["scale_sizes"].present or not flags_.quick
  return scale.run(flags_.scale_sizes if explicit else scale.QUICK_SIZES,
                   flags_.scale_cache, runs=flags_.scale_runs,
                   cpu_devices=flags_.cpu_devices)


def accelerator_section(flags_):
  from hashvae.benchmarks import accelerator
  return accelerator.run(accelerator_settings(flags_))


def accelerator_settings(flags_):
  from hashvae.benchmarks import accelerator  # numpy and jax's import: no backend started
  return accelerator.Settings(
      data_path=flags_.data_path, scale_cache=flags_.scale_cache, quick=flags_.quick,
      epochs=flags_.accel_epochs, precision=flags_.accel_precision,
      budget_mb=flags_.accel_budget_mb, parts=tuple(flags_.accel_parts))


# name -> (flags) -> iterable of figure dicts. Each imports its module when
# called: after main has split the CPU into devices (cpu_devices.apply).
SECTIONS = {"eval": eval_section, "retrieval": retrieval_section, "train": train_section,
            "devices": devices_section, "search": search_section,
            "scale": scale_section, "accelerator": accelerator_section}

_SECTIONS = flags.DEFINE_list("sections", ["eval", "train", "devices"],
                              f"Which benchmarks, of {sorted(SECTIONS)}.")
flags.DEFINE_string("data_path", "../shared/data/snippets",
                    "Snippets folder (train.txt, test.txt).")
flags.DEFINE_bool("quick", False, "Smaller sizes, for a smoke run.")
flags.DEFINE_string("sweep", None, "search: a finished text sweep's workdir.")
flags.DEFINE_list("scale_sizes", ["100000", "200000", "400000", "800000"],
                  "scale: training documents of each synthetic corpus (cv and test a "
                  "tenth as many); --quick without this flag: 2000,4000.")
flags.DEFINE_string("scale_cache", "/tmp/hashvae_scale",
                    "scale: folder the generated .mat corpora are kept in and reused from.")
flags.DEFINE_integer("scale_runs", 5, "scale: ssb_vae runs trained together (one chunk).",
                     lower_bound=1)
flags.DEFINE_list("accel_parts", ["evaluate", "sweep", "scale"],
                  "accelerator: which parts, in this order (a GPU's or TPU's peak memory "
                  "covers the earlier parts: smallest first).")
flags.DEFINE_integer("accel_epochs", 1, "accelerator: epochs of the Snippets grid timed "
                     "(the figure projects them to 30).", lower_bound=1)
flags.DEFINE_string("accel_precision", "float32", "accelerator: config.precision of the "
                    "training parts (float32, tensorfloat32, bfloat16, default).")
flags.DEFINE_float("accel_budget_mb", 0.0, "accelerator: config.state_memory_budget_mb "
                   "of the training parts (0: from the device's memory).", lower_bound=0.0)
flags.DEFINE_bool("full", False, "train: also the 30-epoch exact-vs-fast precision "
                  "comparison on Snippets (minutes).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  unknown = sorted(set(_SECTIONS.value) - set(SECTIONS))
  if unknown:
    raise app.UsageError(f"unknown sections {unknown}; known: {sorted(SECTIONS)}")
  if "search" in _SECTIONS.value and not flags.FLAGS.sweep:
    raise app.UsageError("the search section needs --sweep=WORKDIR of a finished text "
                         "sweep")
  if "scale" in _SECTIONS.value:
    from hashvae.benchmarks import scale  # numpy and scipy: jax is not started
    try:
      scale.check_sizes(flags.FLAGS.scale_sizes)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
  if "accelerator" in _SECTIONS.value:
    if len(_SECTIONS.value) > 1:  # its memory peaks would include the other sections'
      raise app.UsageError("the accelerator section runs alone: --sections=accelerator")
    try:
      accelerator_settings(flags.FLAGS)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
  cpu_devices.apply()  # as the training entry points split the CPU
  print(json.dumps(dict(figure="machine", backend=jax.default_backend(),
                        devices=[str(d) for d in jax.devices()],
                        cpu=platform.processor() or platform.machine())),
        flush=True)
  for name in _SECTIONS.value:
    for figure in SECTIONS[name](flags.FLAGS):
      print(json.dumps(dict(section=name, **figure)), flush=True)


def cli(argv=None):
  """Console entry point (see pyproject.toml); `argv` defaults to sys.argv."""
  errors.run(main, argv)


if __name__ == "__main__":
  cli()
