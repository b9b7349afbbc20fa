"""Quantized vectors: which named vectors an engine holds compressed in RAM, and how it searches them.

The settings pick a kind per named vector (``quantization_image``, ``quantization_text``: none, scalar,
product, binary or turbo) with the parameters of each kind. Both engines apply it when they create a
collection (Edge in ``edge_shards``, qdrant-client in ``qdrant``): the compressed codes pinned in RAM, the
float32 originals on disk (mmap) where the search rescores its candidates. A collection keeps the
quantization it was created with; a rebuild or a migration creates the next one with the settings of the
day. The search side (rescore, oversampling) is per query: the plan translators add it to every search of
a quantized vector, and Qdrant ignores it for a vector that is not quantized.

This module is engine-neutral except ``edge_vector_options``, which imports ``qdrant_edge`` when called
(the qdrant-client translation lives in ``qdrant.py``, so the Edge engine never imports qdrant-client).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from niteru.settings import QuantizationKind, Settings
from niteru.store.records import VECTOR_NAMES

# Both engines write a quantization config as ``{<kind>: {...}}``, with the kinds named as in the settings.
KINDS: tuple[QuantizationKind, ...] = ("scalar", "product", "binary", "turbo")
BINARY_ENCODINGS = {"1": "OneBit", "1.5": "OneAndHalfBits", "2": "TwoBits"}
TURBO_BITS = {"1": "Bits1", "1.5": "Bits1_5", "2": "Bits2", "4": "Bits4", "8": "Bits8"}


@dataclass(frozen=True)
class VectorQuantization:
    """One named vector's quantization: how it is stored and how a search uses it."""

    kind: QuantizationKind
    oversampling: float
    rescore: bool
    originals_on_disk: bool
    scalar_quantile: float
    pq_compression: int
    binary_bits: str
    turbo_bits: str


def configured(settings: Settings) -> dict[str, VectorQuantization]:
    """The quantized vectors of the settings (vectors left at ``none`` are absent; so is ``joint``, 128-d:
    its float32 vectors are already a tenth of the image vector's)."""
    kinds = {"image": settings.quantization_image, "text": settings.quantization_text}
    oversampling = {"image": settings.quantization_image_oversampling, "text": settings.quantization_text_oversampling}
    return {
        name: VectorQuantization(
            kind=kinds[name],
            oversampling=oversampling[name],
            rescore=settings.quantization_rescore,
            originals_on_disk=settings.quantization_originals_on_disk,
            scalar_quantile=settings.quantization_scalar_quantile,
            pq_compression=settings.quantization_pq_compression,
            binary_bits=settings.quantization_binary_bits,
            turbo_bits=settings.quantization_turbo_bits,
        )
        for name in VECTOR_NAMES
        if kinds.get(name, "none") != "none"
    }


def edge_vector_options(q: VectorQuantization | None) -> dict[str, Any]:
    """Keyword arguments of ``qdrant_edge.EdgeVectorParams`` for a vector quantized as ``q`` (None: not)."""
    if q is None:
        return {}
    import qdrant_edge as qe

    pinned = qe.Memory.Pinned  # the codes are what every search reads: never evicted
    config: Any
    if q.kind == "scalar":
        config = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=q.scalar_quantile, memory=pinned)
    elif q.kind == "product":
        config = qe.ProductQuantizationConfig(getattr(qe.CompressionRatio, f"X{q.pq_compression}"), memory=pinned)
    elif q.kind == "binary":
        encoding = getattr(qe.BinaryQuantizationEncoding, BINARY_ENCODINGS[q.binary_bits])
        config = qe.BinaryQuantizationConfig(encoding=encoding, memory=pinned)
    else:
        config = qe.TurboQuantQuantizationConfig(
            bits=getattr(qe.TurboQuantBitSize, TURBO_BITS[q.turbo_bits]), memory=pinned
        )
    # Cold: the originals are read (through the page cache) only to rescore the few candidates per query.
    return {"quantization_config": config, "memory": qe.Memory.Cold if q.originals_on_disk else None}


def kind_of(config: Mapping[str, Any] | None) -> QuantizationKind:
    """The kind of a quantization config as the engines serialise it (``{"scalar": {...}}``; None: none)."""
    return next((kind for kind in KINDS if kind in (config or {})), "none")


def edge_kinds(shard_dir: Path) -> dict[str, QuantizationKind]:
    """Each named vector's quantization, read back from an Edge shard's own config file."""
    vectors = json.loads((shard_dir / "edge_config.json").read_text())["vectors"]
    return {name: kind_of(params.get("quantization_config")) for name, params in vectors.items()}
