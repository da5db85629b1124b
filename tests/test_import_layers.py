"""Imports go one way, from the entry points down to the math, and search
loads no training code."""

import ast
import pathlib
import subprocess
import sys

import numpy as np

from conftest import ROOT

# hashvae's packages, lowest first. A module may import its own package and
# the packages of lower layers, never a package of its own layer or above.
LAYERS = (
    ("files",),  # files written whole or not at all
    ("data", "store"),  # datasets from disk; a sweep's files
    ("core",),  # networks, losses, sparse input, optimisers, label mask, devices
    ("methods",),  # the registry and the methods
    ("training", "retrieval"),  # runs and grids; codes to answers
    ("sweep",),  # the config read in, a sweep run
    ("tuning",),  # weights chosen on validation
    ("api",),  # the Python entry point
    ("benchmarks",),  # measurement sections (may read configs/)
)
LAYER = {pkg: i for i, names in enumerate(LAYERS) for pkg in names}
TRAINING = ("hashvae.training", "hashvae.sweep", "hashvae.tuning", "hashvae.api",
            "hashvae.core.optim", "orbax", "optax")


def hashvae_modules():
  """{dotted module name: path} of every module under hashvae/."""
  base = pathlib.Path(ROOT)
  return {".".join(p.relative_to(base).with_suffix("").parts).removesuffix(".__init__"): p
          for p in (base / "hashvae").rglob("*.py")}


def imported(path) -> set:
  """Every module `path` imports, at any depth of the file (dotted names;
  `from a import b` counts both a and a.b)."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      out.add(node.module)
      out.update(f"{node.module}.{a.name}" for a in node.names)
  return out


def package_of(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else ""


def test_every_package_has_a_layer_and_a_docstring():
  for module, path in hashvae_modules().items():
    if module == "hashvae":
      continue
    pkg = package_of(module)
    assert pkg in LAYER, f"{path}: hashvae.{pkg} is in no layer of LAYERS"
    if path.name == "__init__.py":
      assert ast.get_docstring(ast.parse(path.read_text())), f"{path}: no docstring"


def upward_imports(modules: dict) -> list[str]:
  """'module -> target' for every import of `modules` ({name: path}) that
  goes up or sideways in LAYERS, or out to launch/ (configs/: benchmarks only)."""
  known = set(hashvae_modules()) | set(modules)
  upward = []
  for module, path in modules.items():
    mine = package_of(module)
    if module == "hashvae":
      continue
    for target in imported(path):
      top = target.split(".")[0]
      if top in ("launch",) or (top == "configs" and mine != "benchmarks"):
        upward.append(f"{module} -> {target}")
      if top != "hashvae" or target not in known:
        continue
      theirs = package_of(target)
      if theirs and theirs != mine and LAYER[theirs] >= LAYER[mine]:
        upward.append(f"{module} -> {target}")
  return sorted(upward)


def test_imports_go_down_the_layers():
  upward = upward_imports(hashvae_modules())
  assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
  modules = hashvae_modules()
  graph = {m: {t for t in imported(p) if t in modules and t != m}
           for m, p in modules.items()}
  # A package's __init__ re-exporting its modules is no cycle of design.
  graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
  state, stack = {}, []

  def visit(m):
    state[m] = "open"
    stack.append(m)
    for t in sorted(graph[m]):
      if state.get(t) == "open":
        raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
      if t not in state:
        visit(t)
    stack.pop()
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m)


def test_the_layer_check_sees_upward_and_sideways_imports(tmp_path):
  """The check flags a core module importing the sweep, a training module
  importing retrieval (same layer) and one importing launch; not a sweep
  module importing training."""
  cases = {"hashvae.core.fake": "from hashvae.sweep import experiment\n",
           "hashvae.training.fake": "from hashvae.retrieval import metrics\n",
           "hashvae.store.fake": "import launch.errors\n",
           "hashvae.sweep.fake": "from hashvae.training import grid\n"}
  modules = {}
  for name, text in cases.items():
    modules[name] = tmp_path / f"{name}.py"
    modules[name].write_text(text)
  assert upward_imports(modules) == [
      "hashvae.core.fake -> hashvae.sweep", "hashvae.core.fake -> hashvae.sweep.experiment",
      "hashvae.store.fake -> launch.errors",
      "hashvae.training.fake -> hashvae.retrieval",
      "hashvae.training.fake -> hashvae.retrieval.metrics"]


# What answering a query must not load: the training stack, jax, flax,
# scikit-learn and scipy (the index's encoder and analyser are numpy; each
# of the others costs a search call a second or 100 MB).
SEARCH_FORBIDDEN = TRAINING + ("jax", "jaxlib", "flax", "sklearn", "scipy",
                               "hashvae.retrieval.encoder")


def search_imports(*args) -> tuple[set, str]:
  """(the modules `python -m launch.search ARGS` loads (-X importtime), its
  stdout)."""
  proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "launch.search", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0 or "--help" in args, proc.stderr[-2000:]
  return {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
          if line.startswith("import time:")}, proc.stdout


def forbidden(loaded: set) -> list:
  return sorted(m for m in loaded if m in SEARCH_FORBIDDEN
                or any(m.startswith(t + ".") for t in SEARCH_FORBIDDEN))


def test_search_imports_no_training_module_and_no_jax(tmp_path):
  loaded, out = search_imports("--help")
  assert "--query-id" in out  # absl's help ran
  assert "hashvae.retrieval.index" in loaded  # the check can see
  assert not forbidden(loaded)
  # A real query on a tiny index (built here, with jax, in this process).
  from test_index_ids import table_index, table_rows
  built, _ = table_index(tmp_path, table_rows(30, np.random.default_rng(0)))
  loaded, out = search_imports(f"--index={built.path}", "--text=football goal", "--k=3")
  assert out.count(" d=") == 3 and "hashvae.retrieval.numpy_encoder" in loaded
  assert not forbidden(loaded)
