"""BM25 over product titles: Qdrant's own lexical scoring, a fourth term of the fused similar-products
query beside the image, text and joint vectors (issue #17), and the bench's throw-away index.

Why: the dense vectors blur the words that make two listings the same thing (a brand, a colour, a model
name); BM25 over the title keeps them. As a small weighted bonus over the dense candidates (``lexical`` in a
route's weights, fitted per category at rebuild) it brings back the query's brand and colour among results
of the right kind (bench/results/bm25.md).

The sparse vectors come from Qdrant's own BM25 (``qdrant_edge.Bm25``, the same tokenizer pipeline as the
server's ``Bm25`` inference) and are searched as a sparse named vector with the IDF modifier, so the engine
computes the IDF half of BM25 from the collection's own statistics and the document side only carries the
term-frequency half. Token ids are 32-bit murmur3 hashes of the processed tokens: no vocabulary to keep.
Both engines get the same vectors, computed here in the service (``document``, ``query``).

Tokenizer choice (checked by decoding the hashes of sample titles, see bench/results/bm25.md):

- the default ``word`` tokenizer splits on spaces and punctuation only, so a Japanese title without spaces
  is one token ("黒いスニーカー赤色のTシャツ" -> one term) and matches nothing else; ``multilingual``
  (charabia) segments Japanese into words ("黒い", "スニーカー", "赤色", "シャツ") and splits Latin text as
  ``word`` does;
- ``language`` picks one stemmer and one stopword list; titles mix English and Japanese, so the English
  stemmer is kept (shoes -> shoe, running -> run; it leaves Japanese alone) and the stopwords of both
  languages are removed (the Japanese particles "の", "を" ... would otherwise match everything);
- ``avg_len``: the engine's default (256 tokens) suits documents; a title has about five, so the mean
  length of the indexed texts is passed, else the length normalisation (``b``) does nothing.

Known limits of the multilingual tokenizer (tests/test_lexical.py pins them): it detects one language per
text, so a short Japanese run beside Latin words is normalised otherwise than in a Japanese-only title
("Nike ブラック" gives a decomposed ブラック, "Nike 黒" and a lone "黒" the Chinese 黑) and the same word
stops matching; and it drops standalone numbers ("iPhone 15", "Levi's 511"), which ``word`` keeps.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# The sparse named vector of a collection, and the key of its weight in a route.
VECTOR = "lexical"
# The document side's length normalisation (b = 0.75) needs the mean title length in tokens, fixed for a
# collection's life (documents are embedded at write time). Product titles run about 5-15 tokens; the order
# of magnitude is what matters (the engine's default, 256, is for documents and turns normalisation off).
AVG_TITLE_TOKENS = 8.0

Sparse = tuple[list[int], list[float]]  # (indices, values)


def bm25_model(avg_len: float | None = None) -> Any:
    """Qdrant's BM25 embedder with the tokenizer options above (``avg_len`` None: the engine's default)."""
    import qdrant_edge as qe

    stopwords = qe.StopwordsSet(languages={qe.Language.English, qe.Language.Japanese})
    config = qe.Bm25Config(tokenizer=qe.TokenizerType.Multilingual, stopwords=stopwords, avg_len=avg_len)
    return qe.Bm25(config)


@functools.cache
def _title_model() -> Any:
    return bm25_model(AVG_TITLE_TOKENS)


def document(title: str) -> Sparse:
    """A stored product's title as the collection's lexical vector (term-frequency weights); empty when no
    token survives the pipeline (a title of stopwords or numbers only)."""
    v = _title_model().embed_document(title)
    return list(v.indices), list(v.values)


def query(text: str) -> Sparse:
    """A query's title as the lexical query (weight 1 per unique token; the engine multiplies in the IDF)."""
    v = _title_model().embed_query(text)
    return list(v.indices), list(v.values)


