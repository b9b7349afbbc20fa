"""Vectors for products: MobileNet image vectors and fastText + SCDV text vectors.

Models sit behind a small interface: ``load()`` once, then batch ``embed()``. Heavy libraries
(TensorFlow, fastText, scikit-learn) are imported inside ``load()``, never at import time.
"""
