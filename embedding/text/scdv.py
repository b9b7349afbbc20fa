"""SCDV (Mekala et al., EMNLP 2017) in plain numpy: what turns word vectors into a document vector.

For a word w with vector v_w (D), cluster probabilities p_w (K, from a Gaussian mixture over the word
vectors) and idf_w, the word-topic vector is ``idf_w * (p_w[0] v_w ⊕ ... ⊕ p_w[K-1] v_w)`` (K x D). A
document is the sum of the word-topic vectors of its word occurrences, L2-normalised, then sparsified:
entries with |x| below ``percent/100 * (|mean min| + |mean max|) / 2`` (mean over the training
documents of each document's min and max entry) are set to zero, and the result is L2-normalised again
so a dot product is a cosine (the paper stops before this second normalisation; it changes no ranking of a
single query and keeps vectors unit-length for Qdrant).

The mixture's posterior is computed here rather than by scikit-learn, so embedding needs no
scikit-learn and takes one matrix product for a whole batch of out-of-vocabulary words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mixture:
    """A fitted Gaussian mixture in scikit-learn's parameterisation (``precisions_cholesky_``)."""

    covariance: str  # "diag", "spherical" or "tied"
    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, D)
    precisions_cholesky: np.ndarray  # diag (K, D), spherical (K,), tied (D, D)

    @classmethod
    def from_sklearn(cls, gmm: object) -> Mixture:
        return cls(
            covariance=str(gmm.covariance_type),  # type: ignore[attr-defined]
            weights=np.asarray(gmm.weights_, np.float64),  # type: ignore[attr-defined]
            means=np.asarray(gmm.means_, np.float64),  # type: ignore[attr-defined]
            precisions_cholesky=np.asarray(gmm.precisions_cholesky_, np.float64),  # type: ignore[attr-defined]
        )

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, D) vectors -> (n, K) posterior cluster probabilities, as float32 rows summing to 1."""
        x = np.asarray(x, np.float64)
        if len(x) == 0:
            return np.zeros((0, len(self.weights)), np.float32)
        d = x.shape[1]
        pc = self.precisions_cholesky
        if self.covariance == "diag":
            prec = pc**2  # (K, D)
            # ||(x - mu) * pc||^2 expanded, so the whole batch is three matrix products.
            sq = (self.means**2 * prec).sum(1)[None, :] - 2.0 * x @ (self.means * prec).T + (x**2) @ prec.T
            log_det = np.log(pc).sum(1)
        elif self.covariance == "spherical":
            prec = pc**2  # (K,)
            sq = (
                (self.means**2).sum(1)[None, :] * prec - 2.0 * (x @ self.means.T) * prec + np.outer((x**2).sum(1), prec)
            )
            log_det = d * np.log(pc)
        elif self.covariance == "tied":
            y = x @ pc  # the shared Cholesky factor: one product for all clusters
            mu = self.means @ pc
            sq = (y**2).sum(1)[:, None] - 2.0 * y @ mu.T + (mu**2).sum(1)[None, :]
            log_det = np.full(len(self.weights), np.log(np.diag(pc)).sum())
        else:
            raise ValueError(f"unsupported covariance type {self.covariance!r}")
        log_prob = -0.5 * (d * np.log(2 * np.pi) + np.maximum(sq, 0.0)) + log_det + np.log(self.weights)
        log_prob -= log_prob.max(axis=1, keepdims=True)
        prob = np.exp(log_prob)
        prob /= prob.sum(axis=1, keepdims=True)
        out: np.ndarray = prob.astype(np.float32)
        return out


def smooth_idf(doc_freq: np.ndarray, n_docs: int) -> np.ndarray:
    """scikit-learn's smoothed idf, ln((1 + N) / (1 + df)) + 1; an unseen word (df 0) gets the largest."""
    out: np.ndarray = (np.log((1.0 + n_docs) / (1.0 + doc_freq)) + 1.0).astype(np.float32)
    return out


def document_vector(weights: np.ndarray, probs: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Sum of word-topic vectors: ``weights`` (n,) = count x idf, ``probs`` (n, K), ``vectors`` (n, D).

    Returns the flattened K x D matrix, cluster-major (cluster 0's D values first), L2-normalised;
    all zeros when there is no word.
    """
    doc = ((probs * weights[:, None]).T @ vectors).ravel()
    norm = float(np.linalg.norm(doc))
    out: np.ndarray = (doc / norm if norm > 0 else doc).astype(np.float32, copy=False)
    return out


def sparsity_threshold(docs: np.ndarray, percent: float) -> float:
    """The paper's threshold from normalised training documents (rows); zero rows are left out."""
    rows = docs[np.abs(docs).max(axis=1) > 0]
    if len(rows) == 0:
        return 0.0
    a_min = float(np.abs(rows.min(axis=1).mean()))
    a_max = float(np.abs(rows.max(axis=1).mean()))
    return percent / 100.0 * (a_min + a_max) / 2.0


def sparsify(doc: np.ndarray, threshold: float) -> np.ndarray:
    """Zero entries below the threshold (in place) and L2-normalise again; zero stays zero."""
    doc[np.abs(doc) < threshold] = 0.0
    norm = float(np.linalg.norm(doc))
    if norm > 0:
        doc /= norm
    return doc


def l2_normalize_rows(x: np.ndarray) -> np.ndarray:
    """Unit rows; all-zero rows stay zero (never a division by zero, never NaN)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return out
