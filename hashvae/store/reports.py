"""Tables and figures from results rows: summary.md, summary.tex, p_at_100.png,
precision-recall curves over the Hamming radius (`pr_figure`), and the
comparison of methods (`comparison_markdown`, `comparison_figures`: compare.md
and compare_<dataset>_<bits>.png, the clear winner of each level marked).

Rows are results.csv rows (dicts); tables give mean +- std over seeds for each
metric, one row per method and one column per level, one table per
(dataset, bits) and metric. Diverged runs are left out and counted.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections import defaultdict

import numpy as np

from hashvae.store import results

# Metrics shown in the tables, in this order, when present in the rows.
METRICS = ("p@100", "r@100", "p@1000", "p@5000", "map@100", "map@1000", "map@5000",
           "p@100_tie_aware", "ndcg@100", "map@all", "p@r2")
METHOD_NAMES = {"vdsh_s": "VDSH-S", "phs_gs": "PHS-GS", "ssb_vae": "SSB-VAE",
                "vdsh": "VDSH", "bernoulli_vae": "Bernoulli VAE", "pl_hash": "PL-Hash",
                "im_hash": "IM-Hash", "cv_hash": "CV-Hash"}


def cells(rows: list[dict]):
  """{(dataset, bits): {metric: {(method, level): (mean, std, n, diverged)}}}."""
  groups = defaultdict(list)
  for row in rows:
    groups[(row["dataset"], int(row["bits"]))].append(row)
  out = {}
  for key, group in sorted(groups.items()):
    measured = [k for k, v in group[0].items() if "@" in k and v != ""]
    # The first measured metric (evaluate's p@K at the first cut-off) leads
    # even when the cut-offs are not the usual ones.
    metrics = list(dict.fromkeys(measured[:1] + [m for m in METRICS if m in measured]))
    out[key] = {m: {(s["method"], float(s["level"])): (s["mean"], s["std"], s["runs"],
                                                        s["diverged"])
                    for s in results.summarise(group, m)} for m in metrics}
  return out


def _methods_levels(table):
  methods = list(dict.fromkeys(m for m, _ in table))
  levels = sorted({lv for _, lv in table})
  return methods, levels


def _cell(value, markdown=True):
  mean, std, n, diverged = value
  if n == 0:
    return "diverged" if markdown else "--"
  pm = "±" if markdown else r"$\pm$"
  text = f"{mean:.3f} {pm} {std:.3f}"
  if diverged:
    text += f" ({diverged} div.)"
  return text


def markdown(rows: list[dict]) -> str:
  out = io.StringIO()
  out.write("# Results\n\nMean ± std over seeds; columns are labelled fractions.\n")
  for (dataset, bits), tables in cells(rows).items():
    out.write(f"\n## {dataset}, {bits} bits\n")
    for metric, table in tables.items():
      methods, levels = _methods_levels(table)
      runs = max(v[2] + v[3] for v in table.values())
      out.write(f"\n### {metric} ({runs} seeds)\n\n")
      out.write("| method | " + " | ".join(f"{lv:g}" for lv in levels) + " |\n")
      out.write("|---|" + "---|" * len(levels) + "\n")
      for m in methods:
        values = [_cell(table[(m, lv)]) if (m, lv) in table else "" for lv in levels]
        out.write(f"| {METHOD_NAMES.get(m, m)} | " + " | ".join(values) + " |\n")
  return out.getvalue()


def latex(rows: list[dict]) -> str:
  out = io.StringIO()
  out.write("% mean $\\pm$ std over seeds; columns are labelled fractions\n")
  for (dataset, bits), tables in cells(rows).items():
    for metric, table in tables.items():
      methods, levels = _methods_levels(table)
      out.write("\\begin{table}[ht]\n\\centering\\small\n")
      out.write(f"\\caption{{{dataset}, {bits} bits: {metric.replace('_', ' ')}}}\n")
      out.write("\\begin{tabular}{l" + "c" * len(levels) + "}\n\\hline\n")
      out.write("method & " + " & ".join(f"{lv:g}" for lv in levels) + " \\\\\n\\hline\n")
      for m in methods:
        values = [_cell(table[(m, lv)], False) if (m, lv) in table else "" for lv in levels]
        out.write(METHOD_NAMES.get(m, m).replace("_", "\\_") + " & "
                  + " & ".join(values) + " \\\\\n")
      out.write("\\hline\n\\end{tabular}\n\\end{table}\n\n")
  return out.getvalue()


def _precision_panel(ax, table, title: str, metric: str, stars=None):
  """`metric` against the labelled fraction on `ax`: one line per method with
  a +-1 std band; {level: method} `stars` marked with a star at their point."""
  import matplotlib

  methods, levels = _methods_levels(table)
  # Past ten methods the default colours repeat: twenty colours, then a
  # new marker shape per twenty methods, keep every line its own.
  palette = matplotlib.colormaps["tab20" if len(methods) > 10 else "tab10"].colors
  colours = {}
  for i, m in enumerate(methods):
    pts = [(lv, *table[(m, lv)][:2]) for lv in levels
           if (m, lv) in table and table[(m, lv)][2] > 0]
    if not pts:  # every run of the method diverged: the tables say so
      continue
    x, mean, std = (np.array(v) for v in zip(*pts, strict=True))
    (line,) = ax.plot(x, mean, marker="osD^v"[i // len(palette) % 5],
                      color=palette[i % len(palette)], label=METHOD_NAMES.get(m, m))
    colours[m] = line.get_color()
    ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=colours[m])
  for i, (level, m) in enumerate(sorted((stars or {}).items())):
    ax.plot([level], [table[(m, level)][0]], marker="*", markersize=16, linestyle="none",
            color=colours[m], markeredgecolor="black", zorder=3,
            label="lead > both stds" if i == 0 else "_nolegend_")
  ax.set(title=title, xlabel="labelled fraction", ylabel=metric)
  ax.grid(alpha=0.3)
  if len(methods) > 6:  # beside the axes, where it hides no line
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
  else:
    ax.legend()


def precision_figure(rows: list[dict], path: str, metric: str = "p@100"):
  """`metric` against the labelled fraction: one panel per (dataset, bits),
  one line per method with a +-1 std band."""
  import matplotlib
  matplotlib.use("Agg")  # headless
  import matplotlib.pyplot as plt

  panels = _panels(rows, metric)
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
  for ax, ((dataset, bits), table) in zip(axes[0], panels.items(), strict=True):
    _precision_panel(ax, table, f"{dataset}, {bits} bits", metric)
  fig.tight_layout()
  with results.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
  plt.close(fig)


def mean_curves(rows: list[dict], curves: list[dict]):
  """Radius curves averaged over the seeds of each (method, level).

  rows: results rows; curves: `metrics.radius_curve` outputs, one per row,
  in row order. Diverged runs are left out. Returns {(dataset, bits):
  {(method, level): {"radius", "precision", "recall"} arrays [bits + 1]}}.
  """
  if len(rows) != len(curves):
    raise ValueError(f"one curve per row is needed: {len(curves)} curves for {len(rows)} rows")
  groups = defaultdict(lambda: defaultdict(list))
  for row, curve in zip(rows, curves, strict=True):
    if row.get("status", "ok") == "ok":
      groups[(row["dataset"], int(row["bits"]))][(row["method"], float(row["level"]))].append(
          curve)
  return {panel: {line: {name: np.mean([c[name] for c in runs], 0)
                         for name in ("radius", "precision", "recall")}
                  for line, runs in lines.items()}
          for panel, lines in sorted(groups.items())}


def pr_figure(rows: list[dict], curves: list[dict], path: str) -> dict:
  """Precision against recall of the Hamming ball as its radius grows: one
  panel per (dataset, bits), one line per (method, level), the mean over
  seeds (`mean_curves`). Returns {(dataset, bits): [line labels]}, as drawn."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  panels = mean_curves(rows, curves)
  if not panels:
    raise ValueError("no finished runs to draw")
  # A colour per method and a line style per level, the same in every panel.
  methods = list(dict.fromkeys(m for lines in panels.values() for m, _ in lines))
  levels = sorted({lv for lines in panels.values() for _, lv in lines})
  styles = ("-", "--", ":", "-.")
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
  drawn = {}
  for ax, ((dataset, bits), lines) in zip(axes[0], panels.items(), strict=True):
    for (method, level), curve in lines.items():
      ax.plot(curve["recall"], curve["precision"], marker=".",
              color=f"C{methods.index(method) % 10}",
              linestyle=styles[levels.index(level) % len(styles)],
              label=f"{METHOD_NAMES.get(method, method)}, {level:g}")
    ax.set(title=f"{dataset}, {bits} bits: radius 0..{bits}", xlabel="recall",
           ylabel="precision (an empty ball counts 0)", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    drawn[(dataset, bits)] = [line.get_label() for line in ax.get_lines()]
  fig.tight_layout()
  with results.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
  plt.close(fig)
  return drawn


def write_reports(rows: list[dict], folder: str) -> list[str]:
  """Writes summary.md, summary.tex and p_at_100.png (when p@100 was measured)."""
  paths = [os.path.join(folder, "summary.md"), os.path.join(folder, "summary.tex")]
  results.write_text(paths[0], markdown(rows))
  results.write_text(paths[1], latex(rows))
  if any(row.get("p@100", "") != "" for row in rows):
    paths.append(os.path.join(folder, "p_at_100.png"))
    precision_figure(rows, paths[-1])
  return paths


# --- comparing methods ----------------------------------------------------------

def winners(table) -> dict:
  """{level: method} of a {(method, level): (mean, std, n, diverged)} table:
  at each level the method with the highest mean, where its lead over the
  runner-up (the second highest mean) is larger than both their stds. A
  level with one method, or without such a lead (a tie included), has none;
  a method whose runs all diverged (n == 0) takes no part."""
  by_level = defaultdict(list)
  for (method, level), (mean, std, n, _) in table.items():
    if n > 0 and math.isfinite(mean):
      by_level[level].append((mean, std, method))
  out = {}
  for level, entries in sorted(by_level.items()):
    if len(entries) < 2:
      continue
    (top, top_std, method), (second, second_std, _) = sorted(
        entries, key=lambda e: e[0], reverse=True)[:2]
    if top - second > max(top_std, second_std):
      out[level] = method
  return out


def _panels(rows: list[dict], metric: str) -> dict:
  """{(dataset, bits): table of `metric`}; ValueError when no panel has it."""
  panels = {k: v[metric] for k, v in cells(rows).items() if metric in v}
  if not panels:
    raise ValueError(f"no {metric} in the rows")
  return panels


def _seeds(table) -> str:
  runs = sorted({n + diverged for _, _, n, diverged in table.values()})
  text = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]}-{runs[-1]}"
  return text + (" seed" if runs == [1] else " seeds")


