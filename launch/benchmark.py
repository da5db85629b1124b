"""Benchmarks, printed as one JSON line per figure (ratios measured side by side).

    python -m launch.benchmark --sections=eval,train --data_path=../shared/data/snippets

The sections live in hashvae/benchmarks/ (train, devices, search, scale;
eval in launch/bench_eval.py); each yields dicts, and every dict is printed
as a JSON line with its section's name. scale (RCV1-shaped corpora of 100k
to 800k documents, each size in fresh processes) runs only when named:

    python -m launch.benchmark --sections=scale --scale_cache=/tmp/hashvae_scale
"""

import json
import platform

import jax
from absl import app, flags

from launch import cpu_devices, errors


def eval_section(flags_):
  from launch import bench_eval
  return bench_eval.run(flags_)


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


# name -> (flags) -> iterable of figure dicts. Each imports its module when
# called: after main has split the CPU into devices (cpu_devices.apply).
SECTIONS = {"eval": eval_section, "train": train_section,
            "devices": devices_section, "search": search_section,
            "scale": scale_section}

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
