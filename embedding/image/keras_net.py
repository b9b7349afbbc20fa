"""The Keras MobileNet v1 feature network: the source of the converted LiteRT model, and the reference.

Only the conversion (``niteru weights``), the benchmarks and the tests import this module: it imports
TensorFlow, which serving processes never load. The network takes images already scaled to [-1, 1]
(``to_network_input``) and returns the global-average-pooled output of one pointwise block, not yet
normalised; the caller L2-normalises, so the Keras and LiteRT paths share every step around the network.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from embedding.image.config import ImageConfig

log = logging.getLogger(__name__)


def feature_model(block: int, size: int = 224) -> Any:
    """``keras.Model``: float images in [-1, 1] to the pooled output of pointwise block ``block``."""
    import keras

    from embedding.image.weights import require_weights

    # The file by path, not weights="imagenet": Keras fixes its cache folder when first imported, and the
    # conversion must read the very file whose checksum it records.
    path = require_weights(include_top=False)
    base = keras.applications.MobileNet(input_shape=(size, size, 3), alpha=1.0, include_top=False, weights=str(path))
    features = base.get_layer(f"conv_pw_{block}_relu").output
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    return keras.Model(base.input, pooled, name=f"mobilenet_block{block}")


class KerasForward:
    """The network in one compiled ``tf.function`` with a fixed input signature (never retraced)."""

    def __init__(self, config: ImageConfig) -> None:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(config.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            # TensorFlow fixes its thread pools when it first runs anything; a second model in the same
            # process keeps the first settings.
            log.debug("TensorFlow already initialised; keeping its thread settings")
        model = feature_model(config.block, config.size)

        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[tf.TensorSpec([None, config.size, config.size, 3], tf.float32)]
        )
        def forward(images: Any) -> Any:
            return model(images, training=False)

        self._forward = forward

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) float32 in [-1, 1] to (n, dim) float32 pooled features."""
        out: np.ndarray = self._forward(images).numpy()
        return out
