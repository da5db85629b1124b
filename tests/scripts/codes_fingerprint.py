#!/usr/bin/env python
"""Bit-exact fingerprint of what a hashvae checkout produces, via its CLI only.

 python tests/scripts/codes_fingerprint.py --repo=DIR --out=FILE.json [--only=NAME[,NAME...]] [--keep]
 python tests/scripts/codes_fingerprint.py --compare BASE.json AFTER.json

Fingerprint mode runs `python -m launch.main ...` with cwd=DIR for each case
below (sequentially, each in a fresh workdir), then records per case:
 - for every array in WORKDIR/codes.npz: dtype, shape, sha256(arr.tobytes())
 - sha256 of WORKDIR/results.csv (whole file, unless some column looks like
  wall-clock time: those columns are dropped first and named in the JSON)
 - the command line, the wall-clock seconds it took.
Compare mode prints, per case and per array/file, identical or DIFFERENT, and
exits 1 on any difference (or a case missing on either side).
"""

import argparse
import csv
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

DIGITS_METHODS = ("vdsh_s+phs_gs+ssb_vae+vdsh+bernoulli_vae+nash+nash_s+bmsh+vdsh_sp"
         "+pl_hash+im_hash+cv_hash+lsh+pca_itq+spectral+ssh+cca_itq")
SNIPPETS_METHODS = "ssb_vae+vdsh_s+phs_gs+nash+bmsh+vdsh_sp+cv_hash+pca_itq"
TMC_METHODS = "ssb_vae+vdsh_s+nash+pl_hash+lsh"
# tmc_subset's database is 4,555 items: the config's default K=5000 is refused.
TMC_KS = "--config.ks=(100,1000)"
SMALL = ["--config.epochs=2", "--config.seeds=(0,)", "--config.levels=(0.1,1.0)"]

# name -> arguments after `python -m launch.main` (the workdir is appended).
CASES = {
  "digits": [f"--config=configs/digits.py:method={DIGITS_METHODS}"] + SMALL,
  "snippets": [f"--config=configs/snippets.py:method={SNIPPETS_METHODS}",
        "--config.data.path=/work/shared/data/snippets"] + SMALL,
  "tmc": [f"--config=configs/tmc.py:method={TMC_METHODS}",
      "--config.data.path=/work/shared/data/tmc_subset.tfidf.mat", TMC_KS] + SMALL,
  "tmc_sigmoid": ["--config=configs/tmc.py:method=ssb_vae",
          "--config.data.path=/work/shared/data/tmc_subset.tfidf.mat",
          "--config.loss.multilabel=sigmoid", TMC_KS] + SMALL,
}

TIME_COLUMN = re.compile(r"(time|seconds|wall|elapsed|duration|_sec$|_s$|date)", re.I)


def sha256(data: bytes) -> str:
 return hashlib.sha256(data).hexdigest()


def fingerprint_codes(path):
 out = {}
 with np.load(path, allow_pickle=False) as z:
  for name in sorted(z.files):
   a = z[name]
   out[name] = {"dtype": str(a.dtype), "shape": list(a.shape),
         "sha256": sha256(np.ascontiguousarray(a).tobytes())}
 return out


def fingerprint_results(path):
 with open(path, "rb") as f:
  raw = f.read()
 rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
 header = rows[0] if rows else []
 dropped = [h for h in header if TIME_COLUMN.search(h)]
 if not dropped:
  return {"sha256": sha256(raw), "dropped_columns": [], "rows": len(rows) - 1,
      "columns": len(header)}
 keep = [i for i, h in enumerate(header) if h not in dropped]
 buf = io.StringIO(newline="")
 w = csv.writer(buf, lineterminator="\n")
 for r in rows:
  w.writerow([r[i] if i < len(r) else "" for i in keep])
 return {"sha256": sha256(buf.getvalue().encode("utf-8")), "dropped_columns": dropped,
     "rows": len(rows) - 1, "columns": len(header)}


