"""Text vectors: fastText skip-gram word vectors trained on the catalog, turned into SCDV document vectors.

``train_text_model(texts, config)`` writes a versioned artifact; ``TextEmbedder(config).load()``
reads the current one and ``embed(texts)`` gives (n, dim) float32 unit vectors (zero rows for texts
without a single word). Heavy libraries (fastText, scikit-learn, MeCab) load inside functions only.
"""

from embedding.text.config import TextConfig
from embedding.text.errors import (
    TextError,
    TextInputError,
    TextModelIncompatibleError,
    TextModelMissingError,
    TextTrainingError,
)
from embedding.text.model import TextEmbedder
from embedding.text.tokenize import normalize, tokenize
from embedding.text.train import train_text_model

__all__ = [
    "TextConfig",
    "TextEmbedder",
    "TextError",
    "TextInputError",
    "TextModelIncompatibleError",
    "TextModelMissingError",
    "TextTrainingError",
    "normalize",
    "tokenize",
    "train_text_model",
]
