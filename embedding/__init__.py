"""Vectors for products: MobileNet image vectors and fastText + SCDV text vectors.

Models sit behind a small interface: ``load()`` once, then batch ``embed()``. Heavy libraries
(TensorFlow, fastText, scikit-learn) are imported inside ``load()``, never at import time. Each model
takes its own frozen config (``ImageConfig``, ``TextConfig``) and imports nothing of the service, which
builds those configs from its settings (``niteru/model_config.py``).
"""
