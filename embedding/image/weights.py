"""Prepare MobileNet v1 1.0/224 ImageNet weights where Keras looks for them, without a model hub.

``keras.applications.MobileNet(weights="imagenet")`` reads ``mobilenet_1_0_224_tf[_no_top].h5`` from
``$KERAS_HOME/models`` (default ``~/.keras/models``) and downloads it when missing. That download is
tried first; where it fails (as on machines that reach only package registries) the files are built
from Google's TF-slim MobileNet v1 1.0/224 ImageNet checkpoint, which the PyPI source distribution
``nudity==0.2.3`` ships frozen into ``nudity/files/retrained_graph.pb``. That package is never
imported or installed: its sdist is downloaded with pip and the one file is read out of the tarball.

The slim graph keeps the original 1001-class head (class 0 is "background"); Keras's head has the
1000 ImageNet classes, so class 0 is dropped. Batch-norm epsilon is 0.001 in both.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TOP_FILE = "mobilenet_1_0_224_tf.h5"
NO_TOP_FILE = "mobilenet_1_0_224_tf_no_top.h5"
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
SDIST = "nudity==0.2.3"
GRAPH_MEMBER = "nudity-0.2.3/nudity/files/retrained_graph.pb"
GRAPH_SHA256 = "3b90af536f810f5f75e9f6d431bc2e8a3c4fc2ff4f693aa0dd4ae429816f8735"
SLIM = "MobilenetV1/"


class WeightsMissingError(RuntimeError):
    """The prepared weights are not where Keras looks for them."""


def keras_models_dir() -> Path:
    """Where Keras caches application weights: ``$KERAS_HOME/models``, default ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(home) / "models"


def weights_path(include_top: bool) -> Path:
    return keras_models_dir() / (TOP_FILE if include_top else NO_TOP_FILE)


def require_weights(include_top: bool = False) -> Path:
    path = weights_path(include_top)
    if not path.is_file():
        raise WeightsMissingError(
            f"MobileNet ImageNet weights not found at {path}; prepare them with `niteru weights` "
            "(or `make weights`), which needs only the package registry"
        )
    return path


def _try_keras_download(timeout: float) -> bool:
    """Keras's own download of both files; False (and nothing left behind) when it cannot."""
    from keras.utils import get_file

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # get_file has no timeout of its own; a closed network hangs
    try:
        for name in (TOP_FILE, NO_TOP_FILE):
            get_file(name, KERAS_ORIGIN + name, cache_subdir="models", cache_dir=str(keras_models_dir().parent))
        return True
    except Exception as exc:  # any failure means: build them ourselves
        log.warning("Keras's weight download failed (%s); building from the TF-slim checkpoint", exc)
        for name in (TOP_FILE, NO_TOP_FILE):
            (keras_models_dir() / name).unlink(missing_ok=True)
        return False
    finally:
        socket.setdefaulttimeout(previous)


def fetch_frozen_graph(workdir: Path) -> bytes:
    """Download the sdist with pip (no deps, no install) and read the frozen graph out of it."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            SDIST,
            "-d",
            str(workdir),
        ],
        check=True,
    )
    (archive,) = workdir.glob("nudity-*.tar.gz")
    with tarfile.open(archive) as tar:
        member = tar.extractfile(GRAPH_MEMBER)
        if member is None:
            raise RuntimeError(f"{GRAPH_MEMBER} missing from {archive.name}")
        data = member.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != GRAPH_SHA256:
        raise RuntimeError(f"unexpected frozen graph (sha256 {digest}); refusing to build weights from it")
    return data


def graph_constants(graph_bytes: bytes) -> dict[str, np.ndarray]:
    """Every constant of the frozen graph, by name (the frozen variables are constants)."""
    from tensorflow.core.framework import graph_pb2
    from tensorflow.python.framework import tensor_util

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(graph_bytes)
    return {n.name: tensor_util.MakeNdarray(n.attr["value"].tensor) for n in graph.node if n.op == "Const"}


def keras_layer_weights(consts: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Slim variable names to Keras MobileNet layer weights, in each layer's own weight order."""

    def bn(scope: str) -> list[np.ndarray]:  # Keras order: gamma, beta, moving_mean, moving_variance
        return [consts[f"{SLIM}{scope}/BatchNorm/{v}"] for v in ("gamma", "beta", "moving_mean", "moving_variance")]

    layers: dict[str, list[np.ndarray]] = {
        "conv1": [consts[f"{SLIM}Conv2d_0/weights"]],
        "conv1_bn": bn("Conv2d_0"),
    }
    for block in range(1, 14):
        layers[f"conv_dw_{block}"] = [consts[f"{SLIM}Conv2d_{block}_depthwise/depthwise_weights"]]
        layers[f"conv_dw_{block}_bn"] = bn(f"Conv2d_{block}_depthwise")
        layers[f"conv_pw_{block}"] = [consts[f"{SLIM}Conv2d_{block}_pointwise/weights"]]
        layers[f"conv_pw_{block}_bn"] = bn(f"Conv2d_{block}_pointwise")
    # Drop slim's class 0 ("background") to get Keras's 1000 ImageNet classes.
    layers["conv_preds"] = [
        consts[f"{SLIM}Logits/Conv2d_1c_1x1/weights"][..., 1:],
        consts[f"{SLIM}Logits/Conv2d_1c_1x1/biases"][1:],
    ]
    return layers


def write_legacy_h5(model: Any, path: Path) -> None:
    """Write ``model``'s weights in Keras's legacy h5 layout (what ``weights="imagenet"`` reads), atomically."""
    import h5py
    import keras

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with h5py.File(tmp, "w") as f:
            with_weights = [layer for layer in model.layers if layer.weights]
            f.attrs["layer_names"] = [layer.name.encode() for layer in with_weights]
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = keras.__version__.encode()
            for layer in with_weights:
                group = f.create_group(layer.name)
                names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
                group.attrs["weight_names"] = [n.encode() for n in names]
                for name, w in zip(names, layer.weights, strict=True):
                    group.create_dataset(name, data=np.asarray(w.numpy(), dtype=np.float32))
        tmp.chmod(0o644)  # mkstemp makes it owner-only; the weights are not secret
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def build_from_slim(graph_bytes: bytes) -> None:
    """Map the slim checkpoint onto Keras MobileNet and write the with-top and no-top files."""
    import keras

    layer_weights = keras_layer_weights(graph_constants(graph_bytes))
    model = keras.applications.MobileNet(alpha=1.0, include_top=True, weights=None, classes=1000)
    assigned = set()
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(layer_weights[layer.name])  # raises on any shape mismatch
            assigned.add(layer.name)
    if assigned != set(layer_weights):
        raise RuntimeError(f"unmapped slim layers: {sorted(set(layer_weights) - assigned)}")
    write_legacy_h5(model, weights_path(include_top=True))
    no_top = keras.applications.MobileNet(alpha=1.0, include_top=False, weights=None)
    for layer in no_top.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    write_legacy_h5(no_top, weights_path(include_top=False))


def prepare_weights(force: bool = False, download_timeout: float = 10.0) -> Path:
    """Make sure both weight files exist; returns the no-top file's path."""
    if not force and weights_path(True).is_file() and weights_path(False).is_file():
        log.info("MobileNet weights already in %s", keras_models_dir())
        return weights_path(False)
    if force or not _try_keras_download(download_timeout):
        with tempfile.TemporaryDirectory(prefix="niteru-weights-") as workdir:
            build_from_slim(fetch_frozen_graph(Path(workdir)))
    log.info("MobileNet weights ready in %s", keras_models_dir())
    return weights_path(False)
