r"""A text corpus in a table: CSV, TSV or JSON lines with a text and a label column.

    python -m launch.main --config=configs/table.py:method=ssb_vae,bits=16 \
        --config.data.path=train.csv --config.data.test_path=test.csv \
        --workdir=runs/table

The format comes from the extension (.csv, .tsv, .jsonl) unless
`data.format` names it; CSV and TSV start with a header row. A multi-label
item holds a JSON list in JSON lines, or its labels joined by
`data.label_separator` in CSV and TSV (`sport|news`). Vectorised as Snippets
(the released protocol): input log(1 + tf), or tf-idf with `data.tfidf=True`.

Weights: the released Snippets grid (the same vectorising), a starting point,
not a choice made for this corpus: `python -m launch.tune` chooses them on
validation (its weights.csv is keyed "text_table", this config's data.name,
so `:grid=WORKDIR/weights.csv` reads it back).
"""

from configs import base


def get_config(arg=None):
  # Snippets' released weights to start from; the tune's weights.csv keyed
  # by this corpus's own name.
  c, _ = base.study_config(arg, "snippets", weights_key="text_table")
  c.data.name = "text_table"
  c.data.path = ""  # the training table (also the database)
  c.data.test_path = ""  # the queries
  c.data.validation_path = ""  # optional; unset, validation_fraction of path
  c.data.validation_fraction = 0.1  # of the training documents, held out as validation
  c.data.split_seed = 0  # the validation split
  c.data.format = ""  # "csv", "tsv" or "jsonl"; empty: from each file's extension
  c.data.text_column = "text"  # column (JSON field) holding the document
  c.data.label_column = "label"  # column (JSON field) holding its label(s)
  # Column (JSON field) of each item's id, shown by launch.search; absent
  # from the file: the 0-based row number.
  c.data.id_column = "id"
  # Joins several labels in one CSV/TSV cell; empty: a cell is one label.
  c.data.label_separator = "|"
  c.data.max_features = 10000  # vocabulary size cap
  c.data.tfidf = False  # input tf-idf (rows L2-normalised) instead of log(1 + tf)
  # Documents left with no vocabulary term: dropped (True) or kept as zero
  # rows, which have no reconstruction loss (False, as Snippets).
  c.data.drop_empty = False
  return c