def comparison_markdown(rows: list[dict], metric: str = "p@100") -> str:
  """compare.md: per (dataset, bits) a table of `metric`, methods as rows and
  labelled fractions as columns, mean +- std over seeds, the `winners` bold."""
  panels = _panels(rows, metric)
  out = io.StringIO()
  out.write(f"# Comparison: {metric}\n\nMean ± std over seeds; columns are labelled "
            "fractions; diverged runs are left out and counted.\n")
  for (dataset, bits), table in panels.items():
    methods, levels = _methods_levels(table)
    best = winners(table)
    out.write(f"\n## {dataset}, {bits} bits\n\n")
    out.write("| method | " + " | ".join(f"{lv:g}" for lv in levels) + " |\n")
    out.write("|---|" + "---|" * len(levels) + "\n")
    for m in methods:
      values = []
      for lv in levels:
        text = _cell(table[(m, lv)]) if (m, lv) in table else ""
        values.append(f"**{text}**" if best.get(lv) == m else text)
      out.write(f"| {METHOD_NAMES.get(m, m)} | " + " | ".join(values) + " |\n")
    out.write(f"\n{_seeds(table)}. **Bold**: the highest mean at that labelled fraction, "
              "ahead of the runner-up by more than both their stds.\n")
  return out.getvalue()


