"""Training the text model: fastText skip-gram -> Gaussian mixture -> idf -> SCDV threshold -> PCA.

Everything is fitted on the given texts only (the catalog's own titles and descriptions in service).
With ``threads=1`` and a fixed ``seed`` the result is identical run to run: fastText (built
with scripts/setup.sh's initialisation patch) is deterministic on one thread, and the mixture and the
randomized PCA take the seed.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from embedding.text.artifact import TextArtifact, base_meta
from embedding.text.config import TextConfig
from embedding.text.errors import TextTrainingError
from embedding.text.model import TextEmbedder
from embedding.text.scdv import Mixture, smooth_idf, sparsify, sparsity_threshold
from embedding.text.tokenize import tokenize

log = logging.getLogger(__name__)
EOS = "</s>"  # fastText's end-of-line token: in its vocabulary, never in a document
# Healthy skip-gram vectors have components of order 1. Unpatched fastText 0.9.3 can diverge without
# raising, to components many orders of magnitude larger: past this bound a run counts as diverged.
MAX_COMPONENT = 50.0


def _vocabulary(ft: Any) -> tuple[list[str], np.ndarray]:
    words = [w for w in ft.get_words() if w != EOS]
    vectors = np.stack([ft.get_word_vector(w) for w in words]).astype(np.float32) if words else np.zeros((0, 1))
    return words, vectors


def _train_fasttext(token_lists: list[list[str]], c: TextConfig, workdir: Path) -> tuple[Any, list[str], np.ndarray]:
    """fastText skip-gram; a run that diverges (NaN, or exploding vectors) is retried at half the rate."""
    import fasttext

    corpus = workdir / "corpus.txt"
    with corpus.open("w", encoding="utf-8") as f:
        for tokens in token_lists:
            if tokens:
                f.write(" ".join(tokens) + "\n")
    kwargs: dict[str, Any] = {
        "input": str(corpus),
        "model": "skipgram",
        "dim": c.dim,
        "epoch": c.epochs,
        "lr": c.lr,
        "minCount": c.min_count,
        "minn": c.minn,
        "maxn": c.maxn,
        "ws": c.window,
        "bucket": c.buckets,
        "thread": c.threads,
        "verbose": 0,
    }
    problem = ""
    for _attempt in range(4):
        try:
            ft = fasttext.train_unsupervised(**kwargs) if c.seed == 0 else _train_seeded(kwargs, c.seed)
        except RuntimeError as exc:  # "Encountered NaN."
            if "NaN" not in str(exc):
                raise TextTrainingError(f"fastText training failed: {exc}") from exc
            problem = str(exc)
        except ValueError as exc:  # fastText says "Empty vocabulary" and the like
            raise TextTrainingError(f"fastText training failed: {exc}") from exc
        else:
            words, vectors = _vocabulary(ft)
            if np.isfinite(vectors).all() and np.abs(vectors).max(initial=0.0) <= MAX_COMPONENT:
                return ft, words, vectors
            problem = f"word vectors exploded (largest component {np.abs(vectors).max():.3g})"
        # Small corpora can diverge at the usual learning rate: halve it and train again.
        log.warning("fastText diverged at lr %g (%s); retrying at %g", kwargs["lr"], problem, kwargs["lr"] / 2)
        kwargs["lr"] /= 2
    raise TextTrainingError(f"fastText training kept diverging ({problem}) down to lr {kwargs['lr'] * 2:g}")


def _train_seeded(kwargs: dict[str, Any], seed: int) -> Any:
    """``train_unsupervised`` with a seed: fastText 0.9.3 honours ``seed`` in C++ but its Python wrapper
    accepts it for supervised training only, so build the arguments the way the wrapper does."""
    from fasttext import FastText

    defaults = FastText.unsupervised_default
    args, manual = FastText.read_args((), {**kwargs, "seed": seed}, [*defaults, "input"], defaults)
    built = FastText._build_args(args, manual)
    model = FastText._FastText(args=built)
    FastText.fasttext.train(model.f, built)
    model.set_args(model.f.getArgs())
    return model


def _fit_mixture(vectors: np.ndarray, c: TextConfig) -> Mixture:
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(
        n_components=min(c.clusters, len(vectors)),
        covariance_type=c.gmm_covariance,
        max_iter=c.gmm_max_iter,
        random_state=c.seed,
    )
    gmm.fit(vectors.astype(np.float64))
    if not gmm.converged_:
        log.warning("the GMM did not converge in %d iterations", c.gmm_max_iter)
    return Mixture.from_sklearn(gmm)


def _fit_pca(docs: np.ndarray, c: TextConfig) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA

    n_components = min(c.reduced_dim, docs.shape[0] - 1, docs.shape[1])
    pca = PCA(n_components=n_components, svd_solver="randomized", random_state=c.seed)
    pca.fit(docs)
    return pca.mean_.astype(np.float32), np.ascontiguousarray(pca.components_.T, np.float32)


def train_text_model(
    texts: Sequence[str], config: TextConfig, out_dir: Path | None = None, make_current: bool = True
) -> Path:
    """Train on ``texts`` and write a versioned artifact atomically; it becomes ``CURRENT`` in ``out_dir``.

    Returns the model's folder (``out_dir/<version>``); ``out_dir`` defaults to ``config.model_dir``.
    """
    c = config
    out_dir = out_dir or c.model_dir
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    token_lists = [tokenize(t, max_chars=c.max_chars) for t in tqdm(texts, desc="tokenize", unit="doc")]
    n_docs = sum(1 for t in token_lists if t)
    if n_docs < 2:
        raise TextTrainingError(f"need at least 2 texts with words to train, got {n_docs} of {len(texts)}")
    timings["tokenize_s"] = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="niteru-text-") as tmp:
        t = time.perf_counter()
        ft, words, vectors = _train_fasttext(token_lists, c, Path(tmp))
        timings["fasttext_s"] = time.perf_counter() - t
        if len(words) < 2:
            raise TextTrainingError(f"only {len(words)} words occur {c.min_count}+ times; lower min_count")
        fasttext_lr = float(ft.lr)
        # The character n-grams training saw (those of vocabulary words). Kept as strings, not hash rows:
        # an unseen n-gram can share a hash bucket with a seen one, and its row would then lie.
        seen = sorted({g for w in words for g in ft.get_subwords(w)[0][1:]})
        ngram_vectors = np.stack([ft.get_input_vector(ft.get_subword_id(g)) for g in seen]).astype(np.float32)
        ft_path = Path(tmp) / "fasttext.bin"
        ft.save_model(str(ft_path))
        del ft

        t = time.perf_counter()
        mixture = _fit_mixture(vectors, c)
        probs = mixture.predict_proba(vectors)
        timings["gmm_s"] = time.perf_counter() - t

        index = {w: i for i, w in enumerate(words)}
        doc_freq = np.zeros(len(words), np.float64)
        for tokens in token_lists:
            for w in set(tokens):
                if w in index:
                    doc_freq[index[w]] += 1
        arrays = {
            "words": np.array(words, dtype=str),
            "word_vectors": vectors,
            "word_probs": probs,
            "idf": smooth_idf(doc_freq, n_docs),
            "seen_ngrams": np.array(seen, dtype=str),
            "ngram_vectors": ngram_vectors.reshape(len(seen), c.dim),
            "gmm_weights": mixture.weights,
            "gmm_means": mixture.means,
            "gmm_precisions_cholesky": mixture.precisions_cholesky,
            "pca_mean": np.zeros(0, np.float32),
            "pca_components_t": np.zeros((0, 0), np.float32),
        }
        meta: dict[str, Any] = {
            **base_meta(),
            "version": "training",
            "gmm_covariance": mixture.covariance,
            "oov_idf": float(smooth_idf(np.zeros(1), n_docs)[0]),
            "threshold": 0.0,
            "fasttext_lr": fasttext_lr,  # the rate that trained without diverging
        }
        draft = TextEmbedder.from_artifact(TextArtifact(meta, arrays, ft_path), c)

        # Threshold and PCA from (at most reduction_sample) training documents, evenly spread.
        t = time.perf_counter()
        with_words = [tokens for tokens in token_lists if tokens]
        step = max(1, len(with_words) // c.reduction_sample)
        docs = draft.dense_unsparsified(with_words[::step][: c.reduction_sample], progress=True)
        threshold = sparsity_threshold(docs, c.sparsity_percent)
        for row in docs:
            sparsify(row, threshold)
        arrays["pca_mean"], arrays["pca_components_t"] = _fit_pca(docs, c)
        timings["scdv_pca_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t0

        digest = hashlib.sha256()
        for name in ("words", "word_vectors", "pca_components_t"):
            digest.update(np.ascontiguousarray(arrays[name]).tobytes())
        created = datetime.now(UTC)
        meta.update(
            version=f"scdv-{created:%Y%m%dT%H%M%S}-{digest.hexdigest()[:8]}",
            created=created.isoformat(timespec="seconds"),
            threshold=threshold,
            dim=int(arrays["pca_components_t"].shape[1]),
            full_dim=len(mixture.weights) * c.dim,
            params=c.params(),
            counts={"texts": len(texts), "docs_with_words": n_docs, "vocabulary": len(words)},
            timings={k: round(v, 3) for k, v in timings.items()},
        )
        path = TextArtifact(meta, arrays, ft_path).save(out_dir, make_current=make_current)
    log.info("trained text model %s on %d texts in %.1f s", meta["version"], len(texts), timings["total_s"])
    return path
