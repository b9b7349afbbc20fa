"""The joint product vector: a small network over a product's image and text vectors, trained with Keras
on the store's products at rebuild, served by a numpy forward pass (no TensorFlow at serving time)."""

from embedding.joint.artifact import JointModelError, JointModelMissingError
from embedding.joint.config import JointConfig
from embedding.joint.model import JointEmbedder

__all__ = ["JointConfig", "JointEmbedder", "JointModelError", "JointModelMissingError"]
