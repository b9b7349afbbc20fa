"""A calibrated linear classifier in plain numpy: what serving needs of scikit-learn's
``CalibratedClassifierCV(LogisticRegression(), method="sigmoid")``, and nothing else.

Training stays in scikit-learn; ``from_sklearn`` copies out each cross-validation fold's weights and
sigmoid calibrators, and ``predict_proba`` repeats scikit-learn's arithmetic (one-vs-rest sigmoids over
the decision function, normalised per fold, averaged over folds). Importing scikit-learn (and SciPy
under it) costs a serving process about 75 MB and seconds of start-up; this costs neither, and its
file format (``npz`` arrays, no pickle) loads without running code from the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CalibratedLinear:
    """``F`` folds over ``C`` classes and ``d`` features. ``coef`` (F, K, d) and ``intercept`` (F, K) give
    the decision function (K = C, or 1 for two classes); ``a``, ``b`` (F, K) its sigmoid calibration."""

    coef: np.ndarray
    intercept: np.ndarray
    a: np.ndarray
    b: np.ndarray

    @property
    def binary(self) -> bool:
        return int(self.coef.shape[1]) == 1

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if x.shape[1] != self.coef.shape[2]:
            raise ValueError(f"{x.shape[1]} features given; the classifier takes {self.coef.shape[2]}")
        classes = 2 if self.binary else int(self.coef.shape[1])
        mean = np.zeros((x.shape[0], classes))
        for coef, intercept, a, b in zip(self.coef, self.intercept, self.a, self.b, strict=True):
            decision = x @ coef.T + intercept
            calibrated = _expit(-(a * decision + b))
            if self.binary:
                proba = np.hstack([1.0 - calibrated, calibrated])
            else:
                total = calibrated.sum(axis=1, keepdims=True)
                # Every calibrator saying 0 for a row: scikit-learn falls back to the uniform distribution.
                proba = np.divide(calibrated, total, out=np.full_like(calibrated, 1 / classes), where=total != 0)
            mean += proba
        mean /= len(self.coef)
        mean[(mean > 1.0) & (mean <= 1.0 + 1e-5)] = 1.0
        return mean

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.{name}": getattr(self, name) for name in ("coef", "intercept", "a", "b")}

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str) -> CalibratedLinear:
        return cls(*(np.asarray(arrays[f"{prefix}.{name}"]) for name in ("coef", "intercept", "a", "b")))

    @classmethod
    def from_sklearn(cls, calibrated: Any) -> CalibratedLinear:
        """The weights of a fitted ``CalibratedClassifierCV`` over ``LogisticRegression`` with sigmoid
        calibration, whose every fold saw every class (stratified folds no larger than the rarest class)."""
        if getattr(calibrated, "method", None) != "sigmoid":
            raise ValueError("only sigmoid calibration is supported")
        coef, intercept, a, b = [], [], [], []
        for fold in calibrated.calibrated_classifiers_:
            estimator = fold.estimator
            if list(estimator.classes_) != list(calibrated.classes_):
                raise ValueError("a calibration fold did not see every class")
            coef.append(np.asarray(estimator.coef_, dtype=np.float64))
            intercept.append(np.asarray(estimator.intercept_, dtype=np.float64))
            a.append(np.array([c.a_ for c in fold.calibrators], dtype=np.float64))
            b.append(np.array([c.b_ for c in fold.calibrators], dtype=np.float64))
        return cls(np.stack(coef), np.stack(intercept), np.stack(a), np.stack(b))


def _expit(z: np.ndarray) -> np.ndarray:
    # Split by sign so that neither branch overflows exp (what scipy.special.expit does).
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out