class Bm25Index:
    """A throw-away Edge shard of one sparse named vector (IDF modifier), points numbered 0..n-1 in the
    order of ``texts``. ``close`` removes its folder."""

    def __init__(self, texts: Sequence[str], *, batch: int = 1000, avg_len: float | None = None) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self.texts = list(texts)
        if avg_len is None:  # the mean token count of the texts themselves (see the module docstring)
            counts = [len(bm25_model().embed_document(t).indices) for t in self.texts]
            avg_len = max(1.0, sum(counts) / max(1, len(counts)))
        self.avg_len = avg_len
        self.model = bm25_model(avg_len)
        self._dir = tempfile.TemporaryDirectory(prefix="niteru-bm25-")
        sparse = {VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
        self.shard = qe.EdgeShard.create(self._dir.name, qe.EdgeConfig(vectors={}, sparse_vectors=sparse))
        self.nonzeros = 0
        for start in range(0, len(self.texts), batch):
            points = []
            for i in range(start, min(len(self.texts), start + batch)):
                doc = self.model.embed_document(self.texts[i])
                self.nonzeros += len(doc.indices)
                points.append(qe.Point(i, {VECTOR: doc}, None))
            self.shard.update(qe.UpdateOperation.upsert_points(points))
        self.shard.flush()

    @property
    def path(self) -> Path:
        return Path(self._dir.name)

    def search(self, text: str, limit: int, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
        """The ``limit`` best (point number, BM25 score) for ``text``, best first; ``exclude``: point numbers
        never returned (the query product itself). Empty when no token of ``text`` survives the pipeline."""
        qe = self._qe
        query = self.model.embed_query(text)
        if not query.indices:
            return []
        left_out = set(exclude)
        flt = qe.Filter(must_not=[qe.HasIdCondition(left_out)]) if left_out else None
        request = qe.QueryRequest(limit=limit, query=qe.Query.Nearest(query, using=VECTOR), filter=flt)
        return [(int(p.id), float(p.score)) for p in self.shard.query(request)]

    def close(self) -> None:
        self.shard.close()
        self._dir.cleanup()

    def __enter__(self) -> Bm25Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TitleScores:
    """The engine's BM25 score of a query text for stored products, computed in numpy/scipy from the
    collection's titles (row i: ``titles[i]``): what the routing fit adds to a route's fused score for its
    ``lexical`` weight (``niteru.route_lists``), for thousands of (query, candidate) pairs at once.

    The engine's rule, checked against an Edge shard (tests/test_lexical_scores.py): a product's score is
    the sum, over the tokens its title shares with the query, of ``query value * idf * document value``,
    with Qdrant's ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``, where N counts the points whose lexical
    vector is *not empty* (a title of stopwords or numbers only adds nothing to N, as a point without the
    vector does not) and df those among them holding the token. A freshly built collection has no deleted
    point; after deletes the engine keeps counting them until its segments are optimised (not emulated)."""

    def __init__(self, titles: Sequence[str]) -> None:
        import numpy as np
        from scipy import sparse

        self._columns: dict[int, int] = {}  # token id (murmur3 hash) -> column
        rows, cols, values = [], [], []
        for row, title in enumerate(titles):
            indices, weights = document(title)
            for token, weight in zip(indices, weights, strict=True):
                rows.append(row)
                cols.append(self._columns.setdefault(token, len(self._columns)))
                values.append(weight)
        shape = (len(titles), max(1, len(self._columns)))
        docs = sparse.csr_matrix((np.array(values, np.float64), (rows, cols)), shape=shape)
        self.documents = int(np.count_nonzero(np.diff(docs.indptr)))  # N: the non-empty vectors
        df = np.bincount(np.asarray(cols, np.int64), minlength=shape[1]).astype(np.float64)
        idf = np.log1p((self.documents - df + 0.5) / (df + 0.5))
        self._weighted = sparse.csr_matrix(docs.multiply(idf[None, :]))  # document value x idf

    def queries(self, texts: Sequence[str]) -> Any:
        """The texts as query rows (scipy CSR, one row per text); tokens no stored title has are left out
        (their df is 0: they match nothing)."""
        import numpy as np
        from scipy import sparse

        rows, cols, values = [], [], []
        for row, text in enumerate(texts):
            indices, weights = query(text)
            for token, weight in zip(indices, weights, strict=True):
                if (col := self._columns.get(token)) is not None:
                    rows.append(row)
                    cols.append(col)
                    values.append(weight)
        shape = (len(texts), self._weighted.shape[1])
        return sparse.csr_matrix((np.array(values, np.float64), (rows, cols)), shape=shape)

    def scores(self, texts: Sequence[str], rows: Any, chunk: int = 65536) -> Any:
        """``scores[i, j]``: the BM25 of ``texts[i]`` for the product of row ``rows[i, j]`` (an int array of
        shape texts x candidates; ``-1``, no product, scores 0). Float64, the engine's f32 within 1e-6."""
        import numpy as np

        ids = np.asarray(rows, np.int64)
        out = np.zeros(ids.shape, np.float64)
        if ids.size == 0:
            return out
        q = self.queries(texts)
        flat, which = ids.ravel(), np.repeat(np.arange(ids.shape[0]), ids.shape[1])
        result = out.ravel()
        for start in range(0, len(flat), chunk):  # pairs per block: memory bounded whatever the collection
            part = slice(start, start + chunk)
            docs = self._weighted[np.maximum(flat[part], 0)]
            summed = np.asarray(docs.multiply(q[which[part]]).sum(axis=1)).ravel()
            result[part] = np.where(flat[part] >= 0, summed, 0.0)
        return result.reshape(ids.shape)
