"""The service's settings reach the models through niteru.model_config, every model setting of them."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from embedding.image import ImageConfig, MobileNetEmbedder
from embedding.text import TextConfig
from niteru.model_config import image_config, text_config
from niteru.settings import Settings

# Settings named like a model's that belong to something else (fetching image URLs, the benchmark corpora).
NOT_MODEL_SETTINGS = {"image_fetch_timeout", "image_fetch_allow_hosts", "image_max_concurrent_decodes", "text_data_dir"}
# Values to change a setting to where adding one would not be valid.
OTHER_VALUE = {
    "image_block": 11,
    "image_resize": "crop",
    "image_precision": "int8",
    "text_gmm_covariance": "tied",
    "text_lr": 0.5,
}


def test_the_defaults_agree() -> None:
    settings = Settings(_env_file=None)
    assert image_config(settings) == ImageConfig()
    assert text_config(settings) == TextConfig(settings.models_dir / "text")


def test_every_model_setting_reaches_its_config(tmp_path: Path) -> None:
    """Change each image_/text_ model setting in turn: the configs change each time, none is dropped."""
    base = Settings(_env_file=None, data_dir=tmp_path)
    names = [n for n in Settings.model_fields if n.startswith(("image_", "text_")) and n not in NOT_MODEL_SETTINGS]
    # one setting per config field, model_dir aside (it comes from data_dir)
    assert len(names) == len(fields(ImageConfig)) + len(fields(TextConfig)) - 1
    configs = (image_config(base), text_config(base))
    for name in names:
        value = OTHER_VALUE[name] if name in OTHER_VALUE else getattr(base, name) + 1
        changed = base.model_copy(update={name: value})
        assert (image_config(changed), text_config(changed)) != configs, name
    assert text_config(base).model_dir == tmp_path / "models" / "text"


def test_the_image_model_is_named_by_its_config() -> None:
    settings = Settings(_env_file=None, image_block=11, image_resize="crop")
    embedder = MobileNetEmbedder(image_config(settings))
    assert (embedder.dim, embedder.version) == (512, "mobilenet_v1_1.0_224-imagenet-block11-crop")
