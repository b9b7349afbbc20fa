"""Image embedding throughput on real catalog images: the Keras path and the LiteRT paths side by side.

    .venv/bin/python bench/image_throughput.py [--images 256] [--runs 5] [--overlap 2000]

In one process and interleaved run by run (so their ratio holds on a noisy machine): the Keras network
in a compiled ``tf.function`` (what the service ran before), LiteRT fp32 (what it runs now) and, when
converted (``niteru weights --int8``), LiteRT int8. For each: end-to-end images/s through
``embed_sources`` (decode + preprocess + model) and model-only images/s, the median of ``--runs``; then
LiteRT fp32 by batch size, decoding inline or overlapped, single-image latency, the arithmetic peak of
this CPU for MobileNet v1 and how close each path gets, and int8's top-10 neighbour overlap with fp32 on
``--overlap`` catalog vectors. Writes bench/results/image_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from embedding.image import ImageConfig, MobileNetEmbedder  # noqa: E402
from embedding.image.convert import is_current  # noqa: E402
from embedding.image.runtime import LiteRTForward  # noqa: E402
from niteru.catalog import read_catalog, stratified_sample  # noqa: E402

MOBILENET_MACS = 569e6  # multiply-adds of one 224x224 MobileNet v1 1.0 forward pass
FMA_UNITS, FP32_LANES = 2, 8


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def clock_ghz() -> float:
    """The CPU clock from /proc/cpuinfo (the first core's current MHz; lscpu reads the same)."""
    text = Path("/proc/cpuinfo").read_text()
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    return max(mhz) / 1000 if mhz else 3.0


def peak_img_s() -> float:
    cores = os.cpu_count() or 1
    return cores * FMA_UNITS * FP32_LANES * clock_ghz() * 1e9 / MOBILENET_MACS


def top10_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each vector's 10 nearest neighbours (itself excluded) that two vector sets agree on."""

    def top(v: np.ndarray) -> np.ndarray:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argpartition(-sims, 10, axis=1)[:, :10]

    ta, tb = top(a), top(b)
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ta, tb, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=REPO.parent / "shared" / "data" / "catalog-dev")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--overlap", type=int, default=2000, help="catalog vectors for int8's neighbour overlap")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()

    load_before = os.getloadavg()
    catalog = read_catalog(args.catalog)
    blobs = [r.image_path(args.catalog).read_bytes() for r in stratified_sample(catalog, args.images)]
    paths: dict[str, MobileNetEmbedder] = {
        "keras (tf.function, batch 32)": MobileNetEmbedder(ImageConfig(), backend="keras").load(),
        "litert fp32": MobileNetEmbedder(ImageConfig()).load(),
    }
    if is_current(13, 224, "int8"):
        paths["litert int8"] = MobileNetEmbedder(ImageConfig(precision="int8")).load()
    prepared = np.stack([paths["litert fp32"].prepare(b) for b in blobs])
    by_batch = {}
    for shapes in ((1,), (1, 8), (1, 8, 32)):
        emb = MobileNetEmbedder(ImageConfig(batch_size=32)).load()
        emb._forward = LiteRTForward(emb.config, shapes=shapes)
        by_batch[shapes] = emb
    overlap = {t: MobileNetEmbedder(ImageConfig(decode_threads=t)).load() for t in (0, 1, 2)}

    times: dict[str, list[float]] = {}
    for _ in range(args.runs):  # interleaved: each run measures every path under the same load
        for name, emb in paths.items():
            times.setdefault(f"{name}|e2e", []).append(timed(lambda e=emb: e.embed_sources(blobs)))  # type: ignore[misc]
            times.setdefault(f"{name}|model", []).append(timed(lambda e=emb: e.embed(prepared)))  # type: ignore[misc]
        for shapes, emb in by_batch.items():
            times.setdefault(f"shapes {shapes}", []).append(timed(lambda e=emb: e.embed_sources(blobs)))  # type: ignore[misc]
        for t, emb in overlap.items():
            times.setdefault(f"decode threads {t}", []).append(timed(lambda e=emb: e.embed_sources(blobs)))  # type: ignore[misc]
        times.setdefault("decode only", []).append(timed(lambda: [overlap[0].prepare(b) for b in blobs]))
    rate = {k: len(blobs) / statistics.median(v) for k, v in times.items()}

    single = by_batch[(1,)]
    latencies = [timed(lambda b=b: single.embed_one(b)) * 1000 for b in blobs[:100]]  # type: ignore[misc]
    peak = peak_img_s()
    result: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "clock_ghz": clock_ghz(),
        "peak_img_s": peak,
        "load_average_before": load_before,
        "images": len(blobs),
        "runs": args.runs,
        "paths": {
            name: {"end_to_end_img_s": rate[f"{name}|e2e"], "model_img_s": rate[f"{name}|model"]} for name in paths
        },
        "litert_fp32_by_shapes": {str(s): rate[f"shapes {s}"] for s in by_batch},
        "litert_fp32_decode_threads": {t: rate[f"decode threads {t}"] for t in overlap},
        "decode_ms_per_img": 1000 / rate["decode only"],
        "single_image_latency_ms": {
            "p50": float(np.percentile(latencies, 50)),
            "p95": float(np.percentile(latencies, 95)),
        },
    }
    if "litert int8" in paths:
        rows = stratified_sample(catalog, args.overlap)
        sources = [r.image_path(args.catalog) for r in rows]
        fp32 = paths["litert fp32"].embed_sources(sources)
        int8 = paths["litert int8"].embed_sources(sources)
        assert fp32.indices == int8.indices
        result["int8"] = {
            "vectors": len(fp32.indices),
            "top10_overlap": top10_overlap(fp32.vectors, int8.vectors),
            "mean_cosine_to_fp32": float(np.mean(np.sum(fp32.vectors * int8.vectors, axis=1))),
            "model_speedup": rate["litert int8|model"] / rate["litert fp32|model"],
        }
    result["load_average_after"] = os.getloadavg()
    write(result, args.out)


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    peak = result["peak_img_s"]
    before, after = result["load_average_before"], result["load_average_after"]
    keras_e2e = result["paths"]["keras (tf.function, batch 32)"]["end_to_end_img_s"]
    lines = [
        f"Machine: {result['machine']}; {result['images']} real catalog-dev images; median of {result['runs']} "
        f"interleaved runs; load average {before[0]:.2f} / {before[1]:.2f} / {before[2]:.2f} before, "
        f"{after[0]:.2f} after (the machine is shared: above ~0.5, other work took the cores too).",
        "",
        f"Arithmetic peak: {os.cpu_count()} cores x {FMA_UNITS} FMA units x {FP32_LANES} fp32 lanes x "
        f"{result['clock_ghz']:.2f} GHz / {MOBILENET_MACS / 1e6:.0f} M multiply-adds = **{peak:.0f} images/s**.",
        "",
        "| path | end-to-end img/s | model img/s | model, share of peak | end-to-end vs Keras |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in result["paths"].items():
        lines.append(
            f"| {name} | {r['end_to_end_img_s']:.1f} | {r['model_img_s']:.1f} | {r['model_img_s'] / peak:.0%} "
            f"| {r['end_to_end_img_s'] / keras_e2e:.2f}x |"
        )
    lat = result["single_image_latency_ms"]
    lines += [
        "",
        "LiteRT fp32 end to end, batches of 32 run on interpreters of these batch shapes (largest first, "
        "no padding): " + ", ".join(f"{s}: {v:.1f}" for s, v in result["litert_fp32_by_shapes"].items()) + " img/s.",
        "",
        "LiteRT fp32 end to end by `NITERU_IMAGE_DECODE_THREADS` (0: decode inline, then the model): "
        + ", ".join(f"{t}: {v:.1f}" for t, v in result["litert_fp32_decode_threads"].items())
        + f" img/s. Decode + preprocess alone: {result['decode_ms_per_img']:.2f} ms per image on one thread.",
        "",
        f"Single-image latency (decode + model, LiteRT fp32): p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms.",
    ]
    if "int8" in result:
        q = result["int8"]
        lines += [
            "",
            f"int8 (full-integer, calibrated on catalog images) against fp32 on {q['vectors']} catalog vectors: "
            f"top-10 neighbour overlap {q['top10_overlap']:.3f}, mean cosine to the fp32 vector "
            f"{q['mean_cosine_to_fp32']:.4f}, model speed {q['model_speedup']:.2f}x fp32.",
        ]
    md = "\n".join(lines) + "\n"
    (out / "image_throughput.md").write_text(md)
    (out / "image_throughput.json").write_text(json.dumps(result, indent=2))
    print("\n" + md)


if __name__ == "__main__":
    main()
