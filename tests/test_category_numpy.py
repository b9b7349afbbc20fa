"""The classifier serves in numpy: the same probabilities as scikit-learn, and no scikit-learn loaded.

Synthetic vectors (the fit's arithmetic is under test, not its accuracy on the catalog, which
tests/test_category_model.py checks on real vectors).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedding.calibrated_linear import CalibratedLinear
from embedding.category import _fit_one, load_category_model, save_category_model, train_category_model

REPO = Path(__file__).resolve().parent.parent


def _blobs(classes: int, n: int = 240, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, d))
    x = centres[labels] + rng.normal(scale=1.5, size=(n, d))  # overlapping: probabilities away from 0 and 1
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.array([f"c{i}" for i in labels])


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_numpy_probabilities_equal_scikit_learns(classes: int) -> None:
    x, y = _blobs(classes)
    fitted = _fit_one(x, y, seed=0)
    ours = CalibratedLinear.from_sklearn(fitted)
    probe = np.vstack([x[:50], 100 * x[50:60], np.zeros((1, x.shape[1]))])  # far out and at the origin too
    np.testing.assert_allclose(ours.predict_proba(probe), fitted.predict_proba(probe), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="features"):
        ours.predict_proba(x[:, :5])


def test_a_saved_model_loads_and_predicts_without_scikit_learn(tmp_path: Path) -> None:
    x, y = _blobs(4, d=8)
    model = train_category_model(x, x[:, :6], list(y), min_class_size=5)
    save_category_model(model, tmp_path)
    assert json.loads((tmp_path / "current.json").read_text())["format_version"] == 2
    expected = model.predict_proba(image=x[:5], text=x[:5, :6])
    np.testing.assert_array_equal(load_category_model(tmp_path).predict_proba(image=x[:5], text=x[:5, :6]), expected)
    script = (
        "import json, sys; import numpy as np; from pathlib import Path\n"
        "from embedding.category import load_category_model\n"
        "m = load_category_model(Path(sys.argv[1])); x = np.array(json.loads(sys.argv[2]))\n"
        "p = m.predict_proba(image=x, text=x[:, :6]).tolist()\n"
        "heavy = sorted(k for k in sys.modules if k.split('.')[0] in ('sklearn', 'scipy', 'joblib'))\n"
        "print(json.dumps({'p': p, 'heavy': heavy}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), json.dumps(x[:5].tolist())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["heavy"] == []
    np.testing.assert_allclose(report["p"], expected, rtol=1e-12)


def test_a_format_1_model_is_still_read(tmp_path: Path) -> None:
    """Stores from before format 2 keep their classifier until the next rebuild rewrites it."""
    import joblib
    import sklearn

    from embedding.category import CategoryModel

    x, y = _blobs(3)
    fitted = {name: _fit_one(x, y, seed=0) for name in ("image", "text", "both")}
    old = CategoryModel(classes=sorted(set(y)), models=fitted, version="category-old", dropped=[])
    joblib.dump({"meta": {}, "model": old}, tmp_path / "category-old.joblib")
    pointer = {"current": "category-old.joblib", "format_version": 1, "sklearn": sklearn.__version__}
    (tmp_path / "current.json").write_text(json.dumps(pointer))
    loaded = load_category_model(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(image=x[:9]), fitted["image"].predict_proba(x[:9]), rtol=1e-9)
    assert loaded.version == "category-old"
