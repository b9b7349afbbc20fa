"""Image vectors: MobileNet v1 (ImageNet) without its classifier, global-average pooled, L2-normalised."""

from embedding.image.config import ImageConfig, ResizeMode
from embedding.image.errors import ImageError
from embedding.image.model import BatchResult, MobileNetEmbedder
from embedding.image.preprocess import prepare_image

__all__ = ["BatchResult", "ImageConfig", "ImageError", "MobileNetEmbedder", "ResizeMode", "prepare_image"]
