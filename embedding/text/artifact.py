"""The text model on disk: one versioned folder per trained model, and a ``CURRENT`` pointer.

``<models_dir>/text/<version>/`` holds ``meta.json`` (format version, tokenizer and dictionary versions,
library versions, training parameters and counts), ``fasttext.bin`` (the skip-gram model, needed for
the character n-grams of words never seen in training) and ``scdv.npz`` (vocabulary, word vectors,
cluster probabilities, idf, the mixture, the sparsity threshold and the PCA). No pickle anywhere, so
loading an artifact never runs code from it.

Writing is atomic: everything goes into a hidden temporary folder beside the target, which is then
renamed into place; ``CURRENT`` is replaced the same way (temp file + ``os.replace``). A reader thus
sees the old model or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import numpy as np

from embedding.text.errors import TRAIN_HINT, TextModelIncompatibleError, TextModelMissingError
from embedding.text.tokenize import TOKENIZER_VERSION, dictionary_version

FORMAT_VERSION = 1
CURRENT = "CURRENT"
ARRAYS = (
    "words",
    "word_vectors",
    "word_probs",
    "idf",
    "seen_ngrams",
    "gmm_weights",
    "gmm_means",
    "gmm_precisions_cholesky",
    "pca_mean",
    "pca_components_t",
)
# Arrays a model may lack (written by older code); the embedder derives them when they are missing.
# ``ngram_vectors``: the fastText input row of each seen n-gram, aligned with ``seen_ngrams``, so serving
# needs neither the fastText library nor its 200,000-bucket matrix in memory.
OPTIONAL_ARRAYS = ("ngram_vectors",)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("numpy", "fasttext", "scikit-learn", "fugashi", "unidic-lite"):
        versions[name] = pkg_version(name)
    return versions


@dataclass
class TextArtifact:
    """Everything a ``TextEmbedder`` needs; ``arrays`` holds the ``ARRAYS`` by name."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    fasttext_path: Path
    path: Path | None = field(default=None)

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    def save(self, out_dir: Path, make_current: bool = True) -> Path:
        """Write under ``out_dir/<version>`` atomically; optionally point ``CURRENT`` at it."""
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / self.version
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{self.version}-", dir=out_dir))
        try:
            shutil.copyfile(self.fasttext_path, tmp / "fasttext.bin")
            with (tmp / "scdv.npz").open("wb") as f:
                names = [*ARRAYS, *(n for n in OPTIONAL_ARRAYS if n in self.arrays)]
                np.savez(f, allow_pickle=False, **{name: self.arrays[name] for name in names})
            (tmp / "meta.json").write_text(json.dumps(self.meta, indent=2, ensure_ascii=False), encoding="utf-8")
            if target.exists():  # the same version again (same content hash): replace it
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if make_current:
            set_current(out_dir, self.version)
        self.path = target
        return target


def set_current(out_dir: Path, version: str) -> None:
    """Point ``CURRENT`` at ``version``, durably: the model's files, then the pointer and its folder reach
    the disk, so a crash never leaves a pointer to a model that is not (wholly) there."""
    for path, _, files in os.walk(out_dir / version):
        for name in files:
            _fsync(os.path.join(path, name))  # noqa: PTH118 (os.walk gives str)
    replace_durably(out_dir / CURRENT, version + "\n")


def replace_durably(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (temporary file, fsync, rename, fsync of the folder)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    Path(name).replace(path)
    _fsync(str(path.parent))


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resolve(model_dir: Path) -> Path:
    """``model_dir`` itself when it is one model's folder, else the folder ``CURRENT`` names there."""
    if (model_dir / "meta.json").is_file():
        return model_dir
    pointer = model_dir / CURRENT
    if not pointer.is_file():
        raise TextModelMissingError(f"no text model in {model_dir}; {TRAIN_HINT}")
    path = model_dir / pointer.read_text(encoding="utf-8").strip()
    if not (path / "meta.json").is_file():
        raise TextModelMissingError(f"{pointer} names {path.name}, which is missing or incomplete; {TRAIN_HINT}")
    return path


def check_compatible(meta: dict[str, Any], path: Path) -> None:
    """Refuse artifacts whose vectors this code would compute differently."""
    problems = []
    if meta.get("format_version") != FORMAT_VERSION:
        problems.append(f"format version {meta.get('format_version')} (this code reads {FORMAT_VERSION})")
    if meta.get("tokenizer_version") != TOKENIZER_VERSION:
        problems.append(f"tokenizer version {meta.get('tokenizer_version')} (now {TOKENIZER_VERSION})")
    if meta.get("dictionary") != dictionary_version():
        problems.append(f"Japanese dictionary {meta.get('dictionary')} (installed: {dictionary_version()})")
    if problems:
        raise TextModelIncompatibleError(f"text model {path} is incompatible: {'; '.join(problems)}; {TRAIN_HINT}")


def load_artifact(model_dir: Path) -> TextArtifact:
    path = resolve(model_dir)
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TextModelIncompatibleError(f"unreadable {path / 'meta.json'} ({exc}); {TRAIN_HINT}") from exc
    check_compatible(meta, path)
    try:
        with np.load(path / "scdv.npz", allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in ARRAYS}
            arrays.update({name: npz[name] for name in OPTIONAL_ARRAYS if name in npz.files})
    except (OSError, ValueError, KeyError) as exc:
        raise TextModelIncompatibleError(f"unreadable {path / 'scdv.npz'} ({exc}); {TRAIN_HINT}") from exc
    if "ngram_vectors" not in arrays and not (path / "fasttext.bin").is_file():
        raise TextModelMissingError(f"{path / 'fasttext.bin'} is missing; {TRAIN_HINT}")
    return TextArtifact(meta=meta, arrays=arrays, fasttext_path=path / "fasttext.bin", path=path)


def base_meta() -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "tokenizer_version": TOKENIZER_VERSION,
        "dictionary": dictionary_version(),
        "libraries": library_versions(),
    }
