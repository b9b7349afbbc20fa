"""The converted LiteRT models: where they live, what they record, and the conversion itself.

A converted model is ``<name>.tflite`` plus ``<name>.json`` beside the Keras weights (``$KERAS_HOME/models``).
The JSON records the SHA-256 of the Keras weights file it came from and of the ``.tflite`` itself; both are
checked on every load (``check``), so a model converted from other weights, or half written, is refused
with a message that says to run ``niteru weights``, which converts it again. The name carries ``FORMAT``,
the layout of the network and its metadata: bump it when that changes and every old file is left unused.

Checking needs only the standard library; converting (``convert``) imports TensorFlow, so only the
``niteru weights`` command does it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedding.image.config import Precision
from embedding.image.weights import WeightsMissingError, keras_models_dir, require_weights

log = logging.getLogger(__name__)

FORMAT = 1
BLOCKS = range(1, 14)  # every pointwise block of MobileNet v1 is a supported vector


class ConvertedModelError(WeightsMissingError):
    """The converted model is missing, half written, or from other weights: `niteru weights` rebuilds it."""


@dataclass(frozen=True)
class ConvertedMeta:
    format: int
    block: int
    size: int
    precision: str
    weights_file: str
    weights_sha256: str
    tflite_sha256: str
    tensorflow: str
    calibration_images: int


def model_name(block: int, size: int, precision: Precision) -> str:
    return f"niteru-mobilenet_v1_1.0_{size}-block{block}-{precision}.v{FORMAT}"


def model_path(block: int, size: int = 224, precision: Precision = "fp32") -> Path:
    return keras_models_dir() / f"{model_name(block, size, precision)}.tflite"


def meta_path(model: Path) -> Path:
    return model.with_suffix(".json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check(block: int, size: int = 224, precision: Precision = "fp32") -> tuple[Path, ConvertedMeta]:
    """The converted model's path and metadata, if it is whole and from the current Keras weights."""
    path = model_path(block, size, precision)
    fix = "convert it with `niteru weights`"
    if precision == "int8":
        fix = "convert it with `NITERU_IMAGE_PRECISION=int8 niteru weights` (needs the catalog for calibration)"
    try:
        meta = ConvertedMeta(**json.loads(meta_path(path).read_text()))
    except FileNotFoundError:
        raise ConvertedModelError(f"no converted image model at {path}; {fix}") from None
    except (ValueError, TypeError) as exc:
        raise ConvertedModelError(f"unreadable metadata beside {path} ({exc}); {fix}") from None
    weights = require_weights(include_top=False)
    if meta.weights_sha256 != sha256_file(weights):
        raise ConvertedModelError(f"{path.name} was converted from other weights than {weights}; {fix}")
    if not path.is_file() or meta.tflite_sha256 != sha256_file(path):
        raise ConvertedModelError(f"{path.name} does not match its metadata (half written?); {fix}")
    return path, meta


def is_current(block: int, size: int = 224, precision: Precision = "fp32") -> bool:
    try:
        check(block, size, precision)
    except ConvertedModelError:
        return False
    return True


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(0o644)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def convert(
    block: int,
    size: int = 224,
    precision: Precision = "fp32",
    calibration: np.ndarray | None = None,
) -> Path:
    """Convert the Keras network of ``block`` to LiteRT and write it with its metadata, atomically.

    int8 is full-integer quantisation (weights and activations), calibrated on ``calibration``: prepared
    (n, size, size, 3) uint8 catalog images. Input and output stay float32, so the caller is the same.
    """
    import tensorflow as tf

    from embedding.image.keras_net import feature_model
    from embedding.image.network_io import to_network_input

    weights = require_weights(include_top=False)
    weights_sha = sha256_file(weights)  # before converting: a change meanwhile makes the file refused
    model = feature_model(block, size)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 conversion needs calibration images")
        images = calibration

        def representative() -> Iterable[list[np.ndarray]]:
            for image in images:
                yield [to_network_input(image[None])]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints its whole export signature on stdout
        data: bytes = converter.convert()
    path = model_path(block, size, precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = ConvertedMeta(
        format=FORMAT,
        block=block,
        size=size,
        precision=precision,
        weights_file=weights.name,
        weights_sha256=weights_sha,
        tflite_sha256=hashlib.sha256(data).hexdigest(),
        tensorflow=tf.__version__,
        calibration_images=0 if calibration is None or precision == "fp32" else len(calibration),
    )
    # The model first, then the metadata that vouches for it: a crash between the two leaves a pair whose
    # checksums disagree, which `check` refuses.
    _write_atomic(path, data)
    _write_atomic(meta_path(path), json.dumps(asdict(meta), indent=2).encode())
    log.info("converted MobileNet v1 block %d (%s) to %s", block, precision, path)
    return path


def convert_missing(size: int = 224, blocks: Iterable[int] = BLOCKS, force: bool = False) -> list[Path]:
    """fp32 LiteRT models of every block that has none from the current weights (all with ``force``)."""
    return [convert(b, size) for b in blocks if force or not is_current(b, size)]
