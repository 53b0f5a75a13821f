"""The on-disk formats, one module each; everything else asks these owners and never opens their files.

- :mod:`fbp.io.kaggle`: the Kaggle layout (``train.csv``, ``train/*.txt``), essay text folders, span and truth CSVs
- :mod:`fbp.io.processed`: the processed dataset (``essays.parquet``, ``spans.parquet``, ``meta.json``)
- :mod:`fbp.io.run_dir`: a run directory (``config.yaml``, ``run.json``, out-of-fold probabilities, ``decoding.json``)
- :mod:`fbp.io.checkpoint`: a checkpoint directory and its ``fbp.json``
- :mod:`fbp.io.word_probs`: the ``.npz`` word-probabilities file
- :mod:`fbp.io.submission`: the submission CSV
"""
