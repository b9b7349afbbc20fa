"""The text model at serving time: ``TextEmbedder(config).load()``, then batch ``embed(texts)``.

``embed`` gives the stored vector: SCDV reduced by PCA to ``dim`` (default 256), L2-normalised.
``embed_full`` gives the full sparsified SCDV vector (clusters x word dim, e.g. 60 x 200 = 12,000) and
``embed_average`` the averaged-word-vector baseline; both exist for the quality benchmark.

Words never seen in training get a vector from their character n-grams (fastText subwords), averaged
over the n-grams that occurred in training only (by string, not by hash bucket): an untrained bucket
holds random initial values, so counting it would add noise. A token none of whose n-grams was seen
is dropped. The n-grams of a word are enumerated here as fastText does (``subwords``) and looked up in
the seen n-grams' rows kept in the model, so serving loads neither the fastText library nor its
200,000-bucket matrix (about 160 MB per process).

A text left with no word at all (empty, whitespace, only punctuation, emoji or markup, or only
never-seen character sequences) gets the **zero vector**: its dot product with every vector
is 0, so it is nobody's near neighbour, and it is never NaN; ``~vectors.any(axis=1)`` finds such rows.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from embedding.text.artifact import TextArtifact, load_artifact
from embedding.text.config import TextConfig
from embedding.text.errors import TextInputError
from embedding.text.scdv import Mixture, document_vector, l2_normalize_rows, sparsify
from embedding.text.tokenize import tokenize

log = logging.getLogger(__name__)
WordTable = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # counts, idf (n,), probs (n, K), vectors (n, D)


class TextEmbedder:
    """fastText + SCDV document vectors. Thread-compatible after ``load()``."""

    def __init__(self, config: TextConfig, model_dir: Path | None = None) -> None:
        self.config = config
        self.model_dir = model_dir or config.model_dir
        self.dim = 0
        self.version = ""
        self.meta: dict[str, Any] = {}
        self._ngram_vectors: np.ndarray | None = None

    @property
    def loaded(self) -> bool:
        return self._ngram_vectors is not None

    def load(self) -> TextEmbedder:
        """Load the current artifact of ``model_dir`` (or the model folder given as ``model_dir``)."""
        if self._ngram_vectors is None:
            self._attach(load_artifact(self.model_dir))
        return self

    @classmethod
    def from_artifact(cls, artifact: TextArtifact, config: TextConfig) -> TextEmbedder:
        embedder = cls(config)
        embedder._attach(artifact)
        return embedder

    def _attach(self, artifact: TextArtifact) -> None:
        a = artifact.arrays
        seen = [str(g) for g in a["seen_ngrams"]]
        self._ngram_row = {g: i for i, g in enumerate(seen)}
        self._ngram_vectors = np.ascontiguousarray(
            a["ngram_vectors"] if "ngram_vectors" in a else _ngram_rows_from_fasttext(artifact, seen), np.float32
        )
        params = artifact.meta.get("params", {})
        self._minn, self._maxn = int(params.get("text_minn", 3)), int(params.get("text_maxn", 6))
        self.meta = artifact.meta
        self.version = artifact.version
        self._index = {str(w): i for i, w in enumerate(a["words"])}
        self._vectors = np.ascontiguousarray(a["word_vectors"], np.float32)
        self._probs = np.ascontiguousarray(a["word_probs"], np.float32)
        self._idf = np.ascontiguousarray(a["idf"], np.float32)
        self._mixture = Mixture(
            str(self.meta["gmm_covariance"]), a["gmm_weights"], a["gmm_means"], a["gmm_precisions_cholesky"]
        )
        self._oov_idf = float(self.meta["oov_idf"])
        self.threshold = float(self.meta["threshold"])
        self._pca_t = np.ascontiguousarray(a["pca_components_t"], np.float32)  # (K*D, dim)
        self._pca_shift = (a["pca_mean"].astype(np.float32) @ self._pca_t) if self._pca_t.size else None
        self.word_dim = self._vectors.shape[1]
        self.clusters = self._probs.shape[1]
        self.full_dim = self.word_dim * self.clusters
        self.dim = self._pca_t.shape[1]
        log.info(
            "text model %s: %d words, %d-d full, %d-d stored", self.version, len(self._index), self.full_dim, self.dim
        )

    # --- words -----------------------------------------------------------------------------------------
    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TextInputError(f"item {i} is {type(text).__name__}, not str")
        return [tokenize(t, max_chars=self.config.max_chars) for t in texts]

    def _oov_vectors(self, words: list[str]) -> dict[str, np.ndarray]:
        """Subword vectors of unseen words from n-grams seen in training only; words with none are left out."""
        out: dict[str, np.ndarray] = {}
        assert self._ngram_vectors is not None
        for word in words:
            rows = [self._ngram_row[g] for g in subwords(word, self._minn, self._maxn) if g in self._ngram_row]
            if rows:
                out[word] = np.asarray(self._ngram_vectors[rows].mean(axis=0), np.float32)
        return out

    def _tables(self, token_lists: list[list[str]], progress: bool = False) -> Iterator[WordTable]:
        """Per document: counts, idf, cluster probabilities and vectors of its distinct words."""
        unseen = sorted({t for tokens in token_lists for t in tokens if t not in self._index})
        oov = self._oov_vectors(unseen)
        oov_words = list(oov)
        oov_row = {w: i for i, w in enumerate(oov_words)}
        oov_vecs = np.stack([oov[w] for w in oov_words]) if oov_words else np.zeros((0, self.word_dim), np.float32)
        oov_probs = self._mixture.predict_proba(oov_vecs)
        for tokens in tqdm(token_lists, disable=not progress, desc="embed", unit="doc"):
            counts = Counter(tokens)
            known = [(self._index[w], c) for w, c in counts.items() if w in self._index]
            new = [(oov_row[w], c) for w, c in counts.items() if w in oov_row]
            ki = np.array([i for i, _ in known], np.int64)
            ni = np.array([i for i, _ in new], np.int64)
            word_counts = np.array([c for _, c in known] + [c for _, c in new], np.float32)
            idf = np.concatenate([self._idf[ki], np.full(len(ni), self._oov_idf, np.float32)])
            probs = np.concatenate([self._probs[ki], oov_probs[ni]])
            vectors = np.concatenate([self._vectors[ki], oov_vecs[ni]])
            yield word_counts, idf, probs, vectors

    # --- documents -------------------------------------------------------------------------------------
    def dense_unsparsified(self, token_lists: list[list[str]], progress: bool = False) -> np.ndarray:
        """Normalised SCDV before sparsification (training uses it to find the threshold)."""
        out = np.zeros((len(token_lists), self.full_dim), np.float32)
        for row, (word_counts, idf, probs, vectors) in enumerate(self._tables(token_lists, progress)):
            out[row] = document_vector(word_counts * idf, probs, vectors)
        return out

    def _sparse_docs(self, texts: Sequence[str], progress: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per text: indices and values of the non-zero entries of its full SCDV vector."""
        for word_counts, idf, probs, vectors in self._tables(self.tokens(texts), progress):
            doc = sparsify(document_vector(word_counts * idf, probs, vectors), self.threshold)
            nz = np.flatnonzero(doc)
            yield nz, doc[nz]

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """(n, dim) float32 unit rows (zero rows for texts without a word): the vector to store."""
        self._require()
        if self._pca_shift is None:
            raise RuntimeError("this text model has no reduction yet (it is being trained)")
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, (nz, values) in enumerate(self._sparse_docs(texts, progress)):
            if len(nz):  # the PCA of a zero vector would be -mean: keep "no words" at exactly zero
                out[row] = values @ self._pca_t[nz] - self._pca_shift
        return l2_normalize_rows(out)

    def embed_full(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """(n, clusters x word dim) float32: the full sparsified SCDV vectors (dense array)."""
        self._require()
        out = np.zeros((len(texts), self.full_dim), np.float32)
        for row, (nz, values) in enumerate(self._sparse_docs(texts, progress)):
            out[row, nz] = values
        return out

    def embed_full_sparse(self, texts: Sequence[str], progress: bool = False) -> Any:
        """The full SCDV vectors as a SciPy CSR matrix (they are mostly zeros after sparsification)."""
        from scipy import sparse

        self._require()
        parts = list(self._sparse_docs(texts, progress))
        indptr = np.concatenate([[0], np.cumsum([len(nz) for nz, _ in parts], dtype=np.int64)]).astype(np.int64)
        indices = np.concatenate([nz for nz, _ in parts]) if parts else np.zeros(0, np.int64)
        data = np.concatenate([v for _, v in parts]) if parts else np.zeros(0, np.float32)
        return sparse.csr_matrix((data, indices, indptr), shape=(len(texts), self.full_dim), dtype=np.float32)

    def embed_average(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """(n, word dim) float32: the mean of the word vectors of each text, L2-normalised (the baseline)."""
        self._require()
        out = np.zeros((len(texts), self.word_dim), np.float32)
        for row, (word_counts, _, _, vectors) in enumerate(self._tables(self.tokens(texts), progress)):
            out[row] = word_counts @ vectors  # a sum: the mean has the same direction
        return l2_normalize_rows(out)

    def _require(self) -> None:
        if self._ngram_vectors is None:
            raise RuntimeError("TextEmbedder.load() has not been called")


def subwords(word: str, minn: int, maxn: int) -> list[str]:
    """The character n-grams fastText gives a word (``Dictionary::computeSubwords`` over ``<word>``, by
    code point): every substring of ``minn`` to ``maxn`` characters, repeats kept, a lone boundary
    character left out."""
    if maxn <= 0:
        return []
    marked = f"<{word}>"
    out = []
    for i in range(len(marked)):
        for n in range(max(minn, 1), maxn + 1):
            if i + n > len(marked):
                break
            if n == 1 and (i == 0 or i + 1 == len(marked)):
                continue
            out.append(marked[i : i + n])
    return out


def _ngram_rows_from_fasttext(artifact: TextArtifact, seen: list[str]) -> np.ndarray:
    """The seen n-grams' rows of a model written before they were kept in it (read once, then the
    fastText model is let go)."""
    import fasttext

    ft = fasttext.load_model(str(artifact.fasttext_path))
    rows = [ft.get_input_vector(ft.get_subword_id(g)) for g in seen]
    dim = ft.get_dimension()
    del ft
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
