r"""A corpus in svmlight / libsvm files (RCV1 ships so), multi-label included.

    python -m launch.main --config=configs/svmlight.py:method=ssb_vae,bits=16 \
        --config.data.path=rcv1_train.svm --config.data.test_path=rcv1_test.svm \
        --workdir=runs/rcv1

A line is `labels index:value ...`: one label, or several joined by commas
(`1,5,17 3:0.12 9:0.4`); .gz and .bz2 files are read as they are. Input = the
stored values (tf-idf in RCV1), target = each row normalised to sum 1.
Multi-label when any item has more than one label; the released code ran
such labels on the softmax path (loss.multilabel="softmax", parity),
`--config.loss.multilabel=sigmoid` selects binary cross-entropy.

Weights: the released TMC grid (the study's multi-label tf-idf corpus), a
starting point, not a choice made for this corpus: `python -m launch.tune`
chooses them on validation (its weights.csv is keyed "svmlight", this
config's data.name, so `:grid=WORKDIR/weights.csv` reads it back).
"""

from configs import base


def get_config(arg=None):
  # TMC's released weights to start from; the tune's weights.csv keyed by
  # this corpus's own name.
  c, _ = base.study_config(arg, "tmc", weights_key="svmlight")
  c.data.name = "svmlight"
  c.data.path = ""  # the training file (also the database)
  c.data.test_path = ""  # the queries
  c.data.validation_path = ""  # optional; unset, validation_fraction of path
  c.data.validation_fraction = 0.1  # of the training items, held out as validation
  c.data.split_seed = 0  # the validation split
  # Index base of the files: "auto" reads them as zero-based when any file
  # holds index 0 and as one-based otherwise (one base for every file);
  # true or false says which.
  c.data.zero_based = "auto"
  # Input width; 0: the largest feature index in any of the files. Set it to
  # the vocabulary size when the files need not use its last term.
  c.data.n_features = 0
  return c
