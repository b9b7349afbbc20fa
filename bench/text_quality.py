"""Text vectors: quality against the SCDV paper, and speed on the development catalog.

Quality: train the text model on a labelled corpus's training split, embed both splits as averaged word
vectors, full SCDV and reduced (stored) SCDV, fit a linear SVM (C picked on a 20 % hold-out of the
training split, then refitted on all of it) and report test accuracy and macro-F1.
- 20 Newsgroups, bydate split (the paper: SCDV 84.6 % accuracy with word2vec vectors);
- livedoor news (Japanese, 9 categories), a fixed 80/20 split with seed 0.
Speed: training on the catalog's texts (median of --runs), single-text latency (median, p95) and batch
throughput of ``embed``.

    .venv/bin/python bench/text_quality.py [--sections 20ng,livedoor,speed] [--runs 3]

Writes bench/results/text_quality.json and .md. The machine has 2 cores; timings under other load are
marked with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from embedding.text import TextEmbedder, train_text_model  # noqa: E402
from embedding.text.corpora import Labelled, read_20newsgroups, read_livedoor, split  # noqa: E402
from niteru.catalog import read_catalog  # noqa: E402
from niteru.model_config import text_config  # noqa: E402
from niteru.settings import Settings  # noqa: E402

RESULTS = REPO / "bench" / "results"
C_GRID = (1.0, 10.0, 100.0)  # unit-length vectors with high mutual cosines need a large C


def _svm_scores(x_train: Any, y_train: list[str], x_test: Any, y_test: list[str], seed: int) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split
    from sklearn.svm import LinearSVC

    idx_fit, idx_val = train_test_split(np.arange(len(y_train)), test_size=0.2, random_state=seed, stratify=y_train)
    y = np.array(y_train)
    val_acc = {}
    for c in C_GRID:
        clf = LinearSVC(C=c, random_state=seed).fit(x_train[idx_fit], y[idx_fit])
        val_acc[c] = accuracy_score(y[idx_val], clf.predict(x_train[idx_val]))
    best = max(C_GRID, key=lambda c: val_acc[c])
    pred = LinearSVC(C=best, random_state=seed).fit(x_train, y).predict(x_test)
    return {
        "accuracy": float(accuracy_score(y_test, pred)),
        "macro_f1": float(f1_score(y_test, pred, average="macro")),
        "C": best,
    }


def quality(name: str, train: Labelled, test: Labelled, settings: Settings) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="niteru-bench-text-") as tmp:
        t = time.perf_counter()
        path = train_text_model(train.texts, text_config(settings), out_dir=Path(tmp))
        train_s = time.perf_counter() - t
        emb = TextEmbedder(text_config(settings), model_dir=path).load()
        rows: dict[str, Any] = {}
        for label, method, width in (
            ("averaged word vectors", emb.embed_average, emb.word_dim),
            ("SCDV, full", emb.embed_full_sparse, emb.full_dim),
            ("SCDV, reduced (stored)", emb.embed, emb.dim),
        ):
            t = time.perf_counter()
            x_train, x_test = method(train.texts, progress=True), method(test.texts, progress=True)
            embed_s = time.perf_counter() - t
            scores = _svm_scores(x_train, train.labels, x_test, test.labels, settings.text_seed)
            rows[label] = {"dim": int(width), "embed_s": round(embed_s, 1), **scores}
            print(f"{name}: {label}: {scores}", flush=True)
        return {
            "train_docs": len(train.texts),
            "test_docs": len(test.texts),
            "train_s": round(train_s, 1),
            "model": {k: emb.meta[k] for k in ("version", "counts", "timings", "threshold")},
            "rows": rows,
        }


def speed(settings: Settings, runs: int) -> dict[str, Any]:
    catalog = read_catalog(settings.catalog_dir)
    texts = [row.text for row in catalog]
    titles = [row.title for row in catalog]
    train_times, train_cpu = [], []
    with tempfile.TemporaryDirectory(prefix="niteru-bench-text-") as tmp:
        for run in range(runs):
            t, c = time.perf_counter(), time.process_time()
            path = train_text_model(texts, text_config(settings), out_dir=Path(tmp) / str(run))
            train_times.append(time.perf_counter() - t)
            train_cpu.append(time.process_time() - c)  # CPU seconds of all threads: barely moved by other load
            print(f"catalog training run {run + 1}: {train_times[-1]:.1f} s, {train_cpu[-1]:.1f} CPU s", flush=True)
        emb = TextEmbedder(text_config(settings), model_dir=path).load()
        sample = titles[:: max(1, len(titles) // 2000)]
        emb.embed(sample[:50])  # warm the tokenizer and caches
        per_text, per_text_cpu = [], []
        for title in sample:
            t, c = time.perf_counter(), time.thread_time()
            emb.embed([title])
            per_text.append((time.perf_counter() - t) * 1000)
            per_text_cpu.append((time.thread_time() - c) * 1000)
        throughput = []
        for _ in range(runs):
            t = time.perf_counter()
            for start in range(0, len(texts), 256):
                emb.embed(texts[start : start + 256])
            throughput.append(len(texts) / (time.perf_counter() - t))
        meta = emb.meta
    return {
        "texts": len(texts),
        "train_s_median": round(statistics.median(train_times), 1),
        "train_s_runs": [round(x, 1) for x in train_times],
        "train_cpu_s_median": round(statistics.median(train_cpu), 1),
        "train_stage_s": meta["timings"],
        "vocabulary": meta["counts"]["vocabulary"],
        "title_latency_ms": {
            "titles": len(sample),
            "median": round(statistics.median(per_text), 3),
            "p95": round(float(np.percentile(per_text, 95)), 3),
            "cpu_median": round(statistics.median(per_text_cpu), 3),
            "cpu_p95": round(float(np.percentile(per_text_cpu, 95)), 3),
        },
        "batch_texts_per_s_median": round(statistics.median(throughput)),
        "dim": emb.dim,
        "full_dim": emb.full_dim,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Text vectors: quality and speed\n\n{report['machine']}\n"]
    for key, title in (("20ng", "20 Newsgroups (bydate)"), ("livedoor", "livedoor news (Japanese, 80/20, seed 0)")):
        if key not in report:
            continue
        q = report[key]
        lines += [
            f"## {title}: {q['train_docs']} train / {q['test_docs']} test documents\n",
            "| representation | dim | accuracy | macro-F1 | SVM C |",
            "|---|---:|---:|---:|---:|",
        ]
        for label, r in q["rows"].items():
            lines.append(f"| {label} | {r['dim']:,} | {r['accuracy']:.1%} | {r['macro_f1']:.1%} | {r['C']:g} |")
        lines.append(f"\nModel training took {q['train_s']} s ({q['model']['timings']}).\n")
    if "speed" in report:
        s = report["speed"]
        lat = s["title_latency_ms"]
        lines += [
            f"## Speed on catalog-dev ({s['texts']:,} product texts)\n",
            "| measure | value |",
            "|---|---:|",
            f"| training (fastText + GMM + PCA), median of {len(s['train_s_runs'])} | {s['train_s_median']} s |",
            f"| embed one title, median ({lat['titles']} titles) | {lat['median']} ms |",
            f"| embed one title, p95 | {lat['p95']} ms |",
            f"| embed one title, CPU time median / p95 | {lat['cpu_median']} / {lat['cpu_p95']} ms |",
            f"| training CPU time (all threads), median | {s['train_cpu_s_median']} CPU s |",
            f"| batch embedding (256 per call), median | {s['batch_texts_per_s_median']:,} texts/s |",
            f"\nTraining stages of the last run: {s['train_stage_s']}; vocabulary {s['vocabulary']:,} words.\n",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="20ng,livedoor,speed")
    parser.add_argument("--runs", type=int, default=3, help="Runs whose median is the speed figure.")
    parser.add_argument("--data", type=Path, default=None, help="Text corpora folder (default: settings).")
    parser.add_argument("--out", default="text_quality", help="Base name of the result files.")
    parser.add_argument(
        "--merge", nargs="+", type=Path, help="Combine result JSON files of separate runs into --out; run nothing."
    )
    args = parser.parse_args()
    if args.merge:
        merged: dict[str, Any] = {}
        machines = []
        for part in args.merge:
            loaded = json.loads(part.read_text(encoding="utf-8"))
            machines.append(loaded.pop("machine", ""))
            merged.update(loaded)
        merged["machine"] = " / ".join(sorted(set(machines)))
        write(merged, args.out)
        return
    settings = Settings()
    data = args.data or (
        REPO / settings.text_data_dir if not settings.text_data_dir.is_absolute() else settings.text_data_dir
    )
    sections = set(args.sections.split(","))
    load_before = os.getloadavg()
    report: dict[str, Any] = {
        "settings": {k: v for k, v in settings.model_dump(mode="json").items() if k.startswith("text_")}
    }
    if "20ng" in sections:
        # The paper's word2vec setting: 200-d, 60 clusters; min count 5 as in its code.
        s = settings.model_copy(update={"text_min_count": 5})
        report["20ng"] = quality("20ng", read_20newsgroups(data, "train"), read_20newsgroups(data, "test"), s)
    if "livedoor" in sections:
        s = settings.model_copy(update={"text_min_count": 5})
        report["livedoor"] = quality("livedoor", *split(read_livedoor(data), 0.2, seed=0), s)
    if "speed" in sections:
        if not settings.catalog_dir.is_absolute():
            settings = settings.model_copy(update={"catalog_dir": REPO / settings.catalog_dir})
        report["speed"] = speed(settings, args.runs)
    load_after = os.getloadavg()
    report["machine"] = (
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        "(other work was running when it is above ~1)."
    )
    write(report, args.out)


def write(report: dict[str, Any], out: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{out}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    md = markdown(report)
    (RESULTS / f"{out}.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