def comparison_figure_name(dataset: str, bits: int) -> str:
  return f"compare_{re.sub(r'[^A-Za-z0-9._-]', '_', str(dataset))}_{int(bits)}.png"


def comparison_figures(rows: list[dict], folder: str, metric: str = "p@100") -> list[str]:
  """compare_<dataset>_<bits>.png in `folder`, one per (dataset, bits): `metric`
  against the labelled fraction, one line per method with a +-1 std band,
  the `winners` starred. Returns the paths written."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  panels = _panels(rows, metric)
  names = [comparison_figure_name(*key) for key in panels]
  if len(set(names)) < len(names):
    raise ValueError(f"dataset names that differ only in odd characters share a figure "
                     f"name: {sorted(names)}")
  paths = []
  for name, ((dataset, bits), table) in zip(names, panels.items(), strict=True):
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    _precision_panel(ax, table, f"{dataset}, {bits} bits", metric, stars=winners(table))
    fig.tight_layout()
    paths.append(os.path.join(folder, name))
    with results.atomic_path(paths[-1]) as tmp:
      fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
  return paths


def write_comparison(rows: list[dict], folder: str, metric: str = "p@100"):
  """(compare.md's text, [paths written]): compare.md and one figure per
  (dataset, bits) in `folder`."""
  text = comparison_markdown(rows, metric)
  path = os.path.join(folder, "compare.md")
  results.write_text(path, text)
  return text, [path] + comparison_figures(rows, folder, metric)


def training_curves(records: list[dict], path: str):
  """metrics.jsonl records -> one panel per loss term, the grid mean per
  method against the epoch."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  terms = list(dict.fromkeys(k for r in records for k, v in r.items() if isinstance(v, dict)))
  if not terms:
    raise ValueError("no loss terms in the metrics records")
  methods = list(dict.fromkeys(r["method"] for r in records))
  colours = {m: f"C{i}" for i, m in enumerate(methods)}  # the same in every panel
  fig, axes = plt.subplots(1, len(terms), figsize=(4 * len(terms), 3.2), squeeze=False)
  for ax, term in zip(axes[0], terms, strict=True):
    for method in methods:
      pts = [(r["epoch"], r[term]["mean"]) for r in records
             if r["method"] == method and term in r and r[term]["mean"] is not None]
      if pts:
        ax.plot(*zip(*pts, strict=True), color=colours[method],
                label=METHOD_NAMES.get(method, method))
    ax.set(title=term, xlabel="epoch")
    ax.grid(alpha=0.3)
  fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper right")
  fig.tight_layout()
  with results.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=110)
  plt.close(fig)
