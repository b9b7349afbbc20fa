"""The joint model on disk: ``<model_dir>/<text version>/weights.npz`` and ``meta.json``.

``meta.json`` records the SHA-256 of ``weights.npz`` and is written after it, in a temporary folder renamed
into place, so a reader sees a whole model or none, and a model whose weights do not match its checksum is
refused. No pickle: loading a model never runs code from it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
ARRAYS = ("w1", "b1", "w2", "b2")


class JointModelError(RuntimeError):
    """A joint model that cannot be used (unreadable, checksum mismatch, other format)."""

    reason = "joint_model_error"


class JointModelMissingError(JointModelError):
    """No joint model for that text model (a fresh store: the next rebuild trains one)."""

    reason = "joint_model_missing"


@dataclass
class JointArtifact:
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def version(self) -> str:
        return str(self.meta["version"])


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_artifact(arrays: dict[str, np.ndarray], meta: dict[str, Any], model_dir: Path, text_version: str) -> Path:
    """Write ``model_dir/<text_version>`` atomically; the version names the weights' checksum."""
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / text_version
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{text_version}-", dir=model_dir))
    try:
        with (tmp / "weights.npz").open("wb") as f:
            np.savez(f, allow_pickle=False, **{n: np.asarray(arrays[n], np.float32) for n in ARRAYS})
        digest = sha256_of(tmp / "weights.npz")
        full = {
            **meta,
            "format_version": FORMAT_VERSION,
            "text_model_version": text_version,
            "weights_sha256": digest,
            "version": f"joint-{digest[:12]}",
        }
        (tmp / "meta.json").write_text(json.dumps(full, indent=2), encoding="utf-8")
        if target.exists():  # the same text model trained again: this model replaces the old one
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_artifact(model_dir: Path, text_version: str) -> JointArtifact:
    path = model_dir / text_version
    if not (path / "meta.json").is_file():
        raise JointModelMissingError(f"no joint model for text model {text_version} in {model_dir}")
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise JointModelError(f"joint model {path} has format {meta.get('format_version')}, not {FORMAT_VERSION}")
        if sha256_of(path / "weights.npz") != meta.get("weights_sha256"):
            raise JointModelError(f"joint model {path}: weights.npz does not match its checksum")
        with np.load(path / "weights.npz", allow_pickle=False) as npz:
            arrays = {n: np.ascontiguousarray(npz[n], np.float32) for n in ARRAYS}
    except (OSError, ValueError, KeyError) as exc:
        raise JointModelError(f"unreadable joint model {path}: {exc}") from exc
    return JointArtifact(meta, arrays)
