"""The on-disk formats, one module each; everything else asks these owners and never opens their files.

- :mod:`fbp.io.kaggle`: the Kaggle layout (``train.csv``, ``train/*.txt``), essay text folders, span and truth CSVs
- :mod:`fbp.io.processed`: the processed dataset (``essays.parquet``, ``spans.parquet``, ``meta.json``)
- :mod:`fbp.io.run_dir`: a run directory (``config.yaml``, ``decoding.json``, ``fold_K/``, ``.work/``, the run's
  status), with :mod:`fbp.io.run_record` (``run.json``) and :mod:`fbp.io.run_settings` (what makes a run, diffs)
- :mod:`fbp.io.checkpoint`: a checkpoint directory and its ``fbp.json``
- :mod:`fbp.io.word_probs`: the ``.npz`` word-probabilities file (a run's out-of-fold file also records each essay's fold)
- :mod:`fbp.io.decoder`: the learned decoder (``learned_decoder.json`` and its LightGBM model files)
- :mod:`fbp.io.ensemble_dir`: an ensemble directory (``ensemble.json``: members, weights, the blend's decoder)
- :mod:`fbp.io.submission`: the submission CSV
- :mod:`fbp.io.lock`: a run's ``.fbp.lock`` and every check of whether a process still runs
- :mod:`fbp.io.onnx_export`: a checkpoint's ``onnx/`` folder (the exported models and ``export.json``)
- :mod:`fbp.io.pretrained`: a pretrained model directory's ``fbp-pretrained.json`` (the essays it read)
- :mod:`fbp.io.yamlfile`: reading any YAML file within bounds (size, aliases, depth)
"""
