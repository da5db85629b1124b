r"""Snippets (Google search snippets, 8 classes), the study's protocol.

    python -m launch.main --config=configs/snippets.py:method=ssb_vae,bits=16 \
        --config.data.path=../shared/data/snippets --workdir=runs/snippets16

Levels 0.1 .. 1.0, each with the released (alpha, beta, gamma); 5 seeds;
30 epochs of batch 100.
"""

from configs import base


def get_config(arg=None):
  c, _ = base.study_config(arg, "snippets")
  c.data.name = "snippets"
  c.data.path = "../shared/data/snippets"  # folder with train.txt, test.txt
  c.data.max_features = 10000  # vocabulary size cap
  c.data.validation_fraction = 0.1  # of train.txt, held out as validation
  c.data.split_seed = 0  # the validation split
  return c
