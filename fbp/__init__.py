"""fbp: the Feedback Prize essay-segmentation toolkit (preprocess, train, evaluate, infer, ensemble, compare)."""

__version__ = "0.1.0"