def run_case(repo, name, args, keep):
 workdir = tempfile.mkdtemp(prefix=f"hvfp_{name}_", dir="/tmp")
 cmd = [sys.executable, "-m", "launch.main"] + args + [f"--workdir={workdir}"]
 print(f"[{name}] cwd={repo}\n  {' '.join(cmd)}", flush=True)
 t0 = time.time()
 p = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
 seconds = round(time.time() - t0, 1)
 if p.returncode != 0:
  print(p.stdout[-4000:], p.stderr[-8000:], sep="\n", file=sys.stderr)
  raise SystemExit(f"[{name}] launch.main failed with rc={p.returncode}")
 rec = {"cmd": " ".join(cmd[1:-1]) + " --workdir=WORKDIR", "seconds": seconds,
    "codes": fingerprint_codes(os.path.join(workdir, "codes.npz")),
    "results_csv": fingerprint_results(os.path.join(workdir, "results.csv"))}
 print(f"[{name}] {seconds}s  results.csv {rec['results_csv']['sha256'][:16]}", flush=True)
 if keep:
  rec["workdir"] = workdir
 else:
  shutil.rmtree(workdir, ignore_errors=True)
 return rec


def environment(repo):
 env = {"python": sys.version.split()[0], "platform": platform.platform(),
    "cpus": os.cpu_count(), "repo": os.path.abspath(repo)}
 try:
  env["git_head"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo,
                  capture_output=True, text=True).stdout.strip()
 except OSError:
  pass
 probe = ("import importlib.metadata as m, json\n"
     "v = {}\n"
     "for k in ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'scikit-learn', 'scipy'):\n"
     "  try: v[k] = m.version(k)\n"
     "  except Exception: v[k] = None\n"
     "print(json.dumps(v))")
 p = subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True)
 env["versions"] = json.loads(p.stdout) if p.returncode == 0 else None
 return env


def compare(base_path, after_path):
 with open(base_path) as f:
  base = json.load(f)["cases"]
 with open(after_path) as f:
  after = json.load(f)["cases"]
 bad = 0
 for case in sorted(set(base) | set(after)):
  if case not in base or case not in after:
   print(f"{case}: MISSING in {'base' if case not in base else 'after'}  DIFFERENT")
   bad += 1
   continue
  b, a = base[case], after[case]
  for arr in sorted(set(b["codes"]) | set(a["codes"])):
   x, y = b["codes"].get(arr), a["codes"].get(arr)
   same = x is not None and x == y
   detail = "" if same else f"  base={x}  after={y}"
   print(f"{case}/codes.npz:{arr}: {'identical' if same else 'DIFFERENT'}{detail}")
   bad += not same
  same = b["results_csv"]["sha256"] == a["results_csv"]["sha256"]
  print(f"{case}/results.csv: {'identical' if same else 'DIFFERENT'}")
  bad += not same
 print(f"\n{'ALL IDENTICAL' if not bad else f'{bad} DIFFERENCE(S)'}")
 return 1 if bad else 0


def main():
 ap = argparse.ArgumentParser(description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
 ap.add_argument("--repo")
 ap.add_argument("--out")
 ap.add_argument("--only", default="", help="comma-separated case names")
 ap.add_argument("--keep", action="store_true", help="keep the workdirs (/tmp/hvfp_*)")
 ap.add_argument("--compare", nargs=2, metavar=("BASE", "AFTER"))
 a = ap.parse_args()
 if a.compare:
  sys.exit(compare(*a.compare))
 if not a.repo or not a.out:
  ap.error("--repo and --out are required (or --compare BASE AFTER)")
 names = [n for n in a.only.split(",") if n] or list(CASES)
 unknown = [n for n in names if n not in CASES]
 if unknown:
  ap.error(f"unknown case(s) {unknown}; known: {list(CASES)}")
 out = {"environment": environment(a.repo), "cases": {}}
 for n in names:
  out["cases"][n] = run_case(a.repo, n, CASES[n], a.keep)
  with open(a.out, "w") as f:  # written after each case
   json.dump(out, f, indent=1, sort_keys=True)
 print(f"wrote {a.out}")


if __name__ == "__main__":
 main()
