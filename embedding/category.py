"""Coarse category estimation from a product's image vector, text vector, or both.

Three multinomial logistic regressions share one artifact: image-only, text-only and both (the two
vectors concatenated). ``predict_proba`` picks the one that matches what the caller has, so a product
with a photo and no text, or text and no photo, still gets an estimate. Logistic regression on
L2-normalised embeddings is already close to calibrated; each model is additionally wrapped in
sigmoid calibration fitted by cross-validation (``CalibratedClassifierCV``), so the probabilities can
weigh routing policies against each other.

scikit-learn trains; serving predicts in numpy (``embedding.calibrated_linear``) from an ``npz`` file, so
the API and the workers import neither scikit-learn nor SciPy (about 75 MB and seconds of start-up each).

Categories with fewer than ``min_class_size`` training products (catalog-dev's ``sports`` holds one
football) cannot be learned or calibrated; they are left out and reported in ``dropped``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from embedding.calibrated_linear import CalibratedLinear

# 2: numpy arrays in an npz (no pickle). 1: a joblib pickle of scikit-learn objects, still read.
FORMAT_VERSION = 2
FEATURE_SETS = ("image", "text", "both")


class CategoryModelMissingError(RuntimeError):
    pass


@dataclass
class CategoryModel:
    """Fitted classifiers by feature set, and the class labels they predict (same order for all)."""

    classes: list[str]
    models: dict[str, CalibratedLinear]
    version: str
    dropped: list[str] = field(default_factory=list)

    def predict_proba(self, image: np.ndarray | None = None, text: np.ndarray | None = None) -> np.ndarray:
        """(n, len(classes)) probabilities from whichever vectors are given (one row per product)."""
        if image is not None and text is not None:
            return np.asarray(self.models["both"].predict_proba(np.hstack([image, text])))
        if image is not None:
            return np.asarray(self.models["image"].predict_proba(image))
        if text is not None:
            return np.asarray(self.models["text"].predict_proba(text))
        raise ValueError("categorising needs an image vector, a text vector, or both")

    def top(self, proba: np.ndarray, k: int = 3) -> list[list[tuple[str, float]]]:
        order = np.argsort(-proba, axis=1)[:, :k]
        return [[(self.classes[j], float(row[j])) for j in idx] for row, idx in zip(proba, order, strict=True)]


def _fit_one(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression

    base = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    folds = int(min(3, Counter(y.tolist()).most_common()[-1][1]))
    return CalibratedClassifierCV(base, method="sigmoid", cv=max(folds, 2)).fit(x, y)


def train_category_model(
    image: np.ndarray,
    text: np.ndarray,
    labels: Sequence[str],
    *,
    min_class_size: int = 5,
    seed: int = 0,
) -> CategoryModel:
    """Fit the three classifiers on aligned rows of image vectors, text vectors and labels."""
    counts = Counter(labels)
    dropped = sorted(c for c, n in counts.items() if n < min_class_size)
    keep = np.array([label not in dropped for label in labels])
    y = np.asarray(labels)[keep]
    features = {"image": image[keep], "text": text[keep], "both": np.hstack([image[keep], text[keep]])}
    fitted = {name: _fit_one(x, y, seed) for name, x in features.items()}
    classes = [str(c) for c in fitted["both"].classes_]
    models = {name: CalibratedLinear.from_sklearn(m) for name, m in fitted.items()}
    version = f"category-{datetime.now(UTC):%Y%m%dT%H%M%S}-{len(y)}"
    return CategoryModel(classes=classes, models=models, version=version, dropped=dropped)


def save_category_model(model: CategoryModel, directory: Path) -> Path:
    """Write ``directory/<version>.npz`` atomically and point ``current.json`` at it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{model.version}.npz"
    arrays: dict[str, np.ndarray] = {"classes": np.array(model.classes, dtype=str)}
    arrays["dropped"] = np.array(model.dropped, dtype=str)
    for name in FEATURE_SETS:
        arrays.update(model.models[name].arrays(name))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    named: Any = arrays  # numpy's stub types **kwds like its allow_pickle flag
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **named)
    Path(tmp).replace(path)
    pointer = {"current": path.name, "format_version": FORMAT_VERSION, "numpy": np.__version__}
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(pointer, f)
    Path(tmp).replace(directory / "current.json")
    return path


def load_category_model(directory: Path) -> CategoryModel:
    """The current model in ``directory``; a clear error when absent or of an unknown format."""
    pointer = directory / "current.json"
    if not pointer.is_file():
        raise CategoryModelMissingError(
            f"no category model in {directory}; train one with `niteru ingest` or `niteru rebuild`"
        )
    meta = json.loads(pointer.read_text())
    path = directory / meta["current"]
    if meta.get("format_version") == 1:
        return _load_joblib(path, meta)
    if meta.get("format_version") != FORMAT_VERSION:
        raise CategoryModelMissingError(
            f"category model in {directory} has format {meta.get('format_version')}; this is format "
            f"{FORMAT_VERSION}: retrain it"
        )
    with np.load(path, allow_pickle=False) as arrays:
        models = {name: CalibratedLinear.from_arrays(arrays, name) for name in FEATURE_SETS}
        classes, dropped = [str(c) for c in arrays["classes"]], [str(c) for c in arrays["dropped"]]
    return CategoryModel(classes=classes, models=models, version=path.stem, dropped=dropped)


def _load_joblib(path: Path, meta: dict[str, Any]) -> CategoryModel:
    """A format-1 model (a store from before format 2): its scikit-learn objects, converted. The next
    rebuild writes format 2, and serving stops importing scikit-learn."""
    import joblib
    import sklearn

    if meta.get("sklearn") != sklearn.__version__:
        raise CategoryModelMissingError(
            f"category model {path} was written by scikit-learn {meta.get('sklearn')}; this is "
            f"{sklearn.__version__}: retrain it"
        )
    old = joblib.load(path)["model"]
    models = {name: CalibratedLinear.from_sklearn(m) for name, m in old.models.items()}
    return CategoryModel(classes=list(old.classes), models=models, version=old.version, dropped=list(old.dropped))
