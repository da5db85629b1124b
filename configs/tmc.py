r"""TMC (multi-label) or 20 Newsgroups in the VDSH .mat layout.

    python -m launch.main --config=configs/tmc.py:method=ssb_vae,bits=16 \
        --config.data.path=../shared/data/tmc_subset.tfidf.mat --workdir=runs/tmc

Multi-label: the released code ran the single-label softmax path on these
labels (loss.multilabel="softmax", parity); `--config.loss.multilabel=sigmoid`
selects binary cross-entropy and similarities in [0, 1].
"""

from configs import base


def get_config(arg=None):
  c, _ = base.study_config(arg, "tmc")
  c.data.name = "vdsh_mat"
  c.data.path = "../shared/data/tmc_subset.tfidf.mat"  # the .mat file
  return c
