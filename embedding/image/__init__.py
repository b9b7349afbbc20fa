"""Image vectors: MobileNet v1 (ImageNet) without its classifier, global-average pooled, L2-normalised."""

from embedding.image.errors import ImageError
from embedding.image.model import BatchResult, MobileNetEmbedder
from embedding.image.preprocess import prepare_image

__all__ = ["BatchResult", "ImageError", "MobileNetEmbedder", "prepare_image"]
