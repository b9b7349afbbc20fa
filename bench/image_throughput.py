"""Image embedding throughput on real catalog images: decode+preprocess vs model, by batch size.

    .venv/bin/python bench/image_throughput.py [--images 256] [--runs 5] [--catalog DIR]

For batch sizes 1, 8, 32 and 64: end-to-end images/s through ``MobileNetEmbedder.embed_sources``
(decoding of the next batch overlapping the model), model-only images/s on prepared arrays, and
decode+preprocess ms per image on one thread; the median of ``--runs`` runs each. Then single-image
latency, and the variants that matter for speed (Keras ``predict`` vs our compiled fixed-signature
function, TensorFlow intra-op threads, decoding overlapped or not). Writes
bench/results/image_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
from niteru.catalog import read_catalog, stratified_sample  # noqa: E402

BATCH_SIZES = (1, 8, 32, 64)


def median_time(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=REPO.parent / "shared" / "data" / "catalog-dev")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    rows = stratified_sample(read_catalog(args.catalog), args.images)
    paths = [r.image_path(args.catalog) for r in rows]
    blobs = [p.read_bytes() for p in paths]  # keep disk out of the measurement
    base = MobileNetEmbedder(ImageConfig()).load()
    prepared = np.stack([base.prepare(b) for b in blobs])
    decode_ms = median_time(lambda: [base.prepare(b) for b in blobs], args.runs) / len(blobs) * 1000

    table: list[dict[str, Any]] = []
    for bs in BATCH_SIZES:
        emb = MobileNetEmbedder(ImageConfig(batch_size=bs))
        emb._forward = base._forward  # same compiled network; only the batching differs
        n = len(blobs) if bs > 1 else min(len(blobs), 64)
        e2e = median_time(lambda emb=emb, n=n: emb.embed_sources(blobs[:n]), args.runs)  # type: ignore[misc]
        model = median_time(lambda emb=emb, n=n: emb.embed(prepared[:n]), args.runs)  # type: ignore[misc]
        table.append(
            {
                "batch": bs,
                "end_to_end_img_s": n / e2e,
                "model_img_s": n / model,
                "model_ms_per_img": model / n * 1000,
                "decode_ms_per_img": decode_ms,
            }
        )
        print(f"batch {bs:>3}: end-to-end {n / e2e:6.1f} img/s, model {n / model:6.1f} img/s")

    single = MobileNetEmbedder(ImageConfig(batch_size=1))
    single._forward = base._forward
    latencies = []
    for blob in blobs[:64]:
        start = time.perf_counter()
        single.embed_sources([blob])
        latencies.append((time.perf_counter() - start) * 1000)

    variants = measure_variants(base, prepared[:64], blobs[:128], args.runs)
    best = max(table, key=lambda r: r["end_to_end_img_s"])
    result = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "load_average": [load_before, os.getloadavg()[0]],
        "images": len(blobs),
        "runs": args.runs,
        "batches": table,
        "single_image_latency_ms": {
            "p50": float(np.percentile(latencies, 50)),
            "p95": float(np.percentile(latencies, 95)),
        },
        "best_batch": best["batch"],
        "best_end_to_end_img_s": best["end_to_end_img_s"],
        "variants": variants,
        "peak_rss_mb": peak_rss_mb(),
    }
    write(result, args.out)


def measure_variants(base: MobileNetEmbedder, prepared: np.ndarray, blobs: list[bytes], runs: int) -> dict[str, float]:
    """What the speed-ups buy, at batch 32 (images/s, median of ``runs``)."""
    import keras

    model = base._forward
    n = len(prepared)
    out: dict[str, float] = {}
    out["compiled tf.function, batch 32"] = n / median_time(
        lambda: [model(prepared[i : i + 32]) for i in range(0, n, 32)], runs
    )
    net = keras.applications.MobileNet(include_top=False, weights="imagenet", pooling="avg")
    x = prepared.astype("float32") / 127.5 - 1.0
    out["keras model.predict, batch 32"] = n / median_time(lambda: net.predict(x, batch_size=32, verbose=0), runs)
    overlapped = MobileNetEmbedder(ImageConfig(batch_size=32, decode_threads=2))
    overlapped._forward = model
    out["end to end, decode overlapped (2 threads)"] = len(blobs) / median_time(
        lambda: overlapped.embed_sources(blobs), runs
    )

    inline = MobileNetEmbedder(ImageConfig(batch_size=32, decode_threads=0))
    inline._forward = model
    out["end to end, decode inline then model (default)"] = len(blobs) / median_time(
        lambda: inline.embed_sources(blobs), runs
    )
    return out


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Machine: {result['machine']}; {result['images']} real catalog-dev images; median of {result['runs']} runs; "
        f"1-minute load average {result['load_average'][0]:.1f} before, {result['load_average'][1]:.1f} after "
        "(above ~1, other work shared the cores).",
        "",
        "| batch | end-to-end img/s | model img/s | model ms/img | decode+preprocess ms/img (1 thread) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in result["batches"]:
        lines.append(
            f"| {r['batch']} | {r['end_to_end_img_s']:.1f} | {r['model_img_s']:.1f} | {r['model_ms_per_img']:.1f} "
            f"| {r['decode_ms_per_img']:.2f} |"
        )
    lat = result["single_image_latency_ms"]
    lines += [
        "",
        f"Single-image latency (decode + model, batch 1): p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms. "
        f"Peak RSS {result['peak_rss_mb']:.0f} MB.",
        "",
        "| variant | img/s |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in result["variants"].items()],
    ]
    md = "\n".join(lines) + "\n"
    (out / "image_throughput.md").write_text(md)
    (out / "image_throughput.json").write_text(json.dumps(result, indent=2))
    print("\n" + md)


if __name__ == "__main__":
    main()
