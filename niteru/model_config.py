"""The one place the service's settings become the models' own configs.

``embedding`` knows nothing of the service: its models take small frozen dataclasses. Everything that
loads or trains a model in the service builds those configs here, so a new setting of a model is wired
in one function.
"""

from __future__ import annotations

from pathlib import Path

from embedding.image.config import ImageConfig
from embedding.joint.config import JointConfig
from embedding.text.config import TextConfig
from niteru.settings import Settings


def image_config(settings: Settings) -> ImageConfig:
    s = settings
    return ImageConfig(
        block=s.image_block,
        size=s.image_size,
        resize=s.image_resize,
        batch_size=s.image_batch_size,
        decode_threads=s.image_decode_threads,
        max_pixels=s.image_max_pixels,
        min_side=s.image_min_side,
        max_bytes=s.image_max_bytes,
        threads=s.image_threads,
        precision=s.image_precision,
    )


def text_model_dir(settings: Settings) -> Path:
    """The folder of versioned text models with their ``CURRENT`` pointer."""
    return settings.models_dir / "text"


def text_config(settings: Settings) -> TextConfig:
    s = settings
    return TextConfig(
        model_dir=text_model_dir(s),
        max_chars=s.text_max_chars,
        dim=s.text_dim,
        epochs=s.text_epochs,
        lr=s.text_lr,
        min_count=s.text_min_count,
        minn=s.text_minn,
        maxn=s.text_maxn,
        window=s.text_window,
        buckets=s.text_buckets,
        threads=s.text_threads,
        seed=s.text_seed,
        clusters=s.text_clusters,
        gmm_covariance=s.text_gmm_covariance,
        gmm_max_iter=s.text_gmm_max_iter,
        sparsity_percent=s.text_sparsity_percent,
        reduced_dim=s.text_reduced_dim,
        reduction_sample=s.text_reduction_sample,
    )


def joint_config(settings: Settings) -> JointConfig:
    s = settings
    return JointConfig(
        model_dir=s.models_dir / "joint",
        dim=s.joint_dim,
        hidden=s.joint_hidden,
        epochs=s.joint_epochs,
        label_weight=s.joint_label_weight,
        structure_weight=s.joint_structure_weight,
        seed=s.joint_seed,
        min_products=s.joint_min_products,
    )
