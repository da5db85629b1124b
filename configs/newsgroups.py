r"""20 Newsgroups: from the raw "bydate" posts, or the VDSH ng20.tfidf.mat.

    python -m launch.main --config=configs/newsgroups.py:method=ssb_vae,bits=16 \
        --config.data.path=../shared/data/20news-bydate.tar.gz --workdir=runs/ng16
    python -m launch.main --config=configs/newsgroups.py:source=mat \
        --config.data.path=ng20.tfidf.mat --workdir=runs/ng16mat

Levels 0.1 .. 1.0 with the released 20news weights; 5 seeds.
"""

from configs import base


def get_config(arg=None):
  c, args = base.study_config(arg, "20news", source="raw")
  if args["source"] == "raw":
    c.data.name = "newsgroups"
    c.data.path = "../shared/data/20news-bydate.tar.gz"  # or the extracted folder
    c.data.max_features = 10000  # tf-idf vocabulary size
    c.data.validation_fraction = 0.1  # of the training posts
    c.data.split_seed = 0  # the validation split
  elif args["source"] == "mat":
    c.data.name = "vdsh_mat"
    c.data.path = "ng20.tfidf.mat"  # the VDSH file (not shipped)
  else:
    raise ValueError(f"source={args['source']!r}: expected 'raw' or 'mat'")
  return c
