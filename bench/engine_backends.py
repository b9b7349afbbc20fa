"""The engines ``bench/engines.py`` compares, each behind the same four calls: load, similar, reopen, disk.

``similar(i, category)`` is what the API's similar-products call asks of the store: the stored vector of
product ``i``, then its 10 nearest other products (the product itself excluded), optionally in its
category. Each engine holds one 1024-d cosine vector per product and its category as a payload.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

K = 10


def pid(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


def folder_bytes(root: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)  # noqa: PTH118, PTH202


class QdrantLocal:
    name = "qdrant local mode"

    def __init__(self, root: Path) -> None:
        self.root = root

    def load(self, x: np.ndarray, cats: list[str]) -> float:
        from qdrant_client import QdrantClient, models

        shutil.rmtree(self.root, ignore_errors=True)
        t0 = time.perf_counter()
        self.client = QdrantClient(path=str(self.root))
        self.client.create_collection("b", vectors_config=models.VectorParams(size=x.shape[1], distance="Cosine"))
        for s in range(0, len(x), 1000):
            self.client.upsert(
                "b",
                [
                    models.PointStruct(id=pid(i), vector=x[i].tolist(), payload={"category": cats[i]})
                    for i in range(s, min(len(x), s + 1000))
                ],
            )
        return time.perf_counter() - t0

    def similar(self, i: int, category: str | None) -> list[int]:
        from qdrant_client import models

        v: Any = self.client.retrieve("b", [pid(i)], with_vectors=True)[0].vector
        must = [models.FieldCondition(key="category", match=models.MatchValue(value=category))] if category else None
        f = models.Filter(must=must, must_not=[models.HasIdCondition(has_id=[pid(i)])])
        hits = self.client.query_points("b", query=v, query_filter=f, limit=K).points
        return [uuid.UUID(str(h.id)).int - 1 for h in hits]

    def reopen(self) -> float:
        from qdrant_client import QdrantClient

        self.client.close()
        t0 = time.perf_counter()
        self.client = QdrantClient(path=str(self.root))
        self.client.count("b")
        return time.perf_counter() - t0

    def close(self) -> None:
        self.client.close()


class Edge:
    """Qdrant Edge with the store's settings: keyword index on category (default HNSW links), hnsw_ef."""

    name = "edge"

    def __init__(self, root: Path, hnsw_ef: int = 128) -> None:
        self.root, self.hnsw_ef, self.exact = root, hnsw_ef, False

    def load(self, x: np.ndarray, cats: list[str]) -> float:
        import qdrant_edge as qe

        shutil.rmtree(self.root, ignore_errors=True)
        t0 = time.perf_counter()
        config = qe.EdgeConfig(vectors={"image": self.vector_params(x.shape[1])})
        self.shard = qe.EdgeShard.create(str(self.root), config)
        self.shard.update(qe.UpdateOperation.create_field_index("category", qe.PayloadSchemaType.Keyword))
        for s in range(0, len(x), 1000):
            points = [
                qe.Point(pid(i), {"image": x[i].tolist()}, {"category": cats[i]})
                for i in range(s, min(len(x), s + 1000))
            ]
            self.shard.update(qe.UpdateOperation.upsert_points(points))
        self.shard.flush()
        return time.perf_counter() - t0

    def vector_params(self, dim: int) -> Any:
        import qdrant_edge as qe

        return qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)

    def search_params(self) -> Any:
        import qdrant_edge as qe

        return qe.SearchParams(hnsw_ef=self.hnsw_ef, exact=self.exact)

    def optimize(self) -> float:
        """The HNSW build, timed in this process (the store runs it in a child process on a copy)."""
        t0 = time.perf_counter()
        self.shard.optimize()
        self.shard.flush()
        return time.perf_counter() - t0

    def similar(self, i: int, category: str | None) -> list[int]:
        import qdrant_edge as qe

        record: Any = self.shard.retrieve([pid(i)], with_payload=False, with_vector=True)[0]
        must: Any = [qe.FieldCondition(key="category", match=qe.MatchValue(category))] if category else None
        f = qe.Filter(must=must, must_not=[qe.HasIdCondition({pid(i)})])
        params = self.search_params()
        hits = self.shard.query(
            qe.QueryRequest(
                limit=K, query=qe.Query.Nearest(record.vector["image"], using="image"), filter=f, params=params
            )
        )
        return [uuid.UUID(str(h.id)).int - 1 for h in hits]

    def reopen(self) -> float:
        import qdrant_edge as qe

        self.shard.close()
        t0 = time.perf_counter()
        self.shard = qe.EdgeShard.load(str(self.root))
        self.shard.count(qe.CountRequest(exact=True))
        return time.perf_counter() - t0

    def close(self) -> None:
        self.shard.close()


class FaissFlat:
    """Exact inner product (the vectors are unit length); a category filter is one flat index per category."""

    name = "faiss flat"

    def __init__(self, root: Path) -> None:
        self.root = root

    def load(self, x: np.ndarray, cats: list[str]) -> float:
        import faiss

        t0 = time.perf_counter()
        self.x, self.cats = x, np.array(cats)
        self.index: Any = faiss.IndexFlatIP(x.shape[1])
        self.index.add(x)
        self.by_cat: dict[str, tuple[Any, np.ndarray]] = {}
        for c in sorted(set(cats)):
            members = np.flatnonzero(self.cats == c)
            sub = faiss.IndexFlatIP(x.shape[1])
            sub.add(x[members])
            self.by_cat[c] = (sub, members)
        self.root.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(self.root / "flat.index"))
        return time.perf_counter() - t0

    def similar(self, i: int, category: str | None) -> list[int]:
        index, members = self.by_cat[category] if category else (self.index, None)
        _, found = index.search(self.x[i : i + 1], K + 1)
        ids = [int(j) if members is None else int(members[j]) for j in found[0] if j >= 0]
        return [j for j in ids if j != i][:K]

    def reopen(self) -> float:
        import faiss

        t0 = time.perf_counter()
        self.index = faiss.read_index(str(self.root / "flat.index"))
        return time.perf_counter() - t0

    def close(self) -> None:
        return None
