"""Real vector sets for the ANN experiments, embedded by the project's own MobileNet embedder.

Two sets, both under ``--out`` (default ``data/vectors/``):

* ``catalog``: every catalog image as it is -> ``catalog.npy`` + ``catalog.ids.json``.
* ``augmented``: every catalog image in the 8 deterministic variants of ``VARIANTS`` (the first is the
  image itself) -> ``augmented.npy`` + ``augmented.ids.json`` (8 rows per catalog image).

Each variant is made from the decoded RGB image (EXIF-oriented) *before* the embedder's usual
pad-to-square and resize to 224, so a crop really removes part of the product:

=============  =====================================================================================
orig           unchanged
flip           horizontal mirror
crop80-tl      the top-left 80% x 80% of the image
crop80-br      the bottom-right 80% x 80%
crop70-c       the central 70% x 70%
rot+10         rotated 10 degrees anticlockwise about the centre, same canvas, corners filled white
rot-10         rotated 10 degrees clockwise, same canvas, corners filled white
flip-crop85-c  mirrored, then the central 85% x 85%
=============  =====================================================================================

Work is written in shards (``shards/<variant>/<start>.npz``, each written to a temp file and renamed),
so an interrupted run resumes where it stopped and the ``orig`` shards serve both sets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from embedding.image.errors import ImageError
from niteru.settings import Settings

log = logging.getLogger(__name__)

WHITE = (255, 255, 255)
FORMAT_VERSION = 1


def _crop(fx: float, fy: float, frac: float) -> Callable[[Image.Image], Image.Image]:
    """A crop of ``frac`` of each side whose top-left corner sits at (fx, fy) of the spare margin."""

    def apply(image: Image.Image) -> Image.Image:
        w, h = image.size
        cw, ch = max(1, round(w * frac)), max(1, round(h * frac))
        left, top = round((w - cw) * fx), round((h - ch) * fy)
        return image.crop((left, top, left + cw, top + ch))

    return apply


def _rotate(degrees: float) -> Callable[[Image.Image], Image.Image]:
    def apply(image: Image.Image) -> Image.Image:
        return image.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=WHITE)

    return apply


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "orig": lambda image: image,
    "flip": ImageOps.mirror,
    "crop80-tl": _crop(0.0, 0.0, 0.80),
    "crop80-br": _crop(1.0, 1.0, 0.80),
    "crop70-c": _crop(0.5, 0.5, 0.70),
    "rot+10": _rotate(10.0),
    "rot-10": _rotate(-10.0),
    "flip-crop85-c": lambda image: _crop(0.5, 0.5, 0.85)(ImageOps.mirror(image)),
}
SETS: dict[str, tuple[str, ...]] = {"catalog": ("orig",), "augmented": tuple(VARIANTS)}


def load_variant(path: Path, variant: str, settings: Settings) -> Image.Image | ImageError:
    """Decode one catalog image the way the embedder would, then apply ``variant``."""
    from embedding.image.preprocess import decode, read_image_bytes, to_rgb

    try:
        image = decode(read_image_bytes(path, settings.image_max_bytes), settings.image_max_pixels)
        image = to_rgb(ImageOps.exif_transpose(image))
    except ImageError as exc:
        return exc
    return VARIANTS[variant](image)


def _save_atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def _save_atomic_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def _save_atomic_json(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)


def build_vector_set(
    image_paths: Sequence[Path],
    product_ids: Sequence[str],
    out_dir: Path,
    name: str,
    settings: Settings | None = None,
    shard_size: int = 512,
) -> tuple[Path, Path]:
    """Embed every image in every variant of set ``name``; returns the ``.npy`` and ``.ids.json`` paths.

    Shards already on disk are reused, so calling this again after an interruption continues the run.
    """
    from tqdm import tqdm

    from embedding.image import MobileNetEmbedder
    from niteru.model_config import image_config

    if name not in SETS:
        raise ValueError(f"unknown vector set {name!r}; choose from {sorted(SETS)}")
    if len(image_paths) != len(product_ids):
        raise ValueError("image_paths and product_ids differ in length")
    settings = settings or Settings()
    embedder = MobileNetEmbedder(image_config(settings))
    tag = f"v{FORMAT_VERSION}-{embedder.version}-n{len(image_paths)}"
    shard_root = out_dir / "shards" / tag
    jobs = [(v, s) for v in SETS[name] for s in range(0, len(image_paths), shard_size)]
    todo = [(v, s) for v, s in jobs if not (shard_root / v / f"{s:07d}.npz").exists()]
    if todo:
        embedder.load()
        bar = tqdm(total=sum(min(shard_size, len(image_paths) - s) for _, s in todo), desc=f"embed {name}", unit="img")

        threads = settings.image_decode_threads

        def load_shard(variant: str, start: int) -> list[Image.Image | ImageError]:
            chunk = range(start, min(start + shard_size, len(image_paths)))
            if pool is None:
                return [load_variant(image_paths[i], variant, settings) for i in chunk]
            return list(pool.map(lambda i: load_variant(image_paths[i], variant, settings), chunk))

        # With decode threads, decoding and augmenting shard i+1 runs while the model embeds shard i;
        # with 0 (the default, see MobileNetEmbedder.iter_batches) everything runs inline.
        pool = ThreadPoolExecutor(threads) if threads else None
        ahead = ThreadPoolExecutor(1) if threads else None
        try:
            pending = ahead.submit(load_shard, *todo[0]) if ahead else None
            for n, (variant, start) in enumerate(todo):
                loaded = pending.result() if pending else load_shard(variant, start)
                if ahead and n + 1 < len(todo):
                    pending = ahead.submit(load_shard, *todo[n + 1])
                ok = [j for j, item in enumerate(loaded) if not isinstance(item, ImageError)]
                result = embedder.embed_sources([loaded[j] for j in ok])  # type: ignore[misc]  # errors filtered
                ids = np.array([f"{product_ids[start + ok[j]]}#{variant}" for j in result.indices], dtype=str)
                _save_atomic_npz(shard_root / variant / f"{start:07d}.npz", vectors=result.vectors, ids=ids)
                bar.update(len(loaded))
        finally:
            for executor in (ahead, pool):
                if executor:
                    executor.shutdown(cancel_futures=True)
        bar.close()
    vectors: list[np.ndarray] = []
    ids_all: list[str] = []
    for variant, start in jobs:
        with np.load(shard_root / variant / f"{start:07d}.npz") as shard:
            vectors.append(shard["vectors"])
            ids_all.extend(str(x) for x in shard["ids"])
    npy, ids_path = out_dir / f"{name}.npy", out_dir / f"{name}.ids.json"
    _save_atomic_npy(npy, np.concatenate(vectors).astype(np.float32, copy=False))
    _save_atomic_json(ids_path, {"version": tag, "set": name, "variants": list(SETS[name]), "ids": ids_all})
    log.info("%s: %d vectors -> %s", name, len(ids_all), npy)
    return npy, ids_path


def build_from_catalog(catalog_dir: Path, out_dir: Path, name: str, settings: Settings | None = None) -> Path:
    """All rows of a catalog folder (file order) through ``build_vector_set``."""
    from niteru.catalog import read_catalog

    rows = read_catalog(catalog_dir)
    npy, _ = build_vector_set(
        [r.image_path(catalog_dir) for r in rows], [r.product_id for r in rows], out_dir, name, settings
    )
    return npy
