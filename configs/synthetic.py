"""A small seeded bag-of-words corpus: seconds per sweep, for tests and demos.

    python -m launch.main --config=configs/synthetic.py --workdir=/tmp/synth
"""

from configs import base


def get_config(arg=None):
  args = base.parse_arg(arg, method="all", bits=8, grid="")
  c = base.base_config(base.method_tuple(args["method"], base.STUDY_METHODS),
                       args["bits"])
  c.seeds = (0, 1)
  c.levels = (0.2, 1.0)
  c.epochs = 3
  c.batch_size = 32
  c.ks = (10, 50)
  c.model.hidden = (32,)
  c.weights.vdsh_s = base.weights(alpha=(0.01,), beta=(0.1,))
  for m in ("phs_gs", "ssb_vae"):
    c.weights[m] = base.weights(alpha=(0.01,), beta=(0.1,), gamma=(10.0,))
  base.inherit_weights(c, base.STUDY_METHODS)  # e.g. cv_hash: ssb_vae's, kappa = 1
  c.data.name = "synthetic"
  c.data.num_classes = 4  # topics, one label each
  c.data.dims = 50  # vocabulary size
  c.data.train_size = 160  # training documents
  c.data.validation_size = 40  # validation documents (in the database too)
  c.data.test_size = 40  # test documents (the queries)
  c.data.doc_length = 30  # mean words per document
  c.data.noise = 0.3  # weight of the shared background topic
  c.data.split_seed = 0  # the generator's seed
  base.use_grid(c, args["grid"], "synthetic")  # grid=PATH.csv: a launch.tune weights.csv
  return c
